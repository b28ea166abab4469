"""The CUDA step: Triton kernels for the update math of `adafactor.reference`, every factor mode.

A tensor is seen as B matrices of M x N (rank >= 2: the leading dims are the batch; a vector is
1 x 1 x n). Three passes, each a grid of (matrix, row block, column block) tiles:

1. `_sums_kernel` reads G and X: per-tile float64 partial row and column sums of G^2 + eps1
   (G^2 saturated at the fp32 maximum) and of X^2; torch sums the small partials (no atomics,
   so the result does not depend on scheduling).
2. `_usq_kernel` reads G (and updates the full second moment V in place for mode "none"): the
   float64 partial sums of w^2, w = G / sqrt(R_i) / sqrt(C_j) (or G / sqrt(r_i), G / sqrt(c_j),
   G / sqrt(V)).
3. `_apply_kernel` reads G and X and writes X (and the momentum): X - f w, with f = alpha_t
   sqrt(mean R) / max(1, RMS(U)/d) per matrix, decoupled weight decay, and the bf16 write-back
   with the keyed stochastic rounding of `adafactor.rounding` (the same hash, the same bits).

The EMAs of the row and column statistics and the per-matrix scalars are small torch ops on the
device; nothing is read back to the host. Under TRITON_INTERPRET=1 the same kernels run on CPU
tensors, which is how the tests check them against the float64 transcription.
"""

from __future__ import annotations

import importlib.util
import os

import torch

from ._common import FactorMode, GroupHyper, StepScalars, TensorStats
from .rounding import step_seeds

_MODES = {"both": 0, "row": 1, "col": 2, "none": 3}
_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_FP32_MAX = torch.finfo(torch.float32).max
# A tile holds 16 x 128 elements on a GPU; the interpreter runs each program in numpy, so it
# takes far larger tiles (a 1 x 10^7 tensor is 153 programs, not 78125).
TILE_GPU, TILE_INTERPRETED = (16, 128), (64, 1024)


def triton_available() -> bool:
    """Whether triton can be imported (it is an optional dependency: the `gpu` extra)."""
    return importlib.util.find_spec("triton") is not None


def interpreted() -> bool:
    """Whether Triton runs kernels on CPU tensors (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def why_not_triton(p: torch.Tensor, g: torch.Tensor, state: dict) -> str | None:
    """Why the Triton step cannot take this tensor (None if it can)."""
    if not triton_available():
        return "triton is not installed (pip install 'adafactor-repro[gpu]')"
    if p.device.type != "cuda" and not interpreted():
        return f"it is on {p.device} (the Triton step runs on CUDA, or anywhere interpreted)"
    if p.dtype not in _DTYPES:
        return f"its dtype is {p.dtype} (the kernel takes float32, bfloat16, float16)"
    if g.dtype != p.dtype:
        return f"its gradient has dtype {g.dtype}"
    if p.numel() == 0:
        return "it is empty"
    if not (p.is_contiguous() and g.is_contiguous()):
        return "it or its gradient is not contiguous (a view, a transpose or channels_last)"
    for key in ("exp_avg_sq_row", "exp_avg_sq_col", "exp_avg_sq", "exp_avg"):
        v = state.get(key)
        if v is not None and not (v.dtype == torch.float32 and v.is_contiguous()):
            return f"its state {key!r} is not a contiguous float32 tensor"
    return None


def _kernels():
    """The kernels module, imported on first use (importing triton is slow and optional)."""
    from . import triton_kernels

    return triton_kernels.sums_kernel, triton_kernels.usq_kernel, triton_kernels.apply_kernel


def _next_pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def tile_shape(M: int, N: int, interpreted_kernels: bool) -> tuple[int, int]:
    """(BM, BN): powers of two covering an M x N matrix with about one tile's elements, so that a
    thin matrix (1 x n, n x 1, 3 x n) gets a long tile instead of thousands of mostly empty ones."""
    bm0, bn0 = TILE_INTERPRETED if interpreted_kernels else TILE_GPU
    bn = min(_next_pow2(N), bm0 * bn0 // min(_next_pow2(M), bm0))
    return min(_next_pow2(M), bm0 * bn0 // bn), bn


def _matrices(shape: torch.Size, mode: FactorMode) -> tuple[int, int, int]:
    """(B, M, N): a tensor as B matrices of M x N (a vector, or an unfactored tensor of rank < 2,
    is one 1 x n matrix)."""
    if len(shape) < 2:
        return 1, 1, max(1, shape.numel())
    m, n = shape[-2], shape[-1]
    return shape.numel() // (m * n), m, n


def triton_update(
    p: torch.Tensor,
    g: torch.Tensor,
    state: dict,
    mode: FactorMode,
    scalars: StepScalars,
    hp: GroupHyper,
    step: int,
) -> TensorStats:
    """One tensor's step with the Triton kernels (a tensor `why_not_triton` accepts)."""
    import triton

    sums_k, usq_k, apply_k = _kernels()
    B, M, N = _matrices(p.shape, mode)
    BM, BN = tile_shape(M, N, p.device.type != "cuda")
    n_rb, n_cb = triton.cdiv(M, BM), triton.cdiv(N, BN)
    grid = (B, n_rb, n_cb)
    dev, f64 = p.device, torch.float64
    x, gr = p.detach(), g.detach()
    b = float(scalars.beta2hat)
    want_row, want_col = mode in ("both", "row"), mode in ("both", "col")
    rowp = torch.empty((B, n_cb, M) if want_row else (1,), dtype=f64, device=dev)
    colp = torch.empty((B, n_rb, N) if want_col else (1,), dtype=f64, device=dev)
    xsq = torch.empty((B * n_rb * n_cb) if hp.scale_parameter else 1, dtype=f64, device=dev)
    sums_k[grid](gr, x, rowp, colp, xsq, M, N, n_rb, n_cb, hp.eps1, FMAX=_FP32_MAX,
                 WANT_ROW=want_row, WANT_COL=want_col, WANT_X=hp.scale_parameter,
                 BM=BM, BN=BN)
    dummy = torch.empty(1, dtype=torch.float32, device=dev)
    r = c = v = dummy
    if want_row:  # the EMAs of the row and column means, as the reference forms them
        r = state["exp_avg_sq_row"].view(B, M)
        r.mul_(b).add_((rowp.sum(1) / N).clamp(max=_FP32_MAX).float() * (1 - b))
    if want_col:
        c = state["exp_avg_sq_col"].view(B, N)
        c.mul_(b).add_((colp.sum(1) / M).clamp(max=_FP32_MAX).float() * (1 - b))
    if mode == "none":
        v = state["exp_avg_sq"]
    usq = torch.empty(B * n_rb * n_cb, dtype=f64, device=dev)
    usq_k[grid](gr, r, c, v, usq, M, N, n_rb, n_cb, hp.eps1, b, 1 - b, FMAX=_FP32_MAX,
                MODE=_MODES[mode], BM=BM, BN=BN)
    # Per matrix: sqrt(mean R) (mode "both"; 1 otherwise) and sum U^2 = mean(R) sum w^2.
    if mode == "both":
        mean_r = r.sum(-1, dtype=f64) / M
        scale = mean_r.float().sqrt()
        usq_total = (usq.view(B, -1).sum(1) * mean_r.float().double()).sum()
    else:
        scale = torch.ones(B, dtype=torch.float32, device=dev)
        usq_total = usq.sum()
    numel = p.numel()
    rho = torch.full((), float(scalars.rho), dtype=torch.float32, device=dev)
    if hp.scale_parameter:
        alpha = rho * torch.clamp((xsq.sum() / numel).sqrt().float(), min=hp.eps2)
    else:
        alpha = rho
    update_rms = (usq_total / numel).sqrt().float()
    if hp.clip_threshold is not None:
        clipped = update_rms > hp.clip_threshold
        factor = alpha * scale / torch.clamp(update_rms / hp.clip_threshold, min=1.0)
    else:
        clipped = torch.zeros((), dtype=torch.bool, device=dev)
        factor = alpha * scale
    rounding = p.dtype == torch.bfloat16 and hp.stochastic_rounding
    s0, s1 = step_seeds(state["rounding_key"], step) if rounding else (0, 0)
    mom = state["exp_avg"] if hp.beta1 else dummy
    decay = 1 - float(scalars.rho) * hp.weight_decay if hp.weight_decay else 1.0
    apply_k[grid](x, gr, r, c, v, mom, factor.contiguous(), M, N, hp.eps1,
                  float(hp.beta1 or 0.0), decay, s0, s1, FMAX=_FP32_MAX, MODE=_MODES[mode],
                  UPDATE_V=False, MOMENTUM=bool(hp.beta1), ROUND=rounding,
                  BM=BM, BN=BN)
    return TensorStats(step_size=alpha.float(), update_rms=update_rms, clipped=clipped)
