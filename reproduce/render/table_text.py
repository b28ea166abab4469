"""paper_tables/<table>.{md,csv,tex} of a grid table: our BLEU beside the paper's.

Each table states its scale, corpus and BLEU recipe (split, beam, length penalty, sacreBLEU
signature), marks the cells that collapsed by the curve rule (with the unigram level it reads
against), gives each run's verdict, keeps the BLEU-quarter rule as a secondary labelled column,
and counts how many cells agree with the paper on collapse.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from experiments.measure.plateau import SERIES as PLATEAU_SERIES
from experiments.schema import PLATEAU_MAX, UPDATE_RMS_MATRICES, VALID_LOSS
from experiments.store.files import atomic_write
from reproduce.render.collapse_bleu import DIVERGED, bleu_value
from reproduce.render.collapse_curve import GIVE_BACK_FRACTION, SLOW_FRACTION, UNIGRAM_FRACTION
from reproduce.render.orderings import WarmupFinding, warmup_finding
from reproduce.render.provenance import (
    arithmetic_line,
    joined,
    provenance_columns,
)
from reproduce.render.table_data import TableCell, TableData

PAPER_SETUP = (
    "Paper: Transformer base on WMT'14 En-De, BLEU on newstest2013 with beam 4 and length "
    "penalty 0.6 (100k steps; Table 3: 50k steps, 16k-token batches)."
)
CSV_COLUMNS = (
    "table",
    "row",
    "column",
    "seed",
    "warmup",
    "bleu",
    "paper_bleu",
    "collapsed",
    "verdict",
    "verdict_reason",
    "unigram_level",
    "bleu_quarter_collapsed",
    "paper_collapsed",
    "collapse_agrees",
    "status",
    "tokenized_bleu",
    VALID_LOSS,
    "steps",
    "scale",
    "numerics",
    "git_commit",
    "description",
    "cell_id",
    "result_cell_id",
    "ordering_bleu_lower",
    "ordering_larger_drop",
    *(f"plateau_max_{key}" for key in PLATEAU_SERIES),
)



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


Tables = TableData | Sequence[TableData]


def _by_seed(tables: Tables) -> list[TableData]:
    """One TableData per seed (a single TableData is one seed)."""
    return [tables] if isinstance(tables, TableData) else list(tables)


def _ours(tcs: Sequence[TableCell], *, dagger: str, cross: str) -> str:
    """Our BLEU of one cell over its seeds: the value (one seed), or the mean with the range
    (diverged counts as 0); collapsed and disagreeing marks where every run seed says so."""
    if len(tcs) == 1:
        return _mark(_fmt_bleu(tcs[0].bleu), tcs[0], ours=True, dagger=dagger, cross=cross)
    run = [tc for tc in tcs if tc.result is not None]
    if not run:
        return "-"
    values = [bleu_value(tc.bleu) for tc in run]
    if all(tc.bleu == DIVERGED for tc in run):
        text = DIVERGED
    else:
        text = f"{sum(values) / len(values):.1f} ({min(values):.1f}-{max(values):.1f})"
    if all(tc.collapsed for tc in run):
        text += f" {dagger}"
    if all(tc.agrees is False for tc in run):
        text += f" {cross}"
    return text


def _per_seed(tcs: Sequence[TableCell], text: Callable[[TableCell], str]) -> str:
    return "/".join(text(tc) for tc in tcs)


def _merged_provenance(datas: Sequence[TableData]) -> dict[str, list[str]]:
    merged: dict[str, dict[str, None]] = {}
    for data in datas:
        for key, values in data.provenance.items():
            merged.setdefault(key, {}).update(dict.fromkeys(values))
    return {k: list(v) for k, v in merged.items()}


def _provenance_lines(data: TableData, datas: Sequence[TableData] = ()) -> list[str]:
    p = _merged_provenance(datas) if len(datas) > 1 else data.provenance

    def field(key: str, missing: str = "unknown") -> str:
        return joined(p.get(key) or [], missing)

    return [
        f"Ours: scale {field('scale', 'no results yet')}; training steps: {field('steps')}.",
        f"Corpus: {field('corpus')}.",
        f"BLEU: sacreBLEU (detokenized) on {field('recipe')}; signature: {field('signature')}.",
        f"Tokenized BLEU (intl tokenizer, as 2018 papers reported) is in the CSV; signature: "
        f"{field('tokenized_signature')}.",
        arithmetic_line(p),
        PAPER_SETUP,
        _unigram_line(data),
    ] + ([f"Seeds: {', '.join(str(d.seed) for d in datas)}; each cell shows our mean BLEU with "
          "its range, and each seed's verdict."] if len(datas) > 1 else [])


def _unigram_line(data: TableData) -> str:
    levels = ", ".join(f"{v:.3f}" for v in data.unigram_levels) or "not measured"
    return (f"Collapse (ours) is read from each run's validation-loss curve (docs/calibration.md "
            f"section 2), against the unigram level of the target side: {levels}.")


LEGEND = (
    "`-` not run yet; `†` collapsed. Ours: by the curve rule (`curve`: diverged = a non-finite "
    "loss, or a training loss past the blow-up factor where the run has one; gave back = rose "
    f"above its running minimum by more than {GIVE_BACK_FRACTION:.0%} of its progress and "
    f"stayed there; plateau = ended at or above {UNIGRAM_FRACTION} x the unigram level; slow = "
    f"still falling by more than {SLOW_FRACTION:.0%} over the last interval, not collapsed; "
    "trained; `?` not judged). The paper's: BLEU below a quarter of the best BLEU in its column "
    "(diverged counts as 0), its numbers being BLEU alone. `BLEU<1/4`: the same BLEU rule "
    "applied to ours, a secondary mark only. `✗` our collapse (curve rule) disagrees with the "
    "paper's."
)


PLATEAU_LEGEND = (
    " `max RMS(U)`: over the first half of the run, the largest centred 100-step mean (beta2 "
    "clock) of RMS(U_t), the unscaled, unclipped update, averaged over weight matrices "
    "(docs/preregistration.md section 3; `-` for torch Adam and SGD); the CSV also has Figure "
    "1's matrix and the applied min(RMS(U_t), d)."
)


def _verdict_label(tc: TableCell) -> str:
    if tc.result is None:
        return "-"
    return "?" if tc.verdict is None else tc.verdict.label


def _finding(data: TableData) -> WarmupFinding | None:
    return warmup_finding(data) if data.provider.warmup_orderings else None


def _summary_lines(tables: Tables) -> list[str]:
    """The agreement with the paper and, for Table 2, the warmup finding's orderings; with
    several seeds, each seed's."""
    datas = _by_seed(tables)
    lines = []
    for data in datas:
        prefix = f"Seed {data.seed}: " if len(datas) > 1 else ""
        finding = _finding(data)
        lines.append(prefix + data.agreement_line())
        if finding is not None:
            lines.append(prefix + finding.line())
        if data.mechanism is not None:
            lines.append(prefix + "Figure 1's mechanism on this table's rows A and G with warmup "
                         "(RMS(U_t) of one matrix, centred 100-step mean of the beta2 clock; "
                         "docs/preregistration.md section 2; paper: u 0.43 at 300, o 2.20 at "
                         f"830, tau_s 2000, G 0.8-1.13): {data.mechanism.text()}.")
    return lines


def _plateau_max(tc: TableCell, key: str) -> float | None:
    found = (tc.result or {}).get(PLATEAU_MAX) or {}
    value = found.get(key)
    return None if value is None else float(value)


def markdown(tables: Tables) -> str:
    datas = _by_seed(tables)
    data = datas[0]
    header = ["Row", "Setting"]
    plateau = data.provider.update_rms_plot
    for column in data.columns:
        title = data.provider.column_title(column)
        header += [f"{title}: ours", f"{title}: curve", f"{title}: paper", f"{title}: BLEU<1/4"]
        header += [f"{title}: max RMS(U)"] if plateau else []
    lines = [f"# {data.provider.caption}", "", *_provenance_lines(data, datas), "",
             *_summary_lines(datas)]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in data.rows:
        first = data.cell(row, data.columns[0])
        entries = [row, first.cell.description]
        for column in data.columns:
            tcs = [d.cell(row, column) for d in datas]
            entries.append(_ours(tcs, dagger="†", cross="✗"))
            entries.append(_per_seed(tcs, _verdict_label))
            paper = _fmt_bleu(tcs[0].cell.paper_bleu)
            entries.append(_mark(paper, tcs[0], ours=False, dagger="†", cross=""))
            entries.append(_per_seed(tcs, lambda tc: _yes_no(tc.bleu_collapsed) or "-"))
            if plateau:
                found = [v for tc in tcs if (v := _plateau_max(tc, UPDATE_RMS_MATRICES))
                         is not None]
                entries.append(_round(sum(found) / len(found)) if found else "-")
        lines.append("| " + " | ".join(entries) + " |")
    seeds_legend = (" With several seeds, `†` and `✗` mark a cell where every seed says so, "
                    "the curve and BLEU<1/4 columns give each seed's mark (seed order), and max "
                    "RMS(U) is the mean over seeds." if len(datas) > 1 else "")
    lines += ["", LEGEND + (PLATEAU_LEGEND if plateau else "") + seeds_legend, ""]
    return "\n".join(lines)


def _yes_no(flag: bool | None) -> str:
    return "" if flag is None else ("yes" if flag else "no")


def csv_text(tables: Tables) -> str:
    """One row per cell and seed."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for data in _by_seed(tables):
        _csv_rows(writer, data)
    return buffer.getvalue()


def _csv_rows(writer: csv.DictWriter, data: TableData) -> None:
    finding = _finding(data)
    orderings = {"ordering_bleu_lower": "", "ordering_larger_drop": ""}
    if finding is not None:
        for key, o in (("ordering_bleu_lower", finding.bleu_lower),
                       ("ordering_larger_drop", finding.larger_drop)):
            orderings[key] = f"{o.score:g}/{o.pairs}"
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
                    "seed": data.seed,
                    "warmup": _yes_no(tc.cell.warmup),
                    "bleu": "" if bleu is None else (bleu if bleu == DIVERGED else f"{bleu:.2f}"),
                    "paper_bleu": tc.cell.paper_bleu,
                    "collapsed": _yes_no(tc.collapsed),
                    "verdict": "" if tc.verdict is None else tc.verdict.label,
                    "verdict_reason": "" if tc.verdict is None else tc.verdict.reason,
                    "unigram_level": _round(tc.unigram_level, 4),
                    "bleu_quarter_collapsed": _yes_no(tc.bleu_collapsed),
                    "paper_collapsed": _yes_no(tc.paper_collapsed),
                    "collapse_agrees": _yes_no(tc.agrees),
                    "status": r.get("status", "not run"),
                    "tokenized_bleu": _round(r.get("tokenized_bleu")),
                    VALID_LOSS: _round(r.get(VALID_LOSS), 4),
                    "steps": r.get("steps", ""),
                    "scale": r.get("scale", ""),
                    **provenance_columns([r]),
                    "description": tc.cell.description,
                    "cell_id": tc.cell.cell_id,
                    "result_cell_id": r.get("cell_id", ""),
                    **orderings,
                    **{f"plateau_max_{key}": _round(_plateau_max(tc, key), 4)
                       for key in PLATEAU_SERIES},
                }
            )


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


def latex(tables: Tables) -> str:
    datas = _by_seed(tables)
    data = datas[0]
    spec = "ll" + "rr" * len(data.columns)
    head1 = " & ".join(
        [" ", " "] + [rf"\multicolumn{{2}}{{c}}{{{_tex(data.provider.column_title(c))}}}"
                      for c in data.columns]
    )
    head2 = " & ".join(["Row", "Setting"] + ["ours", "paper"] * len(data.columns))
    lines = [
        "% Generated by `python -m reproduce render " + data.table + "`; do not edit by hand.",
        *("% " + line for line in _provenance_lines(data, datas)),
        *("% " + line for line in _summary_lines(datas)),
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
            ours = _ours([d.cell(row, column) for d in datas], dagger=r"$^\dagger$",
                         cross=r"$\times$")
            paper = _mark(_fmt_bleu(tc.cell.paper_bleu), tc, ours=False, dagger=r"$^\dagger$",
                          cross="")
            entries += ["--" if ours == "-" else ours, "--" if paper == "-" else paper]
        lines.append(" & ".join(entries) + r" \\")
    lines += [
        r"\hline",
        r"\end{tabular}",
        rf"\caption{{{_tex(data.provider.caption)} {_tex('; '.join(_agreements(datas)))}. "
        r"$^\dagger$: collapsed (ours: read from the validation-loss curve, see the "
        r"markdown table; the paper's: BLEU below a quarter of the best in its column); "
        r"$\times$: our collapse disagrees with the paper's.}",
        rf"\label{{tab:{data.table}}}",
        r"\end{table}",
        "",
    ]
    return "\n".join(lines)


def _agreements(datas: Sequence[TableData]) -> list[str]:
    if len(datas) == 1:
        return [datas[0].agreement_line()]
    return [f"seed {d.seed}: {d.agreement_line()}" for d in datas]


def write_table_files(tables: Tables, out_dir: Path) -> list[Path]:
    """<out_dir>/<table>.md, .csv and .tex; returns their paths."""
    out_dir = Path(out_dir)
    datas = _by_seed(tables)
    data = datas[0]
    paths = []
    for suffix, text in (("md", markdown(datas)), ("csv", csv_text(datas)),
                         ("tex", latex(datas))):
        path = out_dir / f"{data.table}.{suffix}"
        atomic_write(path, text)
        paths.append(path)
    return paths
