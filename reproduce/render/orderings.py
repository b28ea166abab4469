"""The paper's warmup finding as orderings over row pairs (docs/preregistration.md section 3).

The paper's Table 2 splits rows A-P into *collapse rows* (collapsed without warmup by the
BLEU-quarter rule on the paper's numbers: A, C, D, E, F, I, L, M) and *stable rows* (B, G, H,
J, K, N, O, P). Over every (collapse row, stable row) pair:

1. "no-warmup BLEU lower": 1 if the collapse row's no-warmup BLEU is lower, 1/2 on a tie at the
   CSV's 0.01, else 0 (a diverged run counts as 0). The paper scores 64/64.
2. "larger relative drop": drop = (W - N) / W with W, N the row's BLEU with and without warmup;
   1 if the collapse row drops more, 1/2 on a tie, else 0. Rows that collapse in both columns
   in the paper (E) are left out; a row with W < 1 has no drop, and its pairs score 1/2 and are
   named. The paper scores 56/56.

The one-sided 5% level is read from the exact Mann-Whitney distribution (rows exchangeable, no
ties): 49/64 and 43/56 for the full table. The collapse counts beside them use our curve rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from experiments.grid import WARMUP_COLUMNS
from reproduce.render.collapse_bleu import bleu_value
from reproduce.render.table_data import TableData

WARMUP, NO_WARMUP = WARMUP_COLUMNS
MIN_WARMUP_BLEU = 1.0  # below it the relative drop is undefined
LEVEL = 0.05


@dataclass(frozen=True)
class Ordering:
    """One ordering's score over its pairs, the 5% level for that many rows, and the rows whose
    pairs scored 1/2 because the drop is undefined."""

    name: str
    score: float
    pairs: int
    level: int | None  # smallest score with P(score >= it) <= 5% under chance; None: no pairs
    undefined: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        score = f"{self.score:g}/{self.pairs}"
        extra = f" (5% level {self.level})" if self.level is not None else ""
        if self.undefined:
            extra += f" (no drop for {', '.join(self.undefined)}: with-warmup BLEU below 1)"
        return f"{self.name} {score}{extra}"


@dataclass(frozen=True)
class WarmupFinding:
    """Both orderings and the curve rule's collapse counts of one rendered Table 2."""

    bleu_lower: Ordering
    larger_drop: Ordering
    # (collapsed, judged, rows) by the curve rule: k (collapse rows, no warmup), j (stable rows,
    # no warmup), i (rows that do not collapse in both columns in the paper, with warmup)
    collapse_rows_collapsed: tuple[int, int, int]
    stable_rows_collapsed: tuple[int, int, int]
    collapsed_with_warmup: tuple[int, int, int]

    def line(self) -> str:
        def count(c: tuple[int, int, int]) -> str:
            return f"{c[0]}/{c[2]}" + (f" ({c[2] - c[1]} not judged)" if c[1] < c[2] else "")

        k, j, i = (count(c) for c in (self.collapse_rows_collapsed, self.stable_rows_collapsed,
                                      self.collapsed_with_warmup))
        return (f"Warmup finding over row pairs (docs/preregistration.md section 3): "
                f"{self.bleu_lower.text}; {self.larger_drop.text}; chance is half the pairs. "
                f"Collapsed by the curve rule without warmup: {k} paper-collapse rows, {j} stable "
                f"rows; with warmup: {i} rows.")


@cache
def _u_counts(m: int, n: int) -> tuple[int, ...]:
    """Arrangements of m + n distinct values by U = #pairs (x of the m) > (y of the n): the
    largest value is one of the m (it wins n pairs) or one of the n (it wins none)."""
    if m == 0 or n == 0:
        return (1,)
    counts = [0] * (m * n + 1)
    for u, ways in enumerate(_u_counts(m - 1, n)):
        counts[u + n] += ways
    for u, ways in enumerate(_u_counts(m, n - 1)):
        counts[u] += ways
    return tuple(counts)


def mann_whitney_level(m: int, n: int, level: float = LEVEL) -> int | None:
    """Smallest u with P(U >= u) <= level for an m x n comparison under exchangeability with
    no ties (None: no pairs, or no u reaches the level)."""
    if m == 0 or n == 0:
        return None
    counts = _u_counts(m, n)
    total, tail = sum(counts), 0
    for u in range(m * n, -1, -1):
        if (tail + counts[u]) / total > level:
            return u + 1 if u < m * n else None
        tail += counts[u]
    return 0


def _score(a: float, b: float) -> float:
    """1 if a > b, 1/2 on a tie, else 0."""
    return 1.0 if a > b else 0.5 if a == b else 0.0


def _ordering(name: str, pairs: list[tuple[float | None, float | None]], m: int, n: int,
              undefined: tuple[str, ...] = ()) -> Ordering:
    score = sum(0.5 if a is None or b is None else _score(a, b) for a, b in pairs)
    return Ordering(name, score, len(pairs), mann_whitney_level(m, n), undefined)


def warmup_finding(data: TableData) -> WarmupFinding | None:
    """Both orderings over the rows of ``data`` that have both columns run (None when the table
    has no warmup columns or no pair is complete). Collapse and stable rows are the paper's."""
    if set(data.columns) != {WARMUP, NO_WARMUP}:
        return None
    rows = [r for r in data.provider.agreement_rows if r in data.rows]
    paper_nw = {r: data.cell(r, NO_WARMUP).paper_collapsed for r in rows}
    paper_w = {r: data.cell(r, WARMUP).paper_collapsed for r in rows}

    def ours(row: str, column: str) -> float | None:
        value = bleu_value(data.cell(row, column).bleu)
        return None if value is None else round(value, 2)

    run = [r for r in rows if ours(r, WARMUP) is not None and ours(r, NO_WARMUP) is not None]
    collapse = [r for r in run if paper_nw[r]]
    stable = [r for r in run if paper_nw[r] is False]
    if not collapse or not stable:
        return None
    # 1: the stable row's no-warmup BLEU above the collapse row's
    lower = _ordering("no-warmup BLEU lower",
                      [(ours(s, NO_WARMUP), ours(c, NO_WARMUP)) for c in collapse for s in stable],
                      len(collapse), len(stable))
    # 2: the collapse row's relative drop above the stable row's (rows collapsing in both out)
    both = [c for c in collapse if paper_w[c]]
    drop_rows = [c for c in collapse if c not in both]

    def drop(row: str) -> float | None:
        w, nw = ours(row, WARMUP), ours(row, NO_WARMUP)
        return None if w < MIN_WARMUP_BLEU else (w - nw) / w

    undefined = tuple(r for r in (*drop_rows, *stable) if drop(r) is None)
    larger = _ordering("larger relative drop",
                       [(drop(c), drop(s)) for c in drop_rows for s in stable],
                       len(drop_rows), len(stable), undefined)

    def collapsed(rows_: list[str], column: str) -> tuple[int, int, int]:
        judged = [data.cell(r, column).collapsed for r in rows_]
        return sum(j is True for j in judged), sum(j is not None for j in judged), len(rows_)

    return WarmupFinding(lower, larger, collapsed(collapse, NO_WARMUP),
                         collapsed(stable, NO_WARMUP),
                         collapsed([r for r in run if r not in both], WARMUP))
