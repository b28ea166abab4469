"""The LR-sensitivity grid (Wortsman et al., ICLR 2024) as a table provider: rows A-P of Table 2,
with and without warmup, at each step-size multiplier m of one log grid.

A cell id is ``sensitivity/<row>/<warmup|no-warmup>-m<m>/seed<k>``, e.g.
``sensitivity/B/warmup-m3.16/seed0``. Each cell is its Table 2 cell run under the calibration
rule (docs/calibration.md section 1, experiments.scales) with multiplier m: the warmup or
plateau ends at half the run, alpha_t = m sqrt(512 / d_model) 0.1 s_t, rho_t = m s_t. A run
whose loss blows up past ``BLOWUP_FACTOR`` x its first loss stops there (status "diverged"), so
the unstable end of the grid costs little. Row B with warmup alone picks the preset's m.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from experiments.grid import BLOWUP_FACTOR, TABLE2, WARMUP_COLUMNS
from experiments.grid.cells import Cell, TableProvider

SENSITIVITY = "sensitivity"
MULTIPLIERS = (0.316, 1.0, 3.16, 10.0, 31.6)  # one log grid (half-decades) for every row
SENSITIVITY_ROWS = TABLE2.agreement_rows  # A-P
CALIBRATION_CELL = ("B", "warmup")  # the only cell the preset's multiplier is read from
EDGE = "sensitivity-edge"
# Design D3 (docs/preregistration.md section 1): steps of 10^0.1 from 10 to 31.6 for the rows
# whose no-warmup edge ties at m = 10 in the half-decade grid.
EDGE_MULTIPLIERS = tuple(10 ** (k / 10) for k in range(10, 16))
EDGE_ROWS = ("A", "B", "C", "D", "F", "H", "I", "J", "K", "L", "M", "O")


def multiplier_column(warmup_column: str, multiplier: float) -> str:
    """``("no-warmup", 3.16)`` -> ``no-warmup-m3.16`` (3 significant digits: 10^1.1 is m12.6)."""
    return f"{warmup_column}-m{multiplier:.3g}"


@dataclass(frozen=True)
class MultiplierGrid:
    """A grid of Table 2 cells at step-size multipliers: its table name, multipliers and rows."""

    name: str
    multipliers: tuple[float, ...]
    rows: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(multiplier_column(w, m) for w in WARMUP_COLUMNS for m in self.multipliers)

    def parse_column(self, column: str) -> tuple[str, float]:
        """``no-warmup-m3.16`` -> ``("no-warmup", 3.16)``; ValueError naming the valid columns."""
        for warmup_column in WARMUP_COLUMNS:
            for m in self.multipliers:
                if column == multiplier_column(warmup_column, m):
                    return warmup_column, m
        raise ValueError(f"unknown column {column!r} for {self.name}; valid columns: "
                         f"{', '.join(self.columns)}")

    def build(self, row: str, column: str, seed: int) -> Cell:
        warmup_column, m = self.parse_column(column)
        cell = TABLE2.cell(row, warmup_column, seed)
        return dataclasses.replace(
            cell, table=self.name, column=column, lr_multiplier=m,
            preset_overrides={"blowup_factor": BLOWUP_FACTOR},
            description=f"{cell.description}; step-size multiplier m = {m:.3g}",
        )


GRID = MultiplierGrid(SENSITIVITY, MULTIPLIERS, SENSITIVITY_ROWS)
EDGE_GRID = MultiplierGrid(EDGE, EDGE_MULTIPLIERS, EDGE_ROWS)
GRIDS = {g.name: g for g in (GRID, EDGE_GRID)}
COLUMNS = GRID.columns


def parse_column(column: str) -> tuple[str, float]:
    """`MultiplierGrid.parse_column` of the half-decade grid."""
    return GRID.parse_column(column)


_SEEDS_HELP = ("cell seeds, comma-separated; each grid point's final loss is averaged over them "
               "and a multiplier counts as stable only if no seed collapses (default 0). "
               "Example: --seeds 0,1")
PROVIDER = TableProvider(
    name=SENSITIVITY, rows=SENSITIVITY_ROWS, row_columns=lambda row: COLUMNS,
    build_cell=GRID.build, kind="sensitivity", multi_seed=True, seeds_help=_SEEDS_HELP,
    help="run the LR-sensitivity grid (rows A-P x warmup x 5 step-size multipliers), then "
    "render it",
    description="Train rows A-P with and without warmup at step-size multipliers m in "
    f"{{{', '.join(f'{m:g}' for m in MULTIPLIERS)}}} under the calibration rule "
    "(docs/calibration.md); runs that blow up stop early. Render paper_tables/sensitivity."
    "{md,csv,png}: per cell the largest m at which no seed collapses (the curve rule), the LR "
    "sensitivity (Wortsman et al. 2024) and the paper's collapse mark.",
    rows_help="only these rows, comma-separated (A..P). Example: --rows A,B,H",
    caption="LR sensitivity: final validation loss against the step-size multiplier m, rows A-P "
    "with and without warmup.",
    column_titles={c: c for c in COLUMNS},
)
EDGE_PROVIDER = TableProvider(
    name=EDGE, rows=EDGE_ROWS, row_columns=lambda row: EDGE_GRID.columns,
    build_cell=EDGE_GRID.build, kind="sensitivity", multi_seed=True, seeds_help=_SEEDS_HELP,
    help="run design D3: the stability edge in steps of 10^0.1 (m = 10 to 31.6), then render it",
    description="Design D3 of docs/preregistration.md: rows A, C, D, F, I, L, M, B, H, J, K, O "
    "with and without warmup at m = 10^(k/10), k = 10..15, under the calibration rule; runs "
    "that blow up stop early. Render paper_tables/sensitivity-edge.{md,csv,png}: each row's "
    "edge with and without warmup, and the edge ordering (ties count 1/2).",
    rows_help=f"only these rows, comma-separated ({', '.join(EDGE_ROWS)}). Example: --rows A,H",
    caption="The stability edge (design D3): final validation loss against m in steps of "
    "10^0.1.",
    column_titles={c: c for c in EDGE_GRID.columns},
)
