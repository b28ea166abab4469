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

from data.corpora import CorpusError, ParallelCorpus, load_corpus
from data.fingerprint import corpus_stat_key
from data.npy_file import NpyFile, NpyFileError
from data.owned_lock import LockTimeout, OwnedLock
from data.staging import OWNER_FILE, make_staging, remove_dead_staging
from data.vocab import SharedVocab, VocabError, build_vocab

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_ENCODE_CHUNK = 100_000
_LOCK_TIMEOUT_S = 6 * 3600.0  # a WMT-sized build takes minutes; a dead owner's lock is taken over
# The manifest fields every reader relies on, and their types.
_MANIFEST_FIELDS = {"format": int, "corpus_name": str, "vocab_file": str, "vocab_size": int,
                    "vocab_fingerprint": str, "splits": dict, "arrays": dict}


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
        """The length-filtered training index for `max_len`; built, or rebuilt when damaged,
        under the lock."""
        path = self.folder / f"train.keep-{max_len}.npy"
        problem = _keep_problem(path, self.manifest["splits"].get("train", 0))
        if problem:
            with _cache_lock(self.folder):
                problem = _keep_problem(path, self.manifest["splits"].get("train", 0))
                if problem:
                    if path.exists():
                        log.warning("%s; rebuilding it", problem)
                    for leftover in self.folder.glob(".*.tmp"):  # a killed writer's
                        leftover.unlink(missing_ok=True)
                    train = self.split("train")
                    _save(path, keep_index(train.src.offsets.read_all(),
                                           train.tgt.offsets.read_all(), max_len))
        return NpyFile(path).read_all()


def _keep_problem(path: Path, train_pairs: int) -> str | None:
    """What is wrong with a length-filtered index file (None: it is sound)."""
    if not path.is_file():
        return f"{path}: missing"
    try:
        keep = NpyFile(path).read_all()
    except (NpyFileError, OSError) as err:
        return str(err)
    if keep.dtype.kind not in "iu":
        return f"{path}: holds {keep.dtype}, not indices"
    if len(keep) and (keep[0] < 0 or keep[-1] >= train_pairs or (np.diff(keep) <= 0).any()):
        return f"{path}: not an increasing index of the {train_pairs} training pairs"
    return None


class CacheDamaged(CorpusError):
    """A file of a binarized cache folder that is missing or unsound; `path` names it."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path


def _cache_lock(folder: Path) -> OwnedLock:
    return OwnedLock(str(folder) + ".lock", f"the data cache {folder}", timeout_s=_LOCK_TIMEOUT_S)


def check_cache(folder: Path) -> dict[str, Any]:
    """The manifest of a complete, sound cache folder; CacheDamaged naming the first bad file.

    Checked on every open, cheaply (no token read): the manifest's fields, the vocabulary (it
    loads, and encodes what it encoded when the cache was built: same fingerprint), every array's
    header, length and complete size, and that each split's offsets span its ids.
    """
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise CacheDamaged(path, "missing (the build did not finish)") from err
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CacheDamaged(path, f"not valid JSON ({err})") from err
    if not isinstance(manifest, dict):
        raise CacheDamaged(path, "not a JSON object")
    if manifest.get("format") != FORMAT_VERSION:
        raise CacheDamaged(path, f"format {manifest.get('format')!r}, expected {FORMAT_VERSION}")
    for key, kind in _MANIFEST_FIELDS.items():
        if not isinstance(manifest.get(key), kind):
            raise CacheDamaged(path, f"no {key!r} ({kind.__name__}): written by an older "
                                     "version or damaged")
    model = folder.parent / manifest["vocab_file"]
    if not model.is_file():
        raise CacheDamaged(model, "missing (the vocabulary the cache was built with)")
    try:
        vocab = SharedVocab(model)
        fingerprint = vocab.fingerprint()
    except (VocabError, FileNotFoundError) as err:
        raise CacheDamaged(model, str(err).removeprefix(f"{model}: ")) from err
    if fingerprint != manifest["vocab_fingerprint"] or vocab.size != manifest["vocab_size"]:
        raise CacheDamaged(model, f"encodes another vocabulary ({vocab.size} pieces, "
                                  f"fingerprint {fingerprint[:12]}) than the cache was built "
                                  f"with ({manifest['vocab_size']}, "
                                  f"{manifest['vocab_fingerprint'][:12]})")
    arrays = {}
    for name, length in manifest["arrays"].items():
        if not (folder / name).is_file():
            raise CacheDamaged(folder / name, "missing")
        try:
            arrays[name] = NpyFile(folder / name)
        except (NpyFileError, OSError) as err:
            raise CacheDamaged(folder / name, str(err).removeprefix(f"{folder / name}: ")) from err
        if len(arrays[name]) != length:
            raise CacheDamaged(folder / name, f"{len(arrays[name])} elements, the manifest "
                                              f"says {length}")
    for split, count in manifest["splits"].items():
        for data, offsets in ((f"{split}.src.ids", f"{split}.src.off"),
                              (f"{split}.tgt.ids", f"{split}.tgt.off"),
                              (f"{split}.ref", f"{split}.ref.off")):
            off, ids = arrays.get(offsets + ".npy"), arrays.get(data + ".npy")
            if off is None or ids is None:
                raise CacheDamaged(path, f"lists no {offsets}.npy or {data}.npy")
            if len(off) != count + 1 or off[0] != 0 or off[-1] != len(ids):
                raise CacheDamaged(folder / f"{offsets}.npy",
                                   f"does not span the {count} sentences of {data}.npy")
    return manifest


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
    arrays = {p.name: len(NpyFile(p)) for p in sorted(folder.glob("*.npy"))
              if not p.name.startswith("train.keep-")}  # keep files are checked by keep()
    return {
        "format": FORMAT_VERSION,
        "corpus_name": corpus.name,
        "fingerprint": fingerprint,
        "vocab_options": options,
        "vocab_file": vocab.model_path.name,
        "vocab_size": vocab.size,
        "vocab_fingerprint": vocab.fingerprint(),
        "splits": counts,
        "arrays": arrays,
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
    remove_dead_staging(cache_dir, ".bin-*")  # builds killed before they finished
    try:
        return Binarized(folder, check_cache(folder))
    except CacheDamaged as err:
        if (folder / MANIFEST).exists():
            log.warning("%s; rebuilding the cache %s", err, folder)
    try:
        with _cache_lock(folder):
            try:
                return Binarized(folder, check_cache(folder))  # another process built it
            except CacheDamaged as err:
                damaged = err.path
            if damaged.suffix == ".model":  # the vocabulary itself: train it again
                damaged.unlink(missing_ok=True)
            _build_locked(folder, corpus_name, corpus_path, vocab_size, model_type,
                          list(max_lens), fingerprint, options)
            return Binarized(folder, check_cache(folder), built_here=True)
    except LockTimeout as err:
        raise CorpusError(str(err)) from err


def _build_locked(folder: Path, corpus_name: str, corpus_path: str | Path | None,
                  vocab_size: int, model_type: str, max_lens: list[int],
                  fingerprint: dict[str, Any], options: dict[str, Any]) -> None:
    started = time.time()
    log.info("binarizing corpus %r into %s", corpus_name, folder)
    corpus = load_corpus(corpus_name, corpus_path)
    train = corpus.split("train")
    vocab = build_vocab([*train.source, *train.target], vocab_size, folder.parent,
                        model_type=model_type)
    staging = make_staging(folder.parent, f".{folder.name}-")
    try:
        manifest = _build(staging, corpus, vocab, max_lens, fingerprint, options)
        manifest["build_seconds"] = round(time.time() - started, 3)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        (staging / OWNER_FILE).unlink()
        if folder.exists():  # an incomplete folder (no manifest) from a killed build
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("binarized %r in %.1f s", corpus_name, time.time() - started)
