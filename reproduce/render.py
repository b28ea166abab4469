"""Render paper_tables/<table>.{md,csv,tex} from result dicts: our BLEU beside the paper's.

Each table states its scale, corpus and BLEU recipe (split, beam, length penalty, sacreBLEU
signature), marks collapsed cells (reproduce.collapse) and counts how many cells agree with the
paper on collapse. Result dicts are what experiments.runner writes to result.json (or what
reproduce.wandb_source rebuilds from W&B runs).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.grid import TABLE2_ROWS, Cell, table_cells
from experiments.tracking import atomic_write
from reproduce.collapse import DIVERGED, collapsed_cells

CAPTIONS = {
    "table1": "Table 1: slow (beta2 = 0.999, row A) vs fast (beta2 = 0.9, row G) second-moment "
    "decay, with and without step-size warmup (an excerpt of Table 2).",
    "table2": "Table 2: BLEU per optimizer variant, with and without warmup (s_t = min(1e-6 t, "
    "1/sqrt t) with warmup, min(1e-2, 1/sqrt t) without).",
    "table3": "Table 3: relative step sizes are more resilient to differently-scaled embedding "
    "parameters (untied embeddings).",
}
PAPER_SETUP = (
    "Paper: Transformer base on WMT'14 En-De, BLEU on newstest2013 with beam 4 and length "
    "penalty 0.6 (100k steps; Table 3: 50k steps, 16k-token batches)."
)
COLUMN_TITLES = {
    "warmup": "with warmup",
    "no-warmup": "no warmup",
    "adam": "Adam",
    "adafactor": "Adafactor",
}
# Rows whose collapse the issue asks us to compare with the paper (Table 2: A-P, 32 cells).
AGREEMENT_ROWS = {
    "table1": ("A", "G"),
    "table2": tuple(r for r in TABLE2_ROWS if not r.startswith("Q")),
    "table3": ("clever", "naive1", "naive2"),
}
CSV_COLUMNS = (
    "table",
    "row",
    "column",
    "warmup",
    "bleu",
    "paper_bleu",
    "collapsed",
    "paper_collapsed",
    "collapse_agrees",
    "status",
    "tokenized_bleu",
    "valid_loss",
    "steps",
    "scale",
    "description",
    "cell_id",
    "result_cell_id",
)


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
    table: str
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    cells: dict[tuple[str, str], TableCell]
    provenance: dict[str, list[str]] = field(default_factory=dict)

    def cell(self, row: str, column: str) -> TableCell:
        return self.cells[(row, column)]

    @property
    def n_results(self) -> int:
        return sum(c.result is not None for c in self.cells.values())

    def agreement(self) -> tuple[int, int, int]:
        """(cells agreeing with the paper on collapse, cells run, cells in the compared rows)."""
        compared = [c for (row, _), c in self.cells.items() if row in AGREEMENT_ROWS[self.table]]
        agree = sum(c.agrees is True for c in compared)
        run = sum(c.agrees is not None for c in compared)
        return agree, run, len(compared)

    def agreement_line(self) -> str:
        agree, run, total = self.agreement()
        rows = AGREEMENT_ROWS[self.table]
        span = f"rows {rows[0]}-{rows[-1]}" if self.table == "table2" else "all rows"
        line = f"collapse agrees with the paper in {agree}/{total} cells of {span}"
        if run < total:
            line += f" ({total - run} of them not run yet)"
        return line


def build_table(table: str, results: Iterable[dict[str, Any]]) -> TableData:
    """Match results to the grid cells of ``table`` (seed 0) and apply the collapse rule.

    Table 1 cells also take the result of the Table 2 cell they excerpt.
    """
    by_id = {r["cell_id"]: r for r in results if "cell_id" in r}
    grid = table_cells(table)
    rows = tuple(dict.fromkeys(c.row for c in grid))
    columns = tuple(dict.fromkeys(c.column for c in grid))
    cells: dict[tuple[str, str], TableCell] = {}
    for cell in grid:
        result = by_id.get(cell.cell_id)
        if result is None and table == "table1":
            result = by_id.get(cell.cell_id.replace("table1/", "table2/", 1))
        cells[(cell.row, cell.column)] = TableCell(cell, result)
    for column in columns:
        in_column = {row: cells[(row, column)] for row in rows}
        ours = collapsed_cells({row: c.bleu for row, c in in_column.items()})
        paper = collapsed_cells({row: c.cell.paper_bleu for row, c in in_column.items()})
        for row, tc in in_column.items():
            tc.collapsed, tc.paper_collapsed = ours[row], paper[row]
    data = TableData(table, rows, columns, cells)
    data.provenance = provenance(c.result for c in cells.values() if c.result is not None)
    return data


def provenance(results: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
    """Distinct scale / corpus / recipe / signature values over the results (several = mixed)."""
    seen: dict[str, dict[str, None]] = {
        k: {} for k in ("scale", "corpus", "recipe", "signature", "tokenized_signature", "steps")
    }
    for r in results:
        recipe = r.get("bleu_recipe") or {}
        seen["scale"][str(r.get("scale", "?"))] = None
        corpus = r.get("corpus") or recipe.get("corpus")
        if corpus:
            seen["corpus"][str(corpus)] = None
        if recipe:
            seen["recipe"][_recipe_text(recipe)] = None
        if r.get("bleu_signature"):
            seen["signature"][str(r["bleu_signature"])] = None
        if r.get("tokenized_bleu_signature"):
            seen["tokenized_signature"][str(r["tokenized_bleu_signature"])] = None
        if r.get("steps") is not None and r.get("status") != DIVERGED:  # diverged cells stop early
            seen["steps"][str(r["steps"])] = None
    return {k: list(v) for k, v in seen.items()}


def _recipe_text(recipe: dict[str, Any]) -> str:
    """``embedded valid split (200 sentences), beam 4, length penalty 0.6`` from bleu_recipe."""
    where = " ".join(str(recipe[k]) for k in ("corpus", "split") if recipe.get(k)) + " split"
    sentences = recipe.get("sentences") or recipe.get("max_sentences")
    if sentences:
        where += f" ({sentences} sentences)"
    if recipe.get("decode") == "greedy":
        search = "greedy decoding"
    else:
        beam, penalty = recipe.get("beam", "?"), recipe.get("length_penalty", "?")
        search = f"beam {beam}, length penalty {penalty}"
    return f"{where}, {search}"


# --- text formats ------------------------------------------------------------------------------


def _fmt_bleu(bleu: float | str | None, digits: int = 1) -> str:
    if bleu is None:
        return "-"
    if bleu == DIVERGED:
        return DIVERGED
    return f"{float(bleu):.{digits}f}"


def _mark(text: str, tc: TableCell, *, ours: bool, dagger: str, cross: str) -> str:
    collapsed = tc.collapsed if ours else tc.paper_collapsed
    if collapsed:
        text += f" {dagger}"
    if ours and tc.agrees is False:
        text += f" {cross}"
    return text


def _provenance_lines(data: TableData) -> list[str]:
    p = data.provenance

    def joined(key: str, missing: str = "unknown") -> str:
        values = p.get(key) or []
        text = "; ".join(values) if values else missing
        return text + (" (MIXED: results come from different settings)" if len(values) > 1 else "")

    return [
        f"Ours: scale {joined('scale', 'no results yet')}; training steps: {joined('steps')}.",
        f"Corpus: {joined('corpus')}.",
        f"BLEU: sacreBLEU (detokenized) on {joined('recipe')}; signature: {joined('signature')}.",
        f"Tokenized BLEU (intl tokenizer, as 2018 papers reported) is in the CSV; signature: "
        f"{joined('tokenized_signature')}.",
        PAPER_SETUP,
    ]


LEGEND = (
    "`-` not run yet; `†` collapsed: BLEU below a quarter of the best BLEU in its column "
    "(diverged counts as 0), applied to ours and to the paper's separately; `✗` our collapse "
    "disagrees with the paper's."
)


def markdown(data: TableData) -> str:
    header = ["Row", "Setting"]
    for column in data.columns:
        title = COLUMN_TITLES.get(column, column)
        header += [f"{title}: ours", f"{title}: paper"]
    lines = [f"# {CAPTIONS[data.table]}", "", *_provenance_lines(data), "", data.agreement_line()]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in data.rows:
        first = data.cell(row, data.columns[0])
        entries = [row, first.cell.description]
        for column in data.columns:
            tc = data.cell(row, column)
            entries.append(_mark(_fmt_bleu(tc.bleu), tc, ours=True, dagger="†", cross="✗"))
            paper = _fmt_bleu(tc.cell.paper_bleu)
            entries.append(_mark(paper, tc, ours=False, dagger="†", cross=""))
        lines.append("| " + " | ".join(entries) + " |")
    lines += ["", LEGEND, ""]
    return "\n".join(lines)


def _yes_no(flag: bool | None) -> str:
    return "" if flag is None else ("yes" if flag else "no")


def csv_text(data: TableData) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in data.rows:
        for column in data.columns:
            tc = data.cell(row, column)
            r = tc.result or {}
            bleu = tc.bleu
            writer.writerow(
                {
                    "table": data.table,
                    "row": row,
                    "column": column,
                    "warmup": _yes_no(tc.cell.warmup),
                    "bleu": "" if bleu is None else (bleu if bleu == DIVERGED else f"{bleu:.2f}"),
                    "paper_bleu": tc.cell.paper_bleu,
                    "collapsed": _yes_no(tc.collapsed),
                    "paper_collapsed": _yes_no(tc.paper_collapsed),
                    "collapse_agrees": _yes_no(tc.agrees),
                    "status": r.get("status", "not run"),
                    "tokenized_bleu": _round(r.get("tokenized_bleu")),
                    "valid_loss": _round(r.get("valid_loss"), 4),
                    "steps": r.get("steps", ""),
                    "scale": r.get("scale", ""),
                    "description": tc.cell.description,
                    "cell_id": tc.cell.cell_id,
                    "result_cell_id": r.get("cell_id", ""),
                }
            )
    return buffer.getvalue()


def _round(value: Any, digits: int = 2) -> str:
    if value is None or value == "":
        return ""
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                "^": r"\textasciicircum{}"}


def _tex(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in text)


def latex(data: TableData) -> str:
    spec = "ll" + "rr" * len(data.columns)
    head1 = " & ".join(
        [" ", " "] + [rf"\multicolumn{{2}}{{c}}{{{_tex(COLUMN_TITLES.get(c, c))}}}"
                      for c in data.columns]
    )
    head2 = " & ".join(["Row", "Setting"] + ["ours", "paper"] * len(data.columns))
    lines = [
        "% Generated by `python -m reproduce render " + data.table + "`; do not edit by hand.",
        *("% " + line for line in _provenance_lines(data)),
        "% " + data.agreement_line(),
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\hline",
        head1 + r" \\",
        head2 + r" \\",
        r"\hline",
    ]
    for row in data.rows:
        first = data.cell(row, data.columns[0])
        entries = [_tex(row), _tex(first.cell.description)]
        for column in data.columns:
            tc = data.cell(row, column)
            ours = _mark(_fmt_bleu(tc.bleu), tc, ours=True, dagger=r"$^\dagger$", cross=r"$\times$")
            paper = _mark(_fmt_bleu(tc.cell.paper_bleu), tc, ours=False, dagger=r"$^\dagger$",
                          cross="")
            entries += ["--" if ours == "-" else ours, "--" if paper == "-" else paper]
        lines.append(" & ".join(entries) + r" \\")
    lines += [
        r"\hline",
        r"\end{tabular}",
        rf"\caption{{{_tex(CAPTIONS[data.table])} {_tex(data.agreement_line())}. "
        r"$^\dagger$: collapsed (BLEU below a quarter of the best in its column); "
        r"$\times$: our collapse disagrees with the paper's.}",
        rf"\label{{tab:{data.table}}}",
        r"\end{table}",
        "",
    ]
    return "\n".join(lines)


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write via a temporary file in the same folder and rename, so readers never see half."""
    atomic_write(path, text)


def write_table_files(data: TableData, out_dir: Path) -> list[Path]:
    """<out_dir>/<table>.md, .csv and .tex; returns their paths."""
    out_dir = Path(out_dir)
    paths = []
    for suffix, text in (("md", markdown(data)), ("csv", csv_text(data)), ("tex", latex(data))):
        path = out_dir / f"{data.table}.{suffix}"
        write_atomic(path, text)
        paths.append(path)
    return paths


def tables_with_results(tables: Sequence[str], results: Sequence[dict[str, Any]]) -> list[str]:
    """The tables among ``tables`` for which at least one result exists."""
    return [t for t in tables if build_table(t, results).n_results > 0]
