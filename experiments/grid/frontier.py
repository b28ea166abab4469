"""The frontier grid: Adafactor and the other optimizers on one task, each with its own lr sweep.

A cell id is ``frontier/<optimizer>/lr<peak>/seed<k>``, e.g. ``frontier/lion/lr0.0003/seed0``.
Every cell trains the preset's model (with torch's [out, in] weight layout, which Adam-mini's
blocks assume) on the paper's warmup shape scaled to a peak (the ``peak`` schedule of
experiments.optimizers); only the peak differs, swept per optimizer (``FRONTIER_OPTIMIZERS``).
An optimizer's point is its best peak by final validation loss (reproduce.render.frontier_data).
How each sweep was placed, and what was tried, is in docs/frontier.md.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from experiments.baselines.registry import BASELINES
from experiments.grid import table2_row_optimizer
from experiments.grid.cells import Cell, TableProvider

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
        _baseline("adam", (3e-3, 1e-2, 3e-2)),
        _baseline("adamw", (3e-3, 1e-2, 3e-2)),
        _baseline("adam-mini", (3e-3, 1e-2, 3e-2)),
        _baseline("adax", (3e-3, 1e-2, 3e-2)),
        _baseline("came", (3e-4, 1e-3, 3e-3)),
        _baseline("lamb", (3e-3, 1e-2, 3e-2, 1e-1)),
        _baseline("lion", (1e-3, 3e-3, 1e-2)),
        _baseline("tiger", (3e-4, 1e-3, 3e-3)),
        _baseline("sgd-momentum", (1e-1, 3e-1, 1.0, 3.0)),
        _baseline("adagrad", (3e-2, 1e-1, 3e-1)),
        _baseline("rmsprop", (3e-3, 1e-2, 3e-2)),
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


def _build_cell(row: str, column: str, seed: int) -> Cell:
    return frontier_cell(row, parse_lr_column(column), seed)


PROVIDER = TableProvider(
    name=FRONTIER,
    rows=FRONTIER_ROWS,
    row_columns=lambda row: tuple(lr_column(p) for p in FRONTIER_OPTIMIZERS[row].peaks),
    build_cell=_build_cell,
    kind="sweep",
    multi_seed=True,
    help="run the memory-vs-BLEU frontier (Adafactor and 12 other optimizers, an lr sweep "
    "each), then render paper_tables/frontier.*",
    description="Run every frontier cell (experiments/frontier.py: one optimizer and peak step "
    "size each) that has no result.json yet, measure each optimizer's state on Transformer base "
    "(one CPU step), then render paper_tables/frontier.{md,csv,png}.",
    rows_help="only these optimizers, comma-separated (adafactor, adafactor-momentum, adam, "
    "adamw, adam-mini, adax, came, lamb, lion, tiger, sgd-momentum, adagrad, rmsprop). Example: "
    "--rows adafactor,lion",
)
