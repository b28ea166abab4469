"""The calibration rule's arithmetic, and that it leaves every existing table's preset alone."""

from __future__ import annotations

import dataclasses

import pytest

from experiments.grid.registry import REGISTRY
from experiments.scales import (
    calibrated,
    half_run_time_rescale,
    resolve_cell_preset,
    scale_preset,
    width_matched_lr_scale,
)


def test_half_run_and_width_matching() -> None:
    assert half_run_time_rescale(400) == 50.0  # the 10^4-step warmup ends at step 200
    assert width_matched_lr_scale(1.0, 512) == 1.0
    assert width_matched_lr_scale(3.16, 64) == pytest.approx(3.16 * 2.8284271)
    preset = calibrated(scale_preset("tiny"), 10.0, d_model=64)
    assert (preset.time_rescale, preset.relative_lr_scale) == (50.0, 10.0)
    with pytest.raises(ValueError, match="multiplier"):
        calibrated(scale_preset("tiny"), 0.0, d_model=64)
    with pytest.raises(ValueError, match="at least 2 steps"):
        half_run_time_rescale(1)


@pytest.mark.parametrize("table", ["table1", "table2", "table3", "frontier"])
def test_cells_without_their_own_settings_get_the_scale_preset(table: str) -> None:
    """Every cell trains with the scale's preset, but Table 2's SGD rows with the blow-up stop."""
    for scale in ("tiny", "base"):
        wanted = scale_preset(scale, steps=123)
        for cell in REGISTRY.table_cells(table):
            sgd = cell.table in ("table1", "table2") and cell.row.startswith("Q")
            want = dataclasses.replace(wanted, blowup_factor=2.0) if sgd else wanted
            assert resolve_cell_preset(cell, scale, {"steps": 123}) == want, cell.cell_id


def test_the_tiny_preset_is_the_rule_at_the_calibrated_multiplier() -> None:
    """Table 2's B with warmup trains with exactly the preset of the sensitivity grid's point
    m = 3.16 (only the grid's blow-up stop differs), so the preset is the rule, not a search."""
    tiny = scale_preset("tiny")
    assert tiny.time_rescale == 50.0
    assert tiny.lr_scale == width_matched_lr_scale(3.16, 64)
    assert tiny.relative_lr_scale == 3.16
    table2 = resolve_cell_preset(REGISTRY.get_cell("table2/B/warmup/seed0"), "tiny")
    grid = resolve_cell_preset(REGISTRY.get_cell("sensitivity/B/warmup-m3.16/seed0"), "tiny")
    assert grid.blowup_factor == 2.0 and table2.blowup_factor is None
    assert dataclasses.replace(grid, blowup_factor=None) == table2
