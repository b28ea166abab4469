"""A grid cell, its id, and the registry of table providers that make cells.

A cell id is ``<table>/<row>/<column>/seed<k>``, e.g. ``table2/H/no-warmup/seed0``. Each table is
a ``TableProvider``: its rows, the columns of each row, and how to build one cell. The CLI, the
cell selection and the rendering ask a ``Registry`` (experiments.grid.registry holds the
project's one) and never test a table's name; a new table is a new provider, nothing else changes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Cell:
    """One grid cell: what to train and what the paper reported for it."""

    table: str
    row: str
    column: str
    seed: int
    warmup: bool
    optimizer: dict[str, Any]
    schedule: dict[str, Any]
    paper_bleu: float | str | None
    description: str
    model_overrides: dict[str, Any] = field(default_factory=dict)
    # Multipliers on the scale preset's steps and max_tokens (Table 3: 50k steps, 16,384 tokens).
    steps_factor: float = 1.0
    max_tokens_factor: float = 1.0
    # Scale-preset fields this cell sets itself (Figure 1: the paper's schedule, 3000 steps);
    # a --set override of the same field wins (experiments.scales.resolve_cell_preset).
    preset_overrides: dict[str, Any] = field(default_factory=dict)
    # A step-size multiplier m under the calibration rule (docs/calibration.md section 1): the
    # preset's time_rescale, lr_scale and relative_lr_scale are replaced by the rule's values.
    lr_multiplier: float | None = None

    @property
    def cell_id(self) -> str:
        return cell_id(self.table, self.row, self.column, self.seed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cell_id": self.cell_id,
            "table": self.table,
            "row": self.row,
            "column": self.column,
            "seed": self.seed,
            "warmup": self.warmup,
            "optimizer": copy.deepcopy(self.optimizer),
            "schedule": copy.deepcopy(self.schedule),
            "paper_bleu": self.paper_bleu,
            "description": self.description,
            "model_overrides": copy.deepcopy(self.model_overrides),
            "steps_factor": self.steps_factor,
            "max_tokens_factor": self.max_tokens_factor,
            "preset_overrides": copy.deepcopy(self.preset_overrides),
            "lr_multiplier": self.lr_multiplier,
        }


def cell_id(table: str, row: str, column: str, seed: int) -> str:
    return f"{table}/{row}/{column}/seed{seed}"


def parse_cell_id(text: str) -> tuple[str, str, str, int]:
    """``table2/H/no-warmup/seed0`` -> ``("table2", "H", "no-warmup", 0)``; ValueError otherwise."""
    parts = text.split("/")
    if len(parts) != 4:
        raise ValueError(
            f"cell id {text!r} must look like '<table>/<row>/<column>/seed<k>', "
            "e.g. 'table2/H/no-warmup/seed0'"
        )
    table, row, column, seed_text = parts
    digits = seed_text[4:]
    if not (seed_text.startswith("seed") and digits.isdigit() and str(int(digits)) == digits):
        raise ValueError(f"bad seed part {seed_text!r} in cell id {text!r}; expected 'seed<k>'")
    return table, row, column, int(digits)


def check_seeds(seeds: Iterable[Any]) -> None:
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")


# (results dir, rows or None = all) -> None: a step a table needs between training and rendering.
Prepare = Callable[[Path, Sequence[str] | None], Any]


@dataclass(frozen=True)
class TableProvider:
    """One table: its rows, the columns of each row, how to build a cell, how to render it.

    ``build_cell(row, column, seed)`` may assume a known row and raises ValueError for a bad
    column. ``kind`` picks the renderer in reproduce.render ("grid": rows x columns beside the
    paper's numbers; "sweep": best point per row of a step-size sweep). ``source`` names a table
    whose cells are trained instead (Table 1 is an excerpt of Table 2).
    """

    name: str
    rows: tuple[str, ...]
    row_columns: Callable[[str], tuple[str, ...]]
    build_cell: Callable[[str, str, int], Cell]
    kind: str = "grid"
    caption: str = ""
    help: str = ""  # one line for `python -m reproduce --help`
    description: str = ""  # the command's --help text
    rows_help: str = ""
    in_all: bool = False  # part of `python -m reproduce all` (the paper's tables)
    source: str | None = None
    multi_seed: bool = False  # the command takes --seeds
    seeds_help: str = ""  # what --seeds does for this table (default: the frontier's wording)
    agreement_rows: tuple[str, ...] = ()  # rows whose collapse is compared with the paper's
    warmup_orderings: bool = False  # render the warmup finding's row-pair orderings (Table 2)
    column_titles: Mapping[str, str] = field(default_factory=dict)
    update_rms_plot: bool = False  # also draw the paper's Figure 1 from this table's rows A, G
    companions: tuple[str, ...] = ()  # tables run and rendered with this one (Table 2: Figure 1)
    prepare: Prepare | None = None  # e.g. the frontier's state measurement on Transformer base
    prepare_flag: str = ""  # its CLI flag: --no-<flag> on the table command, --<flag> on render
    prepare_help: str = ""

    def check_rows(self, rows: Sequence[str]) -> None:
        unknown = [r for r in rows if r not in self.rows]
        if unknown:
            raise ValueError(
                f"unknown row(s) {', '.join(map(repr, unknown))} for {self.name}; valid rows: "
                f"{', '.join(self.rows)}"
            )

    def cells(self, rows: Sequence[str] | str | None = None,
              seeds: Sequence[int] = (0,)) -> list[Cell]:
        """Cells of ``rows`` (default all) in the table's order: row, then column, then seed."""
        if isinstance(rows, str):
            rows = [rows]
        selected = list(self.rows) if rows is None else list(rows)
        self.check_rows(selected)
        check_seeds(seeds)
        return [self.build_cell(r, c, s) for r in selected for c in self.row_columns(r)
                for s in seeds]

    def check_row(self, row: str) -> None:
        if row not in self.rows:
            raise ValueError(f"unknown row {row!r} for {self.name}; valid rows: "
                             f"{', '.join(self.rows)}")

    def cell(self, row: str, column: str, seed: int) -> Cell:
        self.check_row(row)
        check_seeds([seed])
        return self.build_cell(row, column, seed)

    def column_title(self, column: str) -> str:
        return self.column_titles.get(column, column)


def grid_columns(columns: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    """``row_columns`` of a table whose rows all have the same columns."""
    return lambda row: columns


def check_column(table: str, column: str, columns: Sequence[str]) -> None:
    if column not in columns:
        raise ValueError(
            f"unknown column {column!r} for {table}; valid columns: {', '.join(columns)}"
        )


class Registry:
    """Table providers by name, and cell lookup across them."""

    def __init__(self, providers: Iterable[TableProvider]) -> None:
        self._providers: dict[str, TableProvider] = {}
        for provider in providers:
            if provider.name in self._providers:
                raise ValueError(f"table {provider.name!r} registered twice")
            self._providers[provider.name] = provider

    def names(self) -> tuple[str, ...]:
        return tuple(self._providers)

    def providers(self) -> tuple[TableProvider, ...]:
        return tuple(self._providers.values())

    def paper_tables(self) -> list[str]:
        """The tables that ``all`` runs."""
        return [p.name for p in self._providers.values() if p.in_all]

    def provider(self, name: str) -> TableProvider:
        if name not in self._providers:
            raise ValueError(f"unknown table {name!r}; valid tables: {', '.join(self._providers)}")
        return self._providers[name]

    def table_cells(self, table: str, rows: Sequence[str] | str | None = None,
                    seeds: Sequence[int] = (0,)) -> list[Cell]:
        return self.provider(table).cells(rows, seeds)

    def get_cell(self, text: str) -> Cell:
        """The cell with this id, e.g. ``table2/H/no-warmup/seed0``."""
        parts = text.split("/")
        if len(parts) == 4:  # the table and the row are checked before the seed
            self.provider(parts[0]).check_row(parts[1])
        table, row, column, seed = parse_cell_id(text)
        return self.provider(table).cell(row, column, seed)

    def source_cell(self, cell: Cell) -> Cell:
        """The cell that is trained for ``cell``: itself, or its source table's cell."""
        source = self.provider(cell.table).source
        if source is None:
            return cell
        return self.provider(source).cell(cell.row, cell.column, cell.seed)
