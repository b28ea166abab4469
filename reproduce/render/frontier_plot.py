"""paper_tables/frontier.png: optimizer-state bytes (log x) against BLEU, the Pareto set marked."""

from __future__ import annotations

import math
from pathlib import Path

from reproduce.render.frontier_data import FrontierData, FrontierRow
from reproduce.render.png import plt, save_png


def _floats_per_parameter(row: FrontierRow) -> float | None:
    """Measured state floats per parameter of the run (state bytes / parameter bytes)."""
    best = row.best
    runs = best.runs if best is not None else [r for p in row.sweep for r in p.runs]
    for run in runs:
        if run.get("optimizer_state_bytes") is not None and run.get("parameter_bytes"):
            return run["optimizer_state_bytes"] / run["parameter_bytes"]
    return None


def _label_heights(points: list[tuple[float, float]], y_span: float) -> list[float]:
    """Label heights moved up until no two labels at about the same x overlap."""
    placed: list[tuple[float, float]] = []
    heights = []
    for x, y in points:
        height = y
        while any(abs(math.log10(x / px)) < 0.2 and abs(height - py) < 0.05 * y_span
                  for px, py in placed):
            height += 0.05 * y_span
        placed.append((x, height))
        heights.append(height)
    return heights


def plot_frontier(data: FrontierData, path: Path) -> Path | None:
    """State bytes (log x) against BLEU, each point labelled with its optimizer and its measured
    state floats per parameter; the Pareto frontier as a step line. None: no point."""
    points = sorted(((r, r.state_bytes, r.best.bleu) for r in data.rows
                     if r.best is not None and r.state_bytes is not None),
                    key=lambda p: (p[1], p[2]))
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    y_span = max(1.0, max(b for _, _, b in points) - min(b for _, _, b in points))
    heights = _label_heights([(s, b) for _, s, b in points], y_span)
    for (row, size, bleu), height in zip(points, heights, strict=True):
        is_adafactor = row.name.startswith("adafactor")
        ax.scatter([size], [bleu], s=60 if is_adafactor else 28, zorder=3,
                   marker="*" if is_adafactor else "o",
                   color="tab:red" if is_adafactor else ("tab:blue" if row.pareto else "tab:gray"))
        per_param = _floats_per_parameter(row)
        label = row.info.label + ("" if per_param is None else f" ({per_param:.3g}/param)")
        ax.annotate(label, (size, bleu), xytext=(size * 1.08, height + 0.01 * y_span),
                    fontsize=7, va="bottom",
                    arrowprops={"arrowstyle": "-", "linewidth": 0.4, "color": "gray"}
                    if height != bleu else None)
    front = sorted((s, b) for r, s, b in points if r.pareto)
    if len(front) > 1:
        xs, ys = zip(*front, strict=True)
        ax.step(xs, ys, where="post", color="tab:blue", linewidth=0.8, alpha=0.6,
                label="Pareto frontier")
        ax.legend(fontsize=7, loc="upper left")
    ax.set_xscale("log")
    ax.set_xlim(right=ax.get_xlim()[1] * 2.5)  # room for the labels of the largest states
    ax.set_xlabel("optimizer-state bytes (log scale); labels: state floats per parameter")
    ax.set_ylabel("BLEU")
    scale = "; ".join(data.provenance.get("scale", [])) or "?"
    ax.set_title(f"Optimizer-state memory vs BLEU (scale {scale}; best peak step size each)",
                 fontsize=9)
    ax.grid(True, which="both", linewidth=0.3, alpha=0.5)
    fig.tight_layout()
    return save_png(fig, path)
