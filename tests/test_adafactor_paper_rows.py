"""Adafactor against an independent float64 transcription of Algorithms 3-5, for every Table 2 row
(A, C-P), on tall, wide, vector and rank-3 tensors; Adam equality; transformers' Adafactor.

The transcription below is written from the paper's Algorithms (docs/paper.md), not from the
implementation: it uses the paper's row and column *sums* (the implementation keeps means), loops
over the leading dims of rank-3 tensors, and applies Algorithm 3's decay correction for constant
beta2.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, replace

import pytest
import torch

from adafactor import Adafactor, paper_step_size
from adafactor.schedules import second_moment_decay, step_scalars_in_graph
from adafactor.triton_step import triton_available

SHAPES = {"tall": (7, 3), "wide": (3, 7), "vector": (5,), "rank3": (2, 3, 5)}
STEPS = 8


@dataclass(frozen=True)
class Setting:
    """One Table 2 row: factored in {None, "yes", "row", "col"}; beta2 constant or decay exponent
    c (beta2hat = max(0, 1 - k t^-c), k = 1 in the paper); clip d; relative step (rho_t = s_t,
    parameter scale) or absolute alpha_t = 0.1 s_t."""

    factored: str | None = None
    beta1: float = 0.0
    beta2: float | None = 0.999
    c: float | None = None
    d: float | None = None
    relative: bool = False
    k: float = 1.0


TABLE2 = {
    "A": Setting(),
    "C": Setting(factored="yes"),
    "D": Setting(factored="row"),
    "E": Setting(factored="col"),
    "F": Setting(beta2=0.99),
    "G": Setting(beta2=0.9),
    "H": Setting(d=1.0),
    "I": Setting(d=2.0),
    "J": Setting(factored="yes", d=1.0),
    "K": Setting(beta2=None, c=0.5),
    "L": Setting(beta2=None, c=0.8),
    "M": Setting(beta2=None, c=1.0),
    "N": Setting(beta2=None, c=0.8, d=1.0),
    "O": Setting(factored="yes", beta2=None, c=0.8, d=1.0, relative=True),
    "P": Setting(factored="yes", beta1=0.9, beta2=None, c=0.8, d=1.0, relative=True),
}
EPS1, EPS2 = 1e-30, 1e-3


# ---------------------------------------------------------------------------------------------
# float64 transcription of the paper
def s_t(t: int, warmup: bool) -> float:
    return min(1e-6 * t, 1 / math.sqrt(t)) if warmup else min(1e-2, 1 / math.sqrt(t))


def beta2hat(t: int, s: Setting) -> float:
    if s.beta2 is not None:  # Algorithm 3
        return s.beta2 * (1 - s.beta2 ** (t - 1)) / (1 - s.beta2**t)
    return max(0.0, 1 - s.k * t ** (-s.c))  # Section 7.2 (k = 1)


def rms64(x: torch.Tensor) -> float:
    return math.sqrt(float((x * x).sum()) / x.numel())


def paper_run(
    x0: torch.Tensor, grads: list[torch.Tensor], s: Setting, warmup: bool, eps1: float = EPS1,
    bf16: bool = False,
) -> tuple[list[torch.Tensor], list[float]]:
    """Iterates X_1..X_T and step sizes alpha_1..alpha_T, all in float64 (with bf16: X is rounded
    to the nearest bf16 after each step, as a bf16 parameter is)."""
    x = x0.double().clone()
    factored = s.factored is not None and x.dim() >= 2
    if factored:
        mats = x.reshape(-1, x.shape[-2], x.shape[-1]).shape
        R = torch.zeros(mats[0], mats[1], dtype=torch.float64)  # row sums, one per matrix
        C = torch.zeros(mats[0], mats[2], dtype=torch.float64)  # column sums
    else:
        V = torch.zeros_like(x)
    m = torch.zeros_like(x)
    xs, alphas = [], []
    for t, g32 in enumerate(grads, start=1):
        g = g32.double()
        rho = s_t(t, warmup)
        alpha = max(EPS2, rms64(x)) * rho if s.relative else 0.1 * rho
        b = beta2hat(t, s)
        if factored:
            G = g.reshape(mats)
            vhat = torch.empty(mats, dtype=torch.float64)
            for k in range(mats[0]):
                sq = G[k] ** 2 + eps1
                R[k] = b * R[k] + (1 - b) * sq.sum(dim=1)  # Alg. 4 line 5: (G^2 + eps1) 1_m
                C[k] = b * C[k] + (1 - b) * sq.sum(dim=0)  # line 6: 1_n^T (G^2 + eps1)
                n_rows, n_cols = sq.shape
                if s.factored == "yes":
                    vhat[k] = torch.outer(R[k], C[k]) / R[k].sum()  # line 7
                elif s.factored == "row":  # row D: r_i = row mean, broadcast over columns
                    vhat[k] = (R[k] / n_cols).unsqueeze(1).expand(n_rows, n_cols)
                else:  # row E: c_j = column mean, broadcast over rows
                    vhat[k] = (C[k] / n_rows).unsqueeze(0).expand(n_rows, n_cols)
            vhat = vhat.reshape(x.shape)
        else:
            V = b * V + (1 - b) * (g**2 + eps1)  # Alg. 5 line 5
            vhat = V
        U = g / vhat.sqrt()
        if s.d is not None:
            U = U / max(1.0, rms64(U) / s.d)
        if s.beta1:
            m = s.beta1 * m + (1 - s.beta1) * alpha * U
            x = x - m
        else:
            x = x - alpha * U
        if bf16:
            x = x.to(torch.bfloat16).double()
        xs.append(x.clone())
        alphas.append(alpha)
    return xs, alphas


# ---------------------------------------------------------------------------------------------
def make_optimizer(
    p: torch.Tensor, s: Setting, warmup: bool, implementation: str, eps1: float = EPS1
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    factored = {None: False, "yes": True, "row": "row", "col": "col"}[s.factored]
    common = dict(
        beta1=s.beta1 or None,
        beta2=s.beta2,
        decay_exponent=s.c if s.c is not None else 0.8,
        decay_scale=s.k,
        clip_threshold=s.d,
        factored=factored,
        eps=(eps1, EPS2),
        implementation=implementation,
    )
    if s.relative:
        return Adafactor([p], lr=None, scale_parameter=True, warmup_init=warmup, **common), None
    opt = Adafactor([p], lr=0.1, scale_parameter=False, **common)
    # alpha_t = 0.1 s_t through an ordinary LR scheduler (its epoch counter starts at 0).
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: paper_step_size(e + 1, warmup))
    return opt, sched


def random_problem(shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(shape, generator=gen) * 0.01  # fp32 resolves 1e-4 alpha at this scale
    # Gradients of very different scales across steps and rows/cols exercise the estimator.
    grads = []
    for _ in range(STEPS):
        scale = torch.exp(torch.randn(shape, generator=gen))
        magnitude = 10 ** float(torch.randint(-3, 2, ()))
        grads.append(torch.randn(shape, generator=gen) * scale * magnitude)
    return x0, grads


@pytest.mark.parametrize("implementation", ["fused_cpu", "reference"])
@pytest.mark.parametrize("shape_name", list(SHAPES))
@pytest.mark.parametrize("row", list(TABLE2))
def test_table2_row_matches_float64_transcription(row: str, shape_name: str, implementation: str):
    check_against_transcription(TABLE2[row], SHAPES[shape_name], f"{row}/{shape_name}",
                                implementation)


def check_against_transcription(s: Setting, shape: tuple[int, ...], key: str,
                                implementation: str) -> None:
    """Steps ``implementation`` on the seeded problem ``key`` without warmup; every iterate
    within 1e-4 alpha_t of the float64 transcription."""
    x0, grads = random_problem(shape, seed=zlib.crc32(key.encode()))
    expected, alphas = paper_run(x0, grads, s, warmup=False)
    p = x0.clone().requires_grad_()
    opt, sched = make_optimizer(p, s, warmup=False, implementation=implementation)
    for t, g in enumerate(grads):
        p.grad = g.clone()
        opt.step()
        if sched is not None:
            sched.step()
        err = (p.detach().double() - expected[t]).abs().max().item()
        assert err <= 1e-4 * alphas[t], (key, t + 1, err, alphas[t])


# Rows whose second-moment clock is rescaled by F = 10 (one step stands for 10 paper steps):
# constant beta2 -> 1 - F (1 - beta2), so row G's 0.9 is 0 (V_t = G_t^2); 1 - t^-c -> the
# paper's decay over the F steps ending at F t, max(0, 1 - F^(1-c) t^-c).
RESCALED = {
    "A": Setting(beta2=0.99),
    "G": Setting(beta2=0.0),
    "K": Setting(beta2=None, c=0.5, k=10**0.5),
    "L": Setting(beta2=None, c=0.8, k=10**0.2),
    "P": Setting(factored="yes", beta1=0.9, beta2=None, c=0.8, d=1.0, relative=True, k=10**0.2),
}
RESCALED_PATHS = ["fused_cpu", "reference"] + (["triton"] if triton_available() else [])


@pytest.mark.parametrize("implementation", RESCALED_PATHS)
@pytest.mark.parametrize("row", list(RESCALED))
def test_rescaled_decay_matches_float64_transcription(row: str, implementation: str):
    for shape_name, shape in SHAPES.items():
        check_against_transcription(RESCALED[row], shape, f"rescaled/{row}/{shape_name}",
                                    implementation)


def test_rescaled_decay_values():
    """beta2hat_t = max(0, 1 - k t^-c): 0 while k t^-c >= 1 (K at F = 10: t <= 10), then the
    paper's 1 - t'^-c over the F steps ending at t' = F t; beta2 = 0 gives 0 at every step."""
    k = 10**0.5
    assert [second_moment_decay(t, None, 0.5, k) for t in (1, 10)] == [0.0, 0.0]
    assert second_moment_decay(11, None, 0.5, k) == pytest.approx(1 - math.sqrt(10 / 11))
    assert second_moment_decay(1, None, 0.8, 10**0.2) == 0.0
    assert second_moment_decay(7, None, 1.0, 1.0) == pytest.approx(1 - 1 / 7)
    assert all(second_moment_decay(t, 0.0, 0.8) == 0.0 for t in (1, 2, 50))
    for t in (1, 3, 11, 400):  # the compiled path's tensors give the same values
        _, b = step_scalars_in_graph(t, 0.1, False, None, 0.5, k)
        assert float(b) == pytest.approx(second_moment_decay(t, None, 0.5, k), abs=1e-7)
        assert float(step_scalars_in_graph(t, 0.1, False, 0.0, 0.8)[1]) == 0.0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"decay_scale": 0.5}, "decay_scale"),
    ({"decay_scale": float("nan")}, "decay_scale"),
    ({"decay_scale": 2.0, "beta2": 0.999}, "applies only with beta2=None"),
    ({"beta2": -0.1}, "0 <= beta2 < 1"),
])
def test_bad_decay_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Adafactor([torch.zeros(3, requires_grad=True)], **kwargs)


@pytest.mark.parametrize("implementation", ["fused_cpu", "reference"])
@pytest.mark.parametrize("shape_name", ["tall", "rank3"])
@pytest.mark.parametrize("row", list(TABLE2))
def test_table2_row_matches_float64_transcription_in_bf16(
    row: str, shape_name: str, implementation: str
):
    """bf16 parameters and gradients, rounded to nearest: each step agrees with the transcription
    (which rounds X to bf16 after each step) except where fp32 and float64 fall on either side of
    a rounding boundary, a flip of one bf16 ulp that then persists (at most one per step)."""
    s = TABLE2[row]
    x0, grads = random_problem(SHAPES[shape_name], seed=zlib.crc32(f"bf16/{row}".encode()))
    x0 = x0.bfloat16()
    grads = [g.bfloat16() for g in grads]
    expected, alphas = paper_run(x0, grads, s, warmup=False, bf16=True)
    p = x0.clone().requires_grad_()
    opt, sched = make_optimizer(p, s, warmup=False, implementation=implementation)
    for group in opt.param_groups:
        group["stochastic_rounding"] = False
    for t, g in enumerate(grads):
        p.grad = g.clone()
        opt.step()
        if sched is not None:
            sched.step()
        err = (p.detach().double() - expected[t]).abs()
        ulp = float(expected[t].abs().max()) * 2.0**-7
        assert err.max().item() <= 1e-4 * alphas[t] + (t + 1) * ulp, (row, t + 1)
        assert (err <= 1e-4 * alphas[t]).float().mean().item() >= 0.75, (row, t + 1)


@pytest.mark.parametrize("row", ["A", "C", "N", "O", "P"])
def test_warmup_schedules_match_transcription(row: str):
    """With warmup the step sizes are ~1e-7 t (alpha) or ~1e-9 t (rho with the eps2 floor); tiny
    weights let fp32 resolve 1e-4 of them."""
    s = TABLE2[row]
    x0, grads = random_problem((6, 4), seed=3)
    x0 = x0 * 1e-7
    expected, alphas = paper_run(x0, grads, s, warmup=True)
    p = x0.clone().requires_grad_()
    opt, sched = make_optimizer(p, s, warmup=True, implementation="fused_cpu")
    for t, g in enumerate(grads):
        p.grad = g.clone()
        opt.step()
        if sched is not None:
            sched.step()
        err = (p.detach().double() - expected[t]).abs().max().item()
        assert err <= 1e-4 * alphas[t], (row, t + 1, err, alphas[t])


@pytest.mark.parametrize("implementation", ["fused_cpu", "reference"])
def test_eps1_is_added_not_clamped_for_zero_and_tiny_gradients(implementation: str):
    """G^2 far below eps1 gives U = G / sqrt(G^2 + eps1) ~ 1e-5 for G = 1e-20 (a clamp would give
    U = 1); zero gradients give U = 0 and no NaN. Vector (Alg. 5) and factored matrix (Alg. 4)."""
    s = Setting(beta2=None, c=0.8)
    vector_grad = torch.tensor([0.0, 1e-20, -1e-16, 1e-14, 1.0])
    matrix_grad = torch.randn(4, 5, generator=torch.Generator().manual_seed(0)) * 1e-20
    matrix_grad[0, 0] = 0.0
    for grad, setting in ((vector_grad, s), (matrix_grad, replace(s, factored="yes"))):
        x0 = torch.zeros_like(grad)
        grads = [grad.clone() for _ in range(3)]
        expected, alphas = paper_run(x0, grads, setting, warmup=False)
        p = x0.clone().requires_grad_()
        opt, sched = make_optimizer(p, setting, warmup=False, implementation=implementation)
        for t, g in enumerate(grads):
            p.grad = g.clone()
            opt.step()
            sched.step()
            assert torch.isfinite(p).all()
            err = (p.detach().double() - expected[t]).abs().max().item()
            assert err <= 1e-4 * alphas[t]
        first_update = (expected[0] / -alphas[0]).flatten()
        assert first_update.abs().max() <= 1.0 + 1e-6  # the paper's U is bounded by 1 at t = 1
        assert p.detach().flatten()[0] == 0.0  # zero gradient, zero update


@pytest.mark.parametrize("shape", [(7, 3), (3, 7), (5,), (2, 3, 5)])
def test_adam_form_equals_torch_adam(shape):
    """Constant beta2 with Algorithm 3's decay correction is Adam with beta1 = 0 and eps = 0."""
    x0, grads = random_problem(shape, seed=11)
    a = x0.clone().requires_grad_()
    b = x0.clone().requires_grad_()
    ours = Adafactor(
        [a], lr=1e-3, beta2=0.999, factored=False, clip_threshold=None, scale_parameter=False,
        eps=(0.0, 1e-3),
    )
    adam = torch.optim.Adam([b], lr=1e-3, betas=(0.0, 0.999), eps=0.0)
    for g in grads:
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        adam.step()
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4 * 1e-3)


@pytest.mark.parametrize("shape", [(7, 3), (3, 7), (5,), (2, 3, 5)])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"warmup_init": True},
        {"beta1": 0.9},
        {"clip_threshold": 2.0},
    ],
    ids=["defaults", "warmup_init", "beta1", "clip2"],
)
def test_matches_transformers_adafactor_where_settings_coincide(shape, options):
    """transformers' relative-step Adafactor (decay_rate=-0.8, eps=(1e-30, 1e-3)) computes the same
    update as ours with lr=None; its beta1 is also momentum on the scaled, clipped update."""
    hf = pytest.importorskip("transformers.optimization")
    x0, grads = random_problem(shape, seed=5)
    x0 = x0 + 1.0  # parameter scale > eps2
    a = x0.clone().requires_grad_()
    b = x0.clone().requires_grad_()
    ours = Adafactor(
        [a],
        beta1=options.get("beta1"),
        clip_threshold=options.get("clip_threshold", 1.0),
        warmup_init=options.get("warmup_init", False),
    )
    theirs = hf.Adafactor(
        [b],
        lr=None,
        eps=(1e-30, 1e-3),
        clip_threshold=options.get("clip_threshold", 1.0),
        decay_rate=-0.8,
        beta1=options.get("beta1"),
        relative_step=True,
        scale_parameter=True,
        warmup_init=options.get("warmup_init", False),
    )
    for t, g in enumerate(grads, start=1):
        alpha = s_t(t, options.get("warmup_init", False)) * max(EPS2, rms64(a.detach().double()))
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4 * alpha)
