"""Train a Transformer with Adafactor on real Multi30k on a CPU for a wall-clock budget; BLEU.

    python -m experiments.benchmarks.cpu_multi30k [--minutes 20] [--preset small]
        [--override KEY=VALUE ...] [--max-tokens 1024] [--threads 2] [--out DIR]

Recipe (defaults; every one is a flag):
* Data: ``data.datamodule.TranslationData("multi30k")`` on the local folder (train 29,000 pairs,
  test = test2016, 1,000 sentences), one shared SentencePiece unigram vocab of 8,000 pieces trained
  on the train split (cached), token-budget batches of at most ``--max-tokens`` source and target
  tokens, shuffled with ``--seed``.
* Model: ``models.presets`` ``small`` (pre-norm 3+3 layers, d_model 256, d_ff 1024, 4 heads, tied
  embeddings, label smoothing 0.1) with ``CPU_OVERRIDES``: no dropout. Why: a 20-minute budget on
  two cores covers about two epochs of Multi30k, where the model underfits and dropout only slows
  learning; its random masks also cost ~14% of the training tokens per CPU-second here
  (``training_throughput``: 2,540-2,610 with the preset's dropout 0.1 vs 2,960-3,010 without).
  Layers and widths are the preset's (7.57M parameters with the 8,000-piece vocab).
* Batch: ``--max-tokens 1024`` rather than the GPU scale's 4096: on two cores a 4096-token step
  takes seconds, and Adafactor's relative step (rho_t = 1e-2 of the parameter RMS per step) needs
  steps rather than tokens per step, so a smaller batch gives ~4x as many updates in the budget
  (503 batches an epoch; ~965 steps in 20 minutes on the shared 2-core machine).
* Optimizer: ``adafactor.Adafactor(params)`` with the paper's defaults (Algorithm 6): factored
  second moment, no momentum (beta1 none), beta2hat_t = 1 - t^-0.8, update clipping d = 1, relative
  step rho_t = min(1e-2, 1/sqrt t) **without warmup** (``warmup_init=False``; with
  ``--warmup-init`` rho_t = min(1e-6 t, 1/sqrt t), which would stay below 1e-3 for the ~1,000
  steps a CPU budget allows), parameter scale max(eps2, RMS(X)). No external lr schedule.
* Training: ``models.lightning_module.TranslationModule`` under a Lightning Trainer on CPU with
  ``max_time`` = ``--minutes`` (Lightning stops after the step that passes it; ``--max-steps``
  bounds it further), no validation, no checkpoints, no logger.
* Evaluation: test2016 decoded with beam search (beam 4, length penalty 0.6 = GNMT alpha,
  max length 1.2 |src| + 10), detokenized with the SentencePiece model, scored by
  ``models.bleu.corpus_bleu``: sacreBLEU (13a tokenizer, with its signature) and the labelled
  tokenized BLEU (sacreBLEU's intl tokenizer), plus the teacher-forced test loss.

Figures, written atomically to ``<out>/cpu_multi30k.json``: both BLEU scores with signatures and the
recipe, training steps, epochs, wall times (vocab + data set-up, training, decoding, total),
training tokens/s (source + target and target only, non-pad, over the training wall time),
the train-loss curve every ``--log-every`` steps, the model config and parameter count, threads
and the load average before and after training. The hypotheses go to ``<out>/test2016.hyp.de``
(one line per test sentence, in file order), so the score can be re-checked with the sacrebleu CLI.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from adafactor import Adafactor
from data.datamodule import TranslationData
from experiments.scales import SHARED_DATA, parse_key_value
from experiments.store.files import atomic_write, atomic_write_json
from models.bleu import corpus_bleu
from models.lightning_module import TranslationModule
from models.presets import model_config

DEFAULT_CORPUS_PATH = SHARED_DATA / "multi30k"
DEFAULT_CACHE_DIR = Path(".cache") / "benchmarks" / "vocab"
DEFAULT_OUT = Path("results") / "cpu_multi30k"
RESULT_FILE = "cpu_multi30k.json"
HYPOTHESES_FILE = "test2016.hyp.de"
# Why no dropout: see the module docstring (a few epochs on a CPU underfit).
CPU_OVERRIDES: dict[str, Any] = {"dropout": 0.0, "attention_dropout": 0.0, "relu_dropout": 0.0}


class TrainingLog(Callback):
    """Counts non-pad tokens and prints/keeps the mean train loss every ``every`` steps."""

    def __init__(self, pad_id: int, every: int) -> None:
        self.pad_id, self.every = pad_id, every
        self.target_tokens = 0
        self.source_tokens = 0
        self.curve: list[dict[str, float]] = []
        self.started = time.perf_counter()

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.started = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: TranslationModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        self.target_tokens += int((batch["tgt_out"] != self.pad_id).sum())
        self.source_tokens += int((batch["src"] != self.pad_id).sum())
        if trainer.global_step % self.every == 0:
            # The module's own interval sums (loss, nll, target, source tokens; step time);
            # interval_row() is not used because it reads param_group["lr"], which is None
            # for Adafactor's internal relative step.
            pl_module.stop_clock()
            loss, nll, tgt, src = pl_module.interval_sums.tolist()
            seconds = pl_module.interval_time_s
            pl_module.reset_interval()
            if tgt > 0:
                point = {"step": trainer.global_step,
                         "wall_s": time.perf_counter() - self.started,
                         "train_loss": loss / tgt, "train_nll": nll / tgt,
                         "tokens_per_s": (tgt + src) / max(seconds, 1e-9)}
                self.curve.append(point)
                print(f"step {point['step']:>6}  {point['wall_s']:7.0f} s  "
                      f"loss {point['train_loss']:.3f}  nll {point['train_nll']:.3f}  "
                      f"{point['tokens_per_s']:.0f} tok/s  load {os.getloadavg()[0]:.1f}",
                      flush=True)


def decode_split(module: TranslationModule, data: TranslationData, split: str) -> list[str]:
    """Hypotheses for every sentence of ``split``, in file order (the loader sorts by length)."""
    by_index: dict[int, str] = {}
    module.eval()
    with torch.no_grad():
        loader = data.test_dataloader() if split == "test" else data.val_dataloader()
        for batch in loader:
            for i, hyp in zip(batch["indices"], module.translate(batch["src"]), strict=True):
                by_index[int(i)] = hyp
    return [by_index[i] for i in range(len(by_index))]


def _atomic_write_lines(path: Path, lines: list[str]) -> None:
    atomic_write(path, "".join(line + "\n" for line in lines))


def run(
    *,
    minutes: float = 20.0,
    preset: str = "small",
    overrides: dict[str, Any] | None = None,
    max_tokens: int = 1024,
    vocab_size: int = 8000,
    warmup_init: bool = False,
    threads: int = 2,
    seed: int = 0,
    out: Path | str = DEFAULT_OUT,
    corpus_path: Path | str = DEFAULT_CORPUS_PATH,
    cache_dir: Path | str = DEFAULT_CACHE_DIR,
    max_steps: int = -1,
    beam_size: int = 4,
    length_penalty: float = 0.6,
    eval_max_sentences: int | None = None,
    log_every: int = 50,
) -> dict[str, Any]:
    """Train for at most ``minutes`` of wall time, decode test2016, write and return the figures."""
    if not minutes > 0:
        raise ValueError(f"minutes must be > 0, got {minutes}")
    if threads < 1 or log_every < 1:
        raise ValueError(f"threads and log_every must be >= 1, got {threads}, {log_every}")
    corpus_path, out = Path(corpus_path), Path(out)
    if not (corpus_path / "test2016.en").is_file():
        raise FileNotFoundError(
            f"Multi30k not found: {corpus_path / 'test2016.en'} is missing "
            "(pass --corpus-path or set ADAFACTOR_SHARED_DATA)"
        )
    overrides = dict(CPU_OVERRIDES if overrides is None else overrides)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    pl.seed_everything(seed, verbose=False)
    data = TranslationData(
        "multi30k", corpus_path=corpus_path, vocab_size=vocab_size, max_tokens=max_tokens,
        cache_dir=cache_dir, seed=seed, eval_max_sentences=eval_max_sentences,
    )
    data.prepare_data()
    data.setup("fit")
    vocab = data.vocab
    cfg = model_config(preset, vocab.size, **overrides)

    def optimizer_factory(params: Any) -> Adafactor:
        return Adafactor(params, warmup_init=warmup_init)

    module = TranslationModule(cfg, vocab, optimizer_factory=optimizer_factory,
                               beam_size=beam_size, length_penalty=length_penalty, decode="beam")
    log = TrainingLog(vocab.pad_id, log_every)
    setup_s = time.perf_counter() - t0
    load_before = os.getloadavg()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*srun.*")
        warnings.filterwarnings("ignore", ".*LeafSpec.*")
        warnings.filterwarnings("ignore", ".*no `validation_step`.*")
        trainer = pl.Trainer(
            accelerator="cpu", devices=1, max_time=datetime.timedelta(minutes=minutes),
            max_steps=max_steps, max_epochs=-1, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
            limit_val_batches=0, callbacks=[log], use_distributed_sampler=False,
            default_root_dir=str(out),
        )
        t_fit = time.perf_counter()
        trainer.fit(module, datamodule=data)
        train_wall_s = time.perf_counter() - t_fit
    load_after = os.getloadavg()
    if module.diverged:
        raise RuntimeError(f"training diverged (non-finite loss) at step {module.diverged_step}")

    t_eval = time.perf_counter()
    data.setup("test")
    references = data.eval_references("test")
    hypotheses = decode_split(module, data, "test")
    decode_s = time.perf_counter() - t_eval
    score = corpus_bleu(hypotheses, references)
    test_loss = module.evaluate(data.test_dataloader(), bleu=False)
    _atomic_write_lines(out / HYPOTHESES_FILE, hypotheses)

    steps = trainer.global_step
    batches_per_epoch = len(data.train_dataloader())
    both = log.source_tokens + log.target_tokens
    result = {
        "bleu": score.score,
        "bleu_signature": score.signature,
        "tokenized_bleu": score.tokenized_score,
        "tokenized_bleu_signature": score.tokenized_signature,
        "bleu_label": "sacreBLEU (13a, detokenized); tokenized_bleu uses the intl tokenizer",
        "bleu_recipe": {"split": "test2016", "sentences": len(references), "beam": beam_size,
                        "length_penalty": length_penalty, "max_len": "1.2 * |src| + 10"},
        "test_loss": test_loss["valid_loss"],
        "test_nll": test_loss["valid_nll"],
        "steps": steps,
        "epochs": steps / batches_per_epoch,
        "batches_per_epoch": batches_per_epoch,
        "train_wall_s": train_wall_s,
        "train_step_s": module.train_time_s,
        "tokens_per_s": both / train_wall_s,
        "target_tokens_per_s": log.target_tokens / train_wall_s,
        "train_tokens": both,
        "train_target_tokens": log.target_tokens,
        "final_train_loss": log.curve[-1]["train_loss"] if log.curve else None,
        "train_curve": log.curve,
        "setup_s": setup_s,
        "decode_s": decode_s,
        "total_s": time.perf_counter() - t0,
        "minutes_budget": minutes,
        "max_steps": max_steps,
        "preset": preset,
        "overrides": overrides,
        "model": cfg.to_dict(),
        "parameters": sum(p.numel() for p in module.model.parameters()),
        "vocab_size": vocab.size,
        "max_tokens": max_tokens,
        "optimizer": {"name": "adafactor.Adafactor", "paper_defaults": True,
                      "relative_step": True, "warmup_init": warmup_init},
        "threads": threads,
        "seed": seed,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "torch": torch.__version__,
        "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }
    if not math.isfinite(result["bleu"]):
        raise RuntimeError(f"BLEU is not finite: {result['bleu']}")
    atomic_write_json(out / RESULT_FILE, result)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.benchmarks.cpu_multi30k",
        description="Adafactor on real Multi30k on this CPU for a time budget; test2016 BLEU.",
    )
    parser.add_argument("--minutes", type=float, default=20.0, help="training wall-time budget")
    parser.add_argument("--preset", default="small", help="models.presets name (default small)")
    parser.add_argument("--override", action="append", type=parse_key_value, metavar="KEY=VALUE",
                        help="model config override (replaces the default CPU overrides "
                             f"{CPU_OVERRIDES}); repeatable")
    parser.add_argument("--max-tokens", type=int, default=1024, help="token budget per batch")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--warmup-init", action="store_true",
                        help="relative step with warmup: min(1e-6 t, 1/sqrt t)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the figures")
    parser.add_argument("--corpus-path", type=Path, default=DEFAULT_CORPUS_PATH)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR,
                        help="SentencePiece model cache")
    parser.add_argument("--max-steps", type=int, default=-1, help="step cap (-1: time only)")
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--length-penalty", type=float, default=0.6)
    parser.add_argument("--eval-max-sentences", type=int, default=None,
                        help="decode only the first N test sentences (default: all)")
    parser.add_argument("--log-every", type=int, default=50, help="train-loss row every N steps")
    args = parser.parse_args(argv)
    overrides = dict(CPU_OVERRIDES) if args.override is None else dict(args.override)
    result = run(
        minutes=args.minutes, preset=args.preset, overrides=overrides, max_tokens=args.max_tokens,
        vocab_size=args.vocab_size, warmup_init=args.warmup_init, threads=args.threads,
        seed=args.seed, out=args.out, corpus_path=args.corpus_path, cache_dir=args.cache_dir,
        max_steps=args.max_steps, beam_size=args.beam, length_penalty=args.length_penalty,
        eval_max_sentences=args.eval_max_sentences, log_every=args.log_every,
    )
    print(f"test2016 ({result['bleu_recipe']['sentences']} sentences, beam {args.beam}, "
          f"length penalty {args.length_penalty}): sacreBLEU {result['bleu']:.2f} "
          f"({result['bleu_signature']}); tokenized BLEU (intl) {result['tokenized_bleu']:.2f}")
    print(f"training: {result['steps']} steps ({result['epochs']:.2f} epochs) in "
          f"{result['train_wall_s']:.0f} s, {result['tokens_per_s']:.0f} src+tgt tokens/s "
          f"({result['target_tokens_per_s']:.0f} target tokens/s); "
          f"set-up {result['setup_s']:.0f} s, decode {result['decode_s']:.0f} s, "
          f"total {result['total_s']:.0f} s")
    print(f"figures: {Path(args.out) / RESULT_FILE}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
