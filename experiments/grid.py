"""The paper's tables as data: every cell of Tables 1-3 with a stable id and the paper's BLEU.

A cell id is ``<table>/<row>/<column>/seed<k>``, e.g. ``table2/H/no-warmup/seed0``
(the frontier grid of other optimizers, ``frontier/<optimizer>/lr<peak>/seed<k>``, lives in
experiments.frontier):

- Tables 1 and 2: the column is ``warmup`` or ``no-warmup`` (s_t = min(1e-6 t, 1/sqrt t) or
  min(1e-2, 1/sqrt t)); rows A..P are Adafactor/Adam variants, Q1..Q6 SGD with lr = k s_t.
- Table 3: the row is the embedding scheme (``clever``, ``naive1``, ``naive2``), the column the
  optimizer (``adam`` with Vaswani et al.'s schedule, ``adafactor`` with Algorithm 6 defaults).

Optimizer and schedule are plain dicts so that config.json shows exactly what a cell ran:

- optimizer ``{"name": "adafactor", ...}`` holds the keyword arguments of ``adafactor.Adafactor``
  (factored, beta1, beta2, decay_exponent, clip_threshold, scale_parameter); ``{"name": "adam",
  "betas": ..., "eps": ...}`` is ``torch.optim.Adam``; ``{"name": "sgd"}`` is ``torch.optim.SGD``.
- schedule ``{"kind": "absolute", "multiplier": 0.1, "warmup": bool}`` is alpha_t = 0.1 s_t;
  ``relative`` is rho_t = multiplier * s_t with parameter scaling; ``sgd`` is lr = multiplier * s_t;
  ``vaswani`` is d_model^-0.5 min(t^-0.5, t warmup^-1.5).

Numbers in ``paper_bleu`` are transcribed from ../shared/PAPER.md section 2 (the paper's PDF).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

TABLES = ("table1", "table2", "table3")
WARMUP_COLUMNS = ("warmup", "no-warmup")
TABLE3_ROWS = ("clever", "naive1", "naive2")
TABLE3_COLUMNS = ("adam", "adafactor")


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

    @property
    def cell_id(self) -> str:
        return f"{self.table}/{self.row}/{self.column}/seed{self.seed}"

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
        }


# --- Table 2 rows: optimizer switches (PAPER.md section 2, Table 2) ----------------------------

_ADAM_LIKE = {  # Adafactor code path acting as Adam without momentum: rows A, C-J (beta2 constant).
    "name": "adafactor",
    "factored": False,
    "beta1": None,
    "beta2": 0.999,
    "clip_threshold": None,
    "scale_parameter": False,
}


def _adafactor(**switches: Any) -> dict[str, Any]:
    spec = dict(_ADAM_LIKE)
    spec.update(switches)
    return spec


def _pow(c: float, **switches: Any) -> dict[str, Any]:
    """beta2hat_t = 1 - t^-c (section 7.2): no constant beta2, no bias correction."""
    return _adafactor(beta2=None, decay_exponent=c, **switches)


_ABSOLUTE = {"kind": "absolute", "multiplier": 0.1}
_RELATIVE = {"kind": "relative", "multiplier": 1.0}

# row -> (optimizer spec, schedule spec without warmup, description)
_TABLE2_ROWS: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "A": (_adafactor(), _ABSOLUTE, "Adam without momentum, beta2=0.999"),
    "B": (
        {"name": "adam", "betas": (0.9, 0.999), "eps": 1e-9},
        _ABSOLUTE,
        "Adam (torch.optim.Adam) beta1=0.9, beta2=0.999, eps=1e-9",
    ),
    "C": (_adafactor(factored=True), _ABSOLUTE, "factored second moment, beta2=0.999"),
    "D": (_adafactor(factored="row"), _ABSOLUTE, "row-mean second moment, beta2=0.999"),
    "E": (_adafactor(factored="col"), _ABSOLUTE, "col-mean second moment, beta2=0.999"),
    "F": (_adafactor(beta2=0.99), _ABSOLUTE, "beta2=0.99"),
    "G": (_adafactor(beta2=0.9), _ABSOLUTE, "fast decay beta2=0.9"),
    "H": (_adafactor(clip_threshold=1.0), _ABSOLUTE, "update clipping d=1, beta2=0.999"),
    "I": (_adafactor(clip_threshold=2.0), _ABSOLUTE, "update clipping d=2, beta2=0.999"),
    "J": (
        _adafactor(factored=True, clip_threshold=1.0),
        _ABSOLUTE,
        "factored, update clipping d=1, beta2=0.999",
    ),
    "K": (_pow(0.5), _ABSOLUTE, "beta2hat_t = 1 - t^-0.5"),
    "L": (_pow(0.8), _ABSOLUTE, "beta2hat_t = 1 - t^-0.8"),
    "M": (_pow(1.0), _ABSOLUTE, "beta2hat_t = 1 - t^-1.0"),
    "N": (_pow(0.8, clip_threshold=1.0), _ABSOLUTE, "beta2hat_t = 1 - t^-0.8, clipping d=1"),
    "O": (
        _pow(0.8, factored=True, clip_threshold=1.0, scale_parameter=True),
        _RELATIVE,
        "Adafactor: factored, 1 - t^-0.8, d=1, relative step rho_t = s_t",
    ),
    "P": (
        _pow(0.8, factored=True, clip_threshold=1.0, scale_parameter=True, beta1=0.9),
        _RELATIVE,
        "Adafactor with momentum beta1=0.9, relative step rho_t = s_t",
    ),
}
_SGD_MULTIPLIERS = {"Q1": 1.0, "Q2": 10.0, "Q3": 100.0, "Q4": 150.0, "Q5": 200.0, "Q6": 300.0}
for _row, _k in _SGD_MULTIPLIERS.items():
    _TABLE2_ROWS[_row] = (
        {"name": "sgd"},
        {"kind": "sgd", "multiplier": _k},
        f"SGD with lr = {_k:g} s_t",
    )

TABLE2_ROWS: tuple[str, ...] = tuple(_TABLE2_ROWS)

# (with warmup, no warmup), PAPER.md Table 2.
_TABLE2_BLEU: dict[str, tuple[float | str, float | str]] = {
    "A": (25.6, 0.1),
    "B": (25.4, 23.1),
    "C": (25.4, 0.2),
    "D": (25.2, 0.3),
    "E": (0.3, 0.5),
    "F": (25.0, 0.4),
    "G": (18.4, 15.6),
    "H": (25.4, 21.5),
    "I": (25.7, 0.2),
    "J": (25.6, 22.4),
    "K": (25.6, 21.1),
    "L": (25.6, 0.1),
    "M": (25.4, 0.1),
    "N": (25.9, 22.4),
    "O": (25.0, 25.5),
    "P": (24.9, 25.3),
    "Q1": (0.6, 0.8),
    "Q2": (8.2, 9.1),
    "Q3": (22.9, "diverged"),
    "Q4": (24.0, "diverged"),
    "Q5": (24.3, "diverged"),
    "Q6": ("diverged", "diverged"),
}
TABLE1_ROWS = ("A", "G")

# Table 3 (section 8.1): untied embeddings, 50k steps, 16,384-token batches.
_TABLE3_EMBEDDINGS: dict[str, tuple[dict[str, Any], str]] = {
    "clever": (
        {"tie_embeddings": False, "emb_init_std": None, "emb_multiplier": None},
        "embedding init sigma = 1/sqrt(d_model), multiplied by sqrt(d_model)",
    ),
    "naive1": (
        {"tie_embeddings": False, "emb_init_std": 1.0, "emb_multiplier": 1.0},
        "embedding init sigma = 1, multiplier 1",
    ),
    "naive2": (
        {"tie_embeddings": False, "emb_init_std": None, "emb_multiplier": 1.0},
        "embedding init sigma = 1/sqrt(d_model), multiplier 1",
    ),
}
_TABLE3_BLEU = {"clever": (26.4, 26.6), "naive1": (25.8, 26.4), "naive2": (24.2, 25.4)}
_TABLE3_OPTIMIZERS: dict[str, tuple[dict[str, Any], dict[str, Any], bool, str]] = {
    "adam": (
        {"name": "adam", "betas": (0.9, 0.98), "eps": 1e-9},
        {"kind": "vaswani", "warmup_steps": 4000},
        True,
        "Adam with Vaswani et al.'s hyperparameters and schedule",
    ),
    "adafactor": (
        _TABLE2_ROWS["O"][0],
        {"kind": "relative", "multiplier": 1.0, "warmup": False},
        False,
        "Adafactor with Algorithm 6 defaults (rho_t = min(1e-2, 1/sqrt t))",
    ),
}


def _table2_cell(table: str, row: str, warmup: bool, seed: int) -> Cell:
    optimizer, schedule, description = _TABLE2_ROWS[row]
    bleu_warm, bleu_cold = _TABLE2_BLEU[row]
    return Cell(
        table=table,
        row=row,
        column="warmup" if warmup else "no-warmup",
        seed=seed,
        warmup=warmup,
        optimizer=copy.deepcopy(optimizer),
        schedule={**schedule, "warmup": warmup},
        paper_bleu=bleu_warm if warmup else bleu_cold,
        description=description,
    )


def _table3_cell(row: str, column: str, seed: int) -> Cell:
    overrides, emb_text = _TABLE3_EMBEDDINGS[row]
    optimizer, schedule, warmup, opt_text = _TABLE3_OPTIMIZERS[column]
    bleu_adam, bleu_adafactor = _TABLE3_BLEU[row]
    return Cell(
        table="table3",
        row=row,
        column=column,
        seed=seed,
        warmup=warmup,
        optimizer=copy.deepcopy(optimizer),
        schedule=copy.deepcopy(schedule),
        paper_bleu=bleu_adam if column == "adam" else bleu_adafactor,
        description=f"{opt_text}; {emb_text}; untied embeddings",
        model_overrides=dict(overrides),
        steps_factor=0.5,  # 50k of the 100k steps
        max_tokens_factor=4.0,  # 16,384 instead of 4,096 tokens
    )


def table2_row_optimizer(row: str) -> dict[str, Any]:
    """A copy of Table 2 row ``row``'s optimizer spec (the frontier grid reuses rows O and P)."""
    if row not in _TABLE2_ROWS:
        raise ValueError(f"unknown row {row!r} for table2; valid rows: {', '.join(TABLE2_ROWS)}")
    return copy.deepcopy(_TABLE2_ROWS[row][0])


def valid_rows(table: str) -> tuple[str, ...]:
    if table == "frontier":
        from experiments.frontier import FRONTIER_ROWS

        return FRONTIER_ROWS
    if table == "table1":
        return TABLE1_ROWS
    if table == "table2":
        return TABLE2_ROWS
    if table == "table3":
        return TABLE3_ROWS
    raise ValueError(f"unknown table {table!r}; valid tables: {', '.join(TABLES)}, frontier")


def table_cells(
    table: str, rows: Sequence[str] | None = None, seeds: Sequence[int] = (0,)
) -> list[Cell]:
    """Cells of one table in the paper's order (row, then column, then seed)."""
    known = valid_rows(table)
    if isinstance(rows, str):
        rows = [rows]
    selected = list(known) if rows is None else list(rows)
    unknown = [r for r in selected if r not in known]
    if unknown:
        raise ValueError(
            f"unknown row(s) {', '.join(map(repr, unknown))} for {table}; valid rows: "
            f"{', '.join(known)}"
        )
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if table == "frontier":
        from experiments.frontier import frontier_cells

        return frontier_cells(selected, seeds)
    cells = []
    for row in selected:
        if table == "table3":
            cells += [_table3_cell(row, c, s) for c in TABLE3_COLUMNS for s in seeds]
        else:
            cells += [_table2_cell(table, row, w, s) for w in (True, False) for s in seeds]
    return cells


def get_cell(cell_id: str) -> Cell:
    """The cell with this id, e.g. ``table2/H/no-warmup/seed0``."""
    parts = cell_id.split("/")
    if len(parts) != 4:
        raise ValueError(
            f"cell id {cell_id!r} must look like '<table>/<row>/<column>/seed<k>', "
            "e.g. 'table2/H/no-warmup/seed0'"
        )
    table, row, column, seed_text = parts
    known = valid_rows(table)
    if row not in known:
        raise ValueError(f"unknown row {row!r} for {table}; valid rows: {', '.join(known)}")
    digits = seed_text[4:]
    if not (seed_text.startswith("seed") and digits.isdigit() and str(int(digits)) == digits):
        raise ValueError(f"bad seed part {seed_text!r} in cell id {cell_id!r}; expected 'seed<k>'")
    if table == "frontier":
        from experiments.frontier import frontier_cell, parse_lr_column

        return frontier_cell(row, parse_lr_column(column), int(digits))
    columns = TABLE3_COLUMNS if table == "table3" else WARMUP_COLUMNS
    if column not in columns:
        raise ValueError(
            f"unknown column {column!r} for {table}; valid columns: {', '.join(columns)}"
        )
    seed = int(digits)
    if table == "table3":
        return _table3_cell(row, column, seed)
    return _table2_cell(table, row, column == "warmup", seed)


def all_cells(seeds: Sequence[int] = (0,)) -> list[Cell]:
    """Every cell of every table."""
    return [c for t in TABLES for c in table_cells(t, seeds=seeds)]
