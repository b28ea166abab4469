"""Shared SentencePiece vocabulary: special ids, content-hash cache, round trips, bad arguments."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from data.corpora import load_corpus
from data.vocab import SharedVocab, build_vocab


@pytest.fixture(scope="module")
def multi30k_text(multi30k_dir: Path) -> list[str]:
    train = load_corpus("multi30k", multi30k_dir).split("train")
    return [*train.source[:4000], *train.target[:4000]]


@pytest.mark.slow  # trains three vocabularies
def test_special_ids_round_trip_and_cache(multi30k_text: list[str], tmp_path: Path) -> None:
    vocab = build_vocab(multi30k_text, 1000, tmp_path)
    assert (vocab.pad_id, vocab.unk_id, vocab.bos_id, vocab.eos_id) == (0, 1, 2, 3)
    assert vocab.size == 1000
    assert vocab.model_path.parent == tmp_path and vocab.model_path.name.startswith("spm-")
    for sentence in multi30k_text[::500]:
        ids = vocab.encode(sentence)
        assert min(ids) > 3
        assert vocab.decode([vocab.bos_id, *ids, vocab.eos_id, vocab.pad_id]) == sentence
    mtime = vocab.model_path.stat().st_mtime_ns
    again = build_vocab(list(multi30k_text), 1000, tmp_path)
    assert again.model_path == vocab.model_path
    assert again.model_path.stat().st_mtime_ns == mtime  # loaded, not retrained
    assert not list(tmp_path.glob(".spm-train-*"))  # temp dirs are cleaned up
    other_size = build_vocab(multi30k_text, 800, tmp_path)
    other_text = build_vocab(multi30k_text[:-1], 1000, tmp_path)
    assert len({vocab.model_path, other_size.model_path, other_text.model_path}) == 3


def test_vocab_pickles_for_dataloader_workers(multi30k_text: list[str], tmp_path: Path) -> None:
    vocab = build_vocab(multi30k_text, 600, tmp_path, model_type="bpe")
    copy = pickle.loads(pickle.dumps(vocab))
    assert copy.encode("Ein Mann fährt Fahrrad.") == vocab.encode("Ein Mann fährt Fahrrad.")


def test_small_text_gives_a_smaller_vocab_with_a_warning(tmp_path: Path, caplog) -> None:
    vocab = build_vocab(["ab ab ab", "ba ba"], 500, tmp_path, model_type="bpe")
    assert vocab.size < 500
    assert "stopped at" in caplog.text


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        build_vocab(["a"], 0, tmp_path)
    with pytest.raises(ValueError, match="unknown model_type 'wordpiece'"):
        build_vocab(["a"], 100, tmp_path, model_type="wordpiece")
    with pytest.raises(ValueError, match="no text"):
        build_vocab([], 100, tmp_path)
    with pytest.raises(ValueError, match="newline"):
        build_vocab(["a\nb"], 100, tmp_path)
    with pytest.raises(FileNotFoundError, match="SentencePiece model not found"):
        SharedVocab(tmp_path / "missing.model")


def test_training_folders_of_killed_builders_are_removed(tmp_path: Path) -> None:
    """A builder killed with -9 mid-training leaves its .spm-train-* folder; the next removes it."""
    import json
    import signal
    import subprocess
    import sys
    import time

    code = ("import sys; from data.vocab import build_vocab; "
            "build_vocab([f'line {i} ' + 'abcdefgh' * (i % 7) for i in range(200000)], 500, "
            "sys.argv[1])")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)])
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".spm-train-*/train.txt")) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    left = list(tmp_path.glob(".spm-train-*"))
    assert left and json.loads((left[0] / ".owner.json").read_text())["pid"] == proc.pid
    build_vocab([f"word{i % 50} other{i % 30}" for i in range(300)], 40, tmp_path)
    assert not list(tmp_path.glob(".spm-train-*"))


def test_a_training_folder_whose_pid_was_reused_is_removed(tmp_path: Path) -> None:
    """The pid of a dead trainer may run another process now: its start time tells them apart."""
    import json
    import os

    from data.ownership import owner_record

    reused = tmp_path / ".spm-train-abc"
    reused.mkdir()
    (reused / "train.txt").write_text("x\n")
    record = {**owner_record(), "start_time": owner_record()["start_time"] - 1}
    (reused / ".owner.json").write_text(json.dumps(record))
    live = tmp_path / ".spm-train-live"
    live.mkdir()
    (live / ".owner.json").write_text(json.dumps({**owner_record(), "pid": os.getppid(),
                                                   "start_time": None}))
    build_vocab([f"word{i % 50} other{i % 30}" for i in range(300)], 40, tmp_path)
    assert not reused.exists() and live.exists()


def test_the_same_vocabulary_trained_again_has_the_same_file_and_fingerprint(
        tmp_path: Path) -> None:
    """The model file no longer holds the temp folder it was trained in: a rebuild is the same
    file, and the fingerprint (pieces, scores) is the same even for a file that holds a path."""
    from sentencepiece import sentencepiece_model_pb2

    from data.vocab import vocab_fingerprint

    lines = [f"word{i % 50} other{i % 30}" for i in range(300)]
    first = build_vocab(lines, 40, tmp_path / "a")
    second = build_vocab(lines, 40, tmp_path / "b")
    assert first.model_path.read_bytes() == second.model_path.read_bytes()
    model = sentencepiece_model_pb2.ModelProto()
    model.ParseFromString(first.model_path.read_bytes())
    model.trainer_spec.model_prefix = "/tmp/somewhere/else/spm"
    moved = tmp_path / "moved.model"
    moved.write_bytes(model.SerializeToString())
    assert moved.read_bytes() != first.model_path.read_bytes()
    assert vocab_fingerprint(moved) == first.fingerprint() == second.fingerprint()
    model.pieces[7].score += 0.5
    moved.write_bytes(model.SerializeToString())
    assert vocab_fingerprint(moved) != first.fingerprint()


def test_a_damaged_cached_model_is_named_and_trained_again(tmp_path: Path) -> None:
    from data.vocab import VocabError

    lines = [f"word{i % 50} other{i % 30}" for i in range(300)]
    vocab = build_vocab(lines, 40, tmp_path)
    whole = vocab.model_path.read_bytes()
    vocab.model_path.write_bytes(whole[: len(whole) // 3])
    with pytest.raises(VocabError, match=f"{vocab.model_path}: not a readable SentencePiece"):
        SharedVocab(vocab.model_path)
    again = build_vocab(lines, 40, tmp_path)
    assert again.model_path.read_bytes() == whole


def _pieces(vocab: SharedVocab) -> list[tuple[str, float]]:
    return [(vocab._sp.id_to_piece(i), vocab._sp.get_score(i)) for i in range(vocab.size)]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2,
                    reason="needs 2 CPUs to compare a 1-CPU and a 2-CPU build")
def test_the_vocabulary_does_not_depend_on_how_many_cpus_the_process_has(
        multi30k_text: list[str], tmp_path: Path) -> None:
    """SentencePiece's pieces depend on its thread count; it used to follow the CPU count, so
    a laptop and a cluster node learned different vocabularies from the same text."""
    text = multi30k_text[:3000]
    everything = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(everything)})
        one_cpu = build_vocab(text, 600, tmp_path / "one")
    finally:
        os.sched_setaffinity(0, everything)
    all_cpus = build_vocab(text, 600, tmp_path / "all")
    assert _pieces(one_cpu) == _pieces(all_cpus)
