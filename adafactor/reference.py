"""The plain per-tensor Adafactor update: Algorithms 4 (matrices) and 5 (vectors), line by line.

This path favours readability over speed; `adafactor.fast` computes the same update with fewer
memory passes, and tests check that the two agree within fp32 rounding.
"""

from __future__ import annotations

import torch

from ._common import FactorMode, GroupHyper, StepScalars, TensorStats, rms
from .rounding import write_back_


def reference_update(
    param: torch.Tensor,
    grad: torch.Tensor,
    state: dict,
    mode: FactorMode,
    scalars: StepScalars,
    hp: GroupHyper,
) -> TensorStats:
    """One step for one tensor, in fp32 whatever the parameter dtype."""
    x = param.detach().float()
    if x is param or x.data_ptr() == param.data_ptr():
        x = x.clone()  # keep X_{t-1} intact until the end (written back below)
    g = grad.detach().float()
    b = scalars.beta2hat

    # Line 3: alpha_t = max(eps2, RMS(X_{t-1})) rho_t  (or rho_t itself without parameter scale).
    rho = torch.tensor(scalars.rho, dtype=torch.float32, device=x.device)
    alpha = rho * torch.clamp(rms(x), min=hp.eps2) if hp.scale_parameter else rho

    # Lines 5-6 (Alg. 4) / line 5 (Alg. 5): eps1 is added to G^2 before averaging.
    g2 = g * g + hp.eps1
    if mode == "both":
        # Row and column *means* (the paper's sums divided by m and n; line 7 is scale-free).
        r = state["exp_avg_sq_row"].mul_(b).add_(g2.mean(dim=-1), alpha=1 - b)
        c = state["exp_avg_sq_col"].mul_(b).add_(g2.mean(dim=-2), alpha=1 - b)
        # Line 7: V_hat = R C / (1^T R), per matrix over the last two dims. R is normalised first:
        # the product R C underflows fp32 when both are near eps1 = 1e-30.
        v_hat = (r / r.mean(dim=-1, keepdim=True)).unsqueeze(-1) * c.unsqueeze(-2)
    elif mode == "row":
        # Table 2 row D: V_hat_ij = r_i (row means of the G^2 + eps1 EMA, broadcast over columns).
        r = state["exp_avg_sq_row"].mul_(b).add_(g2.mean(dim=-1), alpha=1 - b)
        v_hat = r.unsqueeze(-1).expand_as(g)
    elif mode == "col":
        # Table 2 row E: V_hat_ij = c_j (column means, broadcast over rows).
        c = state["exp_avg_sq_col"].mul_(b).add_(g2.mean(dim=-2), alpha=1 - b)
        v_hat = c.unsqueeze(-2).expand_as(g)
    else:
        v_hat = state["exp_avg_sq"].mul_(b).add_(g2, alpha=1 - b)

    # Line 8: U_t = G_t / sqrt(V_hat_t).
    u = g / v_hat.sqrt()
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
        x.mul_(1 - scalars.rho * hp.weight_decay)  # decoupled, from X_{t-1}, like AdamW
    # Line 10: X_t = X_{t-1} - alpha_t U_hat_t.
    x.sub_(step)
    write_back_(param.detach(), x, hp.stochastic_rounding)
    return TensorStats(step_size=alpha, update_rms=update_rms, clipped=clipped)
