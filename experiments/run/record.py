"""A finished cell's record: the final evaluation, result.json's dict, and the last metrics
row, the W&B summary and result.json written in that order."""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from adafactor import optimizer_state_bytes
from experiments.measure.plateau import plateau_maxima, window_steps
from experiments.run.mirror import summary_keys
from experiments.run.monitor import CellMonitor
from experiments.run.trainer import CellSetup
from experiments.schema import (
    BLEU,
    FINAL,
    FINAL_ROW_KEYS,
    METRICS_FILE,
    PLATEAU_MAX,
    RESULT_FILE,
    STEP,
    TOKENIZED_BLEU,
    VALID_LOSS,
    Status,
    bleu_recipe,
)
from experiments.store.files import MetricsWriter, atomic_write_json, read_metrics


def peak_memory_bytes(device: torch.device) -> tuple[int, str]:
    """CUDA max_memory_allocated on GPU, else this process's max RSS (ru_maxrss is in KiB)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_memory_allocated"
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "max_rss"


def _cpu_time_s() -> float:
    """CPU seconds used by this process so far (user + system), imports included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def result_record(setup: CellSetup, trainer: pl.Trainer, monitor: CellMonitor, *,
                  started: float, resume_step: int | None) -> dict[str, Any]:
    """Evaluate the trained module (BLEU unless it diverged) and return result.json's dict."""
    cell, preset, module = setup.cell, setup.preset, setup.module
    status = Status.DIVERGED if module.diverged else Status.OK
    evaluation: dict[str, Any] = {}
    if status == Status.OK:
        evaluation = module.evaluate(setup.data.val_dataloader(), bleu=True)
        if not torch.isfinite(torch.tensor(evaluation[VALID_LOSS])):
            status = Status.DIVERGED
            module.diverged_reason = "non-finite validation loss"
    optimizer = trainer.optimizers[0]
    peak, peak_kind = peak_memory_bytes(module.device)
    last = monitor.last_row
    ok = status == Status.OK
    return {
        "cell_id": cell.cell_id,
        "table": cell.table,
        "row": cell.row,
        "column": cell.column,
        "warmup": cell.warmup,
        "seed": cell.seed,
        "scale": preset.name,
        "status": status.value,
        "diverged_step": module.diverged_step,
        "diverged_reason": module.diverged_reason if status == Status.DIVERGED else None,
        BLEU: evaluation.get(BLEU) if ok else None,
        "bleu_signature": evaluation.get("bleu_signature"),
        TOKENIZED_BLEU: evaluation.get(TOKENIZED_BLEU) if ok else None,
        "tokenized_bleu_signature": evaluation.get("tokenized_bleu_signature"),
        "bleu_recipe": {**bleu_recipe(preset), "sentences": evaluation.get("eval_sentences")},
        "paper_bleu": cell.paper_bleu,
        VALID_LOSS: evaluation.get(VALID_LOSS),
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
        PLATEAU_MAX: plateau_maxima(
            read_metrics(setup.out_dir / METRICS_FILE), setup.steps,
            window_steps(preset.decay_time_rescale, preset.paper_time_factor)),
        "identity": setup.config["identity"],
    }


def write_final(trainer: pl.Trainer, writer: MetricsWriter, result: dict[str, Any],
                out_dir: Path) -> None:
    """The final metrics row, the W&B summary, then result.json (atomic; a resume that finds
    no result.json drops the final row first, so there is never a second one)."""
    final_row = {STEP: trainer.global_step, FINAL: True, **{k: result[k] for k in FINAL_ROW_KEYS}}
    writer.append(final_row)
    for logger in trainer.loggers:
        logger.log_metrics({k: v for k, v in final_row.items()
                            if k != STEP and isinstance(v, int | float)},
                           step=trainer.global_step)
        experiment = getattr(logger, "experiment", None)
        if experiment is not None and hasattr(experiment, "summary"):
            experiment.summary.update(summary_keys(result))
    atomic_write_json(out_dir / RESULT_FILE, result)
