"""The LR-sensitivity grid as a PNG: final loss against the multiplier, one panel per row, one
line per warmup column; collapsed points are crossed, missing points are left out."""

from __future__ import annotations

import math
from pathlib import Path

from reproduce.render.png import plt, save_png
from reproduce.render.sensitivity_data import SensitivityData
from reproduce.render.sensitivity_text import COLUMN_TITLES

COLORS = {"warmup": "tab:blue", "no-warmup": "tab:orange"}


def plot_sensitivity(data: SensitivityData, path: Path) -> Path | None:
    """None when no grid point has a loss yet."""
    rows = list(dict.fromkeys(r for (r, _), c in data.cells.items() if c.runs))
    if not rows:
        return None
    n_cols = min(4, len(rows))
    n_rows = math.ceil(len(rows) / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.0 * n_cols, 2.4 * n_rows), squeeze=False,
                             sharex=True)
    for ax, row in zip(axes.flat, rows, strict=False):
        for column, title in COLUMN_TITLES.items():
            cell = data.cells[(row, column)]
            points = [(m, cell.final_loss(m)) for m in data.grid.multipliers]
            points = [(m, v) for m, v in points if v is not None]
            if not points:
                continue
            mark = " (paper: collapses)" if cell.paper_collapsed else ""
            ax.plot([m for m, _ in points], [v for _, v in points], "o-", markersize=3,
                    color=COLORS[column], linewidth=1, label=title + mark)
            crossed = [(m, v) for m, v in points if cell.collapsed(m)]
            if crossed:
                ax.plot([m for m, _ in crossed], [v for _, v in crossed], "x", color="red",
                        markersize=7)
        ax.set_xscale("log")
        ax.set_title(f"row {row}", fontsize=8)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=5)
    for ax in list(axes.flat)[len(rows):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("step-size multiplier m", fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("final valid loss", fontsize=7)
    missing = len(data.missing())
    fig.suptitle("LR sensitivity: final loss vs m (x: a seed collapsed; a diverged seed counts "
                 "as its initial loss)"
                 + (f"; {missing} runs missing" if missing else ""), fontsize=9)
    fig.tight_layout()
    return save_png(fig, path)
