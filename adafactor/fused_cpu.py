"""The fused CPU step: one C++/OpenMP call per parameter group (`adafactor/csrc/fused_cpu.cpp`),
an optimized implementation of the math of `adafactor.reference` (tests check it against that and
against a float64 transcription of the paper).

Two passes over each tensor, about 20 bytes of memory traffic per fp32 parameter (pass 1 reads G
and X; pass 2 reads G and X and writes X), with the keyed bf16 stochastic rounding in the kernel.
Its scratch is allocated per call (so calls from several threads are independent) and is at most a
quarter of each tensor's size. The extension is built on first use (`adafactor.extension`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ._common import FactorMode, GroupHyper, StepScalars, TensorStats
from .extension import load_extension
from .rounding import step_seeds

_MODES = {"both": 0, "row": 1, "col": 2, "none": 3}
_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_EMPTY = torch.empty(0)
_STATISTICS = ("exp_avg_sq_row", "exp_avg_sq_col", "exp_avg_sq", "exp_avg")


def why_not_fused(p: torch.Tensor, g: torch.Tensor, state: dict) -> str | None:
    """Why the fused step cannot take this tensor (None if it can)."""
    if p.device.type != "cpu":
        return f"it is on {p.device}"
    if p.dtype not in _DTYPES:
        return f"its dtype is {p.dtype} (the kernel takes float32, bfloat16, float16)"
    if g.dtype != p.dtype:
        return f"its gradient has dtype {g.dtype}"
    if p.numel() == 0:
        return "it is empty"
    if not (p.is_contiguous() and g.is_contiguous() and g.layout == torch.strided):
        return "it or its gradient is not contiguous (a view, a transpose or channels_last)"
    for key in _STATISTICS:
        v = state.get(key)
        if v is not None and not (v.dtype == torch.float32 and v.is_contiguous()
                                  and v.device.type == "cpu"):
            return f"its state {key!r} is not a contiguous float32 CPU tensor"
    return None


def fused_update(
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    states: Sequence[dict],
    modes: Sequence[FactorMode],
    scalars: Sequence[StepScalars],
    hp: GroupHyper,
    steps: Sequence[int],
    threads: int,
    want_stats: bool,
) -> list[TensorStats] | None:
    """Update every tensor of one group in one call (each one `why_not_fused` accepts); None
    where the extension could not be built."""
    ext = load_extension()
    if ext is None:
        return None
    rows, cols, vs, moms, seeds = [], [], [], [], []
    for p, s, step in zip(params, states, steps, strict=True):
        rows.append(s.get("exp_avg_sq_row", _EMPTY))
        cols.append(s.get("exp_avg_sq_col", _EMPTY))
        vs.append(s.get("exp_avg_sq", _EMPTY))
        moms.append(s["exp_avg"] if hp.beta1 else _EMPTY)
        if p.dtype == torch.bfloat16 and hp.stochastic_rounding:
            seeds.extend(step_seeds(s["rounding_key"], step))
        else:
            seeds.extend((0, 0))
    stats = torch.empty((len(params), 3), dtype=torch.float32)
    ext.fused_step(
        list(params),  # the kernel writes through data pointers: no autograd involvement
        list(grads),
        rows,
        cols,
        vs,
        moms,
        [_MODES[m] for m in modes],
        [sc.rho for sc in scalars],
        [sc.beta2hat for sc in scalars],
        seeds,
        float(hp.beta1 or 0.0),
        hp.eps1,
        hp.eps2,
        float(hp.clip_threshold) if hp.clip_threshold is not None else 0.0,
        hp.scale_parameter,
        hp.weight_decay,
        hp.stochastic_rounding,
        stats,
        threads,
    )
    if not want_stats:
        return []
    return [
        TensorStats(step_size=row[0], update_rms=row[1], clipped=row[2] > 0)
        for row in stats.unbind(0)
    ]
