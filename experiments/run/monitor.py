"""The Lightning callback of a cell: metrics.jsonl rows (and their W&B mirror) every
``log_interval`` steps, a validation loss at step 0 and every ``val_interval``, and the stop on
request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from data.datamodule import TranslationData
from experiments.run.stop import CellInterrupted, stop_requested
from experiments.scales import ScalePreset
from experiments.schema import DIVERGED_FLAG, STEP
from experiments.store.files import MetricsWriter
from models.lightning_module import TranslationModule


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
                logger.log_metrics({k: v for k, v in row.items() if k != STEP}, step=row[STEP])

    def on_train_start(self, trainer: pl.Trainer, pl_module: TranslationModule) -> None:
        """The validation loss at step 0, before any update (not on a resume): the curve starts
        where the model does."""
        if trainer.global_step != 0:
            return
        # The loader's iterator draws a seed from the global RNG: forked, so the training run's
        # dropout masks and batches are those of a run without this evaluation.
        devices = [pl_module.device] if pl_module.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            row = {STEP: 0, "epoch": trainer.current_epoch,
                   **pl_module.evaluate(self._loader(), bleu=False)}
        self._emit(trainer, row)

    def _loader(self) -> Any:
        if self._val_loader is None:
            self._val_loader = self.data.val_dataloader()
        return self._val_loader

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
        row: dict[str, Any] = {STEP: step, "epoch": trainer.current_epoch}
        row.update(pl_module.interval_row())
        row["train_time_s"] = pl_module.train_time_s
        if diverged:
            row.update({DIVERGED_FLAG: True, "diverged_step": pl_module.diverged_step})
        elif step % self.preset.val_interval == 0 and step < self.max_steps:
            row.update(pl_module.evaluate(self._loader(), bleu=False))
        pl_module.reset_interval()
        self.last_row = row
        self._emit(trainer, row)
        if stop_requested() is not None and not diverged and step < self.max_steps:
            path = self.checkpoint_path
            if path is not None:
                trainer.save_checkpoint(path)
            raise CellInterrupted(self.cell_id, step, path)
