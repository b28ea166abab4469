"""The Adafactor update, Algorithms 4 (matrices) and 5 (vectors) with every switch: the one
definition of the math, which the reference path, the DTensor path and (as the fused kernel's
specification) the fused CPU step all follow.

Every sum the update needs is a *partial* sum over the elements this process holds: sum X^2 for
the parameter scale (line 3), the row and column sums of G^2 + eps1 (lines 5-6), sum R for
mean(R) (line 7) and sum U^2 for clipping (line 9). `TensorUpdate` computes them in stages; each
stage returns the partial sums that must be summed over the mesh dims that shard the tensor before
the next stage runs. `reference_update` runs the stages back to back (a plain tensor holds all its
elements, so nothing is summed), `adafactor.distributed` all-reduces them for DTensor shards, so a
shard is updated by exactly the lines that update a whole tensor.

Non-finite policy (every path): G^2 saturates at the dtype's maximum (NaN stays NaN), sums are
taken in float64, and the factored U is formed as G / sqrt(R_i) / sqrt(C_j) times sqrt(mean R),
which stays finite where the product R C would under- or overflow. Arithmetic is fp32 (float64
for float64 parameters) whatever the parameter dtype; bf16 results are written back with the keyed
stochastic rounding of `adafactor.rounding`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ._common import FactorMode, GroupHyper, StepScalars, TensorStats
from .rounding import copy_keyed_rounded_


@dataclass(frozen=True)
class Partial:
    """A partial sum (float64, summed in place) and the mesh dims whose ranks must sum it."""

    tensor: torch.Tensor
    mesh_dims: tuple[int, ...]


@dataclass(frozen=True)
class Layout:
    """A tensor's global shape and the mesh dims that shard its last two dims and its leading
    dims (all empty for a plain tensor)."""

    shape: tuple[int, ...]
    rows_by: tuple[int, ...] = ()
    cols_by: tuple[int, ...] = ()
    lead_by: tuple[int, ...] = ()

    @property
    def every(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.rows_by) | set(self.cols_by) | set(self.lead_by)))

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


def compute_dtype(param: torch.Tensor) -> torch.dtype:
    """The dtype of the statistics and the arithmetic: float64 for float64 parameters, else fp32."""
    return torch.float64 if param.dtype == torch.float64 else torch.float32


class TensorUpdate:
    """One tensor's step, in the stages `sums`, `moments`, `clip_sums`, then `apply`.

    Each stage before `apply` returns the partial sums the next stage reads; a driver sums each
    over its mesh dims (or, for a plain tensor, does nothing) before calling the next stage.
    """

    def __init__(
        self,
        param: torch.Tensor,
        grad: torch.Tensor,
        state: dict,
        mode: FactorMode,
        scalars: StepScalars,
        hp: GroupHyper,
        need_rms: bool,
        layout: Layout | None = None,
        shard_index: Callable[[], torch.Tensor] | None = None,
    ) -> None:
        self.param, self.state, self.mode, self.scalars, self.hp = param, state, mode, scalars, hp
        self.dtype = compute_dtype(param)
        self.x = param.detach().to(self.dtype)  # X_{t-1}; only read (the result is written back)
        self.g = grad.detach().to(self.dtype)
        self.layout = layout or Layout(tuple(param.shape))
        self.need_rms = need_rms or hp.clip_threshold is not None
        self.shard_index = shard_index
        self.max = torch.finfo(self.dtype).max

    @staticmethod
    def _f64(t: torch.Tensor, dims: int | tuple[int, ...] | None = None) -> torch.Tensor:
        """A sum in float64 (over all elements, as a 1-element tensor, or over `dims`)."""
        if dims is None:
            return t.sum(dtype=torch.float64).reshape(1)
        return t.sum(dim=dims, dtype=torch.float64)

    @staticmethod
    def _sum_sq(t: torch.Tensor, dims: tuple[int, ...] | None = None) -> torch.Tensor:
        """sum t^2 in float64 (U^2 overflows fp32 for gradients near the fp32 maximum)."""
        if dims is None:
            return torch.linalg.vector_norm(t, dtype=torch.float64).square().reshape(1)
        return torch.linalg.vector_norm(t, dim=dims, dtype=torch.float64).square()

    def sums(self) -> list[Partial]:
        """Line 3's sum X^2, and lines 5-6's row and column sums of G^2 + eps1."""
        hp, lay, parts = self.hp, self.layout, []
        # eps1 is added to G^2 before averaging; G^2 saturates at the dtype's maximum.
        self.g2 = torch.clamp(self.g * self.g, max=self.max) + hp.eps1
        if hp.scale_parameter:
            self.xsq = self._sum_sq(self.x)
            parts.append(Partial(self.xsq, lay.every))
        if self.mode in ("both", "row"):
            self.row_sum = self._f64(self.g2, -1)
            parts.append(Partial(self.row_sum, lay.cols_by))
        if self.mode in ("both", "col"):
            self.col_sum = self._f64(self.g2, -2)
            parts.append(Partial(self.col_sum, lay.rows_by))
        return parts

    def _ema(self, key: str, target: torch.Tensor) -> torch.Tensor:
        """state[key] = beta2hat state[key] + (1 - beta2hat) target, in place."""
        b = self.scalars.beta2hat
        return self.state[key].mul_(b).add_(target * (1 - b))

    def _mean(self, total: torch.Tensor, count: int) -> torch.Tensor:
        return (total / count).clamp(max=self.max).to(self.dtype)

    def moments(self) -> list[Partial]:
        """Lines 5-8: the second-moment statistics, and U (up to sqrt(mean R) when factored)."""
        lay, parts, shape = self.layout, [], self.layout.shape
        g = self.g
        if self.mode == "none":
            # Alg. 5 line 5: V = b V + (1 - b)(G^2 + eps1); line 6: U = G / sqrt(V).
            self.u = g / self._ema("exp_avg_sq", self.g2).sqrt()
        else:
            # Row and column *means* (the paper's sums over m and n; line 7 is scale-free).
            r = self._ema("exp_avg_sq_row", self._mean(self.row_sum, shape[-1])) \
                if self.mode in ("both", "row") else None
            c = self._ema("exp_avg_sq_col", self._mean(self.col_sum, shape[-2])) \
                if self.mode in ("both", "col") else None
            if self.mode == "both":
                # Line 7: V_hat = R C / mean(R); U = G / sqrt(V_hat) = w sqrt(mean R) with
                # w = G / sqrt(R_i) / sqrt(C_j), finite wherever G is (apply multiplies it in).
                self.u = g * r.rsqrt().unsqueeze(-1) * c.rsqrt().unsqueeze(-2)
                self.r_sum = self._f64(r, -1)
                parts.append(Partial(self.r_sum, lay.rows_by))
            elif self.mode == "row":  # Table 2 row D: V_hat_ij = r_i, broadcast over columns
                self.u = g * r.rsqrt().unsqueeze(-1)
            else:  # row E: V_hat_ij = c_j, broadcast over rows
                self.u = g * c.rsqrt().unsqueeze(-2)
        del self.g2
        self.pending_mean_r = self.mode == "both" and bool(lay.rows_by)
        if self.mode == "both" and not self.pending_mean_r:
            self._scale_by_mean_r()  # every row of each matrix is here: mean(R) is known
        if self.need_rms:
            if self.pending_mean_r:  # per matrix: mean(R) differs between matrices
                self.usq = self._sum_sq(self.u, (-2, -1))
                parts.append(Partial(self.usq, tuple(sorted({*lay.rows_by, *lay.cols_by}))))
            else:
                self.usq = self._sum_sq(self.u)
                parts.append(Partial(self.usq, lay.every))
        return parts

    def _scale_by_mean_r(self) -> None:
        """U = w sqrt(mean R), once sum R has been summed over the rows' ranks."""
        mean_r = (self.r_sum / self.layout.shape[-2]).to(self.dtype)
        self.u = self.u * mean_r.sqrt().unsqueeze(-1).unsqueeze(-1)
        self.mean_r = mean_r

    def clip_sums(self) -> list[Partial]:
        """Factored with sharded rows: sum U^2 = sum over matrices of mean(R) sum w^2, summed
        over the ranks of sharded leading dims."""
        if not self.pending_mean_r:
            return []
        self._scale_by_mean_r()
        if not self.need_rms:
            return []
        self.usq = (self.usq * self.mean_r.double()).sum().reshape(1)
        return [Partial(self.usq, self.layout.lead_by)]

    def apply(self) -> TensorStats:
        """Lines 3, 9 and 10: alpha_t, the clipped update, momentum, weight decay, write-back."""
        hp, x, numel = self.hp, self.x, self.layout.numel
        rho = torch.ones((), dtype=self.dtype, device=x.device) * self.scalars.rho
        # Line 3: alpha_t = max(eps2, RMS(X_{t-1})) rho_t (rho_t itself without parameter scale).
        if hp.scale_parameter:
            x_rms = (self.xsq[0] / max(numel, 1)).sqrt().to(self.dtype)
            alpha = rho * torch.clamp(x_rms, min=hp.eps2)
        else:
            alpha = rho
        u = self.u
        if self.need_rms:
            update_rms = (self.usq[0] / max(numel, 1)).sqrt().to(self.dtype)
        else:
            update_rms = torch.full((), float("nan"), dtype=self.dtype, device=x.device)
        # Line 9: U_hat = U / max(1, RMS(U)/d): only ever scales down.
        if hp.clip_threshold is not None:
            clipped = update_rms > hp.clip_threshold
            u = u / torch.clamp(update_rms / hp.clip_threshold, min=1.0)
        else:
            clipped = torch.zeros((), dtype=torch.bool, device=x.device)
        step = alpha * u
        if hp.beta1:
            # Momentum on the scaled, clipped update, without bias correction (the reference
            # code's): m = beta1 m + (1 - beta1) alpha_t U_hat;  X -= m.
            step = self.state["exp_avg"].mul_(hp.beta1).add_(step, alpha=1 - hp.beta1)
        if hp.weight_decay:
            x = x * (1 - self.scalars.rho * hp.weight_decay)  # decoupled, from X_{t-1}
        # Line 10: X_t = X_{t-1} - alpha_t U_hat_t.
        x = x - step
        target = self.param.detach()
        if target.dtype == torch.bfloat16 and hp.stochastic_rounding:
            index = self.shard_index() if self.shard_index is not None else None
            copy_keyed_rounded_(target, x, self.state["rounding_key"], self.state["step"], index)
        else:
            target.copy_(x)
        return TensorStats(step_size=alpha.float(), update_rms=update_rms.float(), clipped=clipped)


def reference_update(
    param: torch.Tensor,
    grad: torch.Tensor,
    state: dict,
    mode: FactorMode,
    scalars: StepScalars,
    hp: GroupHyper,
    need_rms: bool = True,
) -> TensorStats:
    """One step for one plain tensor: every stage of `TensorUpdate`, nothing to sum across ranks.
    Traces under torch.compile without graph breaks."""
    update = TensorUpdate(param, grad, state, mode, scalars, hp, need_rms)
    update.sums()
    update.moments()
    update.clip_sums()
    return update.apply()
