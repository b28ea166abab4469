"""Every table this project runs, in one registry: the CLI, selection and rendering read it.

A new table (a sensitivity study, Figure 1, a frontier at another scale) is a module that builds
an ``experiments.grid.cells.TableProvider``, plus one entry in ``REGISTRY`` below; nothing else in
experiments/ or reproduce/ needs to change.
"""

from __future__ import annotations

from dataclasses import replace

from experiments import grid
from experiments.grid import figure1, frontier, sensitivity
from experiments.grid.cells import Cell, Prepare, Registry, TableProvider
from experiments.measure import optimizer_state, unigram


def _measure_unigram_levels(table: TableProvider) -> Prepare:
    """The table's prepare step: the unigram level its cells' curves are read against (the
    cells of a table with a source live under the source's folder)."""
    return lambda results_dir, rows: unigram.measure_unigram_levels(
        results_dir, table.source or table.name, rows)


UNIGRAM_PREPARE = dict(
    prepare_flag="unigram-level",
    prepare_help="measure the unigram level of the corpus (the curve rule's plateau line; a "
    "few seconds) into <results-dir>/<table>/unigram.json",
)

REGISTRY = Registry([
    *(replace(p, prepare=_measure_unigram_levels(p), **UNIGRAM_PREPARE) for p in grid.PROVIDERS),
    replace(
        frontier.PROVIDER, prepare=optimizer_state.measure_base_state, prepare_flag="base-state",
        prepare_help="measure each optimizer's state on Transformer base (one CPU step each, "
        "about 5 s) where <results-dir>/frontier/base_state_bytes.json lacks it",
    ),
    figure1.PROVIDER,
    *(replace(p, prepare=_measure_unigram_levels(p), **UNIGRAM_PREPARE)
      for p in (sensitivity.PROVIDER, sensitivity.EDGE_PROVIDER)),
])


def provider(name: str) -> TableProvider:
    return REGISTRY.provider(name)


def get_cell(cell_id: str) -> Cell:
    """The cell with this id, e.g. ``table2/H/no-warmup/seed0``."""
    return REGISTRY.get_cell(cell_id)


def table_cells(table: str, rows: list[str] | str | None = None,
                seeds: tuple[int, ...] | list[int] = (0,)) -> list[Cell]:
    """Cells of one table in its order (row, then column, then seed)."""
    return REGISTRY.table_cells(table, rows, seeds)


def source_cell(cell: Cell) -> Cell:
    """The cell that is trained for ``cell`` (a Table 1 cell is its Table 2 cell)."""
    return REGISTRY.source_cell(cell)
