"""The files a table's prepare step leaves for rendering: the unigram level of a grid table's
corpus (``<results_dir>/<table>/unigram.json``, experiments.measure.unigram) and the frontier
optimizers' state on Transformer base (``<results_dir>/frontier/base_state_bytes.json``,
experiments.measure.optimizer_state). Rendering reads them here, and nothing else."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from experiments.schema import BASE_STATE_FILE, UNIGRAM_FILE


def unigram_path(results_dir: Path, table: str) -> Path:
    return Path(results_dir) / table / UNIGRAM_FILE


def load_unigram_levels(results_dir: Path, table: str) -> dict[str, float]:
    """cell id -> the unigram level it is compared with ({} when never measured)."""
    path = unigram_path(results_dir, table)
    if not path.is_file():
        return {}
    levels = json.loads(path.read_text(encoding="utf-8"))["levels"]
    return {cell: float(lv["unigram_loss"]) for lv in levels for cell in lv["cells"]}


def base_state_path(results_dir: Path, table: str) -> Path:
    return Path(results_dir) / table / BASE_STATE_FILE


def load_base_state(results_dir: Path, table: str) -> dict[str, dict[str, Any]] | None:
    """The frontier optimizers' state on Transformer base, as measured so far (None: never)."""
    path = base_state_path(results_dir, table)
    return json.loads(path.read_text()) if path.is_file() else None
