"""Binarize a corpus once, read it by position everywhere: vocabulary, token ids, references, index.

`binarize(...)` builds (under a file lock, so concurrent cells and ranks build it once) a folder

    <cache_dir>/bin-<key>/
        manifest.json              what was built from what (written last: the folder is complete)
        <split>.{src,tgt}.ids.npy  every sentence's token ids, one flat int32 array
        <split>.{src,tgt}.off.npy  int64 offsets, len = sentences + 1 (sentence i: ids[o[i]:o[i+1]])
        <split>.ref.npy / .ref.off.npy  the raw target sentences as UTF-8 bytes + offsets (BLEU)
        train.keep-<max_len>.npy   indices of the training pairs whose sides fit max_len

The key hashes the corpus's stat key (`data.fingerprint.corpus_stat_key`: file names, sizes and
mtimes of a folder, the `datasets` fingerprints of a hub copy, the generator source of the
embedded corpus) and the vocabulary options, so finding the folder reads no corpus text. The
SentencePiece model stays in `<cache_dir>` (data.vocab's content-hashed file), shared with older
caches.

`Binarized.split` opens the arrays as `data.npy_file.NpyFile`s, read with `os.pread` one sentence
at a time: a training process holds no Python list of the corpus and maps none of it into its
memory (a mapped read counts whole page-cache folios in the process's RSS: see that module), every
rank shares the OS page cache, and lengths come from the offsets. Flat .npy arrays were chosen over
Arrow (`datasets.map(num_proc=N)` + `save_to_disk`): on a small stand-in they built faster and
read leaner (experiments/benchmarks/data_prepare.py --arrow-repeat).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm
from filelock import FileLock

from data.corpora import CorpusError, ParallelCorpus, load_corpus
from data.fingerprint import corpus_stat_key
from data.npy_file import NpyFile, NpyFileError
from data.vocab import SharedVocab, build_vocab

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_ENCODE_CHUNK = 100_000
_LOCK_TIMEOUT_S = 6 * 3600.0  # a WMT-sized build takes minutes; a stale lock is released by the OS


# ----------------------------------------------------------------------------- cache key


def _hash_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def vocab_options(vocab_size: int, model_type: str) -> dict[str, Any]:
    return {"vocab_size": vocab_size, "model_type": model_type, "spm": spm.__version__}


def cache_key(fingerprint: dict[str, Any], options: dict[str, Any]) -> str:
    return _hash_json({"format": FORMAT_VERSION, "corpus": fingerprint, "vocab": options})[:24]


# ----------------------------------------------------------------------------- encoding


def encode_flat(vocab: SharedVocab, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of `texts` as (flat int32 ids, int64 offsets), encoded in chunks."""
    parts: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    for start in range(0, len(texts), _ENCODE_CHUNK):
        ids = vocab.encode_batch(texts[start : start + _ENCODE_CHUNK])
        lengths.append(np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids)))
        parts.append(np.fromiter((t for x in ids for t in x), dtype=np.int32))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    if lengths:
        np.cumsum(np.concatenate(lengths), out=offsets[1:])
    flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
    return flat, offsets


def _text_flat(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    encoded = [t.encode("utf-8") for t in texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)),
              out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


def keep_index(src_off: np.ndarray, tgt_off: np.ndarray, max_len: int) -> np.ndarray:
    """Indices of the pairs whose source and target have at most `max_len` tokens."""
    return np.flatnonzero((np.diff(src_off) <= max_len) & (np.diff(tgt_off) <= max_len))


# ----------------------------------------------------------------------------- mapped views


class MappedIds:
    """Token ids of many sentences: flat ids + offsets, read by position (data.npy_file)."""

    def __init__(self, ids: NpyFile, offsets: NpyFile) -> None:
        self.ids, self.offsets = ids, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets.read_all())

    def __getitem__(self, i: int) -> np.ndarray:
        start, stop = self.offsets.read(int(i), int(i) + 2)
        return self.ids.read(int(start), int(stop))


class MappedText:
    """UTF-8 sentences stored as one byte array + offsets, read and decoded one at a time."""

    def __init__(self, data: NpyFile, offsets: NpyFile) -> None:
        self.data, self.offsets = data, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        start, stop = self.offsets.read(int(i), int(i) + 2)
        return self.data.read(int(start), int(stop)).tobytes().decode("utf-8")


class MappedSplit:
    """One split of a binarized corpus, read from its folder on demand.

    Pickling (DataLoader workers, spawned processes) sends the folder and split name, not the
    arrays; the receiver opens the same files.
    """

    def __init__(self, folder: Path, name: str) -> None:
        self.folder, self.name = Path(folder), name

        def open_array(suffix: str) -> NpyFile:
            path = self.folder / f"{name}.{suffix}.npy"
            try:
                return NpyFile(path)
            except (NpyFileError, OSError) as err:
                raise CorpusError(f"{err}; delete {self.folder} to rebuild it") from err

        self.src = MappedIds(open_array("src.ids"), open_array("src.off"))
        self.tgt = MappedIds(open_array("tgt.ids"), open_array("tgt.off"))
        self.references = MappedText(open_array("ref"), open_array("ref.off"))

    def __len__(self) -> int:
        return len(self.src)

    def __reduce__(self) -> tuple[Any, tuple[Path, str]]:
        return MappedSplit, (self.folder, self.name)


@dataclass
class Binarized:
    """A built cache folder: its manifest, vocabulary and memory-mapped splits."""

    folder: Path
    manifest: dict[str, Any]
    built_here: bool = False  # this call built the folder (the others found it)

    @property
    def splits(self) -> list[str]:
        return list(self.manifest["splits"])

    def vocab(self) -> SharedVocab:
        return SharedVocab(self.folder.parent / self.manifest["vocab_file"])

    def split(self, name: str) -> MappedSplit:
        if name not in self.manifest["splits"]:
            expected = self.manifest.get("expected", {})
            where = f" (expected {expected[name]})" if name in expected else ""
            raise CorpusError(
                f"corpus {self.manifest['corpus_name']!r} has no split {name!r}{where}; "
                f"available splits: {sorted(self.manifest['splits'])}"
            )
        return MappedSplit(self.folder, name)

    def keep(self, max_len: int) -> np.ndarray:
        """The length-filtered training index for `max_len` (built under the lock if missing)."""
        path = self.folder / f"train.keep-{max_len}.npy"
        if not path.is_file():
            with FileLock(str(self.folder) + ".lock", timeout=_LOCK_TIMEOUT_S):
                if not path.is_file():
                    train = self.split("train")
                    _save(path, keep_index(train.src.offsets.read_all(),
                                           train.tgt.offsets.read_all(), max_len))
        return np.load(path)


# ----------------------------------------------------------------------------- building


def _save(path: Path, array: np.ndarray) -> None:
    """np.save to a temp file in the folder, then rename (readers never see half a file)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, np.ascontiguousarray(array))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _build(folder: Path, corpus: ParallelCorpus, vocab: SharedVocab, max_lens: list[int],
           fingerprint: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """Encode every split into `folder` (a fresh temp folder) and return the manifest."""
    counts = {}
    for name, text in corpus.splits.items():
        for side, lines in (("src", text.source), ("tgt", text.target)):
            ids, off = encode_flat(vocab, lines)
            _save(folder / f"{name}.{side}.ids.npy", ids)
            _save(folder / f"{name}.{side}.off.npy", off)
        data, off = _text_flat(text.target)
        _save(folder / f"{name}.ref.npy", data)
        _save(folder / f"{name}.ref.off.npy", off)
        counts[name] = len(text)
    if "train" in corpus.splits:
        src = np.load(folder / "train.src.off.npy")
        tgt = np.load(folder / "train.tgt.off.npy")
        for max_len in max_lens:
            _save(folder / f"train.keep-{max_len}.npy", keep_index(src, tgt, max_len))
    return {
        "format": FORMAT_VERSION,
        "corpus_name": corpus.name,
        "fingerprint": fingerprint,
        "vocab_options": options,
        "vocab_file": vocab.model_path.name,
        "vocab_size": vocab.size,
        "splits": counts,
        "expected": dict(corpus.expected),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def binarize(corpus_name: str, corpus_path: str | Path | None, *, vocab_size: int,
             cache_dir: str | Path, model_type: str = "unigram",
             max_lens: tuple[int, ...] = ()) -> Binarized:
    """Find or build the binarized cache of a corpus (see the module docstring).

    Only the first caller reads and encodes the corpus; the others wait on the lock and map it.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = corpus_stat_key(corpus_name, corpus_path)
    options = vocab_options(vocab_size, model_type)
    folder = cache_dir / f"bin-{cache_key(fingerprint, options)}"
    built = False
    if not (folder / MANIFEST).is_file():
        with FileLock(str(folder) + ".lock", timeout=_LOCK_TIMEOUT_S):
            if not (folder / MANIFEST).is_file():
                _build_locked(folder, corpus_name, corpus_path, vocab_size, model_type,
                              list(max_lens), fingerprint, options)
                built = True
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except json.JSONDecodeError as err:
        raise CorpusError(f"{folder / MANIFEST}: not valid JSON ({err}); delete {folder} "
                          "to rebuild it") from err
    if manifest.get("format") != FORMAT_VERSION:
        raise CorpusError(f"{folder / MANIFEST}: format {manifest.get('format')!r}, expected "
                          f"{FORMAT_VERSION}; delete {folder} to rebuild it")
    return Binarized(folder, manifest, built_here=built)


def _build_locked(folder: Path, corpus_name: str, corpus_path: str | Path | None,
                  vocab_size: int, model_type: str, max_lens: list[int],
                  fingerprint: dict[str, Any], options: dict[str, Any]) -> None:
    started = time.time()
    log.info("binarizing corpus %r into %s", corpus_name, folder)
    corpus = load_corpus(corpus_name, corpus_path)
    train = corpus.split("train")
    vocab = build_vocab([*train.source, *train.target], vocab_size, folder.parent,
                        model_type=model_type)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        manifest = _build(staging, corpus, vocab, max_lens, fingerprint, options)
        manifest["build_seconds"] = round(time.time() - started, 3)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if folder.exists():  # an incomplete folder (no manifest) from a killed build
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("binarized %r in %.1f s", corpus_name, time.time() - started)
