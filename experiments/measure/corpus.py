"""Prepare a scale's data once, before any cell: ``python -m reproduce prepare --scale S``.

It binarizes the preset's corpus (data.binarized: vocabulary, token ids, references, the
length-filtered index) into ``<results_dir>/.cache/vocab``, the cache every cell of that results
folder maps. Running it first (the Slurm launcher's prepare job) means no array task or rank
pays for it; a cell started without it builds the same folder itself, under the same lock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.binarized import Binarized, binarize
from experiments.scales import ScalePreset, scale_preset
from experiments.schema import CACHE_SUBDIR


def default_cache_dir(results_dir: Path) -> Path:
    """Where cells of ``results_dir`` keep the vocabulary and the binarized corpus."""
    return Path(results_dir) / CACHE_SUBDIR


def binarize_preset(preset: ScalePreset, cache_dir: Path) -> Binarized:
    """The binarized corpus a cell of ``preset`` trains on (built if missing)."""
    return binarize(preset.corpus, preset.corpus_path, vocab_size=preset.vocab_size,
                    cache_dir=cache_dir, max_lens=(preset.max_len,))


@dataclass(frozen=True)
class Prepared:
    """What ``prepare`` found or built, for the command's report."""

    binarized: Binarized
    seconds: float

    def summary(self) -> str:
        m = self.binarized.manifest
        verb = "built" if self.binarized.built_here else "found"
        splits = ", ".join(f"{k} {v:,}" for k, v in m["splits"].items())
        return (f"{verb} {self.binarized.folder} in {self.seconds:.1f} s: corpus "
                f"{m['corpus_name']!r} ({splits} pairs), vocabulary {m['vocab_size']:,} pieces")


def prepare_scale(scale: str, results_dir: Path, overrides: dict[str, Any] | None = None,
                  cache_dir: Path | None = None) -> Prepared:
    """Binarize the corpus of ``scale`` (with ``--set`` overrides) for ``results_dir``'s cells."""
    preset = scale_preset(scale, **(overrides or {}))
    started = time.perf_counter()
    built = binarize_preset(preset, cache_dir or default_cache_dir(results_dir))
    return Prepared(built, time.perf_counter() - started)
