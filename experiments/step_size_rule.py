"""The calibration rule's two formulas (docs/calibration.md section 1), free of other imports so
that the scale presets (experiments.scales) and the per-cell rule (experiments.calibration) share
them: the warmup or plateau ends at half the run, and one multiplier m is width-matched."""

from __future__ import annotations

import math

PAPER_D_MODEL = 512  # Transformer base, the width the paper's alpha_t = 0.1 s_t was set for
PAPER_WARMUP_STEPS = 10_000  # where s_t's warmup ramp (or the no-warmup plateau) ends


def half_run_time_rescale(steps: int) -> float:
    """F such that the paper's 10^4-step warmup or plateau ends at half of ``steps``."""
    if steps < 2:
        raise ValueError(f"the half-run rule needs at least 2 steps, got {steps}")
    return PAPER_WARMUP_STEPS / (steps / 2)


def width_matched_lr_scale(multiplier: float, d_model: int) -> float:
    """lr_scale = m sqrt(512 / d_model): the same relative update alpha / RMS(W) as at d = 512."""
    return multiplier * math.sqrt(PAPER_D_MODEL / d_model)
