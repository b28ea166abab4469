"""The unigram level of a corpus: the loss of a model that ignores the source and the context.

It predicts every target token (the sentence's pieces, then EOS) with the frequencies of the
training targets (add-half smoothed over the vocabulary), scored with the model's own loss
(models.loss: label-smoothed, the soft target's entropy subtracted) on the evaluation sentences
the runner scores. A run whose final validation loss is still near this level never left the
early plateau (reproduce.render.collapse_curve).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from experiments.scales import ScalePreset
from experiments.schema import CACHE_SUBDIR, CONFIG_FILE
from experiments.store.files import atomic_write_json, read_json
from experiments.store.prepared import unigram_path

ADD = 0.5  # additive smoothing of the unigram counts


def unigram_loss(train_targets: Iterable[Sequence[int]], eval_targets: Iterable[Sequence[int]],
                 vocab_size: int, *, eos_id: int, smoothing: float) -> float:
    """The mean label-smoothed loss per target token of the training targets' unigram model
    on ``eval_targets`` (id sequences without EOS; one EOS per sentence is added)."""
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    counts = _counts(train_targets, vocab_size, eos_id)
    total = sum(counts) + ADD * vocab_size
    neg_log_p = [-math.log((c + ADD) / total) for c in counts]
    confidence, low = 1.0 - smoothing, smoothing / (vocab_size - 1)
    sum_all = sum(neg_log_p)
    entropy = -confidence * math.log(confidence)
    if low > 0:
        entropy -= (vocab_size - 1) * low * math.log(low)
    eval_counts = _counts(eval_targets, vocab_size, eos_id)
    n = sum(eval_counts)
    if n == 0:
        raise ValueError("no evaluation targets to score the unigram model on")
    loss = sum(c * (confidence * nl + low * (sum_all - nl)) for c, nl in
               zip(eval_counts, neg_log_p, strict=True) if c)
    return loss / n - entropy


def _counts(sequences: Iterable[Sequence[int]], vocab_size: int, eos_id: int) -> list[int]:
    counts = [0] * vocab_size
    for seq in sequences:
        for token in seq:
            if not 0 <= token < vocab_size:
                raise ValueError(f"token id {token} outside the vocabulary of {vocab_size}")
            counts[token] += 1
        counts[eos_id] += 1
    return counts


def preset_unigram_level(preset: Any, cache_dir: Path) -> dict[str, Any]:
    """The unigram level of a scale preset's corpus and vocabulary (trained or found in
    ``cache_dir``, as the runner does), on the sentences its validation loss is computed on."""
    from data.corpora import load_corpus
    from data.vocab import build_vocab
    from models.presets import model_config

    corpus = load_corpus(preset.corpus, preset.corpus_path)
    train = corpus.split("train")
    vocab = build_vocab([*train.source, *train.target], preset.vocab_size, cache_dir)
    held_out = corpus.split(preset.eval_split).target
    if preset.eval_max_sentences is not None:
        held_out = held_out[: preset.eval_max_sentences]
    smoothing = model_config(preset.model, vocab.size, **preset.model_overrides).label_smoothing
    level = unigram_loss(vocab.encode_batch(train.target), vocab.encode_batch(held_out),
                         vocab.size, eos_id=vocab.eos_id, smoothing=smoothing)
    return {"unigram_loss": level, "corpus": preset.corpus, "vocab_size": vocab.size,
            "eval_split": preset.eval_split, "eval_sentences": len(held_out),
            "label_smoothing": smoothing}


# The preset fields the unigram level depends on (the corpus, its vocabulary, the scored split).
LEVEL_FIELDS = ("corpus", "corpus_path", "vocab_size", "eval_split", "eval_max_sentences",
                "model", "model_overrides")


def measure_unigram_levels(results_dir: Path, table: str, rows: Sequence[str] | None = None,
                           log: Any = print) -> Path:
    """Write ``<results_dir>/<table>/unigram.json``: the unigram level of every distinct setting
    the table's cells (those with a config.json; ``rows``: only these) ran with, and which cells
    ran with it. Levels already in the file are kept; the vocabulary comes from the runner's
    cache (``<results_dir>/.cache/vocab``)."""
    results_dir = Path(results_dir)
    path = unigram_path(results_dir, table)
    known = read_json(path)["levels"] if path.is_file() else []
    groups: dict[str, dict[str, Any]] = {}
    for config_path in sorted((results_dir / table).glob(f"*/*/*/{CONFIG_FILE}")):
        config = read_json(config_path)
        if rows is not None and config["cell"]["row"] not in rows:
            continue
        scale = config["scale"]
        settings = {k: scale.get(k) for k in LEVEL_FIELDS}
        key = repr(sorted(settings.items()))
        group = groups.setdefault(key, {"settings": settings, "scale": scale, "cells": []})
        group["cells"].append(config["cell"]["cell_id"])
    fields = {f.name for f in dataclasses.fields(ScalePreset)}
    levels = []
    for key, group in groups.items():
        old = next((lv for lv in known if repr(sorted(lv["settings"].items())) == key), None)
        if old is None:
            log(f"measuring the unigram level of {group['settings']['corpus']} "
                f"(vocabulary {group['settings']['vocab_size']})")
            preset = ScalePreset(**{k: v for k, v in group["scale"].items() if k in fields})
            old = {"settings": group["settings"],
                   **preset_unigram_level(preset, results_dir / CACHE_SUBDIR)}
        levels.append({**old, "cells": sorted(set(old.get("cells", [])) | set(group["cells"]))})
    kept = [lv for lv in known if repr(sorted(lv["settings"].items())) not in groups]
    if not kept and not levels:  # no cell has run: nothing to measure, no folder to create
        return path
    atomic_write_json(path, {"levels": kept + levels})
    return path
