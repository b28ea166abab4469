"""Helpers shared by test modules: result files written in the runner's format."""

from __future__ import annotations

import json
from pathlib import Path

from experiments.cell_files import atomic_write_json
from experiments.tables import table_cells

RECIPE = {"split": "valid", "corpus": "embedded", "max_sentences": 200, "sentences": 200,
          "decode": "greedy", "beam": 1, "length_penalty": None}
SIGNATURE = "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.4.2"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_result(results_dir: Path, cell_id: str, bleu: float | str, *, scale: str = "tiny",
                 metrics: list[dict] | None = None, steps: int = 400) -> dict:
    """One cell's result.json (and metrics.jsonl) as experiments.runner writes them."""
    table, row, column, seed = cell_id.split("/")
    diverged = bleu == "diverged"
    result = {
        "cell_id": cell_id, "table": table, "row": row, "column": column,
        "warmup": column == "warmup", "seed": int(seed[4:]), "scale": scale,
        "status": "diverged" if diverged else "ok",
        "bleu": None if diverged else float(bleu), "bleu_signature": SIGNATURE,
        "tokenized_bleu": None if diverged else float(bleu) + 1.0,
        "tokenized_bleu_signature": "nrefs:1|case:mixed|eff:no|tok:intl|smooth:exp|version:2.4.2",
        "bleu_recipe": RECIPE, "valid_loss": 4.5, "train_loss": 4.4, "steps": steps,
    }
    atomic_write_json(results_dir / cell_id / "result.json", result)
    if metrics is not None:
        lines = "".join(json.dumps(m) + "\n" for m in metrics)
        (results_dir / cell_id / "metrics.jsonl").write_text(lines)
    return result


def curve(rms_peak: float) -> list[dict]:
    rows = []
    for step in range(10, 410, 10):
        row = {"step": step, "train_loss": 8.0 - step / 100, "update_rms": 1.0 + rms_peak / step}
        if step % 100 == 0:
            row["valid_loss"] = 8.5 - step / 100
        rows.append(row)
    return rows


def paper_like_results(results_dir: Path, flips: dict[str, float | str] | None = None) -> None:
    """Every Table 2 cell with the paper's BLEU, except the cells in ``flips``."""
    flips = flips or {}
    for cell in table_cells("table2"):
        bleu = flips.get(cell.cell_id, cell.paper_bleu)
        metrics = curve(50.0 if cell.row == "A" else 5.0) if cell.row in ("A", "G", "B") else None
        write_result(results_dir, cell.cell_id, bleu, metrics=metrics)
