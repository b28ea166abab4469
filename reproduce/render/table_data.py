"""A grid table's cells matched with our results and marked collapsed or not (reproduce.collapse).

Rows, columns, caption and compared rows come from the table's provider (experiments.tables);
a cell whose table has a ``source`` (Table 1) also takes the result of its source cell.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from experiments.cells import Cell, TableProvider
from experiments.tables import provider as table_provider
from experiments.tables import source_cell
from reproduce.collapse import DIVERGED, collapsed_cells
from reproduce.render.provenance import provenance


@dataclass
class TableCell:
    """One cell of a rendered table: the grid cell, our result (if any) and the collapse marks."""

    cell: Cell
    result: dict[str, Any] | None
    collapsed: bool | None = None
    paper_collapsed: bool | None = None

    @property
    def bleu(self) -> float | str | None:
        """Our BLEU: a float, "diverged", or None when the cell has not been run."""
        if self.result is None:
            return None
        if self.result.get("status") == DIVERGED or self.result.get("bleu") is None:
            return DIVERGED
        return float(self.result["bleu"])

    @property
    def agrees(self) -> bool | None:
        if self.collapsed is None or self.paper_collapsed is None:
            return None
        return self.collapsed == self.paper_collapsed


@dataclass
class TableData:
    provider: TableProvider
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    cells: dict[tuple[str, str], TableCell]
    provenance: dict[str, list[str]] = field(default_factory=dict)

    @property
    def table(self) -> str:
        return self.provider.name

    def cell(self, row: str, column: str) -> TableCell:
        return self.cells[(row, column)]

    @property
    def n_results(self) -> int:
        return sum(c.result is not None for c in self.cells.values())

    def agreement(self) -> tuple[int, int, int]:
        """(cells agreeing with the paper on collapse, cells run, cells in the compared rows)."""
        rows = self.provider.agreement_rows
        compared = [c for (row, _), c in self.cells.items() if row in rows]
        agree = sum(c.agrees is True for c in compared)
        run = sum(c.agrees is not None for c in compared)
        return agree, run, len(compared)

    def agreement_line(self) -> str:
        agree, run, total = self.agreement()
        rows = self.provider.agreement_rows
        span = "all rows" if set(rows) == set(self.rows) else f"rows {rows[0]}-{rows[-1]}"
        line = f"collapse agrees with the paper in {agree}/{total} cells of {span}"
        if run < total:
            line += f" ({total - run} of them not run yet)"
        return line


def build_table(table: str | TableProvider, results: Iterable[dict[str, Any]]) -> TableData:
    """Match results to the cells of ``table`` (seed 0) and apply the collapse rule per column."""
    provider = table_provider(table) if isinstance(table, str) else table
    by_id = {r["cell_id"]: r for r in results if "cell_id" in r}
    grid = provider.cells()
    rows = tuple(dict.fromkeys(c.row for c in grid))
    columns = tuple(dict.fromkeys(c.column for c in grid))
    cells: dict[tuple[str, str], TableCell] = {}
    for cell in grid:
        result = by_id.get(cell.cell_id)
        if result is None:
            result = by_id.get(source_cell(cell).cell_id)
        cells[(cell.row, cell.column)] = TableCell(cell, result)
    for column in columns:
        in_column = {row: cells[(row, column)] for row in rows}
        ours = collapsed_cells({row: c.bleu for row, c in in_column.items()})
        paper = collapsed_cells({row: c.cell.paper_bleu for row, c in in_column.items()})
        for row, tc in in_column.items():
            tc.collapsed, tc.paper_collapsed = ours[row], paper[row]
    data = TableData(provider, rows, columns, cells)
    data.provenance = provenance(c.result for c in cells.values() if c.result is not None)
    return data
