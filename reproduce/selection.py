"""Which cells a command runs and where their results live.

Table 1 is an excerpt of Table 2 (rows A and G, PAPER.md section 2), and the grid gives both the
same optimizer and schedule, so a Table 1 request runs the Table 2 cell once and both tables are
rendered from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from experiments.grid import TABLES, Cell, get_cell, table_cells, valid_rows
from reproduce.errors import UsageError

RESULT_FILE = "result.json"
METRICS_FILE = "metrics.jsonl"


def expand_tables(name: str) -> list[str]:
    """``all`` -> every table of the paper; a table name or ``frontier`` -> itself; anything
    else is a UsageError."""
    if name == "all":
        return list(TABLES)
    if name != "frontier" and name not in TABLES:
        raise UsageError(f"unknown table {name!r}; valid: {', '.join(TABLES)}, all, frontier")
    return [name]


def parse_rows(text: str | None) -> list[str] | None:
    """``"A,B , Q1"`` -> ``["A", "B", "Q1"]``; None or empty -> None (every row)."""
    if text is None:
        return None
    rows = [r.strip() for r in text.split(",") if r.strip()]
    if not rows:
        raise UsageError("--rows is empty; give row ids such as --rows A,B,Q1")
    return rows


def select_cells(tables: Sequence[str], rows: Sequence[str] | None = None,
                 seeds: Sequence[int] = (0,)) -> list[Cell]:
    """The cells of ``tables`` restricted to ``rows``, in the paper's order, as they are run.

    With several tables a row only has to be valid in one of them (``all --rows A`` runs Table 2
    row A, which is also Table 1's row A). Table 1 cells map to the Table 2 cells they excerpt.
    """
    if rows is not None:
        valid = {r for t in tables for r in valid_rows(t)}
        unknown = [r for r in rows if r not in valid]
        if unknown:
            listing = "; ".join(f"{t}: {', '.join(valid_rows(t))}" for t in tables)
            names = ", ".join(map(repr, unknown))
            raise UsageError(f"unknown row(s) {names}; valid rows: {listing}")
    cells: list[Cell] = []
    seen: set[str] = set()
    for table in tables:
        wanted = None if rows is None else [r for r in rows if r in valid_rows(table)]
        if wanted == []:
            continue
        for cell in table_cells(table, wanted, seeds):
            runnable = source_cell(cell)
            if runnable.cell_id not in seen:
                seen.add(runnable.cell_id)
                cells.append(runnable)
    return cells


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``; anything but distinct non-negative ints is a UsageError."""
    seeds = []
    for item in (t.strip() for t in text.split(",")):
        if not item.isdigit() or str(int(item)) != item:
            raise UsageError(f"--seeds {text!r}: expected non-negative integers such as 0,1,2")
        seeds.append(int(item))
    if len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds {text!r} repeats a seed")
    return seeds


def source_cell(cell: Cell) -> Cell:
    """The cell that is actually trained for ``cell``: Table 1 cells are Table 2 cells."""
    if cell.table == "table1":
        return get_cell(cell.cell_id.replace("table1/", "table2/", 1))
    return cell


def cell_dir(results_dir: Path, cell_id: str) -> Path:
    return Path(results_dir) / cell_id


def result_path(results_dir: Path, cell_id: str) -> Path:
    return cell_dir(results_dir, cell_id) / RESULT_FILE


def has_result(results_dir: Path, cell_id: str) -> bool:
    return result_path(results_dir, cell_id).is_file()
