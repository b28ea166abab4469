"""Each grid row builds the right optimizer with the row's switches, and LambdaLR sets its lr."""

from __future__ import annotations

import pytest
import torch

from adafactor import Adafactor
from experiments.grid.registry import get_cell, table_cells
from experiments.optimizers import build_optimizer, rescaled_decay, step_size_schedule


def _params() -> list[torch.nn.Parameter]:
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(6, 4)), torch.nn.Parameter(torch.randn(4))]


@pytest.mark.parametrize("cell", table_cells("table2", rows=[*list("ABCEGHKOP"), "Q3"]),
                         ids=lambda c: c.cell_id)
def test_row_builds_its_optimizer(cell) -> None:
    opt = build_optimizer(_params(), cell.optimizer, cell.schedule)
    group = opt.param_groups[0]
    if cell.row == "B":
        assert type(opt) is torch.optim.Adam
        assert group["betas"] == (0.9, 0.999) and group["eps"] == 1e-9
    elif cell.row.startswith("Q"):
        assert type(opt) is torch.optim.SGD
        assert group["momentum"] == 0
    else:
        assert isinstance(opt, Adafactor)
        for key in ("factored", "beta1", "beta2", "clip_threshold", "scale_parameter"):
            assert group[key] == cell.optimizer[key], key
        assert group["scale_parameter"] == (cell.row in "OP")
        assert group["track_stats"] is True
        if cell.optimizer["beta2"] is None:
            assert group["decay_exponent"] == cell.optimizer["decay_exponent"]


def test_lambda_lr_sets_the_step_size_of_each_step() -> None:
    """param_group['lr'] during step t equals alpha_t (t from 1), through the module's LambdaLR."""
    cell = get_cell("table2/A/warmup/seed0")
    schedule = step_size_schedule(cell.schedule, time_factor=250.0)
    params = _params()
    opt = build_optimizer(params, cell.optimizer, cell.schedule)
    for group in opt.param_groups:
        group["lr"] = group["initial_lr"] = 1.0
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: schedule(i + 1))
    seen = []
    for _ in range(5):
        sum((p**2).sum() for p in params).backward()
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        opt.zero_grad()
        sched.step()
    assert seen == pytest.approx([0.1 * 1e-6 * 250 * t for t in range(1, 6)])


def test_relative_row_scales_by_parameter_rms() -> None:
    """Row O: the applied step is rho_t * max(eps2, RMS(X)), i.e. update / RMS(X) ~ rho_t."""
    cell = get_cell("table2/O/no-warmup/seed0")
    p = torch.nn.Parameter(torch.full((8, 8), 3.0))
    opt = build_optimizer([p], cell.optimizer, cell.schedule)
    opt.param_groups[0]["lr"] = 1e-2
    p.grad = torch.ones_like(p)
    before = p.detach().clone()
    opt.step()
    assert (before - p.detach()).abs().mean().item() == pytest.approx(3.0 * 1e-2, rel=1e-4)


@pytest.mark.parametrize(
    ("optimizer", "schedule", "message"),
    [
        ({"name": "adamax"}, {"kind": "sgd"}, "unknown optimizer 'adamax'"),
        ({"name": "adafactor", "betta": 1}, {"kind": "absolute"}, "unknown Adafactor setting"),
        ({"name": "adafactor"}, {"kind": "sgd"}, "needs an 'absolute', 'relative' or 'peak'"),
        ({"name": "adafactor", "scale_parameter": True}, {"kind": "absolute"}, "contradicts"),
        ({"name": "sgd", "momentum": 0.9}, {"kind": "sgd"}, "unknown SGD setting"),
        ({"name": "adam", "amsgrd": True}, {"kind": "absolute"}, "unknown Adam setting"),
        ({"name": "lion", "beta": 0.9}, {"kind": "peak", "peak": 1e-4}, "unknown Lion setting"),
    ],
)
def test_bad_specs(optimizer, schedule, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_optimizer(_params(), optimizer, schedule)


def test_paper_step_size_at_real_time_is_the_integer_formula_extended() -> None:
    from adafactor.schedules import paper_step_size, paper_step_size_at

    for t in (1, 2, 99, 10_000, 10_001, 123_456):
        for warmup in (True, False):
            assert paper_step_size_at(t, warmup) == paper_step_size(t, warmup)
            assert paper_step_size_at(float(t), warmup) == paper_step_size(t, warmup)
    assert paper_step_size_at(2.5, True) == 1e-6 * 2.5
    assert paper_step_size_at(40_000.5, False) == 1 / 40_000.5**0.5
    with pytest.raises(ValueError, match="paper time"):
        paper_step_size_at(0.5, True)


# Design D1' at F = 10 (docs/preregistration.md section 1): constant beta2 -> 1 - F (1 - beta2),
# 1 - t^-c -> max(0, 1 - F^(1-c) t^-c), beta1 kept.
D1P_DECAYS = {"A": ("beta2", 0.99), "F": ("beta2", 0.9), "G": ("beta2", 0.0),
              "K": ("decay_scale", 10**0.5), "L": ("decay_scale", 10**0.2),
              "M": ("decay_scale", 1.0), "P": ("decay_scale", 10**0.2)}


@pytest.mark.parametrize("row", sorted(D1P_DECAYS))
def test_rescaled_decay_gives_the_preregistered_constants(row: str) -> None:
    key, value = D1P_DECAYS[row]
    cell = get_cell(f"table2/{row}/no-warmup/seed0")
    spec = rescaled_decay(cell.optimizer, 10.0)
    assert spec[key] == pytest.approx(value, abs=1e-12)
    if value == 0.0:  # row G keeps no memory at all (an fp residue would be a 1e-16 EMA)
        assert spec[key] == 0.0
    assert spec.get("beta1") == cell.optimizer.get("beta1")
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(4, 3))], spec, cell.schedule)
    assert opt.param_groups[0][key] == pytest.approx(value, abs=1e-12)


def test_rescaled_decay_of_adam_and_sgd() -> None:
    adam = get_cell("table2/B/no-warmup/seed0").optimizer
    assert rescaled_decay(adam, 10.0)["betas"] == pytest.approx((0.9, 0.99))
    sgd = get_cell("table2/Q1/no-warmup/seed0").optimizer
    assert rescaled_decay(sgd, 10.0) == sgd
    with pytest.raises(ValueError, match="decay_time_rescale applies to"):
        rescaled_decay({"name": "lion"}, 10.0)


def test_a_cell_under_decay_time_rescale_trains_and_records_the_rescaled_decay() -> None:
    from experiments.run.trainer import trained_optimizer
    from experiments.scales import scale_preset

    cell = get_cell("table2/A/no-warmup/seed0")
    plain, d1p = scale_preset("tiny"), scale_preset("tiny", decay_time_rescale=True,
                                                     time_rescale=10.0)
    assert trained_optimizer(cell, plain) == cell.optimizer
    assert trained_optimizer(cell, d1p)["beta2"] == pytest.approx(0.99)
