"""The LR-sensitivity grid as markdown and CSV (reproduce.render.sensitivity_data)."""

from __future__ import annotations

import io

from experiments.grid.sensitivity import CALIBRATION_CELL, SENSITIVITY
from experiments.scales import PAPER_D_MODEL
from reproduce.render.collapse_curve import (
    COLLAPSED,
    DIVERGED,
    GIVE_BACK_FRACTION,
    SLOW,
    SLOW_FRACTION,
    TRAINED,
    UNIGRAM_FRACTION,
)
from reproduce.render.provenance import PROVENANCE_COLUMNS, csv_text, distinct_joined
from reproduce.render.sensitivity_data import GridCell, SensitivityData

COLUMN_TITLES = {"warmup": "with warmup", "no-warmup": "no warmup"}
NO_UNIGRAM = ("not measured (run `python -m reproduce render sensitivity --unigram-level`); "
              "verdicts unknown")
SHORT = {DIVERGED: "div", COLLAPSED: "col", SLOW: "slow", TRAINED: "ok", "?": "?"}


def _num(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _mark(collapsed: bool | None) -> str:
    return {True: "collapsed", False: "trains", None: "?"}[collapsed]


def _stable(cell: GridCell) -> str:
    if not cell.runs:
        return "-"
    value = cell.largest_stable()
    text = "none" if value is None else _m(value)
    return text if cell.complete() else f"{text} (partial)"


def _m(m: float) -> str:
    """A multiplier as its cell ids write it (3 significant digits)."""
    return f"{m:.3g}"


def _point(cell: GridCell, m: float) -> str:
    loss = cell.final_loss(m)
    if not cell.runs.get(m):
        return "-"
    verdicts = "/".join(SHORT.get(v, v) for v in cell.verdicts(m))
    return f"{_num(loss)} {verdicts}" if loss is not None else verdicts


def sensitivity_markdown(data: SensitivityData) -> str:
    """The table (one line per row and warmup column) with the rules and the gaps stated."""
    multipliers = data.grid.multipliers
    grid = ", ".join(_m(m) for m in multipliers)
    main = data.grid.name == SENSITIVITY
    levels = ", ".join(f"{level:.3f} ({n} runs)" for level, n in sorted(data.unigram.items()))
    lines = [
        ("### LR sensitivity: rows A-P with and without warmup, step-size multiplier m"
         if main else f"### The stability edge (design D3, docs/preregistration.md): rows "
         f"{', '.join(data.grid.rows)} with and without warmup, m in steps of 10^0.1"), "",
        f"Grid m in {{{grid}}}: alpha_t = m sqrt({PAPER_D_MODEL}/d_model) 0.1 s_t, rho_t = m s_t, "
        "warmup or plateau ending at half the run (docs/calibration.md). Seeds: "
        f"{', '.join(map(str, data.seeds))}. Each point: mean final validation loss over the "
        "seeds, then each seed's verdict (ok = trained, slow = still falling by more than "
        f"{SLOW_FRACTION:.0%} per interval, col = collapsed: gave back more than "
        f"{GIVE_BACK_FRACTION:.0%} of its progress and stayed, or ended at >= "
        f"{UNIGRAM_FRACTION} x the unigram level; div = diverged or blew up).",
        f"Unigram level: {levels or NO_UNIGRAM}.",
        "Largest stable m: the largest grid point at which no seed collapses (partial: some "
        "points missing). LR sensitivity (Wortsman et al. 2024): mean over the grid of "
        "min(final, initial loss) - the best final loss. Paper: Table 2's mark (BLEU below a "
        f"quarter of the column's best). The preset's m is read from row {CALIBRATION_CELL[0]} "
        f"{COLUMN_TITLES[CALIBRATION_CELL[1]]} alone.", "",
        "| row | column | paper | largest stable m | LR sensitivity | "
        + " | ".join(f"m={_m(m)}" for m in multipliers) + " |",
        "|---|---|---|---|---|" + "---|" * len(multipliers),
    ]
    for (row, column), cell in data.cells.items():
        if not cell.runs:
            continue
        lines.append(f"| {row} | {COLUMN_TITLES[column]} | {_mark(cell.paper_collapsed)} | "
                     f"{_stable(cell)} | {_num(cell.lr_sensitivity())} | "
                     + " | ".join(_point(cell, m) for m in multipliers) + " |")
    right, total = data.ordering()
    lines += ["", f"Ordering (no warmup): {right}/{total} pairs of a paper-collapse row and a "
              "paper-stable row have the collapse row's largest stable m smaller (pairs where "
              "both grids are complete; 64 when all are)."]
    if not main:
        score, pairs = data.edge_ordering()
        lines += ["", f"Edge ordering (design D3, ties count 1/2): {score:g}/{pairs} pairs "
                  "(35 when every row's grid is complete)."]
    missing = data.missing()
    not_run = [f"{r} {COLUMN_TITLES[c]}" for (r, c), cell in data.cells.items() if not cell.runs]
    if missing:
        run = sum(len(v) for c in data.cells.values() for v in c.runs.values())
        lines += ["", f"Missing: {len(missing)} of {len(missing) + run} runs."]
        if not_run:
            lines.append("Not run at all: " + ", ".join(not_run) + ".")
        partial = [f"{r} {COLUMN_TITLES[c]}: " + ", ".join("/".join(cid.split("/")[2:])
                                                             for cid in cell.missing)
                   for (r, c), cell in data.cells.items() if cell.runs and cell.missing]
        if partial:
            lines.append("Missing points of partly run cells: " + "; ".join(partial) + ".")
    return "\n".join(lines) + "\n"


def sensitivity_csv(data: SensitivityData) -> str:
    """One line per (row, warmup column): the summary, then each grid point's loss and verdicts."""
    out = io.StringIO()
    header = ["row", "column", "paper_collapsed", "largest_stable_multiplier", "complete",
              "lr_sensitivity", "initial_loss"]
    for m in data.grid.multipliers:
        header += [f"final_loss_m{_m(m)}", f"verdicts_m{_m(m)}"]
    out.write(",".join(header) + ",missing_runs," + ",".join(PROVENANCE_COLUMNS) + "\n")
    for (row, column), cell in data.cells.items():
        stable = cell.largest_stable()
        fields = [row, column, {True: "yes", False: "no", None: ""}[cell.paper_collapsed],
                  "" if stable is None else _m(stable), "yes" if cell.complete() else "no",
                  _num(cell.lr_sensitivity(), 4), _num(cell.initial_loss(), 4)]
        for m in data.grid.multipliers:
            fields += [_num(cell.final_loss(m), 4), ";".join(cell.verdicts(m))]
        runs = [r for rs in cell.runs.values() for r in rs]
        recorded = [csv_text(distinct_joined(r.recorded.get(k, "") for r in runs))
                    for k in PROVENANCE_COLUMNS]
        out.write(",".join([*fields, str(len(cell.missing)), *recorded]) + "\n")
    return out.getvalue()
