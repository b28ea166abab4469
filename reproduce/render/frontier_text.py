"""paper_tables/frontier.{md,csv}: the frontier's points, and each optimizer's whole sweep."""

from __future__ import annotations

import csv
import io

from experiments.schema import VALID_LOSS, Status
from reproduce.render.frontier_data import FrontierData, FrontierRow, SweepPoint
from reproduce.render.provenance import (
    PROVENANCE_COLUMNS,
    arithmetic_line,
    joined,
    provenance_columns,
)

CSV_COLUMNS = (
    "optimizer", "label", "best_peak", "bleu", "bleu_min", "bleu_max", VALID_LOSS,
    "state_bytes", "state_bytes_base",
    "parameters_base", "state_per_parameter_base", "pareto", "best_at_sweep_edge", "seeds",
    "sweep", "state", "source", "scale", "steps", "bleu_recipe", "bleu_signature",
    *PROVENANCE_COLUMNS,
)




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
        return Status.DIVERGED.value
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


def _recipe_lines(data: FrontierData) -> list[str]:
    p = data.provenance
    return [
        f"Ours: scale {joined(p.get('scale', []))}; "
        f"training steps: {joined(p.get('steps', []))}; "
        f"corpus: {joined(p.get('corpus', []))}.",
        f"BLEU: sacreBLEU (detokenized) on {joined(p.get('recipe', []))}; signature: "
        f"{joined(p.get('signature', []))}.",
        arithmetic_line(p),
        "Each optimizer's point is its best peak step size by final validation loss (on the same "
        "split as the BLEU; with several seeds, by their mean); every run uses the paper's warmup "
        "schedule shape scaled to that peak (experiments/grid/frontier.py).",
    ]


def frontier_markdown(data: FrontierData) -> str:
    lines = [
        "# Optimizer-state memory against BLEU: Adafactor and the other optimizers",
        "",
        *_recipe_lines(data),
        "State bytes: optimizer state measured after training (this scale) and after one CPU "
        "step on Transformer base (60.9M parameters, "
        "`python -m experiments.measure.optimizer_state --frontier`).",
        "",
        "| Optimizer | BLEU | valid loss | best peak | state bytes | state bytes, base | "
        "floats/param, base | Pareto | state per parameter |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in data.rows:
        best = row.best
        base = row.base or {}
        floats = row.base_floats_per_parameter
        per_param = "-" if floats is None else f"{floats:.4f}"
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


def frontier_csv(data: FrontierData) -> str:
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
            "bleu": Status.DIVERGED.value if best is None else f"{best.bleu:.2f}",
            "bleu_min": "" if best is None else f"{best.bleu_range[0]:.2f}",
            "bleu_max": "" if best is None else f"{best.bleu_range[1]:.2f}",
            VALID_LOSS: "" if best is None else f"{best.valid_loss:.6f}",
            "state_bytes": row.state_bytes if row.state_bytes is not None else "",
            "state_bytes_base": base.get("state_bytes", ""),
            "parameters_base": base.get("parameters", ""),
            "state_per_parameter_base": (
                "" if row.base_floats_per_parameter is None
                else f"{row.base_floats_per_parameter:.6f}"),
            "pareto": "yes" if row.pareto else "no",
            "best_at_sweep_edge": "" if row.at_edge is None else ("yes" if row.at_edge else "no"),
            "seeds": "" if best is None else len(best.ok_runs),
            "sweep": _sweep_text(row),
            "state": row.info.state,
            "source": row.info.source,
            "scale": joined(data.provenance.get("scale", [])),
            "steps": joined(data.provenance.get("steps", [])),
            "bleu_recipe": joined(data.provenance.get("recipe", [])),
            "bleu_signature": joined(data.provenance.get("signature", [])),
            **provenance_columns(r for point in row.sweep for r in point.runs),
        })
    return buffer.getvalue()
