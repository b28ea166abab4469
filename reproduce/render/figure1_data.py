"""Figure 1's data: RMS(U_t) per step of rows A and G, smoothed, as a CSV and a markdown summary.

Each cell logs ``update_rms_matrix`` (one named weight matrix, models.config
UPDATE_RMS_MATRIX) and ``update_rms_matrices`` (the mean over weight matrices) every step. The
rendered curves are a trailing mean over the last ``SMOOTHING_WINDOW`` steps (steps in
(s - 200, s]); the CSV keeps every 10th step of them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from experiments.grid.figure1 import (
    FIGURE1,
    FIGURE1_ROWS,
    PAPER_FIGURE1_BANDS,
    PAPER_FIGURE1_POINTS,
    SMOOTHING_WINDOW,
)
from experiments.store.files import MetricsLoader, series
from models.config import UPDATE_RMS_MATRIX
from reproduce.render.mechanism import PAPER_MECHANISM, Mechanism, table_mechanism
from reproduce.render.provenance import PROVENANCE_COLUMNS, csv_text, provenance_columns

SERIES = (("matrix", "update_rms_matrix"), ("mean", "update_rms_matrices"))
SERIES_TITLES = {"matrix": f"one matrix ({UPDATE_RMS_MATRIX.removeprefix('model.')})",
                 "mean": "mean over weight matrices"}
CSV_EVERY = 10  # steps between CSV rows
ROW_TITLES = {"A": "beta2 = 0.999 (row A)", "G": "beta2 = 0.9 (row G)"}


@dataclass
class Figure1Data:
    """Smoothed curves by (row, series), the cells that have none, and what each ran with."""

    curves: dict[tuple[str, str], tuple[list[int], list[float]]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    steps_run: dict[str, int] = field(default_factory=dict)
    provenance: dict[str, dict[str, str]] = field(default_factory=dict)  # by row
    mechanism: Mechanism | None = None

    @property
    def n_results(self) -> int:
        return len({row for row, _ in self.curves})


def trailing_mean(steps: list[float], values: list[float], window: int
                  ) -> tuple[list[int], list[float]]:
    """At each step s, the mean of the values logged at steps in (s - window, s]."""
    out_steps, out_values, start, total = [], [], 0, 0.0
    for i, (step, value) in enumerate(zip(steps, values, strict=True)):
        total += value
        while steps[start] <= step - window:
            total -= values[start]
            start += 1
        out_steps.append(int(step))
        out_values.append(total / (i - start + 1))
    return out_steps, out_values


def build_figure1(results: list[dict[str, Any]], load_metrics: MetricsLoader,
                  seed: int = 0) -> Figure1Data:
    """The smoothed curves of the figure1 cells of ``seed`` that have a result."""
    by_id = {r.get("cell_id"): r for r in results}
    data = Figure1Data()
    for row in FIGURE1_ROWS:
        cell_id = f"{FIGURE1}/{row}/warmup/seed{seed}"
        if cell_id not in by_id:
            data.missing.append(cell_id)
            continue
        data.steps_run[row] = int(by_id[cell_id].get("steps") or 0)
        data.provenance[row] = provenance_columns([by_id[cell_id]])
        records = load_metrics(cell_id)
        for name, key in SERIES:
            steps, values = series(records, key)
            if steps:
                data.curves[(row, name)] = trailing_mean(steps, values, SMOOTHING_WINDOW)
    data.mechanism = table_mechanism(FIGURE1, seed, by_id, load_metrics)
    return data


def figure1_csv(data: Figure1Data) -> str:
    """``row,series,step,update_rms,numerics,git_commit``: the 200-step trailing mean, every
    10th step, with what the row's cell ran on."""
    out = io.StringIO()
    out.write("row,series,step,update_rms," + ",".join(PROVENANCE_COLUMNS) + "\n")
    for (row, name), (steps, values) in sorted(data.curves.items()):
        recorded = data.provenance.get(row, {})
        tail = ",".join(csv_text(recorded.get(k, "")) for k in PROVENANCE_COLUMNS)
        for step, value in zip(steps, values, strict=True):
            if step % CSV_EVERY == 0:
                out.write(f"{row},{name},{step},{value:.4f},{tail}\n")
    return out.getvalue()


def _extremes(steps: list[int], values: list[float]) -> tuple[tuple[int, float], tuple[int, float]]:
    """(step, value) of the minimum, and of the maximum after that minimum."""
    i_min = min(range(len(values)), key=values.__getitem__)
    i_max = max(range(i_min, len(values)), key=values.__getitem__)
    return (steps[i_min], values[i_min]), (steps[i_max], values[i_max])


def figure1_markdown(data: Figure1Data) -> str:
    """A summary of the smoothed curves beside the paper's read-off values."""
    lines = [
        "### Figure 1: RMS(U_t) with warmup, beta2 = 0.999 (row A) against 0.9 (row G)", "",
        f"Ours: the paper's schedule unscaled; each value is a trailing mean over the last "
        f"{SMOOTHING_WINDOW} steps (figure1.csv: every {CSV_EVERY}th step). Series: "
        + "; ".join(f"`{k}` = {v}" for k, v in SERIES_TITLES.items()) + ".", "",
        "| row | series | steps | min (step) | max after min (step) | final | range |",
        "|---|---|---|---|---|---|---|",
    ]
    for (row, name), (steps, values) in sorted(data.curves.items()):
        (s_lo, lo), (s_hi, hi) = _extremes(steps, values)
        lines.append(f"| {row} | {name} | {data.steps_run.get(row, steps[-1])} | {lo:.2f} "
                     f"({s_lo}) | {hi:.2f} ({s_hi}) | {values[-1]:.2f} | "
                     f"{min(values):.2f}-{max(values):.2f} |")
    lines += ["", "Paper (read off its Figure 1, one weight matrix): row A "
              + ", ".join(f"{v:g} at step {s}" for s, v in PAPER_FIGURE1_POINTS["A"])
              + "; row G within " + ", ".join(f"[{lo:g}, {hi:g}]" for lo, hi in
                                               PAPER_FIGURE1_BANDS.values()) + "."]
    if data.mechanism is not None:
        lines += ["", "The mechanism numbers of docs/preregistration.md section 2 (centred "
                  "100-step mean; a reference, not used by the design rule): ours "
                  f"{data.mechanism.text()}; the paper's read-offs under the same window: "
                  f"{PAPER_MECHANISM.text()}."]
    if data.missing:
        lines += ["", "Not run yet: " + ", ".join(data.missing) + "."]
    return "\n".join(lines) + "\n"
