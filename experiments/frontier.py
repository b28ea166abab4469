"""The frontier grid: Adafactor and the other optimizers on one task, each with its own lr sweep.

A cell id is ``frontier/<optimizer>/lr<peak>/seed<k>``, e.g. ``frontier/lion/lr0.0003/seed0``.
Every cell trains the scale preset's model with the same schedule shape, the paper's warmup
``s(t') = min(1e-6 t', 1/sqrt t')`` scaled to a peak (``{"kind": "peak"}`` in
experiments.optimizers): linear warmup to the peak, then 1/sqrt decay. Only the peak differs, and
each optimizer gets a small sweep of it (``FRONTIER_OPTIMIZERS``). The best peak of each optimizer
is the one with the lowest final validation loss (reproduce.frontier), and its BLEU and
optimizer-state bytes are the optimizer's point on the memory-vs-BLEU frontier.

Every frontier cell builds its model with ``kernel_layout="out_in"`` (torch's [out, in] weights),
so that Adam-mini's per-row and per-head blocks are the output neurons and heads its authors
meant. The other optimizers are element-wise or, like Adafactor's factored estimate, equivariant
under transposition, so the layout changes nothing for them but the random draw of the init.

Sweeps (peak step sizes, three per optimizer, a factor of about 3 apart) were centred on each
method's usual Transformer step size relative to Adam's, then checked at tiny scale so that the
chosen value is not at the edge of its sweep; the sweep results are in paper_tables/frontier.md.
Adafactor's peaks are relative step sizes rho (row O/P settings, parameter scaling on).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from experiments.baselines.registry import BASELINES
from experiments.grid import Cell, table2_row_optimizer

FRONTIER = "frontier"
MODEL_OVERRIDES = {"kernel_layout": "out_in"}


@dataclass(frozen=True)
class FrontierOptimizer:
    name: str  # the cell's row
    label: str
    spec: dict[str, Any]  # experiments.optimizers.build_optimizer's optimizer dict
    peaks: tuple[float, ...]  # the lr sweep (relative step sizes for Adafactor)
    state: str  # what it keeps per parameter
    source: str  # where the implementation comes from


def _adafactor(name: str, label: str, row: str, state: str) -> FrontierOptimizer:
    return FrontierOptimizer(
        name, label, table2_row_optimizer(row), (2e-2, 5e-2, 1e-1), state,
        f"adafactor.Adafactor (this repository), Table 2 row {row} settings",
    )


def _baseline(name: str, peaks: tuple[float, ...]) -> FrontierOptimizer:
    baseline = BASELINES[name]
    return FrontierOptimizer(name, baseline.label, {"name": name}, peaks, baseline.state,
                             baseline.source())


def _optimizers() -> dict[str, FrontierOptimizer]:
    entries = [
        _adafactor("adafactor", "Adafactor", "O",
                   "row and column sums of the second moment: rows + cols floats per matrix, "
                   "1 float per vector parameter"),
        _adafactor("adafactor-momentum", "Adafactor + momentum", "P",
                   "Adafactor's factored second moment plus a first moment: 1 float per "
                   "parameter"),
        _baseline("adam", (1e-3, 3e-3, 1e-2)),
        _baseline("adamw", (1e-3, 3e-3, 1e-2)),
        _baseline("adam-mini", (1e-3, 3e-3, 1e-2)),
        _baseline("adax", (1e-3, 3e-3, 1e-2)),
        _baseline("came", (1e-3, 3e-3, 1e-2)),
        _baseline("lamb", (3e-3, 1e-2, 3e-2)),
        _baseline("lion", (1e-4, 3e-4, 1e-3)),
        _baseline("tiger", (1e-4, 3e-4, 1e-3)),
        _baseline("sgd-momentum", (3e-2, 1e-1, 3e-1)),
        _baseline("adagrad", (1e-2, 3e-2, 1e-1)),
        _baseline("rmsprop", (3e-4, 1e-3, 3e-3)),
    ]
    return {e.name: e for e in entries}


FRONTIER_OPTIMIZERS: dict[str, FrontierOptimizer] = _optimizers()
FRONTIER_ROWS: tuple[str, ...] = tuple(FRONTIER_OPTIMIZERS)


def lr_column(peak: float) -> str:
    """The cell-id column of a peak step size: 3e-4 -> ``lr0.0003``."""
    return f"lr{peak:g}"


def parse_lr_column(column: str) -> float:
    """``lr0.0003`` -> 3e-4; anything else is a ValueError that shows the expected form."""
    try:
        peak = float(column[2:]) if column.startswith("lr") else None
    except ValueError:
        peak = None
    if peak is None or not (0 < peak < float("inf")) or lr_column(peak) != column:
        raise ValueError(
            f"bad frontier column {column!r}: expected 'lr<peak>' with the peak written as "
            "Python's '{peak:g}', e.g. 'lr0.0003' or 'lr3e-05'"
        )
    return peak


def frontier_cell(row: str, peak: float, seed: int) -> Cell:
    if row not in FRONTIER_OPTIMIZERS:
        raise ValueError(f"unknown frontier optimizer {row!r}; valid: {', '.join(FRONTIER_ROWS)}")
    entry = FRONTIER_OPTIMIZERS[row]
    what = "relative step rho" if row.startswith("adafactor") else "lr"
    return Cell(
        table=FRONTIER,
        row=row,
        column=lr_column(peak),
        seed=seed,
        warmup=True,
        optimizer=copy.deepcopy(entry.spec),
        schedule={"kind": "peak", "peak": peak, "warmup": True},
        paper_bleu=None,
        description=f"{entry.label}, peak {what} {peak:g} (warmup, then 1/sqrt decay)",
        model_overrides=dict(MODEL_OVERRIDES),
    )


def frontier_cells(rows: Sequence[str] | None = None, seeds: Sequence[int] = (0,)) -> list[Cell]:
    """Every sweep cell of ``rows`` (default: all optimizers), in FRONTIER_ROWS order."""
    selected = FRONTIER_ROWS if rows is None else tuple(rows)
    return [frontier_cell(r, peak, s) for r in selected
            for peak in FRONTIER_OPTIMIZERS[r].peaks for s in seeds]
