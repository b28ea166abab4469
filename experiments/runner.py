"""Run one grid cell as a Lightning Trainer run: ``run_cell`` (``python -m reproduce run``).

Per cell, under ``<results_dir>/<cell_id>/`` (also the Trainer's default_root_dir, so Lightning's
Slurm auto-requeue writes its hpc_ckpt_N.ckpt there); the files and their readers are
experiments.cell_files, the identity checked before reuse and resume is experiments.identity:

- ``config.json``   cell, scale preset, model config, Trainer settings and identity (at start);
- ``metrics.jsonl`` a row every ``log_interval`` steps (train loss, lr, optimizer statistics,
                    tokens/s, wall time) and every ``val_interval`` steps (validation loss);
- ``checkpoints/``  ``last.ckpt`` (and the newest step checkpoint) every ``checkpoint_interval``;
- ``result.json``   final metrics, BLEU and identity, written atomically when the cell ends;
- ``wandb/``        the W&B run (offline unless WANDB_API_KEY is set), same keys.

A finished cell of the same identity is returned as is; one of other settings is refused (or
discarded with ``fresh``). A cell with a checkpoint resumes from the newest valid one; rows of
metrics.jsonl after the checkpoint's step are dropped first, so the file ends up equal to an
uninterrupted run's. A stop request (SIGTERM/SIGINT, `request_stop`) checkpoints at the next
logged step and raises `CellInterrupted`.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from adafactor import optimizer_state_bytes
from data.datamodule import TranslationData
from experiments.calibration import resolve_cell_preset
from experiments.cell_files import (
    CHECKPOINT_SUBDIR,
    CONFIG_FILE,
    METRICS_FILE,
    RESULT_FILE,
    MetricsWriter,
    atomic_write_json,
    cell_dir,
    cell_lock,
    find_resume_checkpoint,
)
from experiments.cells import Cell
from experiments.identity import cell_identity, check_cell_folder, data_fingerprints
from experiments.optimizers import build_optimizer, step_size_schedule
from experiments.prepare import default_cache_dir
from experiments.scales import ScalePreset
from experiments.tables import get_cell
from experiments.tracking import make_wandb_logger, summary_keys
from models.lightning_module import TranslationModule
from models.presets import model_config

log = logging.getLogger(__name__)

def peak_memory_bytes(device: torch.device) -> tuple[int, str]:
    """CUDA max_memory_allocated on GPU, else this process's max RSS (ru_maxrss is in KiB)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_memory_allocated"
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "max_rss"


def _cpu_time_s() -> float:
    """CPU seconds used by this process so far (user + system), imports included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CellInterrupted(Exception):
    """The cell stopped on request (a signal) after saving a checkpoint it can resume from."""

    def __init__(self, cell_id: str, step: int, checkpoint: Path | None) -> None:
        self.cell_id, self.step, self.checkpoint = cell_id, step, checkpoint
        where = f"checkpoint {checkpoint.name}" if checkpoint else "no checkpoint yet"
        super().__init__(f"{cell_id} interrupted at step {step} ({where})")


class CellSetupError(ValueError):
    """A cell that cannot be built (bad corpus, split, model or vocabulary setting)."""


_STOP: dict[str, int | None] = {"signal": None}


def request_stop(signum: int = signal.SIGTERM, _frame: Any = None) -> None:
    """Ask the running cell to checkpoint at its next logged step and stop (a signal handler)."""
    if _STOP["signal"] is None:
        _STOP["signal"] = signum


def stop_requested() -> int | None:
    """The signal number that asked this process to stop, or None."""
    return _STOP["signal"]


def install_stop_handlers() -> None:
    """SIGTERM and SIGINT ask for a stop instead of killing the process mid-write.

    Lightning's own SIGTERM handler keeps this one (it calls the handler it found).
    """
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_stop)


class CellMonitor(Callback):
    """Writes metrics.jsonl rows (rank 0) and mirrors them to the Trainer's logger (W&B)."""

    def __init__(self, writer: MetricsWriter, data: TranslationData, preset: ScalePreset,
                 max_steps: int) -> None:
        self.writer = writer
        self.data = data
        self.preset = preset
        self.max_steps = max_steps
        self._val_loader = None
        self.last_row: dict[str, Any] = {}
        self.checkpoint_path: Path | None = None
        self.cell_id = ""

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint: a resume at max_steps still knows the last train_loss."""
        return {"last_row": dict(self.last_row)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_row = dict(state_dict.get("last_row", {}))

    def _emit(self, trainer: pl.Trainer, row: dict[str, Any]) -> None:
        if trainer.is_global_zero:
            self.writer.append(row)
            for logger in trainer.loggers:
                logger.log_metrics({k: v for k, v in row.items() if k != "step"},
                                   step=row["step"])

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: TranslationModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        pl_module.stop_clock()
        connector = getattr(trainer, "_signal_connector", None)
        if stop_requested() is not None and connector is not None:
            # Lightning would stop at the end of this batch; this callback stops at the next
            # logged step instead, with a checkpoint that resumes exactly (single process).
            connector.received_sigterm = False
        step = trainer.global_step
        diverged = pl_module.diverged
        if pl_module.interval_steps == 0 and not diverged:
            return
        at_log = step % self.preset.log_interval == 0 or step >= self.max_steps
        if not (at_log or diverged):
            return
        if (batch_idx + 1) % trainer.accumulate_grad_batches != 0 and not diverged:
            return  # mid-accumulation: the optimizer step has not happened yet
        row: dict[str, Any] = {"step": step, "epoch": trainer.current_epoch}
        row.update(pl_module.interval_row())
        row["train_time_s"] = pl_module.train_time_s
        if diverged:
            row.update(diverged=True, diverged_step=pl_module.diverged_step)
        elif step % self.preset.val_interval == 0 and step < self.max_steps:
            if self._val_loader is None:
                self._val_loader = self.data.val_dataloader()
            row.update(pl_module.evaluate(self._val_loader, bleu=False))
        pl_module.reset_interval()
        self.last_row = row
        self._emit(trainer, row)
        if stop_requested() is not None and not diverged and step < self.max_steps:
            path = self.checkpoint_path
            if path is not None:
                trainer.save_checkpoint(path)
            raise CellInterrupted(self.cell_id, step, path)


STRATEGIES = ("auto", "ddp", "fsdp2")


def _strategy(strategy: str, n_devices: int | None, num_nodes: int) -> Any:
    """The Lightning strategy of --strategy: "ddp", or FSDP2 through ModelParallelStrategy over
    every process (the module's configure_model shards the Transformer)."""
    if strategy not in STRATEGIES:
        raise ValueError(
            f"unknown strategy {strategy!r}; valid strategies: {', '.join(STRATEGIES)}"
        )
    if strategy == "ddp":
        return "ddp"
    from lightning.pytorch.strategies import ModelParallelStrategy

    return ModelParallelStrategy(data_parallel_size=(n_devices or 1) * num_nodes,
                                 tensor_parallel_size=1)


def _trainer_kwargs(preset: ScalePreset, devices: int | str | None, accelerator: str,
                    num_nodes: int, strategy: str = "auto") -> dict[str, Any]:
    kwargs: dict[str, Any] = {"accelerator": accelerator, "num_nodes": num_nodes}
    if devices is not None:
        kwargs["devices"] = devices
    n_devices = devices if isinstance(devices, int) else None
    if strategy != "auto":
        kwargs["strategy"] = _strategy(strategy, n_devices, num_nodes)
    elif (n_devices is not None and n_devices > 1) or num_nodes > 1:
        kwargs["strategy"] = "ddp"
    elif accelerator == "cpu" and n_devices in (None, 1):
        kwargs["devices"] = 1
    return kwargs


def build_config(cell: Cell, preset: ScalePreset, model_cfg: Any, steps: int, max_tokens: int,
                 trainer_kwargs: dict[str, Any]) -> dict[str, Any]:
    return {
        "cell": cell.as_dict(),
        "scale": preset.as_dict(),
        "model": model_cfg.to_dict(),
        "steps": steps,
        "max_tokens": max_tokens,
        "trainer": {k: str(v) for k, v in trainer_kwargs.items()},
        "torch_version": torch.__version__,
        "lightning_version": pl.__version__,
    }


@dataclass
class CellSetup:
    """Everything one cell trains with, built before the Trainer starts."""

    cell: Cell
    preset: ScalePreset
    out_dir: Path
    steps: int
    data: TranslationData
    module: TranslationModule
    trainer_kwargs: dict[str, Any]
    config: dict[str, Any]


def build_cell(cell: Cell, preset: ScalePreset, results_dir: Path, *,
               devices: int | str | None, accelerator: str, num_nodes: int,
               cache_dir: Path | None, strategy: str = "auto") -> CellSetup:
    """Seed, data (vocabulary trained or loaded), model, optimizer factory, step-size schedule."""
    if preset.torch_threads is not None:
        torch.set_num_threads(preset.torch_threads)
    seed = preset.seed * 1000 + cell.seed
    pl.seed_everything(seed, workers=True, verbose=False)
    steps = max(1, round(preset.steps * cell.steps_factor))
    max_tokens = max(1, round(preset.max_tokens * cell.max_tokens_factor))
    data = TranslationData(
        preset.corpus,
        corpus_path=preset.corpus_path,
        vocab_size=preset.vocab_size,
        max_tokens=max_tokens,
        cache_dir=Path(cache_dir) if cache_dir is not None else default_cache_dir(results_dir),
        seed=seed,
        max_len=preset.max_len,
        eval_split=preset.eval_split,
        eval_max_sentences=preset.eval_max_sentences,
        num_workers=preset.num_workers,
    )
    data.prepare_data()
    vocab = data.vocab
    model_cfg = model_config(
        preset.model, vocab.size, **{**preset.model_overrides, **cell.model_overrides}
    )
    step_size = step_size_schedule(
        cell.schedule, time_factor=preset.paper_time_factor, lr_scale=preset.lr_scale,
        relative_lr_scale=preset.relative_lr_scale,
        d_model=model_cfg.d_model,
    )
    module = TranslationModule(
        model_cfg,
        vocab,
        optimizer_factory=partial(build_optimizer, optimizer=cell.optimizer,
                                  schedule=cell.schedule, track_stats=True, model_cfg=model_cfg),
        lr_lambda=step_size,
        beam_size=preset.beam_size,
        length_penalty=preset.length_penalty,
        decode=preset.decode,
        blowup_factor=preset.blowup_factor,
    )
    trainer_kwargs = _trainer_kwargs(preset, devices, accelerator, num_nodes, strategy)
    described = {**trainer_kwargs, "strategy": strategy} if strategy == "fsdp2" else trainer_kwargs
    config = build_config(cell, preset, model_cfg, steps, max_tokens, described)
    config["identity"] = cell_identity(cell, preset, data_fingerprints(preset, vocab.model_path))
    out_dir = cell_dir(results_dir, cell.cell_id)
    return CellSetup(cell, preset, out_dir, steps, data, module, trainer_kwargs, config)


def train_cell(setup: CellSetup, writer: MetricsWriter, loggers: list[Any],
               resume_path: Path | None) -> tuple[pl.Trainer, CellMonitor]:
    """Fit the cell's module with Lightning (resuming from ``resume_path`` if given)."""
    preset, out_dir = setup.preset, setup.out_dir
    monitor = CellMonitor(writer, setup.data, preset, setup.steps)
    monitor.cell_id = setup.cell.cell_id
    monitor.checkpoint_path = out_dir / CHECKPOINT_SUBDIR / "last.ckpt"
    checkpoint = ModelCheckpoint(
        dirpath=out_dir / CHECKPOINT_SUBDIR,
        filename="step{step}",
        auto_insert_metric_name=False,
        every_n_train_steps=preset.checkpoint_interval,
        save_top_k=1,
        save_last=True,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*predict_dataloader.*")
        trainer = pl.Trainer(
            max_steps=setup.steps,
            max_epochs=-1,
            default_root_dir=str(out_dir),
            logger=loggers or False,
            callbacks=[monitor, checkpoint],
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            use_distributed_sampler=False,
            precision=preset.precision,
            accumulate_grad_batches=preset.accumulate_grad_batches,
            deterministic=False,
            log_every_n_steps=preset.log_interval,
            **setup.trainer_kwargs,
        )
        try:
            trainer.fit(setup.module, datamodule=setup.data,
                        ckpt_path=str(resume_path) if resume_path else None)
        except SIGTERMException:  # Lightning's own stop (e.g. DDP): resume from the last one
            path, step = find_resume_checkpoint(out_dir)
            raise CellInterrupted(setup.cell.cell_id, step, path) from None
    return trainer, monitor


def result_record(setup: CellSetup, trainer: pl.Trainer, monitor: CellMonitor, *,
                  started: float, resume_step: int | None) -> dict[str, Any]:
    """Evaluate the trained module (BLEU unless it diverged) and return result.json's dict."""
    cell, preset, module = setup.cell, setup.preset, setup.module
    status = "diverged" if module.diverged else "ok"
    evaluation: dict[str, Any] = {}
    if status == "ok":
        evaluation = module.evaluate(setup.data.val_dataloader(), bleu=True)
        if not torch.isfinite(torch.tensor(evaluation["valid_loss"])):
            status = "diverged"
    optimizer = trainer.optimizers[0]
    peak, peak_kind = peak_memory_bytes(module.device)
    last = monitor.last_row
    return {
        "cell_id": cell.cell_id,
        "table": cell.table,
        "row": cell.row,
        "column": cell.column,
        "warmup": cell.warmup,
        "seed": cell.seed,
        "scale": preset.name,
        "status": status,
        "diverged_step": module.diverged_step,
        "bleu": evaluation.get("bleu") if status == "ok" else None,
        "bleu_signature": evaluation.get("bleu_signature"),
        "tokenized_bleu": evaluation.get("tokenized_bleu") if status == "ok" else None,
        "tokenized_bleu_signature": evaluation.get("tokenized_bleu_signature"),
        "bleu_recipe": {
            "split": preset.eval_split,
            "corpus": preset.corpus,
            "max_sentences": preset.eval_max_sentences,
            "sentences": evaluation.get("eval_sentences"),
            "decode": preset.decode,
            "beam": preset.beam_size if preset.decode == "beam" else 1,
            "length_penalty": preset.length_penalty if preset.decode == "beam" else None,
        },
        "paper_bleu": cell.paper_bleu,
        "valid_loss": evaluation.get("valid_loss"),
        "train_loss": last.get("train_loss"),
        "optimizer_state_bytes": optimizer_state_bytes(optimizer),
        "parameter_bytes": sum(p.numel() * p.element_size() for p in module.parameters()),
        "peak_memory_bytes": peak,
        "peak_memory_kind": peak_kind,
        "tokens_per_s": module.total_tokens / max(module.train_time_s, 1e-9),
        "train_time_s": module.train_time_s,
        "wall_time_s": time.time() - started,
        "process_cpu_time_s": _cpu_time_s(),
        "steps": trainer.global_step,
        "resumed_from_step": resume_step,
        "identity": setup.config["identity"],
    }


def _write_final(trainer: pl.Trainer, writer: MetricsWriter, result: dict[str, Any],
                 out_dir: Path) -> None:
    """The final metrics row, the W&B summary, then result.json (atomic; a resume that finds
    no result.json drops the final row first, so there is never a second one)."""
    final_row = {"step": trainer.global_step, "final": True, **{
        k: result[k] for k in ("valid_loss", "bleu", "tokenized_bleu", "status")}}
    writer.append(final_row)
    for logger in trainer.loggers:
        logger.log_metrics({k: v for k, v in final_row.items()
                            if k != "step" and isinstance(v, int | float)},
                           step=trainer.global_step)
        experiment = getattr(logger, "experiment", None)
        if experiment is not None and hasattr(experiment, "summary"):
            experiment.summary.update(summary_keys(result))
    atomic_write_json(out_dir / RESULT_FILE, result)


def _is_rank_zero() -> bool:
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))) == 0 and int(
        os.environ.get("LOCAL_RANK", "0")) == 0


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_cell(
    cell_id: str,
    *,
    scale: str,
    results_dir: Path,
    overrides: dict[str, Any] | None = None,
    devices: int | str | None = None,
    accelerator: str = "auto",
    num_nodes: int = 1,
    use_wandb: bool = True,
    cache_dir: Path | None = None,
    fresh: bool = False,
    wait_lock: bool = False,
    strategy: str = "auto",
) -> dict[str, Any]:
    """Train and evaluate one cell (resuming from its checkpoint) and return its result dict.

    The cell's lock is held throughout (LockHeld if another process trains it). Its identity is
    checked against the folder before a reuse or a resume (IdentityMismatch; ``fresh`` discards
    the folder's results and partial state instead). ``cache_dir`` holds trained SentencePiece
    models (default ``<results_dir>/.cache/vocab``).
    """
    cell = get_cell(cell_id)
    preset = resolve_cell_preset(cell, scale, overrides)
    results_dir = Path(results_dir)
    out_dir = cell_dir(results_dir, cell.cell_id)
    rank_zero = _is_rank_zero()
    lock = cell_lock(results_dir, cell.cell_id)
    if rank_zero:
        lock.acquire(wait=wait_lock, log=_say)
    try:
        return _run_locked(cell, preset, results_dir, out_dir, devices=devices,
                           accelerator=accelerator, num_nodes=num_nodes, use_wandb=use_wandb,
                           cache_dir=cache_dir, fresh=fresh, rank_zero=rank_zero,
                           strategy=strategy)
    finally:
        lock.release()


def _run_locked(cell: Cell, preset: ScalePreset, results_dir: Path, out_dir: Path, *,
                devices: int | str | None, accelerator: str, num_nodes: int, use_wandb: bool,
                cache_dir: Path | None, fresh: bool, rank_zero: bool,
                strategy: str = "auto") -> dict[str, Any]:
    started = time.time()
    try:
        setup = build_cell(cell, preset, results_dir, devices=devices, accelerator=accelerator,
                           num_nodes=num_nodes, cache_dir=cache_dir, strategy=strategy)
    except (ValueError, TypeError, KeyError, FileNotFoundError) as err:
        text = " ".join(str(err).split()) or type(err).__name__
        raise CellSetupError(f"{cell.cell_id} cannot be built with these settings: {text}"
                             ) from None
    state, result = check_cell_folder(out_dir, setup.config["identity"], preset.name,
                                      fresh=fresh, act=rank_zero, log=_say)
    if state == "done" and result is not None:
        return result
    out_dir.mkdir(parents=True, exist_ok=True)
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
            _write_final(trainer, writer, result, out_dir)
    finally:
        if loggers:
            import wandb

            wandb.finish()
    return result
