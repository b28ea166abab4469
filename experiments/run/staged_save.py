"""Checkpoints written beside their final name and swapped in whole.

Lightning writes a checkpoint file to the system temp folder and moves it into place (a copy
when the results live on another file system, so a kill mid-copy leaves half a file), and it
writes an FSDP2 (DCP) checkpoint folder in place over the previous one, so a kill mid-save
leaves the old ``meta.pt`` beside shards of two steps. Here every save goes to
``.<name>.staging.tmp`` in the checkpoint's own folder and is renamed over the old one only
once every rank has written it. A killed save leaves only that staging name, which the cell
lock's next holder removes (`experiments.store.files.remove_leftover_temp_files`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from experiments.store.files import fsync_dir, remove_path

STAGING_SUFFIX = ".staging.tmp"
RETIRED_SUFFIX = ".retired.tmp"


def staging_path(final: Path) -> Path:
    """Where a save to ``final`` is written first."""
    return final.with_name(f".{final.name}{STAGING_SUFFIX}")


def swap_into_place(staged: Path, final: Path) -> None:
    """Rename ``staged`` (a file or a DCP folder) to ``final``, replacing what was there."""
    if staged.is_dir() and (final.exists() or final.is_symlink()):
        retired = final.with_name(f".{final.name}{RETIRED_SUFFIX}")
        remove_path(retired, ignore_errors=False)
        os.rename(final, retired)  # a folder cannot be renamed over a non-empty one
        os.rename(staged, final)
        remove_path(retired, ignore_errors=False)
    else:
        if final.is_dir() and not final.is_symlink():
            remove_path(final, ignore_errors=False)
        os.replace(staged, final)
    fsync_dir(final.parent)


class DirectCheckpointIO(TorchCheckpointIO):
    """torch.save straight to the (already staged) path, no detour through the temp folder."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())


class StagedSaveTrainer(pl.Trainer):
    """A Trainer that stages every checkpoint save: ModelCheckpoint's, a stop's, Slurm requeue's."""

    def save_checkpoint(self, filepath: Any, weights_only: bool | None = None,
                        storage_options: Any | None = None) -> None:
        final = Path(filepath)
        staged = staging_path(final)
        if self.is_global_zero:
            remove_path(staged, ignore_errors=False)  # a save killed at this name earlier
        self.strategy.barrier("staged_save.clear")
        super().save_checkpoint(staged, weights_only=weights_only,
                                storage_options=storage_options)  # ends at a barrier
        if self.is_global_zero:
            swap_into_place(staged, final)
        self.strategy.barrier("staged_save.swap")
