"""Figure 1 of the paper as a table provider: rows A (beta2 = 0.999) and G (beta2 = 0.9) with
warmup, on the paper's schedule unscaled, logging RMS(U_t) every step.

Cell ids are ``figure1/<A|G>/warmup/seed<k>``. Each cell is its Table 2 cell with preset fields of
its own (``FIGURE1_PRESET``): time_rescale 1 and both step-size scales 1 (the paper's
alpha_t = 0.1 min(1e-6 t, 1/sqrt t) in absolute steps), 3000 steps (the span of the paper's
plot) and a metrics row every step. A --set override of the same field wins (e.g. a short test
run). Figure 1's values as read off the paper's plot are ``PAPER_FIGURE1_POINTS`` and
``PAPER_FIGURE1_BANDS`` (reproduce.render draws them beside ours).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from experiments.grid import TABLE2
from experiments.grid.cells import Cell, TableProvider, check_column, grid_columns

FIGURE1 = "figure1"
FIGURE1_ROWS = ("A", "G")
FIGURE1_COLUMNS = ("warmup",)
FIGURE1_PRESET: dict[str, Any] = {
    "time_rescale": 1.0, "lr_scale": 1.0, "relative_lr_scale": 1.0, "steps": 3000,
    "log_interval": 1, "val_interval": 500, "checkpoint_interval": 500,
}
SMOOTHING_WINDOW = 200  # steps of the trailing mean the rendered curves use

# Figure 1 of the paper (arXiv v1, p. 5: RMS(U_t) of one weight matrix, with warmup), values read
# off the plot as transcribed in the project's paper notes. beta2 = 0.999: about 0.33 at step
# 300, a peak of about 2.24 at 800 (2.14 at 900), 1.76-1.78 at 1000-1100, about 1.5 at 1500-1600,
# settling near 1 after about 2100. beta2 = 0.9 stays between about 0.8 and 1.13 throughout.
PAPER_FIGURE1_POINTS: dict[str, tuple[tuple[int, float], ...]] = {
    "A": ((300, 0.33), (800, 2.24), (900, 2.14), (1000, 1.78), (1100, 1.76), (1500, 1.5),
          (1600, 1.5), (2100, 1.0)),
}
PAPER_FIGURE1_BANDS: dict[str, tuple[float, float]] = {"G": (0.8, 1.13)}


def _build(row: str, column: str, seed: int) -> Cell:
    check_column(FIGURE1, column, FIGURE1_COLUMNS)
    cell = TABLE2.cell(row, column, seed)
    return dataclasses.replace(
        cell, table=FIGURE1, preset_overrides=dict(FIGURE1_PRESET),
        description=f"{cell.description}; the paper's schedule unscaled, RMS(U_t) every step",
    )


PROVIDER = TableProvider(
    name=FIGURE1, rows=FIGURE1_ROWS, row_columns=grid_columns(FIGURE1_COLUMNS), build_cell=_build,
    kind="figure1", multi_seed=False,
    help="run Figure 1 (rows A and G with warmup, 3000 steps of the paper's schedule), then "
    "render it",
    description="Train rows A (beta2 = 0.999) and G (beta2 = 0.9) with warmup on the paper's "
    "schedule unscaled (time_rescale 1, lr_scale 1, 3000 steps), logging RMS(U_t) every step "
    "for one weight matrix and as the mean over matrices; render paper_tables/figure1.{md,csv,"
    "png} with the paper's read-off values beside.",
    rows_help="only these rows, comma-separated (A, G). Example: --rows A",
    caption="Figure 1: RMS of the unscaled update U_t with warmup, beta2 = 0.999 (row A) "
    "against 0.9 (row G).",
    column_titles={"warmup": "with warmup"},
)
