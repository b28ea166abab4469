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

Sweeps: three peak step sizes per optimizer (four for LAMB and SGD), a factor of about 3 apart,
placed so that the best one (lowest final validation loss) is not at an end of its sweep. They
were found at tiny scale (seed 0, 400 steps, 2026-11-22) by starting from each method's usual
step size relative to Adam's and extending each sweep where its best value sat at an end. Every
peak tried, as peak: final validation loss / greedy BLEU on 200 valid sentences (the best of
each in brackets)::

    adafactor (rho)     0.02: 2.138 / 7.8    [0.05: 1.693 / 15.1]  0.1: 1.845 / 11.1
    adafactor-momentum  0.02: 2.028 / 7.9    [0.05: 1.426 / 22.6]  0.1: 1.449 / 22.1
    adam                0.001: 2.769 / 1.6   0.003: 1.866 / 9.5    [0.01: 1.471 / 19.1]
                        0.03: 2.271 / 0.9
    adamw               0.001: 2.769 / 1.6   0.003: 1.859 / 10.4   [0.01: 1.519 / 16.7]
                        0.03: 2.242 / 1.4
    adam-mini           0.001: 2.899 / 1.6   0.003: 1.994 / 7.3    [0.01: 1.599 / 14.6]
                        0.03: 2.276 / 1.8
    adax                0.003: 1.900 / 9.2   [0.01: 1.532 / 14.8]  0.03: 2.260 / 2.3
    came                0.0003: 2.004 / 7.5  [0.001: 1.385 / 20.8] 0.003: 2.272 / 0.9
                        0.01: 2.934 / 0.1
    lamb                0.003: 3.198 / 1.5   [0.01: 2.189 / 5.6]   0.03: 2.199 / 2.0
    lion                0.0001: 4.418 / 0.0  0.0003: 3.703 / 0.1   0.001: 2.827 / 0.9
                        [0.003: 2.651 / 0.4] 0.01: 3.047 / 0.0
    tiger               0.0001: 4.169 / 0.0  0.0003: 3.169 / 1.3   [0.001: 2.439 / 1.7]
                        0.003: 2.544 / 0.5
    sgd-momentum        0.03: 3.605 / 0.2    0.1: 2.695 / 1.6      0.3: 2.276 / 2.2
                        [1: 2.273 / 1.0]     3: diverged (step 111)
    adagrad             0.01: 3.028 / 1.8    0.03: 2.203 / 5.3     [0.1: 1.673 / 12.6]
                        0.3: 2.558 / 0.7
    rmsprop             0.0003: 3.703 / 0.3  0.001: 2.695 / 1.9    0.003: 2.021 / 6.4
                        [0.01: 1.719 / 11.5] 0.03: 2.814 / 0.4

With seeds 0-2 averaged (``python -m reproduce frontier --seeds 0,1,2``) LAMB's best moved to
0.03 (mean valid loss 2.144 against 2.221 at 0.01) and SGD's to 0.3 (2.275 against 2.282 at 1),
both sweep ends, so each sweep got a fourth peak (LAMB 0.1: 4.143; SGD 0.1: 2.715), which confirmed
them. Every other best peak is the same with one seed and with three.

Read tiny-scale rankings as speed over the first 400 steps of 1,024-token batches, not as final
quality: every best-peak run's validation loss is still falling at the end (seed 0, step 300 to
400 at the best peaks: Adam 1.95 -> 1.47, Lion 2.84 -> 2.65, Tiger 2.76 -> 2.44, LAMB 2.42 ->
2.20, SGD 2.54 -> 2.28), and the sign-based methods
(Lion, Tiger), LAMB and SGD are known to need bigger batches or longer runs than this. Adafactor's
peaks are relative step sizes rho (Table 2 row O/P settings, parameter scaling on).
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


def frontier_cells(rows: Sequence[str] | None = None, seeds: Sequence[int] = (0,)) -> list[Cell]:
    """Every sweep cell of ``rows`` (default: all optimizers), in FRONTIER_ROWS order."""
    selected = FRONTIER_ROWS if rows is None else tuple(rows)
    return [frontier_cell(r, peak, s) for r in selected
            for peak in FRONTIER_OPTIMIZERS[r].peaks for s in seeds]
