"""PNG plots of a grid table: validation loss per row (one panel per row, one line per column)
and the paper's Figure 1 (RMS of the unscaled update over steps, beta2 = 0.999 vs 0.9)."""

from __future__ import annotations

import math
from pathlib import Path

from experiments.schema import STATUS, VALID_LOSS, Status
from experiments.store.files import MetricsLoader, series
from reproduce.render.png import plt, save_png
from reproduce.render.table_data import TableCell, TableData

FIGURE1_ROWS = (("A", "beta2 = 0.999 (row A)"), ("G", "beta2 = 0.9 (row G)"))


def plot_valid_loss(data: TableData, load_metrics: MetricsLoader, path: Path) -> Path | None:
    """One panel per row of ``data``, validation loss over steps for each column; None if no
    cell has a validation loss yet."""
    curves: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for row in data.rows:
        for column in data.columns:
            tc = data.cell(row, column)
            if tc.result is None:
                continue
            steps, values = series(load_metrics(tc.result["cell_id"]), VALID_LOSS)
            if steps:
                curves.setdefault(row, {})[column] = (steps, values)
    if not curves:
        return None
    n_cols = min(4, len(data.rows))
    n_rows = math.ceil(len(data.rows) / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.2 * n_cols, 2.4 * n_rows), squeeze=False)
    for ax, row in zip(axes.flat, data.rows, strict=False):
        ax.set_title(f"{row}: {data.cell(row, data.columns[0]).cell.description}"[:48], fontsize=7)
        for column, (steps, values) in curves.get(row, {}).items():
            tc = data.cell(row, column)
            label = data.provider.column_title(column)
            if tc.verdict is not None:
                label += f" ({'collapsed: ' if tc.collapsed else ''}{tc.verdict.label})"
            style = dict(linestyle="--", marker="x", markevery=[-1]) if tc.collapsed else {}
            ax.plot(steps, values, label=label, linewidth=1, **style)
        if row in curves:
            ax.legend(fontsize=6)
        notes = [_no_curve_note(data, data.cell(row, c)) for c in data.columns if c not in
                 curves.get(row, {})]
        if any(notes):
            ax.text(0.5, 0.5, "\n".join(n for n in notes if n), ha="center", va="center",
                    fontsize=7, transform=ax.transAxes)
        ax.tick_params(labelsize=6)
        ax.set_xlabel("step", fontsize=7)
        ax.set_ylabel("validation loss", fontsize=7)
    for ax in list(axes.flat)[len(data.rows):]:
        ax.set_visible(False)
    fig.suptitle(f"{data.table}: validation loss per row (dashed, x: collapsed by the curve rule)",
                 fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)


def _no_curve_note(data: TableData, tc: TableCell) -> str:
    """Why a cell has no validation-loss curve (shown in its panel)."""
    title = data.provider.column_title(tc.cell.column)
    if tc.result is None:
        return f"{title}: not run"
    if tc.result.get(STATUS) == Status.DIVERGED:
        step = tc.result.get("diverged_step")
        return f"{title}: diverged" + (f" at step {step}" if step is not None else "")
    return f"{title}: no validation loss logged"


def plot_update_rms(load_metrics: MetricsLoader, path: Path, table: str) -> Path | None:
    """RMS(U_t) of this table's rows A (beta2 = 0.999) and G (beta2 = 0.9) with warmup, on the
    table's own schedule (the paper's Figure 1 schedule is the figure1 provider's).

    ``update_rms`` is each logged interval's mean over steps of the mean over parameter tensors
    of RMS(U_t), where the paper plots one weight matrix; None when neither row has the series.
    """
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    plotted = False
    for row, label in FIGURE1_ROWS:
        steps, values = series(load_metrics(f"{table}/{row}/warmup/seed0"), "update_rms")
        if steps:
            ax.plot(steps, values, label=label, linewidth=1)
            plotted = True
    if not plotted:
        plt.close(fig)
        return None
    ax.axhline(1.0, linestyle="--", color="gray", linewidth=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("RMS of the unscaled update U_t")
    ax.set_title(f"{table}: RMS(U_t) of rows A and G with warmup (mean over parameter tensors; "
                 "not the paper's Figure 1 schedule)", fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)
