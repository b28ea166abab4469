"""Run one grid cell: ``run_cell`` (``python -m reproduce run``, and each local worker).

Per cell, under ``<results_dir>/<cell_id>/`` (also the Trainer's default_root_dir, so Lightning's
Slurm auto-requeue writes its hpc_ckpt_N.ckpt there): the files of experiments.schema, the
identity checked before reuse and resume is experiments.identity, and the W&B run (offline
unless WANDB_API_KEY is set) mirrors them with the same keys.

A finished cell of the same identity is returned as is; one of other settings is refused (or
discarded with ``fresh``). A cell with a checkpoint resumes from the newest valid one; rows of
metrics.jsonl after the checkpoint's step are dropped first, so the file ends up equal to an
uninterrupted run's. A stop request (SIGTERM/SIGINT, experiments.run.stop) checkpoints at the
next logged step and raises `CellInterrupted`.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from experiments.identity import check_cell_folder
from experiments.run.mirror import make_wandb_logger
from experiments.run.record import result_record, write_final
from experiments.run.trainer import build_cell, train_cell
from experiments.schema import CHECKPOINT_SUBDIR, CONFIG_FILE, METRICS_FILE, CellPlan
from experiments.store.checkpoints import find_resume_checkpoint
from experiments.store.files import (
    MetricsWriter,
    atomic_write_json,
    cell_dir,
    remove_leftover_temp_files,
)
from experiments.store.locks import cell_lock


class CellSetupError(ValueError):
    """A cell that cannot be built (bad corpus, split, model or vocabulary setting)."""


def _is_rank_zero() -> bool:
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))) == 0 and int(
        os.environ.get("LOCAL_RANK", "0")) == 0


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_cell(
    plan: CellPlan,
    *,
    results_dir: Path,
    devices: int | str | None = None,
    accelerator: str = "auto",
    num_nodes: int = 1,
    use_wandb: bool = True,
    cache_dir: Path | None = None,
    fresh: bool = False,
    wait_lock: bool = False,
    strategy: str = "auto",
) -> dict[str, Any]:
    """Train and evaluate one planned cell (resuming from its checkpoint); its result dict.

    The cell's lock is held throughout (LockHeld if another process trains it). Its identity is
    checked against the folder before a reuse or a resume (IdentityMismatch; ``fresh`` discards
    the folder's results and partial state instead). ``cache_dir`` holds the vocabulary and the
    binarized corpus (default ``<results_dir>/.cache/vocab``).
    """
    results_dir = Path(results_dir)
    rank_zero = _is_rank_zero()
    lock = cell_lock(results_dir, plan.cell_id)
    if rank_zero:
        lock.acquire(wait=wait_lock, log=_say)
    try:
        return _run_locked(plan, results_dir, devices=devices, accelerator=accelerator,
                           num_nodes=num_nodes, use_wandb=use_wandb, cache_dir=cache_dir,
                           fresh=fresh, rank_zero=rank_zero, strategy=strategy)
    finally:
        lock.release()


def _run_locked(plan: CellPlan, results_dir: Path, *, devices: int | str | None,
                accelerator: str, num_nodes: int, use_wandb: bool, cache_dir: Path | None,
                fresh: bool, rank_zero: bool, strategy: str) -> dict[str, Any]:
    started = time.time()
    cell, preset = plan.cell, plan.preset
    out_dir = cell_dir(results_dir, cell.cell_id)
    try:
        setup = build_cell(plan, results_dir, devices=devices, accelerator=accelerator,
                           num_nodes=num_nodes, cache_dir=cache_dir, strategy=strategy)
    except (ValueError, TypeError, KeyError, FileNotFoundError) as err:
        text = " ".join(str(err).split()) or type(err).__name__
        raise CellSetupError(f"{cell.cell_id} cannot be built with these settings: {text}"
                             ) from None
    state, result = check_cell_folder(out_dir, setup.config["identity"],
                                      fresh=fresh, act=rank_zero, log=_say)
    if state == "done" and result is not None:
        return result
    out_dir.mkdir(parents=True, exist_ok=True)
    if rank_zero:
        for folder in (out_dir, out_dir / CHECKPOINT_SUBDIR):
            for leftover in remove_leftover_temp_files(folder):
                _say(f"removed {leftover}, left by a writer that did not finish")
    resume_path, resume_step = find_resume_checkpoint(out_dir, log=_say)
    writer = MetricsWriter(out_dir / METRICS_FILE)
    if rank_zero:
        atomic_write_json(out_dir / CONFIG_FILE, setup.config)
        writer.truncate_after(resume_step if resume_path is not None else 0)

    loggers = []
    if use_wandb:
        loggers.append(make_wandb_logger(cell, preset.name, results_dir, setup.config))
    try:
        trainer, monitor = train_cell(setup, writer, loggers, resume_path)
        result = result_record(setup, trainer, monitor, started=started,
                               resume_step=resume_step if resume_path is not None else None)
        if trainer.is_global_zero:
            write_final(trainer, writer, result, out_dir)
    finally:
        if loggers:
            import wandb

            wandb.finish()
    return result
