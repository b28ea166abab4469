"""A cell's checkpoints: the step each holds, and the newest valid one to resume from."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from experiments.schema import (
    CHECKPOINT_SUBDIR,
    LAST_CHECKPOINT,
    REQUEUE_CHECKPOINT_GLOB,
    STEP_CHECKPOINT_GLOB,
)
from experiments.store.files import CellFileError


def checkpoint_step(path: Path) -> int:
    """The global step stored in a Lightning checkpoint; damaged: CellFileError naming it."""
    import torch

    try:
        if path.is_dir():  # an FSDP2 (DCP) checkpoint folder: Lightning keeps counters in meta.pt
            meta = torch.load(path / "meta.pt", map_location="cpu", weights_only=False)
            return int(meta["global_step"])
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(ckpt["global_step"])
    except Exception as err:  # torch raises RuntimeError, pickle/zip errors, KeyError ...
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CellFileError(f"checkpoint {path} is damaged ({text[:160]})") from None


def find_resume_checkpoint(out_dir: Path, log: Callable[[str], None] | None = None,
                           ) -> tuple[Path | None, int]:
    """The newest valid checkpoint of a cell and its global step ((None, 0): none).

    Candidates are ``checkpoints/last.ckpt``, ``checkpoints/step*.ckpt`` and Slurm requeue's
    ``hpc_ckpt_*.ckpt``. A damaged one is named (through ``log``) and the next newest is used.
    """
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    out_dir = Path(out_dir)
    folder = out_dir / CHECKPOINT_SUBDIR
    candidates = [folder / LAST_CHECKPOINT, *sorted(folder.glob(STEP_CHECKPOINT_GLOB)),
                  *sorted(out_dir.glob(REQUEUE_CHECKPOINT_GLOB))]
    found: list[tuple[int, float, Path]] = []
    damaged: list[str] = []
    for path in candidates:
        if not (path.is_file() or (path / "meta.pt").is_file()):
            continue
        try:
            found.append((checkpoint_step(path), path.stat().st_mtime, path))
        except CellFileError as err:
            damaged.append(str(err))
    if not found:
        for text in damaged:
            log(f"{text}; no valid checkpoint left: the cell starts from step 0")
        return None, 0
    step, _, path = max(found, key=lambda item: (item[0], item[1]))
    for text in damaged:
        log(f"{text}; resuming from {path} (step {step}) instead")
    return path, step
