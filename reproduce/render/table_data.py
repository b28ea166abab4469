"""A grid table's cells matched with our results and marked collapsed or not.

Our collapse is the curve rule (reproduce.render.collapse_curve, docs/calibration.md section
2): read from the cell's validation-loss curve against the unigram level of its corpus. "BLEU
below a quarter of the column's best" (reproduce.render.collapse_bleu) is kept beside it as a
secondary mark, and it is the only mark the paper's numbers get (they are BLEU alone). Rows,
columns, caption and compared rows come from the table's provider (experiments.grid.registry);
a cell whose table has a ``source`` (Table 1) also takes the result of its source cell.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from experiments.grid.cells import Cell, TableProvider
from experiments.grid.registry import provider as table_provider
from experiments.grid.registry import source_cell
from experiments.store.files import MetricsLoader
from reproduce.render.collapse_bleu import DIVERGED, collapsed_cells
from reproduce.render.collapse_curve import Verdict, run_verdict
from reproduce.render.mechanism import Mechanism, table_mechanism
from reproduce.render.provenance import provenance


@dataclass
class TableCell:
    """One cell of a rendered table: the grid cell, our result (if any) and the collapse marks."""

    cell: Cell
    result: dict[str, Any] | None
    verdict: Verdict | None = None  # the curve rule's; None: not run, or no unigram level
    bleu_collapsed: bool | None = None  # secondary: BLEU below a quarter of the column's best
    paper_collapsed: bool | None = None
    unigram_level: float | None = None  # the level the verdict was read against

    @property
    def collapsed(self) -> bool | None:
        """Collapsed by the curve rule (None: not run, or the rule could not be applied)."""
        return None if self.verdict is None else self.verdict.collapsed

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
    seed: int = 0
    mechanism: Mechanism | None = None  # Figure 1's numbers from rows A and G (Tables 1, 2)

    @property
    def unigram_levels(self) -> list[float]:
        """The unigram levels the cells' curves were read against."""
        return sorted({c.unigram_level for c in self.cells.values() if c.unigram_level is not None})

    @property
    def table(self) -> str:
        return self.provider.name

    def cell(self, row: str, column: str) -> TableCell:
        return self.cells[(row, column)]

    @property
    def n_results(self) -> int:
        return sum(c.result is not None for c in self.cells.values())

    def _compared(self) -> list[TableCell]:
        rows = self.provider.agreement_rows
        return [c for (row, _), c in self.cells.items() if row in rows]

    def agreement(self) -> tuple[int, int, int]:
        """(cells agreeing with the paper on collapse by the curve rule, cells judged, cells in
        the compared rows)."""
        compared = self._compared()
        agree = sum(c.agrees is True for c in compared)
        judged = sum(c.agrees is not None for c in compared)
        return agree, judged, len(compared)

    def bleu_agreement(self) -> tuple[int, int]:
        """(cells agreeing by the secondary BLEU rule, cells run) in the compared rows."""
        compared = [c for c in self._compared() if c.bleu_collapsed is not None]
        return sum(c.bleu_collapsed == c.paper_collapsed for c in compared), len(compared)

    def agreement_line(self) -> str:
        agree, judged, total = self.agreement()
        rows = self.provider.agreement_rows
        span = "all rows" if set(rows) == set(self.rows) else f"rows {rows[0]}-{rows[-1]}"
        line = f"collapse agrees with the paper in {agree}/{total} cells of {span}"
        compared = self._compared()
        not_run = sum(c.result is None for c in compared)
        unjudged = total - judged - not_run
        notes = []
        if not_run:
            notes.append(f"{not_run} of them not run yet")
        if unjudged:
            notes.append(f"{unjudged} run but not judged: no unigram level measured")
        if notes:
            line += f" ({'; '.join(notes)})"
        bleu_agree, bleu_run = self.bleu_agreement()
        if bleu_run:
            line += (f"; by the secondary BLEU rule (below a quarter of the column's best) "
                     f"{bleu_agree}/{total}")
        return line


def result_seeds(table: str | TableProvider, results: Iterable[dict[str, Any]]) -> list[int]:
    """The seeds of the table's cells (or its source table's) that have a result; [0] if none."""
    provider = table_provider(table) if isinstance(table, str) else table
    name = provider.source or provider.name
    seeds = {int(r["seed"]) for r in results if r.get("table") == name and "seed" in r}
    return sorted(seeds) or [0]


def build_seed_tables(table: str | TableProvider, results: Iterable[dict[str, Any]],
                      load_metrics: MetricsLoader | None = None,
                      unigram_levels: Mapping[str, float] | None = None) -> list[TableData]:
    """One TableData per seed that has results (`build_table` for each)."""
    results = list(results)
    return [build_table(table, results, load_metrics, unigram_levels, seed=seed)
            for seed in result_seeds(table, results)]


def build_table(table: str | TableProvider, results: Iterable[dict[str, Any]],
                load_metrics: MetricsLoader | None = None,
                unigram_levels: Mapping[str, float] | None = None, *, seed: int = 0
                ) -> TableData:
    """Match results to the cells of ``table`` of one seed, read each run's verdict from its
    curve (``load_metrics``: cell id -> metrics records; ``unigram_levels``: cell id -> the level
    its curve is read against) and apply the secondary BLEU rule per column."""
    provider = table_provider(table) if isinstance(table, str) else table
    by_id = {r["cell_id"]: r for r in results if "cell_id" in r}
    levels = unigram_levels or {}
    grid = provider.cells(seeds=(seed,))
    rows = tuple(dict.fromkeys(c.row for c in grid))
    columns = tuple(dict.fromkeys(c.column for c in grid))
    cells: dict[tuple[str, str], TableCell] = {}
    for cell in grid:
        result = by_id.get(cell.cell_id)
        if result is None:
            result = by_id.get(source_cell(cell).cell_id)
        verdict = level = None
        if result is not None:
            run_id = result["cell_id"]
            level = levels.get(run_id)
            records = load_metrics(run_id) if load_metrics is not None else []
            verdict = run_verdict(records, result, level)
        cells[(cell.row, cell.column)] = TableCell(cell, result, verdict, unigram_level=level)
    for column in columns:
        in_column = {row: cells[(row, column)] for row in rows}
        ours = collapsed_cells({row: c.bleu for row, c in in_column.items()})
        paper = collapsed_cells({row: c.cell.paper_bleu for row, c in in_column.items()})
        for row, tc in in_column.items():
            tc.bleu_collapsed, tc.paper_collapsed = ours[row], paper[row]
    data = TableData(provider, rows, columns, cells, seed=seed)
    if provider.update_rms_plot and load_metrics is not None:
        data.mechanism = table_mechanism(provider.source or provider.name, seed, by_id,
                                         load_metrics)
    data.provenance = provenance(c.result for c in cells.values() if c.result is not None)
    return data
