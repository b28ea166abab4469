"""The frontier grid (experiments/frontier.py): cell ids, what each cell trains, bad ids, and the
``peak`` step-size schedule its cells use."""

from __future__ import annotations

import math

import pytest

from experiments.grid import table2_row_optimizer
from experiments.grid.frontier import (
    FRONTIER_OPTIMIZERS,
    FRONTIER_ROWS,
    frontier_cell,
    lr_column,
    parse_lr_column,
)
from experiments.grid.registry import get_cell, provider, table_cells
from experiments.optimizers import build_optimizer, step_size_schedule

TINY_TIME_FACTOR = 50  # experiments.scales: the tiny preset's F


def peak_schedule(peak, **kwargs):
    return step_size_schedule({"kind": "peak", "peak": peak, "warmup": True},
                              time_factor=TINY_TIME_FACTOR, **kwargs)


# --- ids and cells -----------------------------------------------------------------------------


def test_frontier_rows_are_the_thirteen_optimizers() -> None:
    assert provider("frontier").rows == FRONTIER_ROWS
    assert len(FRONTIER_ROWS) == 13
    assert FRONTIER_ROWS[:2] == ("adafactor", "adafactor-momentum")
    for name in ("adam", "adamw", "adam-mini", "adax", "came", "lamb", "lion", "tiger",
                 "sgd-momentum", "adagrad", "rmsprop"):
        assert name in FRONTIER_ROWS


def test_table_cells_has_each_sweep_in_row_order() -> None:
    cells = table_cells("frontier")
    sizes = {name: len(FRONTIER_OPTIMIZERS[name].peaks) for name in FRONTIER_ROWS}
    assert len(cells) == sum(sizes.values())
    assert [c.row for c in cells] == [r for r in FRONTIER_ROWS for _ in range(sizes[r])]
    for name in FRONTIER_ROWS:
        peaks = FRONTIER_OPTIMIZERS[name].peaks
        assert len(set(peaks)) >= 3 and list(peaks) == sorted(peaks)
        mine = [c for c in cells if c.row == name]
        assert [c.column for c in mine] == [lr_column(p) for p in peaks]
        assert [c.schedule["peak"] for c in mine] == list(peaks)
    assert len({c.cell_id for c in cells}) == len(cells)
    assert cells[0].cell_id == "frontier/adafactor/lr0.02/seed0"
    assert get_cell("frontier/lion/lr0.003/seed0").cell_id in {c.cell_id for c in cells}


def test_row_selection_and_seeds() -> None:
    cells = table_cells("frontier", rows=["tiger", "adam"], seeds=(0, 2))
    smallest = lr_column(FRONTIER_OPTIMIZERS["tiger"].peaks[0])
    assert [c.cell_id for c in cells[:2]] == [f"frontier/tiger/{smallest}/seed0",
                                              f"frontier/tiger/{smallest}/seed2"]
    assert [c.row for c in cells] == ["tiger"] * 6 + ["adam"] * 6
    with pytest.raises(ValueError, match=r"unknown row\(s\) 'nosuch' for frontier"):
        table_cells("frontier", rows=["nosuch"])


def test_every_frontier_cell_id_round_trips() -> None:
    for cell in table_cells("frontier", seeds=(0, 3)):
        again = get_cell(cell.cell_id)
        assert again == cell
        assert again.cell_id == cell.cell_id
        assert parse_lr_column(cell.column) == cell.schedule["peak"]


def test_every_frontier_cell_uses_out_in_kernels_and_the_peak_schedule() -> None:
    for cell in table_cells("frontier"):
        assert cell.table == "frontier"
        assert cell.model_overrides == {"kernel_layout": "out_in"}
        assert cell.schedule == {"kind": "peak", "peak": parse_lr_column(cell.column),
                                 "warmup": True}
        assert cell.warmup is True
        assert cell.paper_bleu is None
        assert (cell.steps_factor, cell.max_tokens_factor) == (1.0, 1.0)
        assert cell.as_dict()["model_overrides"] == {"kernel_layout": "out_in"}


def test_adafactor_rows_reuse_table2_rows_o_and_p() -> None:
    assert get_cell("frontier/adafactor/lr0.05/seed0").optimizer == table2_row_optimizer("O")
    momentum = get_cell("frontier/adafactor-momentum/lr0.1/seed0").optimizer
    assert momentum == table2_row_optimizer("P")
    assert momentum["beta1"] == 0.9
    for name in FRONTIER_ROWS[2:]:
        assert frontier_cell(name, FRONTIER_OPTIMIZERS[name].peaks[0], 0).optimizer == {
            "name": name}


def test_cells_do_not_share_the_registry_spec() -> None:
    cell = frontier_cell("adafactor", 0.05, 0)
    cell.optimizer["beta1"] = 0.5
    cell.model_overrides["kernel_layout"] = "in_out"
    fresh = frontier_cell("adafactor", 0.05, 0)
    assert fresh.optimizer == table2_row_optimizer("O")
    assert fresh.model_overrides == {"kernel_layout": "out_in"}


def test_every_frontier_optimizer_builds_and_steps_on_a_tiny_out_in_model() -> None:
    import torch

    from models.presets import model_config
    from models.transformer import Transformer

    cfg = model_config("tiny", 1000, kernel_layout="out_in")
    torch.manual_seed(0)
    model = Transformer(cfg, pad_id=0)
    n_params = sum(1 for _ in model.parameters())
    for cell in table_cells("frontier"):
        optimizer = build_optimizer(model.named_parameters(), cell.optimizer, cell.schedule,
                                    model_cfg=cfg)
        assert isinstance(optimizer, torch.optim.Optimizer), cell.cell_id
        assert sum(len(g["params"]) for g in optimizer.param_groups) == n_params, cell.cell_id
    # One real step with one of them: the built optimizer is usable on this model.
    cell = get_cell("frontier/adam-mini/lr0.001/seed0")
    optimizer = build_optimizer(model.named_parameters(), cell.optimizer, cell.schedule,
                                model_cfg=cfg)
    for group in optimizer.param_groups:
        group["lr"] = 1e-3
    src = torch.randint(4, 1000, (2, 6))
    tgt = torch.randint(4, 1000, (2, 6))
    before = [p.detach().clone() for p in model.parameters()]
    model(src, tgt).float().pow(2).mean().backward()
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


# --- bad ids -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell_id", "message"),
    [
        ("frontier/nosuch/lr0.001/seed0", "unknown row 'nosuch' for frontier"),
        ("frontier/lion/lr3e-4/seed0", "bad frontier column 'lr3e-4'"),
        ("frontier/lion/lr0.00030/seed0", "bad frontier column 'lr0.00030'"),
        ("frontier/lion/lr0/seed0", "bad frontier column 'lr0'"),
        ("frontier/lion/lr-0.001/seed0", "bad frontier column 'lr-0.001'"),
        ("frontier/lion/lrx/seed0", "bad frontier column 'lrx'"),
        ("frontier/lion/lrinf/seed0", "bad frontier column 'lrinf'"),
        ("frontier/lion/lrnan/seed0", "bad frontier column 'lrnan'"),
        ("frontier/lion/0.0003/seed0", "bad frontier column '0.0003'"),
        ("frontier/lion/warmup/seed0", "bad frontier column 'warmup'"),
        ("frontier/lion/lr0.0003/s0", "bad seed part 's0'"),
        ("frontier/lion/lr0.0003/seedx", "bad seed part 'seedx'"),
        ("frontier/lion/lr0.0003/seed-1", "bad seed part 'seed-1'"),
        ("frontier/lion/lr0.0003", "must look like"),
    ],
)
def test_bad_frontier_ids_name_the_problem(cell_id: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        get_cell(cell_id)


def test_bad_column_message_shows_the_canonical_form() -> None:
    with pytest.raises(ValueError, match=r"'\{peak:g\}', e\.g\. 'lr0\.0003'"):
        parse_lr_column("lr3e-4")
    assert parse_lr_column("lr3e-05") == 3e-5  # {:g} writes small peaks with an exponent
    assert lr_column(3e-5) == "lr3e-05" and lr_column(0.1) == "lr0.1"


def test_frontier_cell_rejects_an_unknown_optimizer() -> None:
    with pytest.raises(ValueError, match=r"unknown frontier optimizer 'adamax'; valid: adafactor"):
        frontier_cell("adamax", 1e-3, 0)


# --- the peak schedule -------------------------------------------------------------------------


def test_peak_schedule_reaches_the_peak_at_paper_time_ten_thousand() -> None:
    f = peak_schedule(3e-4)
    assert f(200) == 3e-4  # paper time 50 * 200 = 10^4: the top of the warmup
    assert f(100) == pytest.approx(1.5e-4, rel=1e-12)  # halfway up the linear ramp
    assert f(400) == pytest.approx(3e-4 * math.sqrt(0.5), rel=1e-12)  # 1/sqrt decay
    assert f(1) == pytest.approx(3e-4 * 50 / 1e4, rel=1e-12)
    assert max(f(t) for t in range(1, 1000)) == f(200)
    for name in FRONTIER_ROWS:
        for peak in FRONTIER_OPTIMIZERS[name].peaks:
            g = peak_schedule(peak)
            assert g(200) == pytest.approx(peak, rel=1e-12), (name, peak)
            assert g(100) == pytest.approx(peak / 2, rel=1e-12), (name, peak)
            assert g(400) == pytest.approx(peak * math.sqrt(0.5), rel=1e-12), (name, peak)


def test_peak_schedule_ignores_the_lr_scales() -> None:
    plain = peak_schedule(1e-3)
    scaled = peak_schedule(1e-3, lr_scale=8.5, relative_lr_scale=5.0)
    assert [plain(t) for t in (1, 37, 100, 200, 400)] == [scaled(t) for t in (1, 37, 100, 200, 400)]
    # Whereas the other kinds do scale (so the comparison above can fail).
    absolute = {"kind": "absolute", "multiplier": 0.1, "warmup": True}
    assert step_size_schedule(absolute, time_factor=50, lr_scale=8.5)(200) == pytest.approx(
        8.5e-3)


def test_peak_schedule_without_warmup_flag_warms_up() -> None:
    f = step_size_schedule({"kind": "peak", "peak": 0.1}, time_factor=TINY_TIME_FACTOR)
    assert f(100) == pytest.approx(0.05, rel=1e-12)


@pytest.mark.parametrize("peak", [0, -1, "x", True, float("inf"), float("nan"), None])
def test_bad_peak_is_rejected(peak) -> None:
    schedule = {"kind": "peak", "warmup": True}
    if peak is not None:
        schedule["peak"] = peak
    with pytest.raises(ValueError, match="positive 'peak' step size"):
        step_size_schedule(schedule, time_factor=TINY_TIME_FACTOR)


def test_peak_schedule_without_warmup_is_rejected() -> None:
    with pytest.raises(ValueError, match="always warms up"):
        step_size_schedule({"kind": "peak", "peak": 1e-3, "warmup": False}, time_factor=50)


def test_peak_schedule_counts_steps_from_one() -> None:
    with pytest.raises(ValueError, match="count from 1"):
        peak_schedule(1e-3)(0)
