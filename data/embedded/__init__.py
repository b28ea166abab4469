"""The embedded corpus: synthetic English-German sentence pairs generated in the package.

The text is SYNTHETIC (see generator.py for the grammar it covers). It is generated at load time
from a fixed seed rather than shipped as files: generation takes about a second, the generator
and lexicon are ~40 KB of source against several MB of text, and the code is what a reader needs
to audit anyway. The output is byte-identical across runs and machines.
"""

from __future__ import annotations

from functools import lru_cache

from data.embedded.generator import generate_pairs

SEED = 20180411  # fixed: the corpus is part of the package
SPLIT_SIZES = {"valid": 500, "test": 500, "train": 40_000}


@lru_cache(maxsize=1)
def _pairs() -> tuple[tuple[str, str], ...]:
    return tuple(generate_pairs(sum(SPLIT_SIZES.values()), SEED))


def embedded_corpus():
    """The embedded corpus as a ParallelCorpus: train 40,000 / valid 500 / test 500 pairs, all with
    distinct English sides (so the splits are disjoint)."""
    from data.corpora import ParallelCorpus, ParallelText

    pairs = _pairs()
    splits = {}
    start = 0
    for name in ("valid", "test", "train"):
        chunk = pairs[start : start + SPLIT_SIZES[name]]
        start += SPLIT_SIZES[name]
        splits[name] = ParallelText(
            [en for en, _ in chunk], [de for _, de in chunk], origin=f"embedded/{name}"
        )
    return ParallelCorpus(name="embedded", splits={k: splits[k] for k in ("train", "valid", "test")})
