"""Adafactor's contract: validation, both implementation paths, state, stats, compile, no syncs."""

from __future__ import annotations

import copy
import math
from typing import ClassVar

import pytest
import torch
from torch.overrides import TorchFunctionMode

from adafactor import Adafactor, optimizer_state_bytes, paper_step_size
from adafactor.schedules import adam_decay_correction, decay_power, relative_step_size

SHAPES = [(7, 3), (3, 7), (5,), (2, 3, 5), (), (40, 33), (3000,)]


def _params(dtype=torch.float32, seed=0, shapes=SHAPES):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen).to(dtype).requires_grad_() for s in shapes]


def _grads(seed, dtype=torch.float32, shapes=SHAPES):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(s, generator=gen) * 10 ** (k % 3 - 1)).to(dtype) for k, s in
            enumerate(shapes)]


def _run(opt, params, steps, seed0=100, dtype=torch.float32):
    for step in range(steps):
        for p, g in zip(params, _grads(seed0 + step, dtype), strict=True):
            p.grad = g
        opt.step()


# --------------------------------------------------------------------------------- schedules
def test_paper_step_size_values():
    assert paper_step_size(1, warmup=False) == 1e-2
    assert paper_step_size(10_000, warmup=False) == pytest.approx(1e-2)
    assert paper_step_size(40_000, warmup=False) == pytest.approx(0.005)
    assert paper_step_size(1, warmup=True) == pytest.approx(1e-6)
    assert paper_step_size(10_000, warmup=True) == pytest.approx(1e-2)
    assert paper_step_size(40_000, warmup=True) == pytest.approx(0.005)
    assert relative_step_size(7, warmup_init=True) == pytest.approx(7e-6)
    assert decay_power(1, 0.8) == 0.0
    assert decay_power(32, 0.8) == pytest.approx(1 - 32**-0.8)
    assert adam_decay_correction(1, 0.999) == 0.0
    # the decay correction reproduces Adam's bias correction: v_hat_2 = (b g1^2 + g2^2)/(1 + b)
    b = 0.9
    assert adam_decay_correction(2, b) == pytest.approx(b / (1 + b))
    with pytest.raises(ValueError, match="step t"):
        paper_step_size(0, warmup=False)


# --------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"lr": -1.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"lr": "0.1"}, "lr"),
        ({"beta1": 1.0}, "beta1"),
        ({"beta1": -0.1}, "beta1"),
        ({"beta2": 1.0}, "beta2"),
        ({"beta2": -0.1}, "beta2"),  # 0 is allowed: V_t = G_t^2
        ({"decay_exponent": 0.0}, "decay_exponent"),
        ({"decay_exponent": 1.5}, "decay_exponent"),
        ({"clip_threshold": 0.0}, "clip_threshold"),
        ({"clip_threshold": -1.0}, "clip_threshold"),
        ({"factored": "rows"}, "factored"),
        ({"factored": 1}, "factored"),
        ({"scale_parameter": 1}, "scale_parameter"),
        ({"warmup_init": "yes"}, "warmup_init"),
        ({"lr": 0.1, "warmup_init": True}, "warmup_init"),
        ({"eps": (1e-30,)}, "eps"),
        ({"eps": (-1.0, 1e-3)}, "eps"),
        ({"eps": 1e-30}, "eps"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"min_dim_size_to_factor": 0}, "min_dim_size_to_factor"),
        ({"min_dim_size_to_factor": 2.5}, "min_dim_size_to_factor"),
        ({"track_stats": None}, "track_stats"),
        ({"stochastic_rounding": 0}, "stochastic_rounding"),
        ({"implementation": "cuda"}, "implementation"),
    ],
)
def test_bad_hyperparameter_raises_value_error_naming_it(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Adafactor([torch.zeros(3, requires_grad=True)], **kwargs)


def test_bad_hyperparameter_in_a_param_group_is_rejected():
    opt = Adafactor([torch.zeros(3, requires_grad=True)])
    with pytest.raises(ValueError, match="clip_threshold"):
        opt.add_param_group({"params": [torch.zeros(2, requires_grad=True)], "clip_threshold": -2})


def test_bad_lr_set_by_a_scheduler_is_rejected_at_step():
    p = torch.zeros(3, requires_grad=True)
    opt = Adafactor([p], lr=0.1)
    opt.param_groups[0]["lr"] = -0.5
    p.grad = torch.ones(3)
    with pytest.raises(ValueError, match="lr"):
        opt.step()


def test_sparse_gradient_gives_a_clear_error():
    emb = torch.nn.Embedding(10, 4, sparse=True)
    opt = Adafactor(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse gradients"):
        opt.step()


# --------------------------------------------------------------------------------- both paths
@pytest.mark.parametrize("factored", [True, False, "row", "col"])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"beta1": 0.9, "weight_decay": 0.1},
        {"lr": 3e-3, "scale_parameter": False, "clip_threshold": None, "beta2": 0.99},
        {"min_dim_size_to_factor": 5, "warmup_init": True},
    ],
    ids=["defaults", "momentum-wd", "absolute-adam-decay", "min-dim-warmup"],
)
def test_fused_cpu_path_agrees_with_reference_path(factored, options):
    ref_params, fast_params = _params(), _params()
    ref = Adafactor(ref_params, factored=factored, implementation="reference", **options)
    fast = Adafactor(fast_params, factored=factored, **options)
    _run(ref, ref_params, 6)
    _run(fast, fast_params, 6)
    for a, b in zip(ref_params, fast_params, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6 * max(1.0, a.abs().max().item()))
    for sa, sb in zip(ref.state.values(), fast.state.values(), strict=True):
        assert sa.keys() == sb.keys()
        for key in sa:
            if torch.is_tensor(sa[key]):
                scale = sa[key].abs().max().item()
                torch.testing.assert_close(sb[key], sa[key], rtol=2e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_params_fused_agrees_with_reference_without_stochastic_rounding(dtype):
    ref_params, fast_params = _params(dtype), _params(dtype)
    ref = Adafactor(ref_params, implementation="reference", stochastic_rounding=False)
    fast = Adafactor(fast_params, stochastic_rounding=False)
    _run(ref, ref_params, 3, dtype=dtype)
    _run(fast, fast_params, 3, dtype=dtype)
    for a, b in zip(ref_params, fast_params, strict=True):
        assert b.dtype == dtype
        # at most one rounding step apart in the low-precision format
        ulp = torch.finfo(dtype).eps * a.detach().float().abs().clamp(min=1e-3)
        assert ((b.detach().float() - a.detach().float()).abs() <= ulp).all()
    for state in fast.state.values():
        assert all(v.dtype == torch.float32 for v in state.values() if torch.is_tensor(v))


def test_stochastic_rounding_is_unbiased_and_stays_within_one_ulp():
    from adafactor.rounding import copy_keyed_rounded_

    src = torch.full((200_000,), 1.0 + 2**-10)  # a quarter ulp above 1.0 in bf16 (ulp 2^-7)
    src[100_000:] = -(1.0 + 2**-10)
    dst = torch.empty_like(src, dtype=torch.bfloat16)
    copy_keyed_rounded_(dst, src, key=12345, step=3)
    values = set(dst[:100_000].float().unique().tolist())
    assert values == {1.0, 1.0 + 2**-7}
    torch.testing.assert_close(dst.double().mean(), torch.tensor(0.0, dtype=torch.float64),
                               atol=2e-4, rtol=0)
    torch.testing.assert_close(dst[:100_000].double().mean(),
                               torch.tensor(1.0 + 2**-10, dtype=torch.float64), atol=2e-4, rtol=0)


# --------------------------------------------------------------------------------- semantics
def test_lr_none_is_never_written_into_the_param_group():
    params = _params()
    opt = Adafactor(params)
    _run(opt, params, 2)
    assert opt.param_groups[0]["lr"] is None


def test_lr_scheduler_sets_the_step_size_each_step():
    """With an absolute lr the applied step follows the scheduler: alpha_t = lr_t (d = None)."""
    p = torch.zeros(4, requires_grad=True)
    opt = Adafactor([p], lr=1.0, scale_parameter=False, clip_threshold=None)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.1 * paper_step_size(e + 1, True))
    total = 0.0
    for t in range(1, 6):
        p.grad = torch.ones(4)  # U = 1 exactly (G^2 / (G^2 + eps1) rounds to 1)
        opt.step()
        sched.step()
        total += 0.1 * paper_step_size(t, True)
        torch.testing.assert_close(p.detach(), torch.full((4,), -total), rtol=1e-6, atol=0)


def test_relative_step_is_scaled_by_parameter_rms_with_eps2_floor():
    for scale, expected_alpha in ((3.0, 3.0 * 1e-2), (1e-5, 1e-3 * 1e-2)):
        p = torch.full((4, 6), scale, requires_grad=True)
        opt = Adafactor([p], track_stats=True)
        p.grad = torch.ones(4, 6)
        opt.step()
        stats = opt.step_stats()
        assert stats["step_size"] == pytest.approx(expected_alpha, rel=1e-6)
        torch.testing.assert_close(p.detach(), torch.full((4, 6), scale - expected_alpha))


def test_weight_decay_is_decoupled():
    p = torch.full((3, 3), 2.0, requires_grad=True)
    q = torch.full((3, 3), 2.0, requires_grad=True)
    decayed = Adafactor([p], lr=0.01, scale_parameter=False, weight_decay=0.5)
    plain = Adafactor([q], lr=0.01, scale_parameter=False)
    p.grad, q.grad = torch.ones(3, 3), torch.ones(3, 3)
    decayed.step()
    plain.step()
    # X <- X (1 - lr wd) - alpha U_hat, the decay independent of the gradient statistics
    torch.testing.assert_close(p.detach(), q.detach() - 2.0 * 0.01 * 0.5)


def test_factoring_report_and_min_dim_size():
    shapes = ((100, 8), (8, 300), (8,), (2, 3, 4))
    emb, w, b, k = (torch.zeros(s, requires_grad=True) for s in shapes)
    opt = Adafactor([emb, w, b, k], min_dim_size_to_factor=4)
    report = opt.factoring_report({emb: "emb", w: "w", b: "b"})
    by_name = {r["name"]: r for r in report}
    assert by_name["emb"]["factored"] and by_name["emb"]["state_floats"] == 108
    assert by_name["w"]["factored"] and by_name["w"]["state_floats"] == 308
    assert not by_name["b"]["factored"] and by_name["b"]["state_floats"] == 8
    assert by_name["group0.param3"]["mode"] == "none"  # last two dims (3, 4): 3 < 4
    assert by_name["group0.param3"]["state_floats"] == 24


def test_step_stats():
    params = _params()
    opt = Adafactor(params, track_stats=True, clip_threshold=0.5)
    with pytest.raises(RuntimeError, match="no step"):
        opt.step_stats()
    _run(opt, params, 3)
    stats = opt.step_stats()
    assert set(stats) == {"step_size", "rho", "beta2hat", "update_rms", "clipped_fraction"}
    assert stats["rho"] == pytest.approx(1e-2)
    assert stats["beta2hat"] == pytest.approx(1 - 3**-0.8)
    assert 0.0 < stats["clipped_fraction"] <= 1.0
    assert stats["update_rms"] > 0
    # the same statistics from the reference path
    ref_params = _params()
    ref = Adafactor(ref_params, track_stats=True, clip_threshold=0.5, implementation="reference")
    _run(ref, ref_params, 3)
    for key, value in ref.step_stats().items():
        assert stats[key] == pytest.approx(value, rel=1e-5)
    with pytest.raises(RuntimeError, match="track_stats"):
        Adafactor(_params()).step_stats()


def test_update_rms_by_tensor_names_each_tensor_of_the_last_step():
    params = _params()
    opt = Adafactor(params, track_stats=True, clip_threshold=0.5, factored=False)
    with pytest.raises(RuntimeError, match="no step"):
        opt.update_rms_by_tensor()
    _run(opt, params, 1)
    first = opt.update_rms_by_tensor()
    assert [p for p, _ in first] == params  # the parameters themselves, in order
    # Step 1: beta2hat = 0, so V = G^2 + eps1 and U = G / sqrt(V): RMS(U) = 1 up to eps1.
    assert [v for _, v in first] == pytest.approx([1.0] * len(params), abs=1e-6)
    _run(opt, params, 2, seed0=7)
    values = [v for _, v in opt.update_rms_by_tensor()]
    assert sum(values) / len(values) == pytest.approx(opt.step_stats()["update_rms"], rel=1e-6)
    assert len(set(values)) > 1


# --------------------------------------------------------------------------------- state
def test_state_dict_round_trip_then_continuing_gives_identical_results():
    params = _params()
    opt = Adafactor(params, beta1=0.9)
    _run(opt, params, 3)
    saved = copy.deepcopy(opt.state_dict())
    resumed_params = [p.detach().clone().requires_grad_() for p in params]
    resumed = Adafactor(resumed_params, beta1=0.9)
    resumed.load_state_dict(saved)
    _run(opt, params, 3, seed0=200)
    _run(resumed, resumed_params, 3, seed0=200)
    for a, b in zip(params, resumed_params, strict=True):
        assert torch.equal(a, b)
    assert resumed.state[resumed_params[0]]["step"] == 6


def test_optimizer_state_bytes_counts_any_optimizer_exactly():
    params = _params(shapes=[(10, 20), (20,)])
    adamw = torch.optim.AdamW(params)
    _run_simple(adamw, params)
    # exp_avg and exp_avg_sq per parameter, plus a 4-byte float32 step tensor each
    assert optimizer_state_bytes(adamw) == 2 * 4 * 220 + 2 * 4
    sgd = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    _run_simple(sgd, params)
    assert optimizer_state_bytes(sgd) == 4 * 220
    assert optimizer_state_bytes(Adafactor(params)) == 0  # no state before the first step
    with pytest.raises(TypeError, match="Optimizer"):
        optimizer_state_bytes(params)


def _run_simple(opt, params):
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()


# --------------------------------------------------------------------------------- syncs, compile
class _ForbidHostReads(TorchFunctionMode):
    FORBIDDEN: ClassVar[set] = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__,
                 torch.Tensor.__float__, torch.Tensor.__int__, torch.Tensor.numpy}

    def __init__(self, opt=None):
        super().__init__()
        self.opt = opt  # its 0-dim CPU step counters may be read: that is no device sync

    def _allowed(self, t) -> bool:
        steps = [s["step"] for s in self.opt.state.values()] if self.opt is not None else []
        return any(t is s for s in steps) and t.device.type == "cpu" and t.dim() == 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.FORBIDDEN and not (args and self._allowed(args[0])):
            raise AssertionError(f"host read {func.__name__} inside step()")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("implementation", ["fused_cpu", "reference"])
def test_step_never_reads_tensors_back_to_the_host(implementation):
    params = _params()
    opt = Adafactor(params, beta1=0.9, weight_decay=0.01, track_stats=True,
                    implementation=implementation)
    with _ForbidHostReads(), pytest.raises(AssertionError, match="host read"):
        torch.ones(()).item()  # the guard itself works
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # modes are thread-local: keep all of step() on this thread
    try:
        for step in range(2):
            for p, g in zip(params, _grads(step), strict=True):
                p.grad = g
            with _ForbidHostReads(opt):
                opt.step()
    finally:
        torch.set_num_threads(previous)
    assert math.isfinite(opt.step_stats()["update_rms"])  # reading stats afterwards may sync


def test_step_under_torch_compile_matches_eager():
    eager_params, compiled_params = _params(shapes=[(6, 4), (4,)]), _params(shapes=[(6, 4), (4,)])
    eager = Adafactor(eager_params)
    compiled = Adafactor(compiled_params)
    compiled_step = torch.compile(compiled.step, backend="aot_eager")
    for step in range(3):
        grads = _grads(step, shapes=[(6, 4), (4,)])
        for p, q, g in zip(eager_params, compiled_params, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        eager.step()
        compiled_step()
    for a, b in zip(eager_params, compiled_params, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)


def test_a_step_without_gradients_keeps_the_last_steps_stats() -> None:
    """Lightning calls step() for a batch whose loss was skipped (a blow-up stop): no parameter
    has a gradient then, and step_stats() must still describe the last real step, not raise."""
    w = torch.nn.Parameter(torch.randn(8, 6))
    opt = Adafactor([w], track_stats=True)
    w.grad = torch.randn(8, 6)
    opt.step()
    before = opt.step_stats()
    w.grad = None
    opt.step()
    assert opt.step_stats() == before
    assert float(opt.state[w]["step"]) == 1.0
