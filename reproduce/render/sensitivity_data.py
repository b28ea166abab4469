"""The LR-sensitivity grid's numbers: per (row, warmup column) the final loss at each multiplier,
the curve rule's verdict per run, the largest multiplier at which no seed collapses, and the LR
sensitivity of Wortsman et al. (2024).

LR sensitivity = mean over the grid of min(final loss, initial loss) - the best final loss in the
grid. Final loss: the final validation loss, averaged over the seeds run (a diverged run counts
as its initial loss). Initial loss: the first logged training loss (the mean over the first
``log_interval`` steps), averaged over the seeds. A grid with missing points is computed over the
points present and says which are missing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from experiments.grid import TABLE2, WARMUP_COLUMNS
from experiments.grid.sensitivity import GRID, MultiplierGrid, multiplier_column
from experiments.schema import VALID_LOSS
from experiments.store.files import MetricsLoader, series
from reproduce.render.collapse_bleu import collapsed_cells
from reproduce.render.collapse_curve import Verdict, loss_curve, run_verdict
from reproduce.render.provenance import provenance_columns


@dataclass
class Run:
    """One seed at one grid point."""

    cell_id: str
    final_loss: float | None  # None: diverged
    initial_loss: float | None
    verdict: Verdict | None  # None: no unigram level to read the curve against
    recorded: dict[str, str] = field(default_factory=dict)  # provenance_columns of its result


@dataclass
class GridCell:
    """One (row, warmup column): its runs by multiplier and what they add up to."""

    row: str
    column: str
    paper_collapsed: bool | None
    multipliers: tuple[float, ...] = GRID.multipliers
    runs: dict[float, list[Run]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    def final_loss(self, m: float) -> float | None:
        """Mean final loss over the seeds at m (a diverged seed counts as its initial loss)."""
        values = [r.final_loss if r.final_loss is not None else r.initial_loss
                  for r in self.runs.get(m, [])]
        values = [v for v in values if v is not None and math.isfinite(v)]
        return sum(values) / len(values) if values else None

    def initial_loss(self) -> float | None:
        values = [r.initial_loss for runs in self.runs.values() for r in runs
                  if r.initial_loss is not None]
        return sum(values) / len(values) if values else None

    def collapsed(self, m: float) -> bool | None:
        """Whether any seed at m collapsed (None: not run, or a verdict unknown)."""
        runs = self.runs.get(m, [])
        if not runs or any(r.verdict is None for r in runs):
            return None
        return any(r.verdict.collapsed for r in runs)

    def verdicts(self, m: float) -> list[str]:
        return [r.verdict.verdict if r.verdict else "?" for r in self.runs.get(m, [])]

    def largest_stable(self) -> float | None:
        """The largest m at which no seed collapses (None: none, or not known)."""
        stable = [m for m in self.runs if self.collapsed(m) is False]
        return max(stable) if stable else None

    def complete(self) -> bool:
        return not self.missing and all(self.collapsed(m) is not None for m in self.multipliers)

    def lr_sensitivity(self) -> float | None:
        initial = self.initial_loss()
        finals = {m: self.final_loss(m) for m in self.multipliers if self.runs.get(m)}
        finals = {m: v for m, v in finals.items() if v is not None}
        if initial is None or not finals:
            return None
        best = min(finals.values())
        return sum(min(v, initial) for v in finals.values()) / len(finals) - best


@dataclass
class SensitivityData:
    cells: dict[tuple[str, str], GridCell]
    seeds: tuple[int, ...]
    unigram: dict[float, int]  # unigram level -> number of runs compared with it
    n_results: int = 0
    grid: MultiplierGrid = GRID

    def missing(self) -> list[str]:
        return [cid for c in self.cells.values() for cid in c.missing]

    def ordering(self) -> tuple[int, int]:
        """(correctly ordered pairs, pairs with both grids complete): a paper no-warmup collapse
        row has a smaller largest-stable m than a paper no-warmup stable row (none stable = 0)."""
        cold = {r: c for (r, col), c in self.cells.items() if col == "no-warmup"}
        bad = [c for c in cold.values() if c.paper_collapsed]
        good = [c for c in cold.values() if c.paper_collapsed is False]
        right = total = 0
        for b in bad:
            for g in good:
                if b.complete() and g.complete():
                    total += 1
                    right += (b.largest_stable() or 0.0) < (g.largest_stable() or 0.0)
        return right, total

    def edge_ordering(self) -> tuple[float, int]:
        """(score, pairs with both grids complete) of design D3: 1 when the paper-collapse row's
        no-warmup edge is smaller, 1/2 when they tie, 0 otherwise (none stable = 0)."""
        cold = {r: c for (r, col), c in self.cells.items() if col == "no-warmup"}
        pairs = [(b, g) for b in cold.values() if b.paper_collapsed and b.complete()
                 for g in cold.values() if g.paper_collapsed is False and g.complete()]
        score = 0.0
        for b, g in pairs:
            eb, eg = b.largest_stable() or 0.0, g.largest_stable() or 0.0
            score += 1.0 if eb < eg else 0.5 if eb == eg else 0.0
        return score, len(pairs)


def _initial_loss(records: list[dict[str, Any]]) -> float | None:
    steps, values = series(records, "train_loss")
    return values[0] if steps and math.isfinite(values[0]) else None


def _paper_marks() -> dict[tuple[str, str], bool | None]:
    marks: dict[tuple[str, str], bool | None] = {}
    for column in WARMUP_COLUMNS:
        bleu = {row: TABLE2.cell(row, column, 0).paper_bleu for row in TABLE2.rows}
        for row, collapsed in collapsed_cells(bleu).items():
            marks[(row, column)] = collapsed
    return marks


def build_sensitivity(results: Sequence[dict[str, Any]], load_metrics: MetricsLoader,
                      unigram_levels: dict[str, float], rows: Sequence[str] | None = None,
                      grid: MultiplierGrid = GRID) -> SensitivityData:
    """The grid from its results; the seeds are those any result was run with."""
    rows = grid.rows if rows is None else rows
    by_id = {r["cell_id"]: r for r in results
             if str(r.get("cell_id", "")).startswith(f"{grid.name}/")}
    seeds = tuple(sorted({int(r["seed"]) for r in by_id.values()})) or (0,)
    marks = _paper_marks()
    cells: dict[tuple[str, str], GridCell] = {}
    unigram: dict[float, int] = {}
    for row in rows:
        for column in WARMUP_COLUMNS:
            cell = GridCell(row, column, marks.get((row, column)), grid.multipliers)
            for m in grid.multipliers:
                for seed in seeds:
                    cell_id = f"{grid.name}/{row}/{multiplier_column(column, m)}/seed{seed}"
                    result = by_id.get(cell_id)
                    if result is None:
                        cell.missing.append(cell_id)
                        continue
                    cell.runs.setdefault(m, []).append(
                        _run(cell_id, result, load_metrics(cell_id), unigram_levels, unigram))
            cells[(row, column)] = cell
    return SensitivityData(cells, seeds, unigram, n_results=len(by_id), grid=grid)


def _run(cell_id: str, result: dict[str, Any], records: list[dict[str, Any]],
         levels: dict[str, float], used: dict[float, int]) -> Run:
    level = levels.get(cell_id)
    verdict = run_verdict(records, result, level)
    if verdict is not None and level is not None:
        used[level] = used.get(level, 0) + 1
    _, stopped = loss_curve(records, result)
    final = None if stopped or result.get(VALID_LOSS) is None else float(result[VALID_LOSS])
    if final is not None and not math.isfinite(final):
        final = None
    return Run(cell_id, final, _initial_loss(records), verdict, provenance_columns([result]))
