"""The prepared GPU check: one script, one JSON, at most ~8 minutes on one H100.

Parts (each recorded under its key; a part that fails records its error and the others run):

* ``step``: one optimizer step at Transformer-base shapes in fp32 and bf16, ours (``auto``, the
  Triton step on CUDA) and the reference math against torch.optim.Adam(fused=True) and
  torch.optim.Adafactor, with the achieved bandwidth (the bytes each must move / step time).
* ``throughput``: tokens/s of the base Transformer under Lightning against a bare loop, bf16-mixed,
  on fixed random batches.
* ``fsdp2``: the same bare loop with the model sharded by FSDP2 over a one-GPU mesh.
* ``multi30k``: the small preset trained on Multi30k for a wall-time budget, with its BLEU
  (experiments.benchmarks.cpu_multi30k, which trains on the CPU accelerator).

``--dry-run`` runs every part on CPU at toy sizes and writes the same keys.

    python -m experiments.benchmarks.gpu_check --out gpu_check.json
    python -m experiments.benchmarks.gpu_check --dry-run --out /tmp/gpu_check_dry.json
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from adafactor import Adafactor
from experiments.benchmarks.optimizer_step import transformer_base_shapes
from experiments.store.files import atomic_write_json
from models.loss import label_smoothed_cross_entropy
from models.presets import model_config
from models.transformer import Transformer

PARTS = ("step", "throughput", "fsdp2", "multi30k")
TOY_SHAPES = [("embed", (256, 64)), ("ffn_in", (128, 64)), ("ffn_out", (64, 128)), ("ln", (64,))]
# Bytes per parameter each step must move at least: read G and X and write X, twice over for the
# two passes ours makes (read G, X; read G, X, write X), Adam reads G, X, m, v and writes X, m, v.
BYTES = {"ours": {"fp32": 20, "bf16": 10}, "ours-reference": {"fp32": 20, "bf16": 10},
         "torch-adafactor": {"fp32": 20, "bf16": 10}, "adam-fused": {"fp32": 28, "bf16": 14}}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], None], device: torch.device, repeats: int) -> float:
    """Median seconds of `fn` over `repeats` calls, after one warm-up call."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _optimizer(name: str, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    if name == "ours":
        return Adafactor(params)
    if name == "ours-reference":
        return Adafactor(params, implementation="reference")
    if name == "torch-adafactor":
        return torch.optim.Adafactor(params, foreach=True)
    return torch.optim.Adam(params, lr=1e-3, fused=True)


def part_step(device: torch.device, dry: bool) -> dict[str, Any]:
    """Step time and achieved bandwidth per optimizer and dtype."""
    shapes = TOY_SHAPES if dry else transformer_base_shapes()
    n = sum(torch.Size(s).numel() for _, s in shapes)
    out: dict[str, Any] = {"parameters": n, "shapes": "toy" if dry else "transformer-base"}
    for dtype_name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        gen = torch.Generator().manual_seed(0)
        rows = {}
        for name in BYTES:
            params = [(torch.randn(s, generator=gen) * 0.02).to(device, dtype).requires_grad_()
                      for _, s in shapes]
            for p in params:
                p.grad = torch.randn_like(p) * 1e-3
            opt = _optimizer(name, params)
            seconds = _timed(opt.step, device, 3 if dry else 20)
            rows[name] = {"step_ms": seconds * 1e3,
                          "achieved_gb_per_s": BYTES[name][dtype_name] * n / seconds / 1e9}
        out[dtype_name] = rows
    return out


def _random_batches(vocab: int, steps: int, batch: int, length: int) -> list[dict[str, Any]]:
    gen = torch.Generator().manual_seed(0)
    return [{k: torch.randint(4, vocab, (batch, length), generator=gen)
             for k in ("src", "tgt_in", "tgt_out")} for _ in range(steps)]


def _config(dry: bool) -> Any:
    return model_config("tiny" if dry else "base", 512 if dry else 32000)


def _bare_loop(model: torch.nn.Module, batches: list[dict[str, Any]], device: torch.device,
               bf16: bool) -> float:
    """Seconds for all batches but the first of a plain loop (autocast bf16 where asked)."""
    opt = Adafactor(model.parameters())
    start = 0.0
    for i, b in enumerate(batches):
        if i == 1:
            _sync(device)
            start = time.perf_counter()
        b = {k: v.to(device) for k, v in b.items()}
        ctx = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else (
            contextlib.nullcontext())
        with ctx:
            logits = model(b["src"], b["tgt_in"])
        loss, _, tokens = label_smoothed_cross_entropy(logits.float(), b["tgt_out"], 0.1, 0)
        (loss / tokens).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    _sync(device)
    return time.perf_counter() - start


def _tokens(batches: list[dict[str, Any]]) -> int:
    return sum(2 * b["src"].numel() for b in batches[1:])


def part_throughput(device: torch.device, dry: bool) -> dict[str, Any]:
    """Tokens/s, bare loop and Lightning, bf16-mixed."""
    import lightning.pytorch as pl

    from experiments.benchmarks.training_throughput import FixedBatches, quiet_lightning
    from models.lightning_module import TranslationModule

    cfg = _config(dry)
    steps, batch, length = (4, 4, 16) if dry else (30, 32, 128)
    batches = _random_batches(cfg.vocab_size, steps, batch, length)
    torch.manual_seed(0)
    bare = Transformer(cfg, pad_id=0).to(device)
    bare_s = _bare_loop(bare, batches, device, bf16=True)

    class Vocab:  # what TranslationModule reads of a vocabulary for training
        pad_id, bos_id, eos_id, size = 0, 1, 2, cfg.vocab_size

    quiet_lightning()
    module = TranslationModule(cfg, Vocab(), optimizer_factory=lambda p: Adafactor(p))
    times: list[float] = []

    class Clock(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 1:
                _sync(device)
                times.append(time.perf_counter())

        def on_train_end(self, trainer, pl_module):
            _sync(device)
            times.append(time.perf_counter())

    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, precision="bf16-mixed",
        max_steps=steps, max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        limit_val_batches=0, callbacks=[Clock()], use_distributed_sampler=False,
    )
    trainer.fit(module, train_dataloaders=FixedBatches(batches))
    lightning_s = times[-1] - times[0]
    tokens = _tokens(batches)
    return {"model": "tiny" if dry else "base", "steps_timed": steps - 1, "tokens": tokens,
            "precision": "bf16-mixed", "bare_tokens_per_s": tokens / bare_s,
            "lightning_tokens_per_s": tokens / lightning_s,
            "lightning_over_bare": bare_s / lightning_s}


def part_fsdp2(device: torch.device, dry: bool) -> dict[str, Any]:
    """The bare loop with the model sharded by FSDP2 over a one-rank mesh."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    from models.fsdp import shard_transformer

    cfg = _config(dry)
    steps, batch, length = (4, 4, 16) if dry else (20, 32, 128)
    batches = _random_batches(cfg.vocab_size, steps, batch, length)
    started = not dist.is_initialized()
    if started:  # an in-process store: no port, and no MASTER_* left for later processes
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0,
                                world_size=1, store=dist.HashStore())
    try:
        mesh = init_device_mesh(device.type, (1,))
        torch.manual_seed(0)
        model = shard_transformer(Transformer(cfg, pad_id=0).to(device), mesh)
        seconds = _bare_loop(model, batches, device, bf16=True)
    finally:
        if started:
            dist.destroy_process_group()
    return {"model": "tiny" if dry else "base", "world_size": 1, "steps_timed": steps - 1,
            "tokens_per_s": _tokens(batches) / seconds}


def part_multi30k(device: torch.device, dry: bool) -> dict[str, Any]:
    """The small preset on Multi30k for a wall-time budget, and its BLEU."""
    from experiments.benchmarks import cpu_multi30k

    with tempfile.TemporaryDirectory() as tmp:
        result = cpu_multi30k.run(
            minutes=0.2 if dry else 5.0, preset="small", out=Path(tmp) / "multi30k.json",
            max_steps=3 if dry else -1, eval_max_sentences=8 if dry else None,
            beam_size=1 if dry else 4,
        )
    result["device"] = "cpu"  # cpu_multi30k trains on the CPU accelerator
    return result


RUNS = {"step": part_step, "throughput": part_throughput, "fsdp2": part_fsdp2,
        "multi30k": part_multi30k}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="every part on CPU, toy sizes")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {PARTS}")
    args = parser.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {unknown}; expected some of {PARTS}")
    device = torch.device("cpu" if args.dry_run or not torch.cuda.is_available() else "cuda")
    report: dict[str, Any] = {
        "dry_run": args.dry_run, "device": str(device), "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
    }
    for name in PARTS:
        if name not in parts:
            report[name] = {"skipped": "not in --parts"}
            continue
        start = time.perf_counter()
        try:
            report[name] = RUNS[name](device, args.dry_run)
        except Exception as err:  # a failing part is recorded; the others still run
            report[name] = {"error": f"{type(err).__name__}: {err}",
                            "traceback": traceback.format_exc(limit=3)}
        report[name]["wall_s"] = time.perf_counter() - start
        print(f"{name}: {report[name]}", file=sys.stderr, flush=True)
    atomic_write_json(args.out, report)
    return report


if __name__ == "__main__":
    main()
