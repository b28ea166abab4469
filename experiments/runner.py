"""Run one grid cell as a Lightning Trainer run: ``run_cell`` and ``python -m experiments.runner``.

Per cell, under ``<results_dir>/<cell_id>/`` (also the Trainer's default_root_dir, so Lightning's
Slurm auto-requeue writes its hpc_ckpt_N.ckpt there):

- ``config.json``   cell, scale preset, model config, data and Trainer settings (at start);
- ``metrics.jsonl`` a row every ``log_interval`` steps (train loss, lr, optimizer statistics,
                    tokens/s, wall time) and every ``val_interval`` steps (validation loss);
- ``checkpoints/``  ``last.ckpt`` (and the newest step checkpoint) every ``checkpoint_interval``;
- ``result.json``   final metrics and BLEU, written atomically when the cell ends;
- ``wandb/``        the W&B run (offline unless WANDB_API_KEY is set), same keys.

A cell whose result.json exists is returned as is. A cell with a checkpoint resumes from the
newest of ``checkpoints/last.ckpt`` and Lightning's ``hpc_ckpt_*.ckpt``; metrics.jsonl rows after
the checkpoint's step are dropped first, so the file ends up equal to an uninterrupted run's.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
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

from adafactor import optimizer_state_bytes
from data.datamodule import TranslationData
from experiments.calibration import resolve_cell_preset
from experiments.cells import Cell
from experiments.cli_values import parse_key_value
from experiments.optimizers import build_optimizer, step_size_schedule
from experiments.scales import ScalePreset
from experiments.tables import get_cell
from experiments.tracking import (
    CONFIG_FILE,
    METRICS_FILE,
    RESULT_FILE,
    MetricsWriter,
    atomic_write_json,
    cell_dir,
    make_wandb_logger,
    read_json,
    summary_keys,
)
from models.lightning_module import TranslationModule
from models.presets import model_config

log = logging.getLogger(__name__)

CHECKPOINT_SUBDIR = "checkpoints"


def peak_memory_bytes(device: torch.device) -> tuple[int, str]:
    """CUDA max_memory_allocated on GPU, else this process's max RSS (ru_maxrss is in KiB)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_memory_allocated"
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "max_rss"


def _cpu_time_s() -> float:
    """CPU seconds used by this process so far (user + system), imports included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _checkpoint_step(path: Path) -> int:
    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return int(ckpt["global_step"])


def find_resume_checkpoint(out_dir: Path) -> tuple[Path | None, int]:
    """The newest checkpoint of a cell (ours or Slurm requeue's) and its global step."""
    candidates = [out_dir / CHECKPOINT_SUBDIR / "last.ckpt", *out_dir.glob("hpc_ckpt_*.ckpt")]
    best: tuple[Path | None, int] = (None, 0)
    for path in candidates:
        if path.is_file():
            step = _checkpoint_step(path)
            if best[0] is None or step > best[1]:
                best = (path, step)
    return best


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

    def _emit(self, trainer: pl.Trainer, row: dict[str, Any]) -> None:
        if trainer.is_global_zero:
            self.writer.append(row)
            for logger in trainer.loggers:
                logger.log_metrics({k: v for k, v in row.items() if k != "step"},
                                   step=row["step"])

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: TranslationModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        pl_module.stop_clock()
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


def _trainer_kwargs(preset: ScalePreset, devices: int | str | None, accelerator: str,
                    num_nodes: int) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"accelerator": accelerator, "num_nodes": num_nodes}
    if devices is not None:
        kwargs["devices"] = devices
    n_devices = devices if isinstance(devices, int) else None
    if (n_devices is not None and n_devices > 1) or num_nodes > 1:
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
               cache_dir: Path | None) -> CellSetup:
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
        cache_dir=Path(cache_dir) if cache_dir is not None else results_dir / ".cache" / "vocab",
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
    trainer_kwargs = _trainer_kwargs(preset, devices, accelerator, num_nodes)
    config = build_config(cell, preset, model_cfg, steps, max_tokens, trainer_kwargs)
    out_dir = cell_dir(results_dir, cell.cell_id)
    return CellSetup(cell, preset, out_dir, steps, data, module, trainer_kwargs, config)


def train_cell(setup: CellSetup, writer: MetricsWriter, loggers: list[Any],
               resume_path: Path | None) -> tuple[pl.Trainer, CellMonitor]:
    """Fit the cell's module with Lightning (resuming from ``resume_path`` if given)."""
    preset, out_dir = setup.preset, setup.out_dir
    monitor = CellMonitor(writer, setup.data, preset, setup.steps)
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
        trainer.fit(setup.module, datamodule=setup.data,
                    ckpt_path=str(resume_path) if resume_path else None)
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
    }


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
) -> dict[str, Any]:
    """Train and evaluate one cell (resuming from its checkpoint) and return its result dict.

    ``cache_dir`` holds trained SentencePiece models (default ``<results_dir>/.cache``).
    """
    cell = get_cell(cell_id)
    preset = resolve_cell_preset(cell, scale, overrides)
    results_dir = Path(results_dir)
    out_dir = cell_dir(results_dir, cell.cell_id)
    result_path = out_dir / RESULT_FILE
    if result_path.is_file():
        return read_json(result_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    setup = build_cell(cell, preset, results_dir, devices=devices, accelerator=accelerator,
                       num_nodes=num_nodes, cache_dir=cache_dir)

    resume_path, resume_step = find_resume_checkpoint(out_dir)
    writer = MetricsWriter(out_dir / METRICS_FILE)
    is_rank_zero = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))) == 0 and int(
        os.environ.get("LOCAL_RANK", "0")) == 0
    if is_rank_zero:
        atomic_write_json(out_dir / CONFIG_FILE, setup.config)
        writer.truncate_after(resume_step if resume_path is not None else 0)

    loggers = []
    if use_wandb:
        loggers.append(make_wandb_logger(cell, preset.name, results_dir, setup.config))
    trainer, monitor = train_cell(setup, writer, loggers, resume_path)
    result = result_record(setup, trainer, monitor, started=started,
                           resume_step=resume_step if resume_path is not None else None)
    if trainer.is_global_zero:
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
        atomic_write_json(result_path, result)
        if loggers:
            import wandb

            wandb.finish()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.runner", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cell_id", help="e.g. table2/H/no-warmup/seed0")
    parser.add_argument("--scale", default="tiny", choices=("tiny", "small", "base"))
    parser.add_argument("--results-dir", type=Path, default=Path("results"))
    parser.add_argument("--set", dest="overrides", action="append", type=parse_key_value,
                        default=[], metavar="KEY=VALUE",
                        help="scale preset override (JSON value), e.g. --set steps=200")
    parser.add_argument("--devices", default=None,
                        help="number of devices per node (int) or 'auto'")
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--num-nodes", type=int, default=1)
    parser.add_argument("--no-wandb", action="store_true")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="SentencePiece model cache (default RESULTS_DIR/.cache/vocab)")
    args = parser.parse_args(argv)
    devices: int | str | None = args.devices
    if isinstance(devices, str) and devices.isdigit():
        devices = int(devices)
    result = run_cell(
        args.cell_id, scale=args.scale, results_dir=args.results_dir,
        overrides=dict(args.overrides), devices=devices, accelerator=args.accelerator,
        num_nodes=args.num_nodes, use_wandb=not args.no_wandb, cache_dir=args.cache_dir,
    )
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        print(json.dumps({k: result[k] for k in ("cell_id", "status", "bleu", "valid_loss",
                                                 "train_loss", "steps", "wall_time_s")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
