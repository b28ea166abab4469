"""The fused CPU step (adafactor/fused_cpu.py): agreement with the reference path, determinism
across thread counts, keyed stochastic rounding (unbiased, independent per parameter and optimizer,
surviving state_dict), no overflow for huge gradients, GradScaler's skip, the build fallback, and
torch.compile without graph breaks or recompiles."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch._dynamo as dynamo
from torch._dynamo.utils import counters

from adafactor import Adafactor
from adafactor.extension import load_extension
from adafactor.rounding import rounding_noise, step_seeds

REPO = Path(__file__).resolve().parents[1]
# Bigger than one 131072-element work unit (several units per matrix), a batched rank-3 tensor,
# a tensor over the 1M-element "whole tensor" limit, and small vectors.
SHAPES = [(700, 300), (3, 90, 700), (1100, 1000), (300,), (5, 7)]

# Skipped only where nothing could build it; with a compiler present a failed build is a failure
# (test_the_extension_builds), not a silent skip of every fused test.
_CXX = os.environ.get("CXX", "c++")  # what torch.utils.cpp_extension compiles with
pytestmark = pytest.mark.skipif(
    shutil.which(_CXX) is None,
    reason=f"no C++ compiler ({_CXX!r} not on PATH): Adafactor falls back to the reference path",
)


def test_the_extension_builds():
    assert load_extension() is not None, "the fused CPU step did not build (see the warning)"


def _problem(dtype=torch.float32, seed=0, shapes=SHAPES):
    gen = torch.Generator().manual_seed(seed)
    params = [(torch.randn(s, generator=gen) * 0.05).to(dtype).requires_grad_() for s in shapes]
    grads = [
        [(torch.randn(s, generator=gen) * 10.0 ** (k % 3 - 2)).to(dtype) for s in shapes]
        for k in range(3)
    ]
    return params, grads


def _run(opt, params, grads):
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.clone()
        opt.step()


@pytest.mark.parametrize("factored", [True, False, "row", "col"])
@pytest.mark.parametrize(
    "options",
    [{}, {"beta1": 0.9, "weight_decay": 0.1}, {"lr": 1e-3, "scale_parameter": False,
                                              "clip_threshold": None, "beta2": 0.999}],
)
def test_fused_agrees_with_reference_on_multi_unit_tensors(factored, options):
    params, grads = _problem()
    ref_params = [p.detach().clone().requires_grad_() for p in params]
    fused = Adafactor(params, factored=factored, track_stats=True, **options)
    ref = Adafactor(ref_params, factored=factored, track_stats=True, implementation="reference",
                    **options)
    _run(fused, params, grads)
    _run(ref, ref_params, grads)
    for a, b in zip(params, ref_params, strict=True):
        torch.testing.assert_close(a, b, rtol=2e-6, atol=2e-7)
    fs, rs = fused.step_stats(), ref.step_stats()
    for key in ("step_size", "update_rms", "clipped_fraction"):
        assert fs[key] == pytest.approx(rs[key], rel=1e-5), key


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_results_are_bitwise_identical_for_any_thread_count(dtype):
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            params, grads = _problem(dtype)
            opt = Adafactor(params, beta1=0.9)
            opt._rounding_key_base = 777  # the same rounding keys in every run
            _run(opt, params, grads)
            results.append([p.detach().clone() for p in params])
    finally:
        torch.set_num_threads(previous)
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert torch.equal(a, b)


# ----------------------------------------------------------------------------- rounding noise
def test_kernel_and_torch_hash_give_the_same_noise():
    """The fused kernel and the reference path (torch int ops) draw identical rounding noise, so a
    bf16 step agrees between them except where the fp32 values differ by rounding."""
    params, grads = _problem(torch.bfloat16, shapes=[(300, 200), (77,)])
    ref_params = [p.detach().clone().requires_grad_() for p in params]
    fused, ref = Adafactor(params), Adafactor(ref_params, implementation="reference")
    fused._rounding_key_base = ref._rounding_key_base = 4242
    _run(fused, params, grads)
    _run(ref, ref_params, grads)
    for a, b in zip(params, ref_params, strict=True):
        assert (a != b).float().mean().item() < 1e-3
    # Python ints and int64 tensors give the same seeds and bits.
    s0, s1 = step_seeds(12345, 6)
    t0, t1 = step_seeds(12345, torch.tensor(6))
    assert (s0, s1) == (int(t0), int(t1))
    bits = rounding_noise(1000, 12345, 6, torch.device("cpu"))
    assert bits.min() >= 0 and bits.max() < 1 << 16


@pytest.mark.parametrize("implementation", ["fused_cpu", "reference"])
def test_rounding_noise_differs_between_parameters_groups_and_optimizers(implementation):
    """Identical bf16 parameters and gradients: each parameter, group and optimizer rounds with its
    own noise (on 8e01ca3 the first tensor of every group and optimizer got identical noise)."""
    shape = (64, 48)
    x0 = (torch.randn(shape, generator=torch.Generator().manual_seed(1)) * 0.02).bfloat16()
    g = (torch.randn(shape, generator=torch.Generator().manual_seed(2)) * 1e-3).bfloat16()
    ps = [x0.clone().requires_grad_() for _ in range(4)]
    opt_a = Adafactor([{"params": [ps[0]]}, {"params": [ps[1]]}], implementation=implementation)
    opt_b = Adafactor([ps[2], ps[3]], implementation=implementation)
    for p in ps:
        p.grad = g.clone()
    opt_a.step()
    opt_b.step()
    # Without noise all four would be equal; their rounding decisions disagree about half the
    # time where the fp32 result is not representable.
    for i in range(4):
        for j in range(i + 1, 4):
            differ = (ps[i] != ps[j]).float().mean().item()
            assert differ > 0.2, (i, j, differ)


def test_stochastic_rounding_is_unbiased_on_the_fused_path():
    """The mean of K independently rounded bf16 steps equals the fp32 step within statistical
    bounds (each rounding has a standard deviation of at most half a bf16 ulp)."""
    shape, k = (32, 64), 64
    x0 = (torch.randn(shape, generator=torch.Generator().manual_seed(3)) * 0.02).bfloat16()
    g = (torch.randn(shape, generator=torch.Generator().manual_seed(4)) * 1e-3).bfloat16()
    exact = x0.float().clone().requires_grad_()
    exact.grad = g.float()
    Adafactor([exact], lr=3e-4, scale_parameter=False).step()
    total = torch.zeros(shape, dtype=torch.float64)
    for _ in range(k):
        p = x0.clone().requires_grad_()
        p.grad = g.clone()
        Adafactor([p], lr=3e-4, scale_parameter=False).step()  # a new key each time
        total += p.detach().double()
    mean = total / k
    ulp = (exact.detach().abs().double() * 2.0**-7).clamp(min=1e-12)
    z = ((mean - exact.detach().double()) / ulp).flatten()
    # Per element |mean - exact| <= ulp/2/sqrt(k) sigma; over 2048 elements their mean is ~N(0, s)
    assert z.mean().abs().item() < 4 * 0.5 / (k * z.numel()) ** 0.5 * 1.5
    assert z.abs().max().item() < 6 * 0.5 / k**0.5


@pytest.mark.parametrize("implementation", ["fused_cpu", "reference"])
def test_rounding_keys_survive_state_dict(implementation):
    params, grads = _problem(torch.bfloat16, shapes=[(300, 200), (77,)])
    opt = Adafactor(params, implementation=implementation)
    _run(opt, params, grads[:2])
    saved = copy.deepcopy(opt.state_dict())
    resumed_params = [p.detach().clone().requires_grad_() for p in params]
    resumed = Adafactor(resumed_params, implementation=implementation)  # other key base
    resumed.load_state_dict(saved)
    # torch casts the state to the parameter dtype on load, while the statistics stay fp32, so
    # they are put back exactly here.
    for p, st in zip(resumed_params, saved["state"].values(), strict=True):
        for name, value in st.items():
            if name != "step" and isinstance(value, torch.Tensor):
                resumed.state[p][name] = value.clone()
    _run(opt, params, grads[2:])
    _run(resumed, resumed_params, grads[2:])
    for a, b in zip(params, resumed_params, strict=True):
        assert torch.equal(a, b)


# ----------------------------------------------------------------------------- overflow, scaler
@pytest.mark.parametrize("implementation", ["fused_cpu", "reference"])
@pytest.mark.parametrize("factored", [True, False, "row", "col"])
@pytest.mark.parametrize("magnitude", [1e20, 3e38])
def test_huge_gradients_give_finite_updates(implementation, factored, magnitude):
    """G^2 overflows fp32 beyond 1.8e19 (on 8e01ca3 a 1e20 gradient made the tensor NaN); the
    statistics saturate instead, and the clipped update stays finite. Adam survives it too."""
    p = (torch.randn(40, 30, generator=torch.Generator().manual_seed(0)) * 0.02).requires_grad_()
    opt = Adafactor([p], factored=factored, implementation=implementation, track_stats=True)
    for step in range(3):
        g = torch.randn(40, 30, generator=torch.Generator().manual_seed(step))
        g[::7, ::5] = magnitude
        p.grad = g
        before = p.detach().clone()
        opt.step()
        assert torch.isfinite(p).all()
        change = p.detach() - before
        assert change.abs().max() > 0  # it still moves
        # ... and the clipping holds: RMS(alpha U_hat) <= alpha d (d = 1)
        alpha = opt.step_stats()["step_size"]
        assert change.pow(2).mean().sqrt().item() <= alpha * 1.001
        assert all(torch.isfinite(v).all() for v in opt.state[p].values()
                   if isinstance(v, torch.Tensor))
    adam_p = p.detach().clone().requires_grad_()
    adam_p.grad = torch.full_like(adam_p, 1e20)
    torch.optim.Adam([adam_p]).step()
    assert torch.isfinite(adam_p).all()


def test_grad_scaler_skips_a_step_with_non_finite_gradients():
    """torch.amp.GradScaler unscales, finds inf, and does not call step(): parameters and state
    stay as they were (the non-finite policy: skipping is the scaler's job, see the README)."""
    model = torch.nn.Linear(8, 4)
    opt = Adafactor(model.parameters())
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    x = torch.randn(16, 8)
    scaler.scale(model(x).square().mean()).backward()
    scaler.step(opt)
    scaler.update()
    before = [p.detach().clone() for p in model.parameters()]
    state_before = copy.deepcopy(opt.state_dict())
    opt.zero_grad()
    scaler.scale(model(x).square().mean()).backward()
    model.weight.grad[0, 0] = float("inf")
    scaler.step(opt)
    scaler.update()
    for a, b in zip(before, model.parameters(), strict=True):
        assert torch.equal(a, b)
    after = opt.state_dict()
    for key, st in state_before["state"].items():
        for name, value in st.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(after["state"][key][name]))
    assert scaler.get_scale() == 2.0**9  # the scaler saw the inf and backed off


# ----------------------------------------------------------------------------- fallback
def test_failed_build_falls_back_to_reference_and_says_so_once(tmp_path):
    script = textwrap.dedent(
        """
        import warnings, torch
        from adafactor import Adafactor
        p = torch.randn(20, 10, requires_grad=True)
        q = p.detach().clone().requires_grad_()
        fused, reference = Adafactor([p]), Adafactor([q], implementation="reference")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(3):
                p.grad = torch.ones_like(p); q.grad = torch.ones_like(q)
                fused.step(); reference.step()
        msgs = [str(w.message) for w in caught if "fused CPU step" in str(w.message)]
        assert len(msgs) == 1, msgs
        assert torch.equal(p, q)
        print("OK", msgs[0])
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "CXX": str(tmp_path / "no-such-compiler"),
           "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext")}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "OK" in out.stdout and "using the reference path" in out.stdout


# ----------------------------------------------------------------------------- torch.compile
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_step_has_no_graph_breaks(dtype):
    params = [torch.randn(6, 4).to(dtype).requires_grad_(), torch.randn(5).to(dtype)
              .requires_grad_()]
    opt = Adafactor(params, beta1=0.9, weight_decay=0.01)
    for p in params:
        p.grad = torch.randn_like(p)
    dynamo.reset()
    explanation = dynamo.explain(opt.step)()
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def _graphs_per_step(make, steps=20, start_step=None):
    dynamo.reset()
    counters.clear()
    params = [torch.randn(6, 4, requires_grad=True), torch.randn(5, requires_grad=True)]
    opt, sched = make(params)
    if start_step is not None:
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()
        for st in opt.state.values():
            st["step"].fill_(start_step)
    compiled = torch.compile(opt.step, backend="eager")
    graphs = []
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn_like(p)
        compiled()
        if sched is not None:
            sched.step()
        graphs.append(counters["stats"]["unique_graphs"])
    return graphs, opt


def _lambda_lr(params):
    opt = Adafactor(params, lr=0.1, scale_parameter=False)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0 / (e + 1) ** 0.5)


def _relative(params):
    return Adafactor(params), None


def _tensor_lr(params):
    opt = Adafactor(params, lr=torch.tensor(0.01), scale_parameter=False)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.9**e)


@pytest.mark.parametrize(
    ("make", "start_step"),
    [(_lambda_lr, None), (_relative, None), (_relative, 9_990), (_tensor_lr, None)],
    ids=["LambdaLR-float-lr", "lr-None", "t-past-1e4", "tensor-lr"],
)
def test_compiled_step_never_recompiles(make, start_step):
    """At most 2 graphs (the first step, which creates the state, and the steady step), then none
    over 20 steps; on 8e01ca3 LambdaLR recompiled every step up to the recompile limit."""
    graphs, opt = _graphs_per_step(make, start_step=start_step)
    assert graphs[-1] <= 2 and graphs[1] == graphs[-1], graphs
    expected = 20 + (start_step or 0)
    assert all(int(st["step"]) == expected for st in opt.state.values())


def test_compiled_step_matches_eager_over_a_schedule():
    eager_params = [torch.randn(6, 4, requires_grad=True), torch.randn(5, requires_grad=True)]
    comp_params = [p.detach().clone().requires_grad_() for p in eager_params]
    eager, eager_sched = _lambda_lr(eager_params)
    comp, comp_sched = _lambda_lr(comp_params)
    dynamo.reset()
    step = torch.compile(comp.step, backend="aot_eager")
    for k in range(6):
        for p, q in zip(eager_params, comp_params, strict=True):
            g = torch.randn(p.shape, generator=torch.Generator().manual_seed(k))
            p.grad, q.grad = g.clone(), g.clone()
        eager.step()
        step()
        eager_sched.step()
        comp_sched.step()
    for a, b in zip(eager_params, comp_params, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
