"""Tests for the AdaX baseline optimizer (experiments/baselines/adax.py)."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from adafactor import optimizer_state_bytes
from experiments.baselines.adax import AdaX, second_moment_coefficients

SHAPES = [(7,), (5, 3), (2, 3, 4)]
STEPS = 30

# (lr, beta1, beta2, eps, weight_decay, gradient scale). The scales put sqrt(vhat) near eps in
# some settings, so a wrong eps placement (e.g. eps / sqrt(B_t), as in the authors' code) shows.
SETTINGS = [
    pytest.param(1e-3, 0.9, 1e-4, 1e-12, 0.0, 1.0, id="defaults"),
    pytest.param(1e-2, 0.5, 0.1, 1e-3, 0.0, 1e-3, id="beta2=0.1-eps~grad"),
    pytest.param(1e-2, 0.9, 1e-4, 1e-4, 0.1, 1e-4, id="beta2=1e-4-wd-eps~grad"),
    pytest.param(1e-2, 0.0, 0.1, 0.0, 0.01, 1.0, id="beta1=0-eps=0-wd"),
]


def paper_reference(
    params: list[torch.Tensor],
    grads: list[list[torch.Tensor]],
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> list[torch.Tensor]:
    """The paper's rule as written, in float64, with the unnormalised v_t."""
    theta = [p.double().clone() for p in params]
    m = [torch.zeros_like(p) for p in theta]
    v = [torch.zeros_like(p) for p in theta]
    for t, step_grads in enumerate(grads, start=1):
        for i, g32 in enumerate(step_grads):
            g = g32.double()
            theta[i] = theta[i] * (1 - lr * weight_decay)
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = (1 + beta2) * v[i] + beta2 * g * g
            vhat = v[i] / ((1 + beta2) ** t - 1)
            theta[i] = theta[i] - lr * m[i] / (vhat.sqrt() + eps)
    return theta


def _random_problem(seed: int, scale: float) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=gen) for s in SHAPES]
    grads = [[scale * torch.randn(s, generator=gen) for s in SHAPES] for _ in range(STEPS)]
    return params, grads


def _run_adax(
    params0: list[torch.Tensor], grads: list[list[torch.Tensor]], **hyper: float
) -> list[torch.Tensor]:
    params = [p.clone().requires_grad_(True) for p in params0]
    opt = AdaX(params, **hyper)
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.to(p.dtype)
        opt.step()
    return [p.detach() for p in params]


@pytest.mark.parametrize(("lr", "beta1", "beta2", "eps", "weight_decay", "scale"), SETTINGS)
def test_matches_float64_paper_rule(
    lr: float, beta1: float, beta2: float, eps: float, weight_decay: float, scale: float
) -> None:
    params0, grads = _random_problem(seed=0, scale=scale)
    hyper = {"lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps, "weight_decay": weight_decay}
    got = _run_adax(params0, grads, **hyper)
    want = paper_reference(params0, grads, **hyper)
    max_err = max(float((g.double() - w).abs().max()) for g, w in zip(got, want, strict=True))
    total_move = max(
        float((w - p.double()).abs().max()) for w, p in zip(want, params0, strict=True)
    )
    print(f"max |adax_fp32 - paper_fp64| = {max_err:.3e} (lr*steps = {lr * STEPS:.1e})")
    assert total_move > 0.1 * lr * STEPS  # the parameters really moved
    assert max_err <= 1e-4 * lr * STEPS


def test_second_moment_coefficients_exact_recurrence() -> None:
    for beta2 in (1e-4, 0.1, 0.999, 3.0):
        assert second_moment_coefficients(1, beta2) == (0.0, 1.0)
        for t in (2, 3, 10, 1000, 12345):
            a, b = second_moment_coefficients(t, beta2)
            if t * math.log1p(beta2) < 690:  # (1 + beta2)^t fits in float64
                big_b, prev_b = (1 + beta2) ** t - 1, (1 + beta2) ** (t - 1) - 1
                assert a == pytest.approx((1 + beta2) * prev_b / big_b, rel=1e-9)
                assert b == pytest.approx(beta2 / big_b, rel=1e-9, abs=1e-300)
            assert 0.0 <= a <= 1.0 and 0.0 <= b <= 1.0
            assert a + b == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="step"):
        second_moment_coefficients(0, 1e-4)


def test_coefficients_continuous_across_float64_overflow_guard() -> None:
    # beta2 = 0.1: t log1p(beta2) crosses the guard (700) near t = 7345; compare both branches
    # with 1 / B_t = e^-x / (1 - e^-x), which is stable for every x > 0.
    beta2 = 0.1
    for t in range(7300, 7400, 7):
        x = t * math.log1p(beta2)
        a, b = second_moment_coefficients(t, beta2)
        want_b = beta2 * math.exp(-x) / -math.expm1(-x)
        assert b == pytest.approx(want_b, rel=1e-9)
        assert a == 1.0 - b
    assert second_moment_coefficients(10**9, beta2) == (1.0, 0.0)


def test_long_run_stays_finite_where_unnormalised_v_overflows() -> None:
    beta2, t0, n = 1e-4, 2_000_000, 20
    # The paper's v_t = B_t vhat_t would not fit in float32 at this t.
    big_b = math.expm1(t0 * math.log1p(beta2))
    assert big_b > torch.finfo(torch.float32).max
    assert torch.isinf(torch.tensor(1 + beta2, dtype=torch.float32) ** t0)

    p = torch.zeros(3, requires_grad=True)
    opt = AdaX([p], lr=1e-3, beta2=beta2)
    p.grad = torch.tensor([1.0, -2.0, 3.0])
    opt.step()
    state = opt.state[p]
    state["step"] = t0 - 1  # jump ahead: the next step is t = 2,000,000
    vhat = state["exp_avg_sq_normalized"].double().clone()
    gen = torch.Generator().manual_seed(1)
    for k in range(n):
        g = torch.randn(3, generator=gen)
        p.grad = g
        opt.step()
        a, b = second_moment_coefficients(t0 + k, beta2)
        vhat = a * vhat + b * g.double() ** 2
    assert state["step"] == t0 + n - 1
    got = state["exp_avg_sq_normalized"]
    assert torch.isfinite(got).all() and torch.isfinite(p).all()
    torch.testing.assert_close(got.double(), vhat, rtol=1e-6, atol=0)
    # With this much history the new gradients barely move vhat (b_t ~ beta2 e^-200).
    torch.testing.assert_close(got, torch.tensor([1.0, 4.0, 9.0]), rtol=1e-6, atol=0)


def _two_param_model() -> torch.nn.Module:
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))


@pytest.mark.parametrize("named", [False, True], ids=["tensors", "named"])
def test_state_dict_round_trip_continues_identically(named: bool) -> None:
    model_a = _two_param_model()
    model_b = copy.deepcopy(model_a)

    def params(model: torch.nn.Module) -> Iterator[Any]:
        return model.named_parameters() if named else model.parameters()

    hyper = {"lr": 1e-2, "beta2": 0.1, "weight_decay": 0.01}
    opt_a = AdaX(params(model_a), **hyper)
    gen = torch.Generator().manual_seed(4)
    batches = [torch.randn(8, 4, generator=gen) for _ in range(10)]

    def train(model: torch.nn.Module, opt: AdaX, xs: list[torch.Tensor]) -> None:
        for x in xs:
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()

    train(model_a, opt_a, batches[:5])
    saved_model = copy.deepcopy(model_a.state_dict())
    saved_opt = copy.deepcopy(opt_a.state_dict())
    train(model_a, opt_a, batches[5:])

    model_b.load_state_dict(saved_model)
    opt_b = AdaX(params(model_b), lr=0.5, beta2=0.3)  # hyperparameters come from the state dict
    opt_b.load_state_dict(saved_opt)
    assert opt_b.param_groups[0]["beta2"] == 0.1
    train(model_b, opt_b, batches[5:])

    for pa, pb in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(pa, pb)
        sa, sb = opt_a.state[pa], opt_b.state[pb]
        assert sa["step"] == sb["step"] == 10
        assert isinstance(sb["step"], int)
        assert torch.equal(sa["exp_avg"], sb["exp_avg"])
        assert torch.equal(sa["exp_avg_sq_normalized"], sb["exp_avg_sq_normalized"])


BAD_HYPERPARAMETERS = [
    ("lr", -1e-3),
    ("lr", float("nan")),
    ("beta1", 1.0),
    ("beta1", -0.1),
    ("beta2", 0.0),
    ("beta2", -1e-4),
    ("beta2", float("inf")),
    ("eps", -1e-12),
    ("weight_decay", -0.1),
]


@pytest.mark.parametrize(("name", "value"), BAD_HYPERPARAMETERS)
def test_bad_hyperparameter_raises_naming_it(name: str, value: float) -> None:
    p = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match=rf"invalid {name}="):
        AdaX([p], **{name: value})
    # a per-group override is checked too
    with pytest.raises(ValueError, match=rf"invalid {name}="):
        AdaX([{"params": [p], name: value}])


def test_sparse_gradient_is_rejected() -> None:
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = AdaX(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_state_bytes_two_floats_per_element(dtype: torch.dtype) -> None:
    p = torch.zeros(6, 5, dtype=dtype, requires_grad=True)
    opt = AdaX([p])
    assert optimizer_state_bytes(opt) == 0
    p.grad = torch.ones_like(p)
    opt.step()
    itemsize = torch.finfo(dtype).bits // 8
    assert optimizer_state_bytes(opt) == 2 * p.numel() * itemsize
    state = opt.state[p]
    assert set(state) == {"step", "exp_avg", "exp_avg_sq_normalized"}
    assert state["exp_avg"].dtype == state["exp_avg_sq_normalized"].dtype == dtype


def test_bf16_close_to_fp32() -> None:
    params0, grads = _random_problem(seed=5, scale=1.0)
    params0 = [0.1 * p.bfloat16().float() for p in params0]  # exactly representable in bf16
    lr = 1e-2
    got32 = _run_adax(params0, grads, lr=lr)
    got16 = _run_adax([p.bfloat16() for p in params0], grads, lr=lr)
    for a, b, p0 in zip(got32, got16, params0, strict=True):
        assert b.dtype == torch.bfloat16
        assert torch.isfinite(b).all()
        # round-to-nearest bf16 (8 significant bits) loses part of each step of size ~lr on
        # parameters of size ~0.1-0.3, but far less than the total movement (~lr * STEPS)
        err = float((a - b.float()).abs().max())
        print(f"bf16 vs fp32: max diff {err:.3e}, max move {float((a - p0).abs().max()):.3e}")
        assert err < 0.1 * lr * STEPS


def test_closure_and_params_without_grad() -> None:
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    frozen = torch.tensor([5.0], requires_grad=True)
    opt = AdaX([w, frozen], lr=0.1)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == pytest.approx(5.0)
    # step 1: m = 0.1 g, vhat = g^2, so each coordinate moves by lr * 0.1 * sign(g)
    torch.testing.assert_close(w.detach(), torch.tensor([1.0 - 0.01, -2.0 + 0.01]))
    assert frozen.item() == 5.0 and frozen not in opt.state
