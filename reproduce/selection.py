"""Which cells a command runs, which of them already have results, and whether those fit.

Tables are looked up in experiments.tables; a table with a ``source`` (Table 1, an excerpt of
Table 2) runs its source's cells, so a Table 1 request trains each Table 2 cell once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.calibration import resolve_cell_preset
from experiments.cells import Cell
from experiments.tables import REGISTRY, get_cell, provider, source_cell
from experiments.tracking import CONFIG_FILE, RESULT_FILE, cell_dir
from reproduce.errors import UsageError

# Preset fields that change how a cell runs, not what it computes.
NOT_RESULT_FIELDS = {"num_workers", "torch_threads", "corpus_path"}


def expand_tables(name: str) -> list[str]:
    """``all`` -> the paper's tables; a table's name -> itself; anything else is a UsageError."""
    if name == "all":
        return REGISTRY.paper_tables()
    if name not in REGISTRY.names():
        raise UsageError(f"unknown table {name!r}; valid: {', '.join(REGISTRY.paper_tables())}, "
                         f"all, {', '.join(t for t in REGISTRY.names() if not provider(t).in_all)}")
    return [name]


def expand_all(names: Sequence[str]) -> list[str]:
    """Several names expanded, each table once, in order."""
    tables: list[str] = []
    for name in names:
        tables += [t for t in expand_tables(name) if t not in tables]
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
        for cell in table.cells(wanted, seeds):
            runnable = source_cell(cell)
            if runnable.cell_id not in seen:
                seen.add(runnable.cell_id)
                cells.append(runnable)
    return cells


def result_path(results_dir: Path, cell_id: str) -> Path:
    return cell_dir(results_dir, cell_id) / RESULT_FILE


def has_result(results_dir: Path, cell_id: str) -> bool:
    return result_path(results_dir, cell_id).is_file()


def check_existing_results(results_dir: Path, done: Sequence[str], scale: str,
                           overrides: dict[str, Any]) -> None:
    """Existing results are reused only if they come from the same scale preset (with the same
    --set overrides): a stale result must not slip into a fresh table."""
    for cell_id in done:
        preset = resolve_cell_preset(get_cell(cell_id), scale, overrides)
        wanted = json.loads(json.dumps(preset.as_dict()))
        path = result_path(results_dir, cell_id)
        found = json.loads(path.read_text()).get("scale")
        if found is not None and found != scale:
            raise UsageError(f"{path} was run at scale {found!r}, not {scale!r}: use another "
                             "--results-dir (the default is results/<scale>)")
        config_path = cell_dir(results_dir, cell_id) / CONFIG_FILE
        if not config_path.is_file():
            continue
        used = json.loads(config_path.read_text()).get("scale", {})
        changed = sorted(k for k in set(wanted) | set(used) - NOT_RESULT_FIELDS
                         if k not in NOT_RESULT_FIELDS and used.get(k) != wanted.get(k))
        if changed:
            diff = ", ".join(f"{k}: {used.get(k)!r} there, {wanted.get(k)!r} now" for k in changed)
            raise UsageError(f"{path} comes from other {scale} settings ({diff}): use another "
                             "--results-dir, the same --set overrides, or delete the stale results")
