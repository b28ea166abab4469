"""The fused CPU step: one C++/OpenMP call per parameter group (`adafactor/csrc/fused_cpu.cpp`).

Two passes over each tensor, about 20 bytes of memory traffic per fp32 parameter (pass 1 reads G
and X; pass 2 reads G and X and writes X), with bf16 stochastic rounding in the kernel. The
extension is built on first use with `torch.utils.cpp_extension.load` (ninja and a C++ compiler;
the build is cached under TORCH_EXTENSIONS_DIR). Where it cannot be built, or for tensors it does
not take (not on the CPU, not contiguous, grads of another dtype, empty), `fused_update` returns
None and the optimizer uses the eager path instead; a failed build is reported once.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import torch

from ._common import FactorMode, GroupHyper, StepScalars, TensorStats
from .rounding import step_seeds

_MODES = {"both": 0, "row": 1, "col": 2, "none": 3}
_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_SOURCE = Path(__file__).with_name("csrc") / "fused_cpu.cpp"
_LOCK = threading.Lock()
_STATE: dict[str, ModuleType | bool | None] = {"module": None, "tried": False}
_EMPTY = torch.empty(0)


def load_extension() -> ModuleType | None:
    """The compiled extension, building it on first use; None (with one warning) if that fails."""
    with _LOCK:
        if not _STATE["tried"]:
            _STATE["tried"] = True
            try:
                from torch.utils.cpp_extension import load

                _STATE["module"] = load(
                    name="adafactor_fused_cpu",
                    sources=[str(_SOURCE)],
                    extra_cflags=["-O3", "-march=native", "-fopenmp", "-ffp-contract=off"],
                    extra_ldflags=["-fopenmp"],
                    verbose=os.environ.get("ADAFACTOR_FUSED_VERBOSE") == "1",
                )
            except Exception as exc:  # no compiler, no ninja, build error: fall back, say so
                warnings.warn(
                    f"Adafactor: the fused CPU step could not be built ({type(exc).__name__}: "
                    f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r}); "
                    "using the eager path",
                    RuntimeWarning,
                    stacklevel=3,
                )
                _STATE["module"] = None
        return _STATE["module"]  # type: ignore[return-value]


def supports(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]) -> bool:
    """Whether every tensor of a group can take the fused step."""
    return all(
        p.device.type == "cpu"
        and p.dtype in _DTYPES
        and g.dtype == p.dtype
        and p.numel() > 0
        and p.is_contiguous()
        and g.is_contiguous()
        and g.layout == torch.strided
        for p, g in zip(params, grads, strict=True)
    )


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
    """Update every tensor of one group in one call; None where the fused step is unavailable."""
    if not supports(params, grads):
        return None
    ext = load_extension()
    if ext is None:
        return None
    rows, cols, vs, moms, seeds = [], [], [], [], []
    for s in states:
        for key in ("exp_avg_sq_row", "exp_avg_sq_col", "exp_avg_sq", "exp_avg"):
            v = s.get(key)
            if v is not None and not (v.dtype == torch.float32 and v.is_contiguous()
                                      and v.device.type == "cpu"):
                return None  # e.g. statistics cast by a load: the eager path copes
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
