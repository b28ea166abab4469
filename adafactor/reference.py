"""The plain per-tensor Adafactor update: Algorithms 4 (matrices) and 5 (vectors), line by line.

This path favours readability over speed; `adafactor.fast` computes the same update with fewer
memory passes, and tests check that the two agree within fp32 rounding.
"""

from __future__ import annotations

import torch

from ._common import FP32_MAX, FactorMode, GroupHyper, StepScalars, TensorStats, rms
from .rounding import copy_keyed_rounded_


def _mean_sq(g2: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of (saturated) G^2 + eps1 over one dim, summed in float64 so that it cannot overflow,
    then saturated at the fp32 maximum."""
    return g2.mean(dim=dim, dtype=torch.float64).clamp(max=FP32_MAX).to(torch.float32)


def reference_update(
    param: torch.Tensor,
    grad: torch.Tensor,
    state: dict,
    mode: FactorMode,
    scalars: StepScalars,
    hp: GroupHyper,
) -> TensorStats:
    """One step for one tensor, in fp32 whatever the parameter dtype. X_{t-1} is only read (the
    result is written back at the end), so this traces under torch.compile without breaks."""
    x = param.detach().float()
    g = grad.detach().float()
    b = scalars.beta2hat

    # Line 3: alpha_t = max(eps2, RMS(X_{t-1})) rho_t  (or rho_t itself without parameter scale).
    rho = torch.ones((), dtype=torch.float32, device=x.device) * scalars.rho
    alpha = rho * torch.clamp(rms(x), min=hp.eps2) if hp.scale_parameter else rho

    # Lines 5-6 (Alg. 4) / line 5 (Alg. 5): eps1 is added to G^2 before averaging. G^2 saturates
    # at the fp32 maximum (NaN stays NaN), so gradients up to the fp32 range stay finite.
    g2 = torch.clamp(g * g, max=FP32_MAX) + hp.eps1
    if mode == "both":
        # Row and column *means* (the paper's sums divided by m and n; line 7 is scale-free).
        r = state["exp_avg_sq_row"].mul_(b).add_(_mean_sq(g2, -1) * (1 - b))
        c = state["exp_avg_sq_col"].mul_(b).add_(_mean_sq(g2, -2) * (1 - b))
        # Line 7: V_hat = R C / (1^T R), per matrix over the last two dims; sqrt(V_hat) is taken
        # as sqrt(R / mean R) sqrt(C): the product R C under- or overflows fp32 at the extremes.
        mean_r = r.mean(dim=-1, keepdim=True, dtype=torch.float64).to(torch.float32)
        v_sqrt = (r / mean_r).sqrt().unsqueeze(-1) * c.sqrt().unsqueeze(-2)
    elif mode == "row":
        # Table 2 row D: V_hat_ij = r_i (row means of the G^2 + eps1 EMA, broadcast over columns).
        r = state["exp_avg_sq_row"].mul_(b).add_(_mean_sq(g2, -1) * (1 - b))
        v_sqrt = r.sqrt().unsqueeze(-1)
    elif mode == "col":
        # Table 2 row E: V_hat_ij = c_j (column means, broadcast over rows).
        c = state["exp_avg_sq_col"].mul_(b).add_(_mean_sq(g2, -2) * (1 - b))
        v_sqrt = c.sqrt().unsqueeze(-2)
    else:
        v_sqrt = state["exp_avg_sq"].mul_(b).add_(g2 * (1 - b)).sqrt()

    # Line 8: U_t = G_t / sqrt(V_hat_t).
    u = g / v_sqrt
    update_rms = rms(u)
    # Line 9: U_hat = U / max(1, RMS(U)/d): only ever scales down.
    if hp.clip_threshold is not None:
        clipped = update_rms > hp.clip_threshold
        u = u / torch.clamp(update_rms / hp.clip_threshold, min=1.0)
    else:
        clipped = torch.zeros((), dtype=torch.bool, device=x.device)

    step = alpha * u
    if hp.beta1:
        # Momentum on the scaled, clipped update, without bias correction (the reference code's).
        step = state["exp_avg"].mul_(hp.beta1).add_(step, alpha=1 - hp.beta1)
    if hp.weight_decay:
        x = x * (1 - scalars.rho * hp.weight_decay)  # decoupled, from X_{t-1}, like AdamW
    # Line 10: X_t = X_{t-1} - alpha_t U_hat_t.
    x = x - step
    if param.dtype == torch.bfloat16 and hp.stochastic_rounding:
        copy_keyed_rounded_(param.detach(), x, state["rounding_key"], state["step"])
    else:
        param.detach().copy_(x)
    return TensorStats(step_size=alpha, update_rms=update_rms, clipped=clipped)
