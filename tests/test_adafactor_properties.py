"""Property tests (hypothesis) of the Adafactor update: clipping, transposes, bf16, state size."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from adafactor import Adafactor, optimizer_state_bytes

SETTINGS = settings(max_examples=25, deadline=None)


def _tensor(shape: tuple[int, ...], seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * scale


def _rms(x: torch.Tensor) -> float:
    return math.sqrt(float((x.double() ** 2).mean()))


@SETTINGS
@given(
    n=st.integers(1, 12),
    m=st.integers(1, 12),
    seed=st.integers(0, 2**16),
    grad_log10=st.floats(-6, 3),
    d=st.floats(0.05, 4.0),
    factored=st.sampled_from([True, False, "row", "col"]),
    implementation=st.sampled_from(["fused_cpu", "reference"]),
)
def test_clipping_never_increases_the_update_rms(
    n, m, seed, grad_log10, d, factored, implementation
):
    """U_hat = U / max(1, RMS(U)/d): RMS(U_hat) = min(RMS(U), d); small updates never scale up."""
    x0 = _tensor((n, m), seed)
    updates = {}
    for clip in (None, d):
        p = x0.clone().requires_grad_()
        opt = Adafactor(
            [p], lr=1e-2, scale_parameter=False, clip_threshold=clip, factored=factored,
            track_stats=True, implementation=implementation,
        )
        for step in range(3):
            before = p.detach().clone()
            p.grad = _tensor((n, m), seed + 1 + step, 10**grad_log10)
            opt.step()
        updates[clip] = (before - p.detach()) / 1e-2
        rms_u = opt.step_stats()["update_rms"]
    unclipped, clipped = _rms(updates[None]), _rms(updates[d])
    assert math.isclose(unclipped, rms_u, rel_tol=1e-4), (unclipped, rms_u)
    assert clipped <= unclipped * (1 + 1e-5) + 1e-9
    assert math.isclose(clipped, min(unclipped, d), rel_tol=1e-3, abs_tol=1e-6)


@SETTINGS
@given(
    n=st.integers(1, 9),
    m=st.integers(1, 9),
    seed=st.integers(0, 2**16),
    factored=st.sampled_from([True, False, "row", "col"]),
    implementation=st.sampled_from(["fused_cpu", "reference"]),
    beta1=st.sampled_from([None, 0.9]),
)
def test_transposing_a_weight_transposes_its_update(n, m, seed, factored, implementation, beta1):
    """Optimising W^T with gradients G^T gives the transposed iterates: rows and columns are
    treated symmetrically ("row" on W corresponds to "col" on W^T)."""
    transposed_mode = {True: True, False: False, "row": "col", "col": "row"}[factored]
    x0 = _tensor((n, m), seed)
    a = x0.clone().requires_grad_()
    b = x0.t().contiguous().requires_grad_()
    opt_a = Adafactor([a], factored=factored, beta1=beta1, implementation=implementation)
    opt_b = Adafactor([b], factored=transposed_mode, beta1=beta1, implementation=implementation)
    for step in range(4):
        g = _tensor((n, m), seed + 100 + step)
        a.grad, b.grad = g.clone(), g.t().contiguous()
        opt_a.step()
        opt_b.step()
        alpha = 1e-2 * max(1e-3, _rms(x0))
        torch.testing.assert_close(b.detach().t(), a.detach(), rtol=1e-6, atol=1e-5 * alpha)


@SETTINGS
@given(
    seed=st.integers(0, 2**16),
    grad_log10=st.floats(-12, 0),
    lr_log10=st.floats(-4, -3.5),
    factored=st.sampled_from([True, False]),
)
def test_bf16_step_does_not_vanish_for_small_gradients(seed, grad_log10, lr_log10, factored):
    """bf16 weights near 1 have an ulp of 2^-8 or 2^-7; an update of lr < 2^-9 rounds away under
    round-to-nearest, but stochastic rounding keeps its expected value."""
    lr = 10**lr_log10
    shape = (256, 256)  # enough elements that the mean of the rounded changes is stable
    x0 = (1.0 + 0.01 * _tensor(shape, seed)).to(torch.bfloat16)
    # Positive gradients: every element moves down by about lr (|U| is about 1 at t = 1).
    grad = (_tensor(shape, seed + 1).abs() + 0.5) * 10**grad_log10
    moved = {}
    for sr in (True, False):
        p = x0.clone().requires_grad_()
        opt = Adafactor(
            [p], lr=lr, scale_parameter=False, clip_threshold=None, factored=factored,
            stochastic_rounding=sr,
        )
        p.grad = grad.to(torch.bfloat16)
        opt.step()
        assert p.dtype == torch.bfloat16
        assert all(v.dtype == torch.float32 for v in opt.state[p].values() if torch.is_tensor(v))
        moved[sr] = (p.detach().float() - x0.float()).mean().item()
    # fp32 expectation of the mean change
    q = x0.float().clone().requires_grad_()
    ref = Adafactor([q], lr=lr, scale_parameter=False, clip_threshold=None, factored=factored)
    q.grad = grad.to(torch.bfloat16).float()
    ref.step()
    expected = (q.detach() - x0.float()).mean().item()
    assert expected < 0
    assert moved[False] == 0.0  # round-to-nearest loses the whole step
    assert math.isclose(moved[True], expected, rel_tol=0.25)


@SETTINGS
@given(
    shape=st.lists(st.integers(1, 40), min_size=2, max_size=3).map(tuple),
    beta1=st.sampled_from([None, 0.9]),
)
def test_factored_matrix_keeps_rows_plus_cols_floats(shape, beta1):
    """Second-moment state of an (n, m) matrix is exactly n + m fp32 floats (per leading index for
    rank 3); momentum adds one float per parameter; the step counter is a 4-byte float32 tensor
    (as in torch.optim)."""
    p = torch.zeros(shape, requires_grad=True)
    opt = Adafactor([p], beta1=beta1)
    p.grad = torch.ones(shape)
    opt.step()
    lead = math.prod(shape[:-2])
    second_moment_floats = lead * (shape[-2] + shape[-1])
    momentum_floats = p.numel() if beta1 else 0
    assert optimizer_state_bytes(opt) == 4 * (second_moment_floats + momentum_floats + 1)
    (row,) = opt.factoring_report()
    assert row["factored"] and row["state_floats"] == second_moment_floats + momentum_floats
