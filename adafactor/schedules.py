"""Step-size and second-moment-decay schedules of the paper (Shazeer & Stern, 2018).

The functions take the 1-based step t as a Python int and return Python floats, so the optimizer
computes them on the host without touching any tensor (no device synchronisation);
`step_scalars_in_graph` gives the same values as tensors, for torch.compile.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def _check_step(t: int) -> None:
    if isinstance(t, bool) or not isinstance(t, int) or t < 1:
        raise ValueError(f"step t must be an int >= 1 (steps are 1-based), got {t!r}")


def paper_step_size(t: int, warmup: bool) -> float:
    """s_t of Table 2: min(1e-6 t, 1/sqrt t) with warmup, min(1e-2, 1/sqrt t) without (t >= 1)."""
    _check_step(t)
    inverse_sqrt = 1.0 / math.sqrt(t)
    return min(1e-6 * t, inverse_sqrt) if warmup else min(1e-2, inverse_sqrt)


def relative_step_size(t: int, warmup_init: bool) -> float:
    """rho_t of Algorithm 6 (lr=None): the same schedule as s_t; warmup_init uses min(1e-6 t, .)."""
    return paper_step_size(t, warmup_init)


def decay_power(t: int, decay_exponent: float, decay_scale: float = 1.0) -> float:
    """beta2hat_t = max(0, 1 - k t^(-c)) (Section 7.2: k = 1); 0 at t = 1, so no bias correction
    is needed. k = F^(1-c) runs the decay on a clock of F paper steps per step: it is the paper's
    1 - t'^-c compounded over the F steps ending at t' = F t (to first order)."""
    _check_step(t)
    return max(0.0, 1.0 - decay_scale * t ** (-decay_exponent))


def adam_decay_correction(t: int, beta2: float) -> float:
    """beta2hat_t = beta2 (1 - beta2^(t-1)) / (1 - beta2^t) (Algorithm 3): Adam's bias correction
    rewritten as a decay, so an EMA with it equals Adam's bias-corrected second moment."""
    _check_step(t)
    return beta2 * (1.0 - beta2 ** (t - 1)) / (1.0 - beta2**t)


def second_moment_decay(t: int, beta2: float | None, decay_exponent: float,
                        decay_scale: float = 1.0) -> float:
    """beta2hat_t as the optimizer uses it: constant beta2 with Adam's decay correction (beta2 = 0
    gives 0: V_t = G_t^2), or, when beta2 is None, max(0, 1 - decay_scale t^(-decay_exponent))."""
    if beta2 is None:
        return decay_power(t, decay_exponent, decay_scale)
    return adam_decay_correction(t, beta2)


def paper_step_size_at(t: float, warmup: bool) -> float:
    """s_t of Table 2 at a real-valued step t >= 1 (a rescaled time may fall between integers):
    min(1e-6 t, 1/sqrt t) with warmup, min(1e-2, 1/sqrt t) without; at an int t it equals
    ``paper_step_size(t, warmup)`` exactly."""
    if isinstance(t, bool) or not isinstance(t, int | float) or not t >= 1:
        raise ValueError(f"paper time must be a number >= 1, got {t!r}")
    return min(1e-6 * t if warmup else 1e-2, 1.0 / math.sqrt(t))


def step_scalars_in_graph(
    t: Any, lr: Any, warmup_init: bool, beta2: float | None, decay_exponent: float,
    decay_scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rho_t, beta2hat_t) as 0-dim float32 tensors computed by tensor ops from the step t (an int,
    a SymInt under torch.compile, or a tensor) and lr (None, a float or a tensor).

    Under torch.compile this keeps every per-step value out of the guards: no recompile as t
    grows (including past the 1e-2 cap of rho_t at t = 1e4) or as an LR scheduler changes lr.
    """
    tt = torch.ones((), dtype=torch.float32) * t
    if lr is None:
        cap = tt * 1e-6 if warmup_init else torch.full((), 1e-2)
        rho = torch.minimum(cap, tt.rsqrt())
    else:
        rho = torch.ones((), dtype=torch.float32) * lr
    if beta2 is None:
        beta2hat = torch.clamp(1.0 - decay_scale * tt.pow(-decay_exponent), min=0.0)
    else:
        beta2hat = beta2 * (1.0 - torch.pow(beta2, tt - 1.0)) / (1.0 - torch.pow(beta2, tt))
    return rho, beta2hat
