"""The Transformer under FSDP2 (models.fsdp) with our Adafactor, on 2 gloo processes, against one
process; and the same through Lightning's ModelParallelStrategy (`--strategy fsdp2`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import spawn_gloo

from experiments.grid import table2_row_optimizer
from experiments.optimizers import build_optimizer
from experiments.tracking import read_json, read_metrics
from models.fsdp import is_sharded, plain_replica, shard_transformer
from models.loss import label_smoothed_cross_entropy
from models.presets import model_config
from models.transformer import Transformer

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
VOCAB, PAD, STEPS, BATCH = 96, 0, 50, 8


def _transformer() -> Transformer:
    torch.manual_seed(0)
    return Transformer(model_config("tiny", VOCAB), pad_id=PAD)


def _batch(step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(step)
    src = torch.randint(1, VOCAB, (BATCH, 9), generator=gen)
    tgt = torch.randint(1, VOCAB, (BATCH, 8), generator=gen)
    return src, tgt[:, :-1], tgt[:, 1:]


def _losses(model: Transformer, rank: int, world: int) -> list[float]:
    """STEPS steps of Table 2 row O (Adafactor); rank r takes its slice of every global batch, the
    loss is the global mean over target tokens (all-reduced for the record)."""
    spec = table2_row_optimizer("O")
    opt = build_optimizer(list(model.parameters()), spec, {"kind": "relative"})
    for g in opt.param_groups:
        g["lr"] = 1e-2
    n = BATCH // world
    out = []
    for t in range(STEPS):
        src, tgt_in, tgt_out = (x[rank * n:(rank + 1) * n] for x in _batch(t))
        loss_sum, _, tokens = label_smoothed_cross_entropy(model(src, tgt_in), tgt_out, 0.1, PAD)
        sums = torch.stack([loss_sum.detach(), torch.as_tensor(tokens, dtype=torch.float32)])
        if world > 1:
            torch.distributed.all_reduce(sums)
        opt.zero_grad()
        # FSDP2 averages gradients over ranks: scale so the step sees the global token mean.
        (loss_sum * world / sums[1]).backward()
        opt.step()
        out.append(float(sums[0] / sums[1]))
    return out


def fsdp_worker(rank: int, world: int, out: str) -> None:
    model = _transformer()
    mesh = torch.distributed.device_mesh.init_device_mesh("cpu", (world,))
    shard_transformer(model, mesh)
    assert is_sharded(model)
    losses = _losses(model, rank, world)
    replica = plain_replica(model)
    assert not is_sharded(replica)
    if rank == 0:
        reference = _transformer()
        want = _losses(reference, 0, 1)
        weights = max(float((a - b.detach()).abs().max())
                      for a, b in zip(replica.state_dict().values(),
                                      reference.state_dict().values(), strict=True))
        Path(out).write_text(json.dumps({"fsdp": losses, "single": want, "weights": weights}))


def test_tiny_transformer_under_fsdp2_on_2_ranks_equals_1_rank(tmp_path: Path) -> None:
    out = tmp_path / "losses.json"
    spawn_gloo(fsdp_worker, 2, str(out))
    got = json.loads(out.read_text())
    rel = max(abs(a - b) / abs(b) for a, b in zip(got["fsdp"], got["single"], strict=True))
    print(f"max relative loss difference over {STEPS} steps: {rel:.3g}; "
          f"max weight difference {got['weights']:.3g}")
    assert rel < 1e-5, (got["fsdp"][-3:], got["single"][-3:])
    assert got["fsdp"][-1] < got["fsdp"][0]  # it trains


def _cli(results: Path, cache: Path, *extra: str) -> list[str]:
    overrides = {"steps": 20, "log_interval": 10, "val_interval": 10, "checkpoint_interval": 20,
                 "eval_max_sentences": 24, "max_tokens": 512, "time_rescale": None}
    cmd = [sys.executable, "-m", "experiments.runner", "table2/J/warmup/seed0", "--scale",
           "tiny", "--results-dir", str(results), "--cache-dir", str(cache), "--accelerator",
           "cpu", "--no-wandb"]
    for key, value in overrides.items():
        cmd += ["--set", f"{key}={json.dumps(value)}"]
    return cmd + list(extra)


def test_lightning_fsdp2_strategy_equals_one_process(tmp_path: Path) -> None:
    """--strategy fsdp2 on 2 CPU processes (Lightning's ModelParallelStrategy, gloo) against one
    process accumulating the same 2 batches per step."""
    env = dict(os.environ, WANDB_MODE="offline", PYTHONWARNINGS="ignore")
    cache, one, two = tmp_path / "cache", tmp_path / "one", tmp_path / "two"
    subprocess.run(_cli(one, cache, "--set", "accumulate_grad_batches=2"), check=True, env=env,
                   cwd=REPO, timeout=600)
    subprocess.run(_cli(two, cache, "--devices", "2", "--strategy", "fsdp2"), check=True,
                   env=env, cwd=REPO, timeout=600)
    cell = "table2/J/warmup/seed0"
    assert read_json(two / cell / "config.json")["trainer"]["strategy"] == "fsdp2"
    r1, r2 = read_json(one / cell / "result.json"), read_json(two / cell / "result.json")
    rows1 = [r for r in read_metrics(one / cell / "metrics.jsonl") if "train_loss" in r]
    rows2 = [r for r in read_metrics(two / cell / "metrics.jsonl") if "train_loss" in r]
    assert [r["step"] for r in rows2] == [r["step"] for r in rows1] == [10, 20]
    for a, b in zip(rows1, rows2, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
    assert r2["valid_loss"] == pytest.approx(r1["valid_loss"], rel=1e-5)
