"""Corpus BLEU from summable sufficient statistics, computed by sacreBLEU.

Two scores per corpus, both from sacreBLEU's ``BLEU`` class (single reference, default
smoothing "exp", case-sensitive):

* ``score``: standard sacreBLEU on detokenized text with its default ``13a`` tokenizer; report it
  with ``signature`` (e.g. ``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0``).
* ``tokenized_score``: "tokenized BLEU" with sacreBLEU's ``intl`` tokenizer (Unicode punctuation
  and symbols split off, as T2T's ``t2t-bleu`` did), which is closer to how 2018 papers reported
  BLEU. It is labelled as such and must not be compared with ``score``.

``bleu_statistics`` returns, for a shard of the corpus, one float64 vector
``[13a stats (10) | intl stats (10)]`` with stats = [hyp_len, ref_len, correct_1..4, total_1..4].
Vectors of disjoint shards add up (e.g. ``torch.distributed.all_reduce``) to the statistics of
their union, and ``bleu_from_statistics`` turns the sum into exactly sacreBLEU's corpus score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cache
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from sacrebleu.metrics import BLEU

MAX_NGRAM_ORDER = 4
STATS_PER_TOKENIZER = 2 + 2 * MAX_NGRAM_ORDER
TOKENIZERS = ("13a", "intl")  # detokenized sacreBLEU, then tokenized BLEU
NUM_STATISTICS = STATS_PER_TOKENIZER * len(TOKENIZERS)


@dataclass(frozen=True)
class BleuScore:
    """sacreBLEU corpus BLEU plus the labelled tokenized (intl) BLEU, with their signatures."""

    score: float
    signature: str
    tokenized_score: float
    tokenized_signature: str
    precisions: tuple[float, ...]
    brevity_penalty: float
    hyp_len: int
    ref_len: int

    def as_dict(self) -> dict[str, object]:
        values = asdict(self)
        values["precisions"] = list(self.precisions)
        return values

    def __str__(self) -> str:
        return (
            f"sacreBLEU {self.score:.2f} ({self.signature}); "
            f"tokenized BLEU (intl tokenizer) {self.tokenized_score:.2f}"
        )


@cache
def _metric(tokenize: str) -> BLEU:
    from sacrebleu.metrics import BLEU  # here, not at module level: a cell's first step needs none

    metric = BLEU(tokenize=tokenize, max_ngram_order=MAX_NGRAM_ORDER)
    # One reference per segment. sacreBLEU records this when it reads references; we score from
    # statistics, so we set it for get_signature().
    metric.num_refs = 1
    return metric


def _check_texts(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    for name, texts in (("hypotheses", hypotheses), ("references", references)):
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise TypeError(f"{name} must be a list of strings, got {type(texts).__name__}")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"{name}[{i}] must be a string, got {type(text).__name__}")
    if len(hypotheses) != len(references):
        raise ValueError(
            f"{len(hypotheses)} hypotheses but {len(references)} references: they must align"
        )


def bleu_statistics(hypotheses: Sequence[str], references: Sequence[str]) -> torch.Tensor:
    """Summed sufficient statistics (float64 [20]) of aligned hypothesis/reference sentences."""
    _check_texts(hypotheses, references)
    parts = []
    for tokenize in TOKENIZERS:
        summed = [0] * STATS_PER_TOKENIZER
        if hypotheses:
            for stats in _metric(tokenize)._extract_corpus_statistics(hypotheses, [references]):
                summed = [total + value for total, value in zip(summed, stats, strict=True)]
        parts.extend(summed)
    return torch.tensor(parts, dtype=torch.float64)


def bleu_from_statistics(stats: torch.Tensor | Sequence[float]) -> BleuScore:
    """sacreBLEU's corpus score (and the tokenized score) from summed ``bleu_statistics``."""
    values = torch.as_tensor(stats, dtype=torch.float64).detach().cpu()
    if values.shape != (NUM_STATISTICS,):
        raise ValueError(
            f"expected a vector of {NUM_STATISTICS} BLEU statistics, "
            f"got shape {tuple(values.shape)}"
        )
    floats = values.tolist()
    ints = [round(v) for v in floats]
    if any(v < 0 or abs(v - f) > 1e-6 for v, f in zip(ints, floats, strict=True)):
        raise ValueError(f"BLEU statistics must be non-negative integer counts, got {ints}")
    detok, tok = ints[:STATS_PER_TOKENIZER], ints[STATS_PER_TOKENIZER:]
    detok_metric, tok_metric = _metric(TOKENIZERS[0]), _metric(TOKENIZERS[1])
    detok_score = detok_metric._compute_score_from_stats(detok)
    tok_score = tok_metric._compute_score_from_stats(tok)
    return BleuScore(
        score=float(detok_score.score),
        signature=str(detok_metric.get_signature()),
        tokenized_score=float(tok_score.score),
        tokenized_signature=str(tok_metric.get_signature()),
        precisions=tuple(float(p) for p in detok_score.precisions),
        brevity_penalty=float(detok_score.bp),
        hyp_len=int(detok_score.sys_len),
        ref_len=int(detok_score.ref_len),
    )


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> BleuScore:
    """``bleu_from_statistics(bleu_statistics(hypotheses, references))``."""
    return bleu_from_statistics(bleu_statistics(hypotheses, references))
