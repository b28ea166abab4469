"""AdaX (Li, Zhang, Wang & Luo 2020, "AdaX: Adaptive Gradient Descent with Exponential Long Term
Memory", arXiv:2004.09740) as a torch.optim.Optimizer.

Why it is written here: no maintained PyPI package ships AdaX (the PyPI package named ``adax`` is
an unrelated heater-control library), so this baseline is implemented from the paper's rule.

The rule, per parameter, for step t = 1, 2, ... with m_0 = v_0 = 0::

    m_t     = beta1 m_{t-1} + (1 - beta1) g_t                (no bias correction of m)
    v_t     = (1 + beta2) v_{t-1} + beta2 g_t^2
    vhat_t  = v_t / B_t,   B_t = (1 + beta2)^t - 1
    theta_t = theta_{t-1} - lr m_t / (sqrt(vhat_t) + eps)

Unlike Adam's exponential moving average, the weight of past squared gradients grows, so the
second moment has a long-term memory. Defaults: lr = 1e-3, beta1 = 0.9, beta2 = 1e-4,
eps = 1e-12 (the authors' released code).

``weight_decay`` > 0 gives the authors' "AdaX-W": decoupled decay theta <- theta (1 - lr wd)
before the update (the decay is neither adapted nor bias corrected).

eps placement: eps is added to sqrt(vhat_t), as the paper writes the rule. The authors' released
code instead adds eps to sqrt(v_t) of the unnormalised v and multiplies the step by sqrt(B_t),
i.e. lr m_t / (sqrt(vhat_t) + eps / sqrt(B_t)): an effective eps of eps / sqrt(B_t), which is
larger than eps early on (B_1 = beta2) and vanishes as B_t grows. With eps = 1e-12 the two agree
unless the gradients are tiny.

Storage: v_t itself grows like (1 + beta2)^t and overflows float32 near t = 885k at
beta2 = 1e-4, so the state holds vhat_t (``exp_avg_sq_normalized``), updated by the exactly
equivalent recurrence of `second_moment_coefficients`. State per parameter: ``exp_avg`` (m_t) and
``exp_avg_sq_normalized`` (vhat_t), both in the parameter's dtype and shape, and ``step`` (t, a
Python int, so step() never reads a tensor back to the host). Arithmetic is done in the
parameter's dtype (fp32 or bf16).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["AdaX", "second_moment_coefficients"]

# Above this exponent math.expm1 would overflow float64 (max ~ e^709.78); there 1 / B_t equals
# e^(-x) to double precision.
_MAX_EXPONENT = 700.0


def second_moment_coefficients(step: int, beta2: float) -> tuple[float, float]:
    """(a_t, b_t) such that vhat_t = a_t vhat_{t-1} + b_t g_t^2 for 1-based step t.

    With B_t = (1 + beta2)^t - 1, dividing v_t = (1 + beta2) v_{t-1} + beta2 g_t^2 by B_t gives
    a_t = (1 + beta2) B_{t-1} / B_t and b_t = beta2 / B_t, and a_t + b_t = 1 (since
    (1 + beta2) B_{t-1} + beta2 = B_t). At t = 1, a_1 = 0 and b_1 = 1. B_t is formed in float64
    as expm1(t log1p(beta2)), accurate also for small beta2 t; only the two bounded
    coefficients (both in [0, 1]) reach the tensors, so nothing overflows at any t.
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ValueError(f"AdaX: step must be an int >= 1, got {step!r}")
    if step == 1:
        return 0.0, 1.0  # vhat_1 = g_1^2 exactly, whatever vhat_0 holds
    x = step * math.log1p(beta2)  # log (1 + beta2)^t
    b = beta2 * math.exp(-x) if x > _MAX_EXPONENT else beta2 / math.expm1(x)
    # a_t = (1 + beta2) B_{t-1} / B_t = 1 - b_t; written as 1 - b_t it is as accurate (b_t < 1 and
    # a_t >= 1/2 for t >= 2) and keeps a_t + b_t = 1 and 0 <= a_t <= 1 in floating point.
    return 1.0 - b, b


def _is_real(value: Any) -> bool:
    """A finite int or float (bools are not numbers here)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check(name: str, value: Any, ok: bool, expected: str) -> None:
    if not ok:
        raise ValueError(f"AdaX: invalid {name}={value!r}; expected {expected}")


def _check_parameter(p: torch.Tensor) -> None:
    """A sparse gradient or a non-float parameter is a clear error (neither is supported)."""
    if p.grad is not None and p.grad.is_sparse:
        raise RuntimeError(
            f"AdaX does not support sparse gradients (got one for a parameter of shape "
            f"{tuple(p.shape)}); use a dense embedding (sparse=False)"
        )
    if not p.is_floating_point():
        raise RuntimeError(f"AdaX: parameter of dtype {p.dtype} is not a float")


def _validate_group(group: dict[str, Any]) -> None:
    lr, beta1, beta2 = group["lr"], group["beta1"], group["beta2"]
    eps, wd = group["eps"], group["weight_decay"]
    _check("lr", lr, _is_real(lr) and lr >= 0, "a finite number >= 0")
    _check("beta1", beta1, _is_real(beta1) and 0 <= beta1 < 1, "0 <= beta1 < 1")
    _check("beta2", beta2, _is_real(beta2) and beta2 > 0, "a finite number > 0")
    _check("eps", eps, _is_real(eps) and eps >= 0, "a finite number >= 0")
    _check("weight_decay", wd, _is_real(wd) and wd >= 0, "a finite number >= 0")


class AdaX(torch.optim.Optimizer):
    """AdaX / AdaX-W; see the module docstring for the rule.

    Args:
        params: tensors, (name, tensor) pairs, or param-group dicts (any hyperparameter below
            may be overridden per group).
        lr: step size (>= 0); an LR scheduler may change ``param_group["lr"]``.
        beta1: first-moment decay, 0 <= beta1 < 1 (m is not bias corrected).
        beta2: second-moment growth rate, > 0.
        eps: added to sqrt(vhat_t), >= 0.
        weight_decay: decoupled decay rate (AdaX-W), >= 0.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 1e-4,
        eps: float = 1e-12,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = {
            "lr": lr,
            "beta1": beta1,
            "beta2": beta2,
            "eps": eps,
            "weight_decay": weight_decay,
        }
        _validate_group(defaults)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        _validate_group(self.param_groups[-1])

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One update of every parameter that has a gradient; returns the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            _validate_group(group)  # an LR scheduler or the user may have changed it
            lr = float(group["lr"])
            beta1 = float(group["beta1"])
            beta2 = float(group["beta2"])
            eps = float(group["eps"])
            weight_decay = float(group["weight_decay"])
            for p in group["params"]:
                grad = p.grad
                if grad is None:
                    continue
                _check_parameter(p)
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq_normalized"] = torch.zeros_like(
                        p, memory_format=torch.preserve_format
                    )
                state["step"] += 1
                a, b = second_moment_coefficients(state["step"], beta2)
                exp_avg = state["exp_avg"]
                vhat = state["exp_avg_sq_normalized"]

                if weight_decay != 0:
                    p.mul_(1.0 - lr * weight_decay)
                exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)
                vhat.mul_(a).addcmul_(grad, grad, value=b)
                denom = vhat.sqrt().add_(eps)
                p.addcdiv_(exp_avg, denom, value=-lr)
        return loss
