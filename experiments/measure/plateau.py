"""The plateau maximum of RMS(U_t) (docs/preregistration.md section 3): over the first half of a
run (the warmup ramp or the no-warmup plateau), the largest centred mean over 100 steps of the
beta2 clock of a cell's logged RMS(U_t) series.

The paper's collapse mechanism is an overshoot of RMS(U_t) while the second-moment estimate lags
(Figure 1: 2.2 at step ~800 for beta2 = 0.999). The prediction: >= 2 for the unclipped collapse
rows where the design keeps the paper's time ratio, <= 1 applied for the clipped rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from experiments.schema import (
    STEP,
    TRAIN_LOSS,
    UPDATE_RMS_APPLIED,
    UPDATE_RMS_MATRICES,
    UPDATE_RMS_MATRIX,
)

WINDOW_TAU = 100  # beta2-clock steps in the centred window
SERIES = (UPDATE_RMS_MATRIX, UPDATE_RMS_MATRICES, UPDATE_RMS_APPLIED)


def tau_per_step(decay_time_rescale: bool, time_factor: float) -> float:
    """Beta2-clock steps (tau) per optimizer step: F under decay_time_rescale (D1'), else 1."""
    return float(time_factor) if decay_time_rescale else 1.0


def window_steps(decay_time_rescale: bool, time_factor: float) -> float:
    """The window in optimizer steps: 100 tau."""
    return WINDOW_TAU / tau_per_step(decay_time_rescale, time_factor)


def centred(taus: Sequence[float], values: Sequence[float], window: float = WINDOW_TAU
            ) -> list[float]:
    """At each point, the mean of the points within ±window/2 of it (truncated at the ends of
    the series): the one smoothing of RMS(U_t) that the plateau maximum and Figure 1's mechanism
    numbers share."""
    out, lo, hi, total = [], 0, 0, 0.0
    for tau in taus:
        while hi < len(taus) and taus[hi] <= tau + window / 2:
            total += values[hi]
            hi += 1
        while taus[lo] < tau - window / 2:
            total -= values[lo]
            lo += 1
        out.append(total / (hi - lo))
    return out


def plateau_maxima(records: Sequence[dict[str, Any]], steps: int, window: float
                   ) -> dict[str, Any] | None:
    """{series: largest centred mean with its centre at step <= steps / 2} for each logged series
    (None for one not logged: torch Adam, SGD), with the window and the last step read; None
    when no row carries any series."""
    rows = sorted((r for r in records if TRAIN_LOSS in r and r.get(STEP)),
                  key=lambda r: r[STEP])
    out: dict[str, Any] = {"window_steps": window, "through_step": steps // 2}
    found = False
    for key in SERIES:
        points = [(int(r[STEP]), float(r[key])) for r in rows
                  if isinstance(r.get(key), int | float) and math.isfinite(r[key])]
        if not points:
            out[key] = None
            continue
        found = True
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        means = centred(xs, ys, window)
        inside = [m for x, m in zip(xs, means, strict=True) if x <= steps // 2]
        out[key] = max(inside) if inside else None
    return out if found else None
