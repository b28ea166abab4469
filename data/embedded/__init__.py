"""The embedded corpus: SYNTHETIC English-German sentence pairs generated inside the package.

This is not natural text: a seeded grammar (generator.py) over a hand-written lexicon
(lexicon.py: 197 nouns with gender and plural, 63 verbs, 63 adjectives) produces each English
sentence and its German translation. It is generated at load time rather than shipped as files:
the 41,000 pairs are ~5 MB of text (over the ~3 MB budget for package data) but ~60 KB of source,
generation takes 2-3 s on one core (up to ~7 s on a loaded 2-core machine), and the code is what
a reader needs to audit anyway. The output is byte-identical across runs, machines and hash seeds.
"""

from __future__ import annotations

from functools import lru_cache

from data.embedded.generator import generate_pairs

SEED = 20180411  # fixed: the corpus is part of the package
SPLIT_SIZES = {"valid": 500, "test": 500, "train": 40_000}


@lru_cache(maxsize=1)
def _pairs() -> tuple[tuple[str, str], ...]:
    return tuple(generate_pairs(sum(SPLIT_SIZES.values()), SEED))


def embedded_splits() -> dict[str, tuple[tuple[str, str], ...]]:
    """(English, German) pairs per split: train 40,000 / valid 500 / test 500, all with distinct
    English sides (so the splits are disjoint). data.corpora wraps them as a ParallelCorpus."""
    pairs = _pairs()
    splits = {}
    start = 0
    for name in ("valid", "test", "train"):
        splits[name] = pairs[start : start + SPLIT_SIZES[name]]
        start += SPLIT_SIZES[name]
    return {k: splits[k] for k in ("train", "valid", "test")}
