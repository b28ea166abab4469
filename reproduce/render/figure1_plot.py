"""Figure 1 as a PNG: our smoothed RMS(U_t) for rows A and G with the paper's values beside."""

from __future__ import annotations

from pathlib import Path

from experiments.grid.figure1 import PAPER_FIGURE1_BANDS, PAPER_FIGURE1_POINTS, SMOOTHING_WINDOW
from reproduce.render.figure1_data import ROW_TITLES, SERIES_TITLES, Figure1Data
from reproduce.render.png import plt, save_png

COLORS = {"A": "tab:blue", "G": "tab:red"}
STYLES = {"matrix": "-", "mean": "--"}


def plot_figure1(data: Figure1Data, path: Path) -> Path | None:
    """Ours as lines (one matrix solid, the mean over matrices dashed), the paper's read-off
    points (row A) and band (row G) as markers and a shaded band; None without any curve."""
    if not data.curves:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    for (row, name), (steps, values) in sorted(data.curves.items()):
        ax.plot(steps, values, STYLES[name], color=COLORS.get(row), linewidth=1,
                label=f"ours, {ROW_TITLES.get(row, row)}: {SERIES_TITLES[name]}")
    for row, points in PAPER_FIGURE1_POINTS.items():
        ax.plot([s for s, _ in points], [v for _, v in points], "o", color=COLORS.get(row),
                markersize=4, label=f"paper, {ROW_TITLES.get(row, row)} (read off)")
    for row, (lo, hi) in PAPER_FIGURE1_BANDS.items():
        ax.axhspan(lo, hi, color=COLORS.get(row), alpha=0.1,
                   label=f"paper, {ROW_TITLES.get(row, row)}: stays in [{lo:g}, {hi:g}]")
    ax.axhline(1.0, linestyle=":", color="gray", linewidth=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel(f"RMS(U_t), {SMOOTHING_WINDOW}-step trailing mean")
    ax.set_title("Figure 1: RMS of the unscaled update with warmup", fontsize=9)
    ax.legend(fontsize=6)
    fig.tight_layout()
    return save_png(fig, path)
