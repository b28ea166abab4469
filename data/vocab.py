"""A SentencePiece vocabulary shared by English and German, trained once and cached by content hash.

Special ids are fixed for every vocabulary: pad = 0, unk = 1, bos = 2, eos = 3.
The cache file is `<cache_dir>/spm-<sha256>.model`, where the hash covers the training text (in
order), the vocabulary size, the model type, the training options below and the sentencepiece
version; a second call with the same inputs loads that file instead of training.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

from data.staging import make_staging, remove_dead_staging

log = logging.getLogger(__name__)

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
MODEL_TYPES = ("unigram", "bpe", "char", "word")
# Bumped whenever the training options change, so old cache files are not reused by mistake.
_CACHE_FORMAT = 2
# SentencePiece's unigram training splits its work by thread count, and the pieces and scores it
# learns depend on that split. A fixed count gives every machine the same vocabulary (and so the
# same numbers) for the same text; 2 is what the committed tables were built with.
TRAINING_THREADS = 2
# Lines sampled (deterministically) for training when the text is larger; ~WMT14 has 9M lines.
INPUT_SENTENCE_SIZE = 2_000_000
_RANDOM_SEED = 1234
_MAX_THREADS = 16
# Each trainer's temp folder (data.staging): a kill -9 leaves it, the next builder removes it.
TRAINING_PREFIX = ".spm-train-"
FULL_COVERAGE_MAX_CHARS = 300


class VocabError(ValueError):
    """A SentencePiece model file that cannot be used; the message names it."""


class SharedVocab:
    """A trained SentencePiece model used for both languages."""

    def __init__(self, model_path: str | Path) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise FileNotFoundError(f"SentencePiece model not found: {self.model_path}")
        self._load()

    def _load(self) -> None:
        try:
            self._sp = spm.SentencePieceProcessor(model_file=str(self.model_path))
        except (RuntimeError, OSError) as err:
            raise VocabError(f"{self.model_path}: not a readable SentencePiece model ({err}); "
                             "delete it to train it again") from err
        ids = (self._sp.pad_id(), self._sp.unk_id(), self._sp.bos_id(), self._sp.eos_id())
        if ids != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise VocabError(
                f"{self.model_path}: special ids (pad, unk, bos, eos) = {ids}, "
                f"expected {(PAD_ID, UNK_ID, BOS_ID, EOS_ID)}"
            )

    # DataLoader workers receive a pickled copy: reload the model from its file there.
    def __getstate__(self) -> dict:
        return {"model_path": str(self.model_path)}

    def __setstate__(self, state: dict) -> None:
        self.model_path = Path(state["model_path"])
        self._load()

    pad_id = PAD_ID
    unk_id = UNK_ID
    bos_id = BOS_ID
    eos_id = EOS_ID

    @property
    def size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Encode many sentences at once (SentencePiece runs this on several threads)."""
        return self._sp.encode(texts, num_threads=_thread_count())

    def decode(self, ids: Iterable[int]) -> str:
        """Decode ids to detokenized text; pad/bos/eos are dropped."""
        specials = (PAD_ID, BOS_ID, EOS_ID)
        return self._sp.decode([int(i) for i in ids if int(i) not in specials])

    def pieces(self, text: str) -> list[str]:
        return self._sp.encode(text, out_type=str)

    def fingerprint(self) -> str:
        """SHA-256 of what the vocabulary encodes (`vocab_fingerprint`)."""
        return vocab_fingerprint(self.model_path)

    def __repr__(self) -> str:
        return f"SharedVocab(size={self.size}, model_path='{self.model_path}')"


def vocab_fingerprint(model_path: str | Path) -> str:
    """SHA-256 of what a SentencePiece model encodes: its pieces (text, score, type), the model
    type and the normalisation rules, not the file's bytes, which also hold the training options
    (among them the temporary path it was trained in), so the same vocabulary built again has
    the same fingerprint."""
    from sentencepiece import sentencepiece_model_pb2

    model = sentencepiece_model_pb2.ModelProto()
    try:
        model.ParseFromString(Path(model_path).read_bytes())
    except Exception as err:  # protobuf's DecodeError has no stable import path
        raise VocabError(f"{model_path}: not a readable SentencePiece model ({err}); "
                         "delete it to train it again") from err
    digest = hashlib.sha256()
    digest.update(json.dumps({
        "model_type": model.trainer_spec.model_type,
        "byte_fallback": model.trainer_spec.byte_fallback,
        "normalizer": model.normalizer_spec.SerializeToString(deterministic=True).hex(),
        "denormalizer": model.denormalizer_spec.SerializeToString(deterministic=True).hex(),
    }, sort_keys=True).encode())
    for piece in model.pieces:
        digest.update(json.dumps([piece.piece, piece.score, piece.type]).encode() + b"\n")
    return digest.hexdigest()


def _thread_count() -> int:
    return max(
        1,
        min(
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else (os.cpu_count() or 1),
            _MAX_THREADS,
        ),
    )


def _drop_training_paths(model_file: Path) -> None:
    """Replace the temp folder's paths that SentencePiece writes into the model's training
    options by fixed names, so the same text and options give the same model file, byte for
    byte, wherever and whenever it is trained."""
    from sentencepiece import sentencepiece_model_pb2

    model = sentencepiece_model_pb2.ModelProto()
    model.ParseFromString(model_file.read_bytes())
    del model.trainer_spec.input[:]
    model.trainer_spec.input.append("train.txt")
    model.trainer_spec.model_prefix = "spm"
    model_file.write_bytes(model.SerializeToString(deterministic=True))


def remove_stale_training_dirs(cache_dir: Path) -> list[Path]:
    """Remove the temp training folders whose builder no longer runs (data.staging)."""
    return remove_dead_staging(cache_dir, f"{TRAINING_PREFIX}*")


def build_vocab(
    texts: Iterable[str],
    vocab_size: int,
    cache_dir: str | Path,
    *,
    model_type: str = "unigram",
    character_coverage: float | None = None,
) -> SharedVocab:
    """Train (or load from the cache) a SentencePiece model on `texts` (source and target lines).

    The vocabulary is a soft limit: on a small corpus SentencePiece may stop below `vocab_size`
    (a warning says so); `SharedVocab.size` is the real size.

    `character_coverage=None` picks 1.0 (every character gets a piece, so German umlauts that are
    rare in a small corpus still round-trip) when the text has at most
    `FULL_COVERAGE_MAX_CHARS` distinct characters, else 0.9999 (web-crawled WMT text holds
    thousands of stray characters that would otherwise take vocabulary slots).
    """
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 8:
        raise ValueError(f"vocab_size must be an int >= 8, got {vocab_size!r}")
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unknown model_type {model_type!r}; valid: {', '.join(MODEL_TYPES)}")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)

    lines = texts if isinstance(texts, list) else list(texts)
    if not lines:
        raise ValueError("cannot train a vocabulary on no text")
    digest = hashlib.sha256()
    chars: set[str] = set()
    for number, line in enumerate(lines):
        if "\n" in line:
            raise ValueError(f"training line {number} contains a newline: {line[:80]!r}")
        digest.update(line.encode("utf-8"))
        digest.update(b"\n")
        chars.update(line)
    if character_coverage is None:
        character_coverage = 1.0 if len(chars) <= FULL_COVERAGE_MAX_CHARS else 0.9999
    options = (f"{_CACHE_FORMAT}|{spm.__version__}|{vocab_size}|{model_type}|{character_coverage}"
               f"|threads={TRAINING_THREADS}")
    digest.update(options.encode())
    model_path = cache_dir / f"spm-{digest.hexdigest()}.model"
    if model_path.is_file():
        try:
            vocab = SharedVocab(model_path)
        except VocabError as err:
            log.warning("%s: training it again", err)
        else:
            log.info("reusing cached SentencePiece model %s", model_path)
            return vocab

    remove_stale_training_dirs(cache_dir)
    tmp = make_staging(cache_dir, TRAINING_PREFIX)
    try:
        corpus_file = Path(tmp) / "train.txt"
        with corpus_file.open("w", encoding="utf-8") as f:
            for line in lines:
                f.write(line + "\n")
        spm.set_random_generator_seed(_RANDOM_SEED)
        prefix = Path(tmp) / "spm"
        spm.SentencePieceTrainer.train(
            input=str(corpus_file),
            model_prefix=str(prefix),
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            input_sentence_size=INPUT_SENTENCE_SIZE,
            shuffle_input_sentence=True,
            hard_vocab_limit=False,
            num_threads=TRAINING_THREADS,
            minloglevel=2,
        )
        # Atomic publish: concurrent builders (e.g. several cells starting at once) each train in
        # their own temp dir; os.replace makes whichever finishes last win with identical content.
        staged = Path(str(prefix) + ".model")
        _drop_training_paths(staged)
        os.replace(staged, model_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    vocab = SharedVocab(model_path)
    if vocab.size < vocab_size:
        log.warning(
            "SentencePiece stopped at %d pieces (asked for %d): the training text is small",
            vocab.size,
            vocab_size,
        )
    return vocab
