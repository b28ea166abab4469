"""A cell's Trainer: the data, model, optimizer and step-size schedule built from its plan
(`build_cell`), the Lightning strategy and Trainer settings, and the fit (`train_cell`)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from data.datamodule import TranslationData
from experiments.grid.cells import Cell
from experiments.identity import cell_identity, data_fingerprints
from experiments.optimizers import build_optimizer, rescaled_decay, step_size_schedule
from experiments.run.monitor import CellMonitor
from experiments.run.staged_save import DirectCheckpointIO, StagedSaveTrainer
from experiments.run.stop import CellInterrupted
from experiments.scales import ScalePreset
from experiments.schema import (
    CACHE_SUBDIR,
    CHECKPOINT_SUBDIR,
    LAST_CHECKPOINT,
    STEP_CHECKPOINT,
    CellPlan,
)
from experiments.store.checkpoints import find_resume_checkpoint
from experiments.store.files import MetricsWriter, cell_dir
from models.lightning_module import TranslationModule
from models.presets import model_config

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


def trained_optimizer(cell: Cell, preset: ScalePreset) -> dict[str, Any]:
    """The optimizer spec the cell trains with: its own, with the decays rescaled under
    ``decay_time_rescale``."""
    if preset.decay_time_rescale:
        return rescaled_decay(cell.optimizer, preset.paper_time_factor)
    return cell.optimizer


def build_config(cell: Cell, preset: ScalePreset, model_cfg: Any, steps: int, max_tokens: int,
                 trainer_kwargs: dict[str, Any]) -> dict[str, Any]:
    """config.json: the cell, its preset, model config and Trainer settings (its identity is
    added by `build_cell`)."""
    return {
        "cell": cell.as_dict(),
        "scale": preset.as_dict(),
        "model": model_cfg.to_dict(),
        "steps": steps,
        "max_tokens": max_tokens,
        "optimizer": trained_optimizer(cell, preset),
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


def build_cell(plan: CellPlan, results_dir: Path, *, devices: int | str | None,
               accelerator: str, num_nodes: int, cache_dir: Path | None,
               strategy: str = "auto") -> CellSetup:
    """Seed, data (vocabulary trained or loaded), model, optimizer factory, step-size schedule."""
    cell, preset = plan.cell, plan.preset
    if preset.torch_threads is not None:
        torch.set_num_threads(preset.torch_threads)
    seed = preset.seed * 1000 + cell.seed
    pl.seed_everything(seed, workers=True, verbose=False)
    data = TranslationData(
        preset.corpus,
        corpus_path=preset.corpus_path,
        vocab_size=preset.vocab_size,
        max_tokens=plan.max_tokens,
        cache_dir=Path(cache_dir) if cache_dir is not None else Path(results_dir) / CACHE_SUBDIR,
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
        optimizer_factory=partial(build_optimizer, optimizer=trained_optimizer(cell, preset),
                                  schedule=cell.schedule, track_stats=True, model_cfg=model_cfg),
        lr_lambda=step_size,
        beam_size=preset.beam_size,
        length_penalty=preset.length_penalty,
        decode=preset.decode,
        blowup_factor=preset.blowup_factor,
    )
    trainer_kwargs = _trainer_kwargs(preset, devices, accelerator, num_nodes, strategy)
    described = {**trainer_kwargs, "strategy": strategy} if strategy == "fsdp2" else trainer_kwargs
    config = build_config(cell, preset, model_cfg, plan.steps, plan.max_tokens, described)
    config["identity"] = cell_identity(cell, preset, data_fingerprints(preset, vocab.model_path))
    out_dir = cell_dir(results_dir, cell.cell_id)
    return CellSetup(cell, preset, out_dir, plan.steps, data, module, trainer_kwargs, config)


def train_cell(setup: CellSetup, writer: MetricsWriter, loggers: list[Any],
               resume_path: Path | None) -> tuple[pl.Trainer, CellMonitor]:
    """Fit the cell's module with Lightning (resuming from ``resume_path`` if given)."""
    preset, out_dir = setup.preset, setup.out_dir
    monitor = CellMonitor(writer, setup.data, preset, setup.steps)
    monitor.cell_id = setup.cell.cell_id
    monitor.checkpoint_path = out_dir / CHECKPOINT_SUBDIR / LAST_CHECKPOINT
    checkpoint = ModelCheckpoint(
        dirpath=out_dir / CHECKPOINT_SUBDIR,
        filename=STEP_CHECKPOINT,
        auto_insert_metric_name=False,
        every_n_train_steps=preset.checkpoint_interval,
        save_top_k=1,
        save_last=True,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*predict_dataloader.*")
        trainer = StagedSaveTrainer(
            max_steps=setup.steps,
            max_epochs=-1,
            default_root_dir=str(out_dir),
            logger=loggers or False,
            callbacks=[monitor, checkpoint],
            plugins=[DirectCheckpointIO()],
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
