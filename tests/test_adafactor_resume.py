"""Resuming from a state_dict, and failing steps: state stays fp32; a bad step changes nothing."""

from __future__ import annotations

import io

import pytest
import torch

from adafactor import Adafactor, optimizer_state_bytes

SHAPES = [(12, 9), (9,), (2, 5, 6)]


def _params(dtype: torch.dtype) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(s, generator=gen).to(dtype).requires_grad_() for s in SHAPES]


def _set_grads(params: list[torch.Tensor], step: int) -> None:
    gen = torch.Generator().manual_seed(100 + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen).to(p.dtype)


def _opt(params, impl: str) -> Adafactor:
    return Adafactor(params, lr=None, beta1=0.9, implementation=impl)


def _roundtrip(sd: dict) -> dict:
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("impl", ["fused_cpu", "reference"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_resume_equals_the_uninterrupted_run(dtype: torch.dtype, impl: str) -> None:
    """Checkpoint after 3 steps; the optimizer carried on and a fresh one loaded from the
    checkpoint take 3 more steps from the same global RNG state (the reference path's bf16
    stochastic rounding draws from it), and must agree bit for bit."""
    params = _params(dtype)
    opt = _opt(params, impl)
    for t in range(3):
        _set_grads(params, t)
        opt.step()
    ckpt = _roundtrip({"params": [p.detach().clone() for p in params], "opt": opt.state_dict()})
    rng = torch.get_rng_state()
    for t in range(3, 6):
        _set_grads(params, t)
        opt.step()

    resumed = [p.clone().requires_grad_() for p in ckpt["params"]]
    opt2 = _opt(resumed, impl)
    opt2.load_state_dict(ckpt["opt"])
    for state in opt2.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and key != "step":
                assert value.dtype == torch.float32, (key, value.dtype)
    assert optimizer_state_bytes(opt2) == optimizer_state_bytes(opt)
    torch.set_rng_state(rng)
    for t in range(3, 6):
        _set_grads(resumed, t)
        opt2.step()
    for p, q in zip(params, resumed, strict=True):
        assert torch.isfinite(q.float()).all()
        assert torch.equal(p, q), (dtype, impl, (p.float() - q.float()).abs().max())


def test_sparse_gradient_on_a_later_parameter_leaves_earlier_state_untouched() -> None:
    emb = torch.nn.Embedding(10, 4, sparse=True)
    dense = torch.randn(3, 4, requires_grad=True)
    opt = Adafactor([dense, emb.weight])
    dense.grad = torch.ones(3, 4)
    emb(torch.tensor([1, 2])).sum().backward()
    before = dense.detach().clone()
    with pytest.raises(RuntimeError, match=r"sparse gradients.*params\[1\]"):
        opt.step()
    assert not opt.state.get(dense), "a failed step must not create or advance state"
    assert torch.equal(dense, before)

    emb.weight.grad = None  # one good step, then a failing one: the state of step 1 stays
    opt.step()
    saved = {
        k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in opt.state[dense].items()
    }
    emb(torch.tensor([3])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()
    assert opt.state[dense]["step"] == saved["step"] == 1
    for k, v in saved.items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(opt.state[dense][k], v), k


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("factored", False, "factored"),
        ("factored", "row", "factored"),
        ("min_dim_size_to_factor", 100, "min_dim_size_to_factor"),
        ("beta1", 0.9, "beta1"),
    ],
)
def test_changing_a_state_setting_on_a_live_optimizer_is_a_clear_error(
    setting: str, value, message: str
) -> None:
    w = torch.randn(6, 5, requires_grad=True)
    v = torch.randn(5, requires_grad=True)
    opt = Adafactor([v, w])
    for p in (v, w):
        p.grad = torch.ones_like(p)
    opt.step()
    steps = {id(p): s["step"] for p, s in opt.state.items()}
    opt.param_groups[0][setting] = value
    with pytest.raises(ValueError, match=rf"params\[\d\].*{message}"):
        opt.step()
    assert {id(p): s["step"] for p, s in opt.state.items()} == steps


@pytest.mark.parametrize("dtype", [torch.complex64, torch.float8_e4m3fn])
def test_unsupported_dtypes_are_named(dtype: torch.dtype) -> None:
    ok = torch.randn(3, requires_grad=True)
    bad = torch.zeros(4, dtype=dtype)
    bad.grad = torch.zeros(4, dtype=dtype)
    ok.grad = torch.ones(3)
    opt = Adafactor([ok, bad])
    with pytest.raises(RuntimeError, match=r"params\[1\]|dtype"):
        opt.step()
    assert not opt.state.get(ok)
