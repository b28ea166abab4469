"""bf16 DTensor parameters round with the keyed noise of each element's global index.

Two gloo ranks, seeded apart (they share rank 0's rounding keys). (1) Sharded or replicated, a
bf16 parameter ends where the single-process optimizer puts it: the fp32 values before rounding
agree to the last bits (reordered sums), so at most a rare element lands one bf16 step away.
With noise from the global generator (the path before), a large part of the elements do. (2) A
resumed optimizer (state_dict into a new one, the global generator elsewhere, as in a new
process) continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import spawn_gloo
from torch.distributed.tensor import Replicate, Shard, distribute_tensor, init_device_mesh

from adafactor import Adafactor

pytestmark = pytest.mark.slow

STEPS = 6
SHAPES = [(64, 48), (33, 16), (40,)]  # uneven over 2 ranks
LAYOUTS = {"shard0": [Shard(0)], "shard1": [Shard(1)], "replicate": [Replicate()]}


def _placements(layout: list, shape: tuple[int, ...]) -> list:
    return [Shard(min(p.dim, len(shape) - 1)) if isinstance(p, Shard) else p for p in layout]


def _grad(step: int, index: int, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(1000 * step + index))


def _initial(index: int, shape: tuple[int, ...]) -> torch.Tensor:
    gen = torch.Generator().manual_seed(77 + index)
    return torch.randn(shape, generator=gen).bfloat16()


def _optimizer(params: list[torch.Tensor]) -> Adafactor:
    return Adafactor(params, lr=1e-2, scale_parameter=False, stochastic_rounding=True)


def _step(opt: Adafactor, params: list, mesh, t: int) -> None:
    for i, p in enumerate(params):
        g = _grad(t, i, tuple(p.shape)).bfloat16()
        p.grad = distribute_tensor(g, mesh, p.placements, src_data_rank=None) if mesh else g
    opt.step()


def _world(rank: int, world: int, out: str) -> None:
    mesh = init_device_mesh("cpu", (world,))
    result: dict = {}
    for name, layout in LAYOUTS.items():
        torch.manual_seed(rank)  # ranks seeded apart: their key bases differ until shared
        refs = [torch.nn.Parameter(_initial(i, s)) for i, s in enumerate(SHAPES)]
        dts = [torch.nn.Parameter(distribute_tensor(_initial(i, s), mesh, _placements(layout, s),
                                                    src_data_rank=None))
               for i, s in enumerate(SHAPES)]
        ref_opt, opt = _optimizer(refs), _optimizer(dts)
        for t in range(1, STEPS + 1):
            _step(opt, dts, mesh, t)
            if t == 1:  # the single process draws with the shared keys: comparable noise
                ref_opt._rounding_key_base = opt._rounding_key_base
            _step(ref_opt, refs, None, t)
        differ = sum(int((d.full_tensor() != r).sum()) for d, r in zip(dts, refs, strict=True))
        result[name] = differ / sum(r.numel() for r in refs)

    # Resume: 3 steps, state_dict into a fresh optimizer over a copy, 3 more; against 6 straight.
    def fresh() -> list:
        return [torch.nn.Parameter(distribute_tensor(_initial(i, s), mesh,
                                                     _placements([Shard(0)], s),
                                                     src_data_rank=None))
                for i, s in enumerate(SHAPES)]

    straight, halves = fresh(), fresh()
    opt_a, opt_b = _optimizer(straight), _optimizer(halves)
    opt_b._rounding_key_base = opt_a._rounding_key_base
    for t in range(1, STEPS + 1):
        _step(opt_a, straight, mesh, t)
    for t in range(1, STEPS // 2 + 1):
        _step(opt_b, halves, mesh, t)
    saved = opt_b.state_dict()
    resumed = _optimizer(halves)
    resumed.load_state_dict(saved)
    torch.manual_seed(12345 + rank)  # a new process: the global generator starts elsewhere
    for t in range(STEPS // 2 + 1, STEPS + 1):
        _step(resumed, halves, mesh, t)
    result["resume_differ"] = sum(int((a.to_local() != b.to_local()).sum())
                                  for a, b in zip(straight, halves, strict=True))
    if rank == 0:
        Path(out).write_text(json.dumps(result))


def test_bf16_dtensors_round_as_one_process_and_resume_exactly(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    spawn_gloo(_world, 2, str(out))
    result = json.loads(out.read_text())
    print(result)
    for name in LAYOUTS:
        assert result[name] < 0.01, (name, result)
    assert result["resume_differ"] == 0, result
