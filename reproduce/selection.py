"""Which cells a command runs, which of them already have results, and whether those fit.

Tables are looked up in experiments.grid.registry; a table with a ``source`` (Table 1, an excerpt of
Table 2) runs its source's cells, so a Table 1 request trains each Table 2 cell once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from experiments.grid.cells import Cell
from experiments.grid.registry import REGISTRY, provider, source_cell
from experiments.identity import cell_identity, check_cell_folder
from experiments.schema import CellPlan
from experiments.store.files import CellFileError, cell_dir, result_path
from reproduce.errors import UsageError


def expand_tables(name: str, with_companions: bool = True) -> list[str]:
    """``all`` -> the paper's tables; a table's name -> itself; each followed by the tables
    that go with it (Table 2's Figure 1); anything else is a UsageError."""
    if name == "all":
        names = REGISTRY.paper_tables()
    elif name in REGISTRY.names():
        names = [name]
    else:
        raise UsageError(f"unknown table {name!r}; valid: {', '.join(REGISTRY.paper_tables())}, "
                         f"all, {', '.join(t for t in REGISTRY.names() if not provider(t).in_all)}")
    tables: list[str] = []
    for table in names:
        companions = provider(table).companions if with_companions else ()
        tables += [t for t in (table, *companions) if t not in tables]
    return tables


def expand_all(names: Sequence[str], with_companions: bool = True) -> list[str]:
    """Several names expanded, each table once, in order."""
    tables: list[str] = []
    for name in names:
        tables += [t for t in expand_tables(name, with_companions) if t not in tables]
    return tables


def parse_rows(text: str | None) -> list[str] | None:
    """``"A,B , Q1"`` -> ``["A", "B", "Q1"]``; None or empty -> None (every row)."""
    if text is None:
        return None
    rows = [r.strip() for r in text.split(",") if r.strip()]
    if not rows:
        raise UsageError("--rows is empty; give row ids such as --rows A,B,Q1")
    return rows


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


def select_cells(tables: Sequence[str], rows: Sequence[str] | None = None,
                 seeds: Sequence[int] = (0,)) -> list[Cell]:
    """The cells of ``tables`` restricted to ``rows``, in the tables' order, as they are run.

    With several tables a row only has to be valid in one of them (``all --rows A`` runs Table 2
    row A, which is also Table 1's row A). Cells of a table with a source map to its cells.
    """
    providers = [provider(t) for t in tables]
    if rows is not None:
        valid = {r for p in providers for r in p.rows}
        unknown = [r for r in rows if r not in valid]
        if unknown:
            listing = "; ".join(f"{p.name}: {', '.join(p.rows)}" for p in providers)
            names = ", ".join(map(repr, unknown))
            raise UsageError(f"unknown row(s) {names}; valid rows: {listing}")
    cells: list[Cell] = []
    seen: set[str] = set()
    for table in providers:
        wanted = None if rows is None else [r for r in rows if r in table.rows]
        if wanted == []:
            continue
        # A table that takes no --seeds (Figure 1, the reference beside Table 2) runs seed 0.
        for cell in table.cells(wanted, seeds if table.multi_seed else (0,)):
            runnable = source_cell(cell)
            if runnable.cell_id not in seen:
                seen.add(runnable.cell_id)
                cells.append(runnable)
    return cells


def has_result(results_dir: Path, cell_id: str) -> bool:
    return result_path(results_dir, cell_id).is_file()


def check_existing_results(results_dir: Path, plans: Sequence[CellPlan], *,
                           fingerprints: dict[str, Any] | None = None, fresh: bool = False,
                           act: bool = True, log: Callable[[str], None] = print,
                           ) -> tuple[list[str], list[str]]:
    """(cell ids with a result to reuse, cell ids to run), checking every cell folder's identity.

    A finished or partial cell of other settings or data is refused (UsageError naming each
    differing field), or discarded with ``fresh``; a damaged result.json is named and re-run.
    ``fingerprints`` None (a dry run) compares the settings only. ``act`` False changes nothing.
    """
    done, pending = [], []
    for plan in plans:
        wanted = cell_identity(plan.cell, plan.preset, fingerprints)
        try:
            state, _ = check_cell_folder(cell_dir(results_dir, plan.cell_id), wanted,
                                         fresh=fresh, act=act, log=log)
        except CellFileError as err:
            raise UsageError(str(err)) from None
        (done if state == "done" else pending).append(plan.cell_id)
    return done, pending
