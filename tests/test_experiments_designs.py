"""The pre-registered tiny designs as scales (docs/preregistration.md section 1): each is one
--scale with its knobs, named in its cells' identity, and its grid cells refuse to run until its
step-size multiplier is calibrated, while the calibration cells run."""

from __future__ import annotations

import dataclasses

import pytest

from experiments.grid.registry import get_cell
from experiments.identity import cell_settings
from experiments.scales import DESIGN_MULTIPLIERS, check_calibrated, plan_cell, scale_preset
from reproduce.cli import main


@pytest.mark.parametrize(("scale", "knobs"), [
    ("tiny-d1", {"steps": 4000, "time_rescale": 5.0, "val_interval": 250}),
    ("tiny-d1p", {"steps": 2000, "time_rescale": 10.0, "decay_time_rescale": True}),
    ("tiny-d2", {"steps": 400, "model_overrides": {"n_encoder_layers": 6,
                                                   "n_decoder_layers": 6}}),
])
def test_each_design_is_the_tiny_preset_with_its_knobs(scale: str, knobs: dict) -> None:
    preset, tiny = scale_preset(scale), scale_preset("tiny")
    for key, value in knobs.items():
        assert getattr(preset, key) == value, key
    assert (preset.corpus, preset.model, preset.max_tokens) == (tiny.corpus, tiny.model,
                                                                tiny.max_tokens)
    cell = get_cell("table2/A/warmup/seed0")
    assert cell_settings(cell, preset)["scale"]["name"] == scale


def test_the_smoke_preset_is_tiny_without_figure1(capsys) -> None:
    smoke, tiny = scale_preset("smoke"), scale_preset("tiny")
    assert dataclasses.replace(smoke, name="tiny") == tiny
    cell = get_cell("table2/A/warmup/seed0")
    assert cell_settings(cell, smoke)["scale"]["name"] == "smoke"
    for scale, count in (("smoke", 44), ("tiny", 46)):
        assert main(["table2", "--scale", scale, "--dry-run", "--results-dir",
                     f"/nonexistent/{scale}"]) == 0
        out = capsys.readouterr().out
        assert f"table2 at scale {scale}: {count} cells" in out
        assert ("figure1/A/warmup/seed0" in out) == (scale == "tiny")


def test_an_uncalibrated_design_runs_its_calibration_cells_only(capsys, monkeypatch) -> None:
    monkeypatch.setitem(DESIGN_MULTIPLIERS, "tiny-d1", None)  # as before its calibration
    calibration = plan_cell(get_cell("sensitivity/B/warmup-m3.16/seed0"), "tiny-d1")
    assert calibration.preset.time_rescale == pytest.approx(5.0)  # the half-run rule at 4000
    assert calibration.preset.relative_lr_scale == pytest.approx(3.16)
    with pytest.raises(ValueError, match="not calibrated yet"):
        check_calibrated(get_cell("table2/A/warmup/seed0"), "tiny-d1")
    check_calibrated(get_cell("table2/A/warmup/seed0"), "tiny-d1",
                     {"lr_scale": 1.0, "relative_lr_scale": 1.0})
    check_calibrated(get_cell("table2/A/warmup/seed0"), "tiny")
    assert main(["table2", "--scale", "tiny-d1", "--rows", "A", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "error: scale 'tiny-d1': its step-size multiplier m is not calibrated" in err
    assert "sensitivity/B/warmup-m<m>/seed0 --scale tiny-d1" in err


@pytest.mark.parametrize("scale", ["tiny-d1", "tiny-d1p", "tiny-d2"])
def test_a_calibrated_design_trains_its_table_with_its_m_and_no_figure1(scale: str,
                                                                        capsys) -> None:
    """m = 3.16 for each design (docs/preregistration.md section 9), width-matched; the table
    run leaves out Figure 1's reference cells."""
    preset = plan_cell(get_cell("table2/A/no-warmup/seed0"), scale).preset
    assert preset.relative_lr_scale == DESIGN_MULTIPLIERS[scale] == 3.16
    assert preset.lr_scale == pytest.approx(3.16 * (512 / 64) ** 0.5)
    assert main(["table2", "--scale", scale, "--dry-run", "--results-dir",
                 f"/nonexistent/{scale}"]) == 0
    out = capsys.readouterr().out
    assert f"table2 at scale {scale}: 44 cells" in out and "figure1/" not in out
