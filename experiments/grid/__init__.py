"""Every table's cells, and the paper's Tables 1-3 as data (here) with a stable id per cell.

The package: ``cells`` (a cell, a table provider, the registry type), this module (Tables 1-3),
``figure1``, ``sensitivity`` and ``frontier`` (the other tables, each one provider), and
``registry`` (the project's one registry, which the CLI, the selection and rendering read).

A cell id is ``<table>/<row>/<column>/seed<k>``, e.g. ``table2/H/no-warmup/seed0``; each table is
a provider (experiments.grid.cells) registered in experiments.grid.registry:

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

Numbers in ``paper_bleu`` are transcribed from the paper's Tables 1-3 (docs/paper.md).
"""

from __future__ import annotations

import copy
from typing import Any

from experiments.grid.cells import Cell, TableProvider, check_column, grid_columns
from experiments.schema import Status

WARMUP_COLUMNS = ("warmup", "no-warmup")
TABLE3_ROWS = ("clever", "naive1", "naive2")
TABLE3_COLUMNS = ("adam", "adafactor")


# --- Table 2 rows: optimizer switches (the paper's Table 2) ----------------------------

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
# A run whose loss passes BLOWUP_FACTOR x its first batch's loss stops there (status "diverged"):
# the sensitivity grid's cells and Table 2's SGD rows, so a blow-up costs a few steps, not a run.
BLOWUP_FACTOR = 2.0
SGD_ROWS: tuple[str, ...] = tuple(_SGD_MULTIPLIERS)

# (with warmup, no warmup), the paper's Table 2.
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
    "Q3": (22.9, Status.DIVERGED),
    "Q4": (24.0, Status.DIVERGED),
    "Q5": (24.3, Status.DIVERGED),
    "Q6": (Status.DIVERGED, Status.DIVERGED),
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
        preset_overrides={"blowup_factor": BLOWUP_FACTOR} if row in SGD_ROWS else {},
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




def _build_table2(table: str) -> Any:
    def build(row: str, column: str, seed: int) -> Cell:
        check_column(table, column, WARMUP_COLUMNS)
        return _table2_cell(table, row, column == "warmup", seed)

    return build


def _build_table3(row: str, column: str, seed: int) -> Cell:
    check_column("table3", column, TABLE3_COLUMNS)
    return _table3_cell(row, column, seed)


_ROWS_HELP = ("only these rows, comma-separated (Table 2: A..P, Q1..Q6; Table 3: clever, naive1, "
              "naive2). Example: --rows A,B,Q3")
COLUMN_TITLES = {"warmup": "with warmup", "no-warmup": "no warmup", "adam": "Adam",
                 "adafactor": "Adafactor"}


def _paper_table(name: str, title: str, rows: tuple[str, ...], **fields: Any) -> TableProvider:
    return TableProvider(
        name=name, rows=rows, kind="grid", in_all=True, rows_help=_ROWS_HELP,
        help=f"run the missing cells of {title}, then render it",
        description=f"Run every cell of {title} that has no result.json yet, then render "
        "paper_tables/ and print the table.",
        column_titles=COLUMN_TITLES, **fields,
    )


TABLE1 = _paper_table(
    "table1", "Table 1", TABLE1_ROWS, row_columns=grid_columns(WARMUP_COLUMNS),
    build_cell=_build_table2("table1"), source="table2", agreement_rows=TABLE1_ROWS,
    update_rms_plot=True, companions=("figure1",),
    caption="Table 1: slow (beta2 = 0.999, row A) vs fast (beta2 = 0.9, row G) second-moment "
    "decay, with and without step-size warmup (an excerpt of Table 2).",
)
TABLE2 = _paper_table(
    "table2", "Table 2", TABLE2_ROWS, row_columns=grid_columns(WARMUP_COLUMNS),
    build_cell=_build_table2("table2"), update_rms_plot=True, companions=("figure1",),
    agreement_rows=tuple(r for r in TABLE2_ROWS if r not in SGD_ROWS),  # A-P, 32 cells
    warmup_orderings=True, multi_seed=True,
    seeds_help="cell seeds, comma-separated (default 0): each cell runs once per seed; the table "
    "shows each cell's mean BLEU and range, and each seed's verdicts and orderings "
    "(the CSV has one row per cell and seed). Example: --seeds 0,1,2",
    caption="Table 2: BLEU per optimizer variant, with and without warmup (s_t = min(1e-6 t, "
    "1/sqrt t) with warmup, min(1e-2, 1/sqrt t) without).",
)
TABLE3 = _paper_table(
    "table3", "Table 3", TABLE3_ROWS, row_columns=grid_columns(TABLE3_COLUMNS),
    build_cell=_build_table3, agreement_rows=TABLE3_ROWS,
    caption="Table 3: relative step sizes are more resilient to differently-scaled embedding "
    "parameters (untied embeddings).",
)
PROVIDERS = (TABLE1, TABLE2, TABLE3)
