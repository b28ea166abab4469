"""Training throughput: a bare PyTorch loop vs the TranslationModule under a Lightning Trainer.

    python -m experiments.benchmarks.training_throughput [--preset small] [--max-tokens 1024]
        [--steps 20] [--repeats 3] [--warmup-steps 2] [--threads 2] [--json PATH]
        [--override KEY=VALUE ... | --plain-preset]

The defaults are the model and batch size of ``experiments.benchmarks.cpu_multi30k`` (the
``small`` preset with its ``CPU_OVERRIDES``, i.e. no dropout, and batches of at most 1024 tokens),
so the figures sit beside that run's training tokens/s. ``--override`` replaces those overrides;
``--plain-preset`` uses the preset as it is (dropout 0.1 for ``small``).

What is compared (everything but the training loop is shared):
* Model: ``models.presets.model_config(preset, vocab_size, **overrides)`` -> ``Transformer``. Every
  run starts from one saved initial ``state_dict`` and the same seed.
* Batches: the first ``--steps`` batches of ``data.datamodule.TranslationData`` on real Multi30k
  train (SentencePiece vocab, token-budget batching, shuffle seed 0), built once before any timing
  and reused by every run in the same order, so both loops see identical tensors.
* Optimizer: ``adafactor.Adafactor(params)`` with the paper's defaults (Algorithm 6: factored
  second moment, no momentum, beta2hat_t = 1 - t^-0.8, update clipping d = 1, relative step
  rho_t = min(1e-2, 1/sqrt t), i.e. ``warmup_init=False``, parameter scale). A fresh optimizer
  per run.
* (a) bare: ``logits = model(src, tgt_in)``; ``models.loss.label_smoothed_cross_entropy``;
  ``(loss_sum / target_tokens).backward()``; ``opt.step()``; ``opt.zero_grad(set_to_none=True)``.
* (b) lightning: ``models.lightning_module.TranslationModule`` (same model weights, the same
  optimizer through ``optimizer_factory``) fitted by a ``lightning.pytorch.Trainer`` on CPU with
  no logger, no checkpointing, no progress bar, no model summary, no validation, over the same
  list of batch dicts. Its per-step extras (token counts, the finiteness check of the loss that
  reads one value back to the host, gradient division by the token count in
  ``on_before_optimizer_step``, Lightning's loop and hooks) are what the ratio measures.

Method: the two loops alternate (bare, lightning, lightning, bare, ...) for ``--repeats`` rounds
in one process, so slow drifts in background load hit both alike. In every run the first
``--warmup-steps`` steps are not timed (they allocate optimizer state and warm allocator caches);
the clock runs from the start of step ``warmup`` to the end of the last step: for bare around the
loop, for Lightning from ``on_train_batch_start`` of batch ``warmup`` to ``on_train_batch_end`` of
the last batch. Trainer construction plus ``fit`` set-up before the first batch and tear-down
after the last one are reported separately as ``fit overhead`` (a one-off cost per fit).
Throughput = tokens in the timed batches / timed seconds, tokens counted without padding: target
tokens (``tgt_out`` != pad) and source + target tokens. The same window is also measured in
process CPU seconds (``time.process_time``, all threads): tokens per CPU-second is less sensitive
to other processes on a shared machine than wall-clock tokens/s. The table gives the medians over
repeats and the ratios of the medians, Lightning / bare (1.0 = no overhead).
Intra-op threads: ``--threads`` (``torch.set_num_threads``), read again inside the Trainer.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from adafactor import Adafactor
from data.datamodule import TranslationData
from experiments.benchmarks.cpu_multi30k import CPU_OVERRIDES
from experiments.scales import SHARED_DATA, parse_key_value
from experiments.store.files import atomic_write_json
from models.config import ModelConfig
from models.lightning_module import TranslationModule
from models.loss import label_smoothed_cross_entropy
from models.presets import model_config
from models.transformer import Transformer

DEFAULT_CORPUS_PATH = SHARED_DATA / "multi30k"
DEFAULT_CACHE_DIR = Path(".cache") / "benchmarks" / "vocab"
LOOPS = ("bare", "lightning")


def quiet_lightning() -> None:
    """Silence Lightning's start-up banners (GPU/TPU availability, tips, the srun hint)."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*srun.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")


def paper_adafactor(params: Any) -> Adafactor:
    """Adafactor with the paper's defaults (relative step without warmup, see module docstring)."""
    return Adafactor(params)


@dataclass
class BenchmarkSetup:
    """What both loops share: config, initial weights, vocab and the fixed batches."""

    cfg: ModelConfig
    vocab: Any
    initial_state: dict[str, torch.Tensor]
    batches: list[dict[str, Any]]
    seed: int
    target_tokens: list[int] = field(default_factory=list)
    source_tokens: list[int] = field(default_factory=list)


def build_setup(
    *,
    preset: str = "small",
    max_tokens: int = 1024,
    steps: int = 20,
    vocab_size: int = 8000,
    corpus_path: Path | str = DEFAULT_CORPUS_PATH,
    cache_dir: Path | str = DEFAULT_CACHE_DIR,
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
) -> BenchmarkSetup:
    """Multi30k through TranslationData, the first ``steps`` training batches, one initial model."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    corpus_path = Path(corpus_path)
    if not (corpus_path / "train.en").is_file():
        raise FileNotFoundError(
            f"Multi30k not found: {corpus_path / 'train.en'} is missing "
            "(pass --corpus-path or set ADAFACTOR_SHARED_DATA)"
        )
    data = TranslationData(
        "multi30k", corpus_path=corpus_path, vocab_size=vocab_size, max_tokens=max_tokens,
        cache_dir=cache_dir, seed=seed,
    )
    data.prepare_data()
    data.setup("fit")
    batches: list[dict[str, Any]] = []
    for batch in data.train_dataloader():
        batches.append(batch)
        if len(batches) == steps:
            break
    if len(batches) < steps:
        raise ValueError(f"Multi30k train has only {len(batches)} batches of {max_tokens} tokens")
    vocab = data.vocab
    cfg = model_config(preset, vocab.size, **(overrides or {}))
    torch.manual_seed(seed)
    initial_state = copy.deepcopy(Transformer(cfg, pad_id=vocab.pad_id).state_dict())
    setup = BenchmarkSetup(cfg, vocab, initial_state, batches, seed)
    for batch in batches:
        setup.target_tokens.append(int((batch["tgt_out"] != vocab.pad_id).sum()))
        setup.source_tokens.append(int((batch["src"] != vocab.pad_id).sum()))
    return setup


def _fresh_model(setup: BenchmarkSetup) -> Transformer:
    model = Transformer(setup.cfg, pad_id=setup.vocab.pad_id)
    model.load_state_dict(setup.initial_state)
    model.train()
    return model


RunOutput = tuple[float, dict[str, Any], Transformer]


def run_bare(setup: BenchmarkSetup, warmup_steps: int) -> RunOutput:
    """Seconds of steps ``warmup_steps..end`` of a plain PyTorch loop, details, trained model."""
    model = _fresh_model(setup)
    optimizer = paper_adafactor(model.parameters())
    pad_id, smoothing = setup.vocab.pad_id, setup.cfg.label_smoothing
    torch.manual_seed(setup.seed)
    start, cpu_start = time.perf_counter(), time.process_time()
    for i, batch in enumerate(setup.batches):
        if i == warmup_steps:
            start, cpu_start = time.perf_counter(), time.process_time()
        logits = model(batch["src"], batch["tgt_in"])
        loss_sum, _, n_tokens = label_smoothed_cross_entropy(
            logits, batch["tgt_out"], smoothing, pad_id
        )
        (loss_sum / n_tokens).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return seconds, {"cpu_seconds": cpu_seconds, "threads": torch.get_num_threads()}, model


class _StepClock(Callback):
    """Times from the start of batch ``warmup_steps`` to the end of the last batch."""

    def __init__(self, warmup_steps: int, last_batch: int) -> None:
        self.warmup_steps, self.last_batch = warmup_steps, last_batch
        self.first_start: float | None = None
        self.start: float | None = None
        self.end: float | None = None
        self.threads: int | None = None
        self.cpu_start = self.cpu_end = 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any,
                             batch_idx: int) -> None:
        if batch_idx == 0:
            self.first_start = time.perf_counter()
        if batch_idx == self.warmup_steps:
            self.threads = torch.get_num_threads()
            self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if batch_idx == self.last_batch:
            self.end, self.cpu_end = time.perf_counter(), time.process_time()


class FixedBatches:
    """The prepared batches as one iterable "loader" (a bare list would read as many loaders)."""

    def __init__(self, batches: list[dict[str, Any]]) -> None:
        self.batches = batches

    def __iter__(self) -> Any:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def run_lightning(setup: BenchmarkSetup, warmup_steps: int) -> RunOutput:
    """The same for TranslationModule under a Lightning Trainer (``fit_overhead_s`` added)."""
    module = TranslationModule(setup.cfg, setup.vocab, optimizer_factory=paper_adafactor)
    module.model.load_state_dict(setup.initial_state)
    n = len(setup.batches)
    clock = _StepClock(warmup_steps, n - 1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*predict_dataloader.*")
        fit_start = time.perf_counter()
        trainer = pl.Trainer(
            accelerator="cpu", devices=1, max_steps=n, max_epochs=1, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            num_sanity_val_steps=0, limit_val_batches=0, callbacks=[clock],
            use_distributed_sampler=False,
        )
        torch.manual_seed(setup.seed)
        trainer.fit(module, train_dataloaders=FixedBatches(setup.batches))
        fit_end = time.perf_counter()
    if clock.first_start is None or clock.start is None or clock.end is None or (
        trainer.global_step != n
    ):
        raise RuntimeError(
            f"Lightning ran {trainer.global_step} of {n} steps; the timing window was not closed"
        )
    overhead = (clock.first_start - fit_start) + (fit_end - clock.end)
    details = {"cpu_seconds": clock.cpu_end - clock.cpu_start, "threads": clock.threads,
               "fit_overhead_s": overhead}
    return clock.end - clock.start, details, module.model


RUNNERS: dict[str, Callable[[BenchmarkSetup, int], RunOutput]] = {
    "bare": run_bare,
    "lightning": run_lightning,
}


def benchmark(setup: BenchmarkSetup, *, repeats: int = 3, warmup_steps: int = 2) -> dict[str, Any]:
    """Alternate the loops ``repeats`` times; medians of tokens/s and the Lightning/bare ratio."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if not 0 <= warmup_steps < len(setup.batches):
        raise ValueError(
            f"warmup_steps must be in [0, {len(setup.batches)}) for {len(setup.batches)} "
            f"steps, got {warmup_steps}"
        )
    tgt = sum(setup.target_tokens[warmup_steps:])
    both = tgt + sum(setup.source_tokens[warmup_steps:])
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in LOOPS}
    for r in range(repeats):
        order = LOOPS if r % 2 == 0 else tuple(reversed(LOOPS))
        for name in order:
            seconds, extra, _ = RUNNERS[name](setup, warmup_steps)
            runs[name].append({"seconds": seconds, "target_tokens_per_s": tgt / seconds,
                               "tokens_per_s": both / seconds,
                               "tokens_per_cpu_s": both / extra["cpu_seconds"], **extra})
    summary: dict[str, Any] = {}
    for name in LOOPS:
        summary[name] = {
            "median_target_tokens_per_s": statistics.median(
                x["target_tokens_per_s"] for x in runs[name]),
            "median_tokens_per_s": statistics.median(x["tokens_per_s"] for x in runs[name]),
            "median_tokens_per_cpu_s": statistics.median(
                x["tokens_per_cpu_s"] for x in runs[name]),
            "median_step_s": statistics.median(x["seconds"] for x in runs[name])
            / (len(setup.batches) - warmup_steps),
            "runs": runs[name],
        }
    ratio = summary["lightning"]["median_tokens_per_s"] / summary["bare"]["median_tokens_per_s"]
    cpu_ratio = (summary["lightning"]["median_tokens_per_cpu_s"]
                 / summary["bare"]["median_tokens_per_cpu_s"])
    return {
        "model": setup.cfg.to_dict(),
        "parameters": sum(t.numel() for t in setup.initial_state.values()),
        "optimizer": "adafactor.Adafactor() paper defaults (relative step, warmup_init=False)",
        "steps": len(setup.batches),
        "warmup_steps": warmup_steps,
        "timed_target_tokens": tgt,
        "timed_tokens": both,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "loops": summary,
        "ratio_lightning_over_bare": ratio,
        "cpu_ratio_lightning_over_bare": cpu_ratio,
        "load_average": os.getloadavg(),
    }


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of the medians and the ratios."""
    lines = [
        f"{'loop':<10} {'tgt tok/s':>10} {'src+tgt tok/s':>14} {'s/step':>8} "
        f"{'src+tgt tok/CPU-s':>18} {'threads':>8}  runs (src+tgt tok/s)",
    ]
    for name in LOOPS:
        s = result["loops"][name]
        runs = ", ".join(f"{x['tokens_per_s']:.0f}" for x in s["runs"])
        threads = ",".join(sorted({str(x["threads"]) for x in s["runs"]}))
        lines.append(
            f"{name:<10} {s['median_target_tokens_per_s']:>10.0f} "
            f"{s['median_tokens_per_s']:>14.0f} {s['median_step_s']:>8.3f} "
            f"{s['median_tokens_per_cpu_s']:>18.0f} {threads:>8}  {runs}"
        )
    overhead = [x["fit_overhead_s"] for x in result["loops"]["lightning"]["runs"]]
    lines.append(f"ratio lightning/bare, median src+tgt tok/s (wall): "
                 f"{result['ratio_lightning_over_bare']:.3f}; per CPU-second: "
                 f"{result['cpu_ratio_lightning_over_bare']:.3f}")
    lines.append(f"lightning Trainer + fit set-up/tear-down, once per fit (s): "
                 f"{', '.join(f'{x:.2f}' for x in overhead)}")
    load = ", ".join(f"{x:.2f}" for x in result["load_average"])
    lines.append(f"load average at the end (1, 5, 15 min): {load}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.benchmarks.training_throughput",
        description="Training tokens/s: bare PyTorch loop vs TranslationModule under Lightning.",
    )
    parser.add_argument("--preset", default="small", help="models.presets name (default small)")
    parser.add_argument("--override", action="append", type=parse_key_value, metavar="KEY=VALUE",
                        help="model config override (replaces the default "
                             f"{CPU_OVERRIDES}); repeatable")
    parser.add_argument("--plain-preset", action="store_true",
                        help="no model config overrides at all")
    parser.add_argument("--max-tokens", type=int, default=1024, help="token budget per batch")
    parser.add_argument("--steps", type=int, default=20, help="batches per run (incl. warm-up)")
    parser.add_argument("--warmup-steps", type=int, default=2, help="untimed steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each loop, alternated")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--corpus-path", type=Path, default=DEFAULT_CORPUS_PATH)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR,
                        help="SentencePiece model cache")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.plain_preset and args.override:
        parser.error("--plain-preset and --override exclude each other")
    overrides = {} if args.plain_preset else dict(args.override or CPU_OVERRIDES)
    torch.set_num_threads(args.threads)
    quiet_lightning()
    setup = build_setup(
        preset=args.preset, max_tokens=args.max_tokens, steps=args.steps,
        vocab_size=args.vocab_size, corpus_path=args.corpus_path, cache_dir=args.cache_dir,
        seed=args.seed, overrides=overrides,
    )
    result = benchmark(setup, repeats=args.repeats, warmup_steps=args.warmup_steps)
    result.update(preset=args.preset, overrides=overrides, max_tokens=args.max_tokens,
                  corpus="multi30k train", corpus_path=str(args.corpus_path))
    print(f"preset {args.preset} {overrides or '(no overrides)'} "
          f"({result['parameters']:,} parameters), "
          f"{result['steps']} Multi30k batches of <= {args.max_tokens} tokens "
          f"({result['warmup_steps']} untimed), {result['repeats']} alternated repeats, "
          f"{result['threads']} threads")
    print(format_table(result))
    if args.json is not None:
        atomic_write_json(args.json, result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
