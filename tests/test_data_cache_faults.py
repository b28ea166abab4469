"""data.binarized against the faults a cluster causes: damaged cache files are named and rebuilt
under the lock, a build killed with -9 leaves nothing the next build keeps, and the lock of a
dead owner (a pid gone or reused here) is taken over while one that cannot be judged names the
command that breaks it."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sentencepiece import sentencepiece_model_pb2

from data import binarized as binarized_module
from data.binarized import MANIFEST, binarize
from data.corpora import CorpusError, load_corpus
from data.ownership import owner_record
from data.unlock import unlock

PAIRS = 3000
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    embedded = load_corpus("embedded")
    for split, count in (("train", PAIRS), ("valid", 100)):
        text = embedded.split(split)
        (folder / f"{split}.en").write_text("".join(s + "\n" for s in text.source[:count]))
        (folder / f"{split}.de").write_text("".join(s + "\n" for s in text.target[:count]))
    return folder


def _build(corpus: Path, cache: Path):
    return binarize("local", corpus, vocab_size=300, cache_dir=cache, max_lens=(64,))


def cache_digest(cache: Path) -> dict[str, str]:
    """SHA-256 of every file under ``cache``, the manifest less its build time fields."""
    out = {}
    for path in sorted(p for p in cache.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.name == MANIFEST:
            manifest = json.loads(data)
            for key in ("built_at", "build_seconds"):
                manifest.pop(key)
            data = json.dumps(manifest, sort_keys=True).encode()
        out[str(path.relative_to(cache))] = hashlib.sha256(data).hexdigest()
    return out


@pytest.fixture(scope="module")
def clean(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    cache = tmp_path_factory.mktemp("clean")
    _build(corpus_dir, cache)
    return cache_digest(cache)


def _cut(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _model_without_last_pieces(path: Path) -> None:
    """A model cut at a piece boundary: it still parses, with fewer pieces and no options."""
    model = sentencepiece_model_pb2.ModelProto()
    model.ParseFromString(path.read_bytes())
    pieces = sentencepiece_model_pb2.ModelProto()
    pieces.pieces.extend(model.pieces[:-20])
    pieces.trainer_spec.CopyFrom(model.trainer_spec)
    pieces.normalizer_spec.CopyFrom(model.normalizer_spec)
    path.write_bytes(pieces.SerializeToString())


DAMAGE = {
    "model cut short": (lambda f: f.parent / json.loads((f / MANIFEST).read_text())["vocab_file"],
                        _cut, "not a readable SentencePiece model"),
    "model missing pieces": (
        lambda f: f.parent / json.loads((f / MANIFEST).read_text())["vocab_file"],
        _model_without_last_pieces, "encodes another vocabulary"),
    "ids cut short": (lambda f: f / "train.src.ids.npy", _cut, "truncated"),
    "offsets cut short": (lambda f: f / "valid.tgt.off.npy", lambda p: _cut(p, 0.3),
                          "truncated"),
    "references missing": (lambda f: f / "valid.ref.npy", Path.unlink, "missing"),
    "header damaged": (lambda f: f / "train.tgt.off.npy",
                       lambda p: p.write_bytes(b"\x00" * 300), "not a readable .npy"),
    "manifest without a field": (
        lambda f: f / MANIFEST,
        lambda p: p.write_text(json.dumps({k: v for k, v in json.loads(p.read_text()).items()
                                           if k != "arrays"})), "no 'arrays'"),
    "manifest not JSON": (lambda f: f / MANIFEST, lambda p: _cut(p, 0.5), "not valid JSON"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_cache_file_is_named_and_rebuilt_under_the_lock(
        damage: str, corpus_dir: Path, tmp_path: Path, clean: dict[str, str],
        caplog: pytest.LogCaptureFixture) -> None:
    first = _build(corpus_dir, tmp_path)
    which, spoil, said = DAMAGE[damage]
    path = which(first.folder)
    spoil(path)
    with caplog.at_level(logging.WARNING):
        again = _build(corpus_dir, tmp_path)
    assert again.built_here
    assert f"{path}: " in caplog.text and said in caplog.text and "rebuilding" in caplog.text
    assert cache_digest(tmp_path) == clean
    vocab = again.vocab()
    assert vocab.decode(again.split("valid").tgt[0]) == again.split("valid").references[0]


def test_a_length_index_cut_short_is_rebuilt(corpus_dir: Path, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    built = _build(corpus_dir, tmp_path)
    right = built.keep(64)
    path = built.folder / "train.keep-64.npy"
    _cut(path, 0.6)
    with caplog.at_level(logging.WARNING):
        again = _build(corpus_dir, tmp_path).keep(64)
    assert f"{path}: truncated" in caplog.text and "rebuilding it" in caplog.text
    np.testing.assert_array_equal(again, right)
    np.save(path, right[::-1])  # a whole file, but not an index of the pairs
    np.testing.assert_array_equal(_build(corpus_dir, tmp_path).keep(64), right)
    assert "not an increasing index" in caplog.text


# --- a build killed with -9 --------------------------------------------------------------------

_CHILD = ("import sys; from data.binarized import binarize; "
          "binarize('local', sys.argv[1], vocab_size=300, cache_dir=sys.argv[2], max_lens=(64,))")


def _kill_when(corpus: Path, cache: Path, ready: str) -> int:
    """Start a build in a child, kill -9 it once ``cache.glob(ready)`` matches; its pid."""
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(corpus), str(cache)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 120
    while not list(cache.glob(ready)) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, f"the build ended before {ready} appeared"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return proc.pid


@pytest.mark.parametrize("point", [".spm-train-*/train.txt", ".bin-*/train.src.ids.npy",
                                   "bin-*.lock"])
def test_a_build_killed_with_minus_9_is_cleaned_and_redone_by_the_next(
        point: str, corpus_dir: Path, tmp_path: Path, clean: dict[str, str],
        caplog: pytest.LogCaptureFixture) -> None:
    pid = _kill_when(corpus_dir, tmp_path, point)
    assert list(tmp_path.glob(point))
    with caplog.at_level(logging.WARNING):
        _build(corpus_dir, tmp_path)
    assert f"pid {pid} no longer runs on this host" in caplog.text
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == [] and not list(tmp_path.glob("*.lock"))
    assert cache_digest(tmp_path) == clean


# --- the lock -------------------------------------------------------------------------------------


def _lock_of(corpus: Path, cache: Path) -> Path:
    built = _build(corpus, cache)
    (built.folder / MANIFEST).unlink()  # so the next call needs the lock to rebuild
    return Path(str(built.folder) + ".lock")


def test_a_lock_whose_pid_was_reused_is_taken_over_saying_so(
        corpus_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lock = _lock_of(corpus_dir, tmp_path)
    record = owner_record()
    lock.write_text(json.dumps({**record, "pid": os.getppid(), "start_time": 1}))
    with caplog.at_level(logging.WARNING):
        assert _build(corpus_dir, tmp_path).built_here
    assert f"taking over the lock {lock}" in caplog.text
    assert f"pid {os.getppid()} now belongs to another process" in caplog.text
    assert not lock.exists()


def test_a_lock_it_cannot_judge_names_the_command_that_breaks_it(
        corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lock = _lock_of(corpus_dir, tmp_path)
    for variable in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(variable, raising=False)
    lock.write_text(json.dumps({**owner_record(), "host": "another-node", "pid": 4242}))
    monkeypatch.setattr(binarized_module, "_LOCK_TIMEOUT_S", 0.2)
    with pytest.raises(CorpusError) as caught:
        _build(corpus_dir, tmp_path)
    message = str(caught.value)
    assert "pid 4242 on another-node" in message and "cannot tell" in message
    command = message.rsplit("break the lock with: ", 1)[1]
    assert command.endswith(f"-m reproduce unlock {lock}")
    done = subprocess.run([sys.executable, *command.split()[1:]], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "pid 4242 on another-node" in done.stdout and "removed" in done.stdout
    assert not lock.exists()
    monkeypatch.setattr(binarized_module, "_LOCK_TIMEOUT_S", 60.0)
    assert _build(corpus_dir, tmp_path).built_here


def test_unlock_dry_run_shows_and_keeps(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    lock.write_text(json.dumps({**owner_record(), "host": "elsewhere", "pid": 7}))
    assert "not removed" in unlock(lock, dry_run=True) and lock.exists()
    assert unlock(tmp_path / "none.lock") == f"{tmp_path / 'none.lock'}: no lock there"
    # a folder names its lock: the one inside (results) or the one beside it (a data cache)
    cache = tmp_path / "x"
    cache.mkdir()
    assert unlock(cache, dry_run=True).startswith(f"{lock}: held by pid 7 on elsewhere")
    (cache / ".lock").write_text(lock.read_text())
    assert unlock(cache).startswith(f"{cache / '.lock'}: held by")
    assert not (cache / ".lock").exists() and lock.exists()
