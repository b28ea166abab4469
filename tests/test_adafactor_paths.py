"""Every implementation of the one update math under real use: against the float64 transcription
at extreme shapes, one rounding noise and one non-finite policy, float64 parameters, deepcopy and
pickle, and a per-tensor fallback that names the tensor it sends to the reference path."""

from __future__ import annotations

import copy
import pickle
import warnings

import pytest
import torch
from test_adafactor_paper_rows import TABLE2, make_optimizer, paper_run

from adafactor import Adafactor
from adafactor.optimizer import IMPLEMENTATIONS

LAYOUTS = {  # name -> (shape of the tensor made, how the parameter is made from it)
    "1x1e7": ((1, 10**7), lambda t: t),
    "1e7x1": ((10**7, 1), lambda t: t),
    "3-D": ((3, 50, 70), lambda t: t),
    "4-D channels_last": ((8, 6, 5, 5), lambda t: t.to(memory_format=torch.channels_last)),
    "transposed view": ((90, 40), lambda t: t.t()),
    "strided slice": ((60, 80), lambda t: t[:, ::2]),
}

SHAPE_ROWS = ["A", "C", "J", "O", "P"]  # full / factored, clipped, relative step, momentum


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_path_matches_float64_at_extreme_shapes_and_layouts(layout, capsys):
    shape, make = LAYOUTS[layout]
    base = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 0.01
    gen = torch.Generator().manual_seed(len(layout))
    worst = dict.fromkeys(IMPLEMENTATIONS, 0.0)
    for row in SHAPE_ROWS:
        s = TABLE2[row]
        x0 = make(base)
        grads = [torch.randn(x0.shape, generator=gen) * 10.0 ** (k - 2) for k in range(3)]
        expected, alphas = paper_run(x0, grads, s, warmup=False)
        for implementation in IMPLEMENTATIONS:
            p = make(base.clone()).requires_grad_()  # a fresh parameter in the layout
            assert p.stride() == x0.stride()
            opt, sched = make_optimizer(p, s, warmup=False, implementation=implementation)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the odd layouts' fallback warning
                for t, g in enumerate(grads):
                    p.grad = g.to(memory_format=torch.channels_last) if p.dim() == 4 else g
                    opt.step()
                    if sched is not None:
                        sched.step()
                    err = (p.detach().double() - expected[t]).abs().max().item() / alphas[t]
                    worst[implementation] = max(worst[implementation], err)
                    assert err <= 1e-4, (implementation, row, t + 1, err)
    with capsys.disabled():
        print(f"\n{layout}: worst |X - X_float64| / alpha_t over rows {','.join(SHAPE_ROWS)}: "
              + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_update_rms_of_a_long_tensor_is_exact(implementation):
    """RMS(U) over 10^7 elements decides clipping: summed in float64 on every path (an fp32 sum
    was about 1 % off), so it agrees with the float64 value to 1e-6."""
    gen = torch.Generator().manual_seed(5)
    x0, g = torch.randn(1, 10**7, generator=gen) * 0.01, torch.randn(1, 10**7, generator=gen)
    for factored in (True, False):
        p = x0.clone().requires_grad_()
        opt = Adafactor([p], factored=factored, beta2=0.999, track_stats=True,
                        implementation=implementation)
        p.grad = g.clone()
        opt.step()
        g64 = g.double()
        # Step 1 (beta2hat = 0): V = G^2 + eps1 (full), or R C / mean(R) of it (factored).
        v = g64.square() + 1e-30
        if factored:
            v = v.mean(dim=-1, keepdim=True) * v.mean(dim=-2, keepdim=True) / v.mean(
                dim=-1, keepdim=True).mean()
        expected = float((g64.square() / v).mean().sqrt())
        got = opt.step_stats()["update_rms"]
        assert got == pytest.approx(expected, rel=1e-6), (factored, got, expected)


def test_every_path_draws_the_same_bf16_rounding_noise():
    """bf16 stochastic rounding is keyed by (parameter, step, element) on every path: the same
    bits wherever the fp32 results agree (an RNG-drawn noise differs in about half)."""
    gen = torch.Generator().manual_seed(3)
    shapes = [(300, 200), (77,), (2, 30, 40)]
    x0 = [(torch.randn(s, generator=gen) * 0.02).bfloat16() for s in shapes]
    grads = [[(torch.randn(s, generator=gen) * 1e-3).bfloat16() for s in shapes]
             for _ in range(3)]
    finals = {}
    for impl in IMPLEMENTATIONS:
        params = [x.clone().requires_grad_() for x in x0]
        opt = Adafactor(params, beta1=0.9, implementation=impl)
        opt._rounding_key_base = 2024  # one key base for every optimizer
        for step_grads in grads:
            for p, g in zip(params, step_grads, strict=True):
                p.grad = g.clone()
            opt.step()
        finals[impl] = params
    base = finals["reference"]
    for impl, params in finals.items():
        for a, b in zip(base, params, strict=True):
            differ = (a != b).float().mean().item()
            assert differ < 1e-3, (impl, tuple(a.shape), differ)


def test_float64_parameters_are_stepped_in_float64():
    s = TABLE2["P"]
    gen = torch.Generator().manual_seed(9)
    x0 = torch.randn(12, 9, generator=gen, dtype=torch.float64) * 0.01
    grads = [torch.randn(12, 9, generator=gen, dtype=torch.float64) for _ in range(5)]
    expected, _ = paper_run(x0, grads, s, warmup=False)
    for impl in IMPLEMENTATIONS:
        p = x0.clone().requires_grad_()
        opt, _ = make_optimizer(p, s, warmup=False, implementation=impl)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for g in grads:
                p.grad = g.clone()
                opt.step()
        assert p.dtype == torch.float64
        assert all(v.dtype == torch.float64 for k, v in opt.state[p].items()
                   if k.startswith("exp_avg"))
        # float64 arithmetic: far below fp32's 1e-7 relative error
        rel = float((p.detach() - expected[-1]).abs().max() / expected[-1].abs().max())
        assert rel < 1e-12, (impl, rel)
        fallbacks = [w for w in caught if "reference path" in str(w.message)]
        assert len(fallbacks) == (1 if impl != "reference" else 0), impl


@pytest.mark.parametrize("clone", ["deepcopy", "pickle"])
def test_a_copied_optimizer_steps_as_the_original(clone):
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Linear(5, 3)).bfloat16()
    opt = Adafactor(model.parameters(), beta1=0.9)
    x = torch.randn(4, 6).bfloat16()
    model(x).float().square().mean().backward()
    opt.step()
    if clone == "deepcopy":
        model2, opt2 = copy.deepcopy((model, opt))
    else:
        model2, opt2 = pickle.loads(pickle.dumps((model, opt)))
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        m(x).float().square().mean().backward()
        o.step()
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)


def test_only_the_odd_tensor_falls_back_and_is_named_once():
    gen = torch.Generator().manual_seed(1)
    normal = (torch.randn(400, 300, generator=gen) * 0.02)
    odd = (torch.randn(50, 30, generator=gen) * 0.02).t()  # a transposed view
    grads = [(torch.randn(400, 300, generator=gen), torch.randn(30, 50, generator=gen))
             for _ in range(3)]
    p, q = normal.clone().requires_grad_(), odd.clone().requires_grad_()
    alone = normal.clone().requires_grad_()
    opt, opt_alone = Adafactor([p, q]), Adafactor([alone])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for gp, gq in grads:
            p.grad, q.grad, alone.grad = gp.clone(), gq.clone(), gp.clone()
            opt.step()
            opt_alone.step()
    named = [str(w.message) for w in caught if "reference path" in str(w.message)]
    assert len(named) == 1, named
    assert "params[1]" in named[0] and "(30, 50)" in named[0] and "contiguous" in named[0]
    assert torch.equal(p, alone)  # the fused step, exactly as in a group of its own
