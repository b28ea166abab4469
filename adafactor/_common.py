"""Types and checks shared by the optimizer, the update math and the fused CPU step."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

FactorMode = Literal["both", "row", "col", "none"]


@dataclass(frozen=True)
class GroupHyper:
    """One parameter group's hyperparameters, as the update paths need them."""

    beta1: float | None
    eps1: float
    eps2: float
    clip_threshold: float | None
    scale_parameter: bool
    weight_decay: float
    stochastic_rounding: bool


@dataclass(frozen=True)
class StepScalars:
    """Scalars of one tensor's step t: Python floats (computing them never syncs), or 0-dim
    tensors under torch.compile (so that they are graph values, not guards)."""

    rho: float | torch.Tensor  # lr, or the relative step rho_t
    beta2hat: float | torch.Tensor


@dataclass(frozen=True)
class TensorStats:
    """Device-side statistics of one tensor's update (0-dim tensors; read only in step_stats)."""

    step_size: torch.Tensor  # alpha_t
    update_rms: torch.Tensor  # RMS(U_t), the unscaled, unclipped update
    clipped: torch.Tensor  # bool: RMS(U_t) > d


def factor_mode(shape: torch.Size, factored: bool | str, min_dim_size: int | None) -> FactorMode:
    """How a tensor of this shape keeps its second moment.

    Rank >= 2 tensors are factored over their last two dims (leading dims kept as a batch);
    vectors and scalars never are; min_dim_size (if set) requires both of the last two dims to be
    at least that large.
    """
    if factored is False or len(shape) < 2:
        return "none"
    if min_dim_size is not None and min(shape[-2], shape[-1]) < min_dim_size:
        return "none"
    return {True: "both", "row": "row", "col": "col"}[factored]


def state_shapes(shape: torch.Size, mode: FactorMode) -> dict[str, tuple[int, ...]]:
    """Second-moment state entries: row statistics have shape[:-1], column statistics
    shape[:-2] + shape[-1:], the full estimate shape itself."""
    shape = tuple(shape)
    row, col = shape[:-1], shape[:-2] + shape[-1:]
    return {
        "both": {"exp_avg_sq_row": row, "exp_avg_sq_col": col},
        "row": {"exp_avg_sq_row": row},
        "col": {"exp_avg_sq_col": col},
        "none": {"exp_avg_sq": shape},
    }[mode]


def is_real(value: Any) -> bool:
    """A finite int or float (bools are not numbers here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_hyperparameter(owner: str, name: str, value: Any, ok: bool, expected: str) -> None:
    """Raise ValueError naming the optimizer, the hyperparameter and what it must be."""
    if not ok:
        raise ValueError(f"{owner}: invalid {name}={value!r}; expected {expected}")


def check_dense_float_parameter(owner: str, p: torch.Tensor) -> None:
    """Raise RuntimeError for a sparse gradient or a non-float parameter (neither is supported)."""
    if p.grad is not None and p.grad.is_sparse:
        raise RuntimeError(
            f"{owner} does not support sparse gradients (got one for a parameter of shape "
            f"{tuple(p.shape)}); use a dense embedding (sparse=False)"
        )
    if not p.is_floating_point():
        raise RuntimeError(f"{owner}: parameter of dtype {p.dtype} is not a float")
