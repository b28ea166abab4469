"""The calibration rule of docs/calibration.md section 1, and a cell's resolved scale preset.

Rule: the warmup (or the no-warmup plateau) ends at half the run, F = 10^4 / (steps / 2); beta2
and 1 - t^-c keep their absolute steps; one multiplier m acts on every step size, matched to the
width: alpha_t = m sqrt(512 / d_model) 0.1 s_t and rho_t = m s_t. A cell with ``lr_multiplier``
(the sensitivity grid) runs under this rule; a cell's ``preset_overrides`` (Figure 1) set preset
fields directly. ``resolve_cell_preset`` is the one place that turns (cell, scale, --set
overrides) into the preset a cell trains with, for the runner and for the check that an existing
result fits.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from experiments.cells import Cell
from experiments.scales import ScalePreset, scale_preset
from experiments.step_size_rule import half_run_time_rescale, width_matched_lr_scale
from models.presets import model_config


def calibrated(preset: ScalePreset, multiplier: float, *, d_model: int,
               steps: int | None = None) -> ScalePreset:
    """``preset`` under the rule with multiplier m (``steps``: the cell's own step count)."""
    if not multiplier > 0 or not math.isfinite(multiplier):
        raise ValueError(f"step-size multiplier must be positive and finite, got {multiplier!r}")
    return dataclasses.replace(
        preset, time_rescale=half_run_time_rescale(steps or preset.steps),
        lr_scale=width_matched_lr_scale(multiplier, d_model), relative_lr_scale=float(multiplier),
    )


def resolve_cell_preset(cell: Cell, scale: str, overrides: Mapping[str, Any] | None = None
                        ) -> ScalePreset:
    """The preset ``cell`` trains with: the scale's preset, the cell's own preset_overrides,
    the --set ``overrides`` on top, then the calibration rule if the cell has a multiplier."""
    preset = scale_preset(scale, **{**cell.preset_overrides, **(overrides or {})})
    if cell.lr_multiplier is None:
        return preset
    d_model = model_config(preset.model, preset.vocab_size,
                           **{**preset.model_overrides, **cell.model_overrides}).d_model
    steps = max(1, round(preset.steps * cell.steps_factor))
    return calibrated(preset, cell.lr_multiplier, d_model=d_model, steps=steps)
