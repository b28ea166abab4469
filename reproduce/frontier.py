"""paper_tables/frontier.{md,csv,png}: optimizer-state memory against BLEU, one point per optimizer.

Each optimizer's point is its best sweep cell (experiments.frontier): the peak step size with the
lowest final validation loss among the runs that did not diverge (several seeds of one peak are
averaged first). A point is on the Pareto frontier when no other optimizer has at most its state
bytes and at least its BLEU, one of them strictly. ``edge`` marks a best peak at the end of its
sweep, where a wider sweep might find a better step size.

State bytes are measured, not computed from formulas: ``optimizer_state_bytes`` of the trained
optimizer at the run's scale, and (when ``base_state_bytes.json`` exists, written by
``python -m reproduce frontier``) of the same optimizer after one CPU step on Transformer base.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from experiments.frontier import FRONTIER, FRONTIER_OPTIMIZERS, FRONTIER_ROWS, parse_lr_column
from reproduce.errors import UsageError
from reproduce.render import provenance, write_atomic

BASE_STATE_FILE = "base_state_bytes.json"
CSV_COLUMNS = (
    "optimizer", "label", "best_peak", "bleu", "bleu_min", "bleu_max", "valid_loss",
    "state_bytes", "state_bytes_base",
    "parameters_base", "state_per_parameter_base", "pareto", "best_at_sweep_edge", "seeds",
    "sweep", "state", "source", "scale", "steps", "bleu_recipe", "bleu_signature",
)


@dataclass
class SweepPoint:
    """One peak step size of one optimizer, averaged over its seeds."""

    peak: float
    runs: list[dict[str, Any]]

    @property
    def ok_runs(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r.get("status") == "ok"
                and _finite(r.get("valid_loss")) and r.get("bleu") is not None]

    @property
    def diverged(self) -> bool:
        return not self.ok_runs

    def _mean(self, key: str) -> float | None:
        values = [float(r[key]) for r in self.ok_runs if r.get(key) is not None]
        return sum(values) / len(values) if values else None

    @property
    def valid_loss(self) -> float | None:
        return self._mean("valid_loss")

    @property
    def bleu(self) -> float | None:
        return self._mean("bleu")

    @property
    def bleu_range(self) -> tuple[float, float] | None:
        values = [float(r["bleu"]) for r in self.ok_runs]
        return (min(values), max(values)) if values else None

    @property
    def state_bytes(self) -> int | None:
        values = [r["optimizer_state_bytes"] for r in self.runs
                  if r.get("optimizer_state_bytes") is not None]
        return max(values) if values else None


@dataclass
class FrontierRow:
    name: str
    sweep: list[SweepPoint]
    base: dict[str, Any] | None = None  # {"state_bytes": ..., "parameters": ...} on base
    pareto: bool = False

    @property
    def info(self) -> Any:
        return FRONTIER_OPTIMIZERS[self.name]

    @property
    def best(self) -> SweepPoint | None:
        candidates = [p for p in self.sweep if not p.diverged]
        return min(candidates, key=lambda p: p.valid_loss) if candidates else None

    @property
    def at_edge(self) -> bool | None:
        best = self.best
        # Ends of the planned sweep plus any extra peaks that were run: a cell that has not run
        # yet does not turn its neighbour into an edge.
        peaks = {p.peak for p in self.sweep} | set(self.info.peaks)
        if best is None or len(peaks) < 2:
            return None
        return best.peak in (min(peaks), max(peaks))

    @property
    def state_bytes(self) -> int | None:
        best = self.best
        if best is not None and best.state_bytes is not None:
            return best.state_bytes
        known = [p.state_bytes for p in self.sweep if p.state_bytes is not None]
        return known[0] if known else None


@dataclass
class FrontierData:
    rows: list[FrontierRow]
    provenance: dict[str, list[str]] = field(default_factory=dict)
    table: str = FRONTIER

    @property
    def n_results(self) -> int:
        return sum(len(p.runs) for r in self.rows for p in r.sweep)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def build_frontier(results: Iterable[dict[str, Any]],
                   base_state: dict[str, dict[str, Any]] | None = None) -> FrontierData:
    """Group frontier results by optimizer and peak, pick each best point, mark the Pareto set."""
    runs: dict[str, dict[float, list[dict[str, Any]]]] = {}
    used = []
    for result in results:
        if result.get("table") != FRONTIER or result.get("row") not in FRONTIER_OPTIMIZERS:
            continue
        try:
            peak = parse_lr_column(str(result.get("column")))
        except ValueError as err:
            raise UsageError(f"result {result.get('cell_id')!r}: {err}") from err
        runs.setdefault(result["row"], {}).setdefault(peak, []).append(result)
        used.append(result)
    rows = []
    for name in FRONTIER_ROWS:
        if name not in runs:
            continue
        sweep = [SweepPoint(peak, runs[name][peak]) for peak in sorted(runs[name])]
        rows.append(FrontierRow(name, sweep, (base_state or {}).get(name)))
    _mark_pareto(rows)
    return FrontierData(rows, provenance(used))


def _mark_pareto(rows: Sequence[FrontierRow]) -> None:
    points = [(r, r.state_bytes, r.best.bleu) for r in rows
              if r.best is not None and r.state_bytes is not None]
    for row, size, bleu in points:
        row.pareto = not any(
            other is not row and s <= size and b >= bleu and (s < size or b > bleu)
            for other, s, b in points
        )


def load_base_state(results_dir: Path) -> dict[str, dict[str, Any]] | None:
    path = Path(results_dir) / FRONTIER / BASE_STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def measure_base_state(results_dir: Path, names: Sequence[str] = FRONTIER_ROWS,
                       log: Callable[[str], Any] | None = None) -> Path:
    """Measure (one CPU step on Transformer base) the optimizers of ``names`` that
    ``<results_dir>/frontier/base_state_bytes.json`` lacks; the file is rewritten atomically
    after each one, so an interrupted run keeps what it measured."""
    from experiments.memory_report import measure_frontier
    from experiments.tracking import atomic_write_json

    log = log or partial(print, flush=True)
    path = Path(results_dir) / FRONTIER / BASE_STATE_FILE
    state = load_base_state(results_dir) or {}
    for name in names:
        if name in state:
            continue
        log(f"measuring {name}'s optimizer state on Transformer base (one CPU step)")
        measured = measure_frontier("base", name)
        state[name] = {"state_bytes": measured["optimizer_state_bytes"],
                       "parameters": measured["parameters"]}
        atomic_write_json(path, state)
    return path


# --- text --------------------------------------------------------------------------------------


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def _bleu_text(point: SweepPoint | None) -> str:
    """``15.1``, or ``15.1 (3 seeds: 14.2-16.0)`` when several seeds finished."""
    if point is None:
        return "diverged"
    low, high = point.bleu_range
    n = len(point.ok_runs)
    return f"{point.bleu:.1f}" + (f" ({n} seeds: {low:.1f}-{high:.1f})" if n > 1 else "")


def _sweep_text(row: FrontierRow) -> str:
    parts = []
    for p in row.sweep:
        if p.diverged:
            parts.append(f"{p.peak:g}: diverged")
        else:
            parts.append(f"{p.peak:g}: {p.valid_loss:.3f} / {p.bleu:.1f}")
    return "; ".join(parts)


def _joined(values: list[str]) -> str:
    text = "; ".join(values) if values else "unknown"
    return text + (" (MIXED: results come from different settings)" if len(values) > 1 else "")


def _recipe_lines(data: FrontierData) -> list[str]:
    p = data.provenance
    return [
        f"Ours: scale {_joined(p.get('scale', []))}; "
        f"training steps: {_joined(p.get('steps', []))}; "
        f"corpus: {_joined(p.get('corpus', []))}.",
        f"BLEU: sacreBLEU (detokenized) on {_joined(p.get('recipe', []))}; signature: "
        f"{_joined(p.get('signature', []))}.",
        "Each optimizer's point is its best peak step size by final validation loss (on the same "
        "split as the BLEU; with several seeds, by their mean); every run uses the paper's warmup "
        "schedule shape scaled to that peak (experiments/frontier.py).",
    ]


def markdown(data: FrontierData) -> str:
    lines = [
        "# Optimizer-state memory against BLEU: Adafactor and the other optimizers",
        "",
        *_recipe_lines(data),
        "State bytes: optimizer state measured after training (this scale) and after one CPU "
        "step on Transformer base (60.9M parameters, `python -m experiments.memory_report "
        "--frontier`).",
        "",
        "| Optimizer | BLEU | valid loss | best peak | state bytes | state bytes, base | "
        "floats/param, base | Pareto | state per parameter |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in data.rows:
        best = row.best
        base = row.base or {}
        per_param = (f"{base['state_bytes'] / 4 / base['parameters']:.4f}"
                     if base.get("parameters") and base.get("state_bytes") is not None else "-")
        peak = "-" if best is None else f"{best.peak:g}" + (" (edge)" if row.at_edge else "")
        lines.append(
            f"| {row.info.label} | {_bleu_text(best)} | "
            f"{'-' if best is None else f'{best.valid_loss:.3f}'} | {peak} | "
            f"{_bytes(row.state_bytes)} | {_bytes(base.get('state_bytes'))} | {per_param} | "
            f"{'yes' if row.pareto else ''} | {row.info.state} |"
        )
    lines += ["", "## Sweeps (peak: final validation loss / BLEU)", "",
              "| Optimizer | sweep | implementation |", "|---|---|---|"]
    for row in data.rows:
        lines.append(f"| {row.info.label} | {_sweep_text(row)} | {row.info.source} |")
    lines += [
        "",
        "`(edge)`: the best peak is the smallest or largest of its sweep. `Pareto`: no other "
        "optimizer has at most its state and at least its BLEU. Floats/param: state bytes / 4 / "
        "parameters. Weight decay is 0 for all but AdamW (0.01, torch's default).",
        "",
    ]
    return "\n".join(lines)


def csv_text(data: FrontierData) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in data.rows:
        best = row.best
        base = row.base or {}
        writer.writerow({
            "optimizer": row.name,
            "label": row.info.label,
            "best_peak": "" if best is None else f"{best.peak:g}",
            "bleu": "diverged" if best is None else f"{best.bleu:.2f}",
            "bleu_min": "" if best is None else f"{best.bleu_range[0]:.2f}",
            "bleu_max": "" if best is None else f"{best.bleu_range[1]:.2f}",
            "valid_loss": "" if best is None else f"{best.valid_loss:.6f}",
            "state_bytes": row.state_bytes if row.state_bytes is not None else "",
            "state_bytes_base": base.get("state_bytes", ""),
            "parameters_base": base.get("parameters", ""),
            "state_per_parameter_base": (
                f"{base['state_bytes'] / 4 / base['parameters']:.6f}"
                if base.get("parameters") and base.get("state_bytes") is not None else ""),
            "pareto": "yes" if row.pareto else "no",
            "best_at_sweep_edge": "" if row.at_edge is None else ("yes" if row.at_edge else "no"),
            "seeds": "" if best is None else len(best.ok_runs),
            "sweep": _sweep_text(row),
            "state": row.info.state,
            "source": row.info.source,
            "scale": _joined(data.provenance.get("scale", [])),
            "steps": _joined(data.provenance.get("steps", [])),
            "bleu_recipe": _joined(data.provenance.get("recipe", [])),
            "bleu_signature": _joined(data.provenance.get("signature", [])),
        })
    return buffer.getvalue()


# --- plot --------------------------------------------------------------------------------------


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
    from reproduce.plots import plt, save_png

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


def write_frontier_files(data: FrontierData, out_dir: Path) -> list[Path]:
    """<out_dir>/frontier.md, frontier.csv and frontier.png; returns the paths written."""
    out_dir = Path(out_dir)
    paths = []
    for suffix, text in (("md", markdown(data)), ("csv", csv_text(data))):
        path = out_dir / f"{FRONTIER}.{suffix}"
        write_atomic(path, text)
        paths.append(path)
    plot = plot_frontier(data, out_dir / f"{FRONTIER}.png")
    if plot is not None:
        paths.append(plot)
    return paths


__all__ = [
    "BASE_STATE_FILE", "FrontierData", "build_frontier", "csv_text", "load_base_state",
    "markdown", "plot_frontier", "write_frontier_files",
]
