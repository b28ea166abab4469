"""Checks made before the first worker starts, so bad input fails once, up front, clearly.

``check_folder`` (writable, with free space) and ``preflight_cell``: build one planned cell's
data (corpus, vocabulary, evaluation split), model and Trainer settings without training.
Errors are ``PreflightError`` naming the setting or folder.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from experiments.schema import CellPlan

# At least this much free space in a results folder (a tiny cell's checkpoints take ~10 MB).
MIN_FREE_BYTES = 64 * 1024 * 1024


class PreflightError(ValueError):
    """A folder or setting that would fail every cell: the message names it."""


def check_folder(path: Path, what: str, *, min_free_bytes: int = 0) -> None:
    """``path`` exists or can be created, accepts a file, and has ``min_free_bytes`` free."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as err:
        raise PreflightError(f"{what} {path} is not writable ({err.strerror or err})") from None
    free = shutil.disk_usage(path).free
    if free < min_free_bytes:
        raise PreflightError(f"{what} {path} has {free / 2**20:.0f} MiB free, less than the "
                             f"{min_free_bytes / 2**20:.0f} MiB one cell needs")


def preflight_cell(plan: CellPlan, results_dir: Path, *, cache_dir: Path | None = None,
                   accelerator: str = "cpu") -> dict[str, Any]:
    """Build ``plan``'s cell without training (data, vocabulary, eval split, model, Trainer) and
    return the data fingerprints its identity uses. Any bad setting is a PreflightError."""
    import lightning.pytorch as pl
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from experiments.identity import data_fingerprints
    from experiments.run.trainer import build_cell

    preset = plan.preset
    try:
        setup = build_cell(plan, Path(results_dir), devices=1, accelerator=accelerator,
                           num_nodes=1, cache_dir=cache_dir)
        setup.data.setup("validate")  # the evaluation split exists and encodes
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "srun is available": not for a check
            pl.Trainer(precision=preset.precision, logger=False, enable_checkpointing=False,
                       enable_progress_bar=False, enable_model_summary=False,
                       **setup.trainer_kwargs)
    except (ValueError, TypeError, KeyError, OSError, MisconfigurationException) as err:
        text = " ".join(str(err).split()) or type(err).__name__
        raise PreflightError(f"{plan.cell_id} cannot be built with these settings: "
                             f"{text}") from None
    return data_fingerprints(preset, setup.data.vocab.model_path)
