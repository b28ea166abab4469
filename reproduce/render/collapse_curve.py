"""The curve collapse rule (docs/calibration.md section 2): a verdict read from a run's loss curve.

A run is ``diverged`` (a non-finite loss, or stopped past the blow-up factor), ``collapsed`` (it
gave back more than half its progress from the running minimum and stayed there, or it ended at
>= 0.9 x the unigram level of the target side, experiments.measure.unigram), ``slow`` (still
falling by more than 1% over the last interval) or ``trained``. Diverged and collapsed count as
collapse; slow does not. The rule was written down before any run was scored, and reads nothing
but the curve and the unigram level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from experiments.schema import DIVERGED_FLAG, STATUS, VALID_LOSS, Status

DIVERGED = Status.DIVERGED.value  # a non-finite loss, or a run stopped at its blow-up factor
COLLAPSED = "collapsed"
SLOW = "slow"
TRAINED = "trained"
PLATEAU = "plateau"  # collapsed: never left the unigram plateau
GAVE_BACK = "gave back"  # collapsed: gave back more than half its progress

GIVE_BACK_FRACTION = 0.5  # of the progress (first loss - running minimum)
UNIGRAM_FRACTION = 0.9  # final loss >= this x the unigram level: never left the plateau
SLOW_FRACTION = 0.01  # still falling by more than this per interval: slow, not trained


@dataclass(frozen=True)
class Verdict:
    """The rule's reading of one curve: the verdict and the reason, in words."""

    verdict: str
    reason: str
    kind: str = ""  # a collapse's kind: PLATEAU or GAVE_BACK

    @property
    def collapsed(self) -> bool:
        return self.verdict in (DIVERGED, COLLAPSED)

    @property
    def label(self) -> str:
        """One word or two for a table: diverged, plateau, gave back, slow, trained."""
        return self.kind or self.verdict


def curve_verdict(losses: Sequence[float], unigram_level: float, *,
                  stopped: bool = False, stop_reason: str | None = None) -> Verdict:
    """The verdict on one run from its loss curve in step order (validation losses, the final
    evaluation last). ``stopped``: the run was stopped as diverged (a non-finite
    training loss, or one past the preset's blowup_factor), for ``stop_reason`` (result.json's
    diverged_reason) when it says which."""
    values = [float(v) for v in losses]
    diverged = _divergence(values, stopped, stop_reason)
    if diverged is not None:
        return diverged
    if not unigram_level > 0 or not math.isfinite(unigram_level):
        raise ValueError(f"unigram level must be a positive finite loss, got {unigram_level!r}")
    if not values:
        raise ValueError("curve_verdict needs at least one loss")
    final = values[-1]
    running_min = values[0]
    for i, value in enumerate(values[1:], start=1):
        running_min = min(running_min, value)
        progress = values[0] - running_min
        line = running_min + GIVE_BACK_FRACTION * progress
        if progress > 0 and value > line and all(v > line for v in values[i:]):
            return Verdict(COLLAPSED, f"gave back more than half its progress: rose from "
                           f"{running_min:.3f} to {value:.3f} (started at {values[0]:.3f}) "
                           f"and stayed above {line:.3f}", GAVE_BACK)
    threshold = UNIGRAM_FRACTION * unigram_level
    if final >= threshold:
        return Verdict(COLLAPSED, f"ended at {final:.3f} >= {UNIGRAM_FRACTION} x the unigram "
                       f"level {unigram_level:.3f}", PLATEAU)
    if len(values) >= 2 and values[-2] - final > SLOW_FRACTION * values[-2]:
        return Verdict(SLOW, f"still falling: {values[-2]:.3f} -> {final:.3f} over the last "
                       "interval")
    return Verdict(TRAINED, f"ended at {final:.3f}")


def _divergence(values: Sequence[float], stopped: bool, reason: str | None = None
                ) -> Verdict | None:
    bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
    if bad:
        return Verdict(DIVERGED, f"non-finite loss (point {bad[0] + 1} of {len(values)})")
    if stopped:  # a result written before diverged_reason existed does not say which stop
        return Verdict(DIVERGED, reason or "stopped on its training loss (non-finite, or past "
                       "the blow-up factor)")
    return None


def loss_curve(records: Sequence[dict], result: dict | None = None,
               key: str = VALID_LOSS) -> tuple[list[float], bool]:
    """(the validation-loss curve of one run in step order, stopped as diverged?) from
    its metrics.jsonl records (the final evaluation row last) and its result.json."""
    points = []
    stopped = bool(result and result.get(STATUS) == Status.DIVERGED)
    for r in records:
        if r.get(DIVERGED_FLAG):
            stopped = True
        value = r.get(key)
        if value is None or r.get("step") is None:
            continue
        points.append((int(r["step"]), bool(r.get("final")), _as_float(value)))
    points.sort(key=lambda p: (p[0], p[1]))
    losses = [v for _, _, v in points]
    if not points and result is not None and result.get(key) is not None:
        losses = [_as_float(result[key])]
    return losses, stopped


def run_verdict(records: Sequence[dict], result: dict, unigram_level: float | None
                ) -> Verdict | None:
    """The verdict on one finished run from its metrics records and result.json; None when it
    did not diverge and its unigram level is unknown (not measured), or it has no loss at all."""
    losses, stopped = loss_curve(records, result)
    if unigram_level is None:
        return _divergence([float(v) for v in losses], stopped, result.get("diverged_reason"))
    if not (losses or stopped):
        return None
    return curve_verdict(losses, unigram_level, stopped=stopped,
                         stop_reason=result.get("diverged_reason"))


def _as_float(value: object) -> float:
    """A loss as written by experiments.store.files (non-finite floats are strings "nan", "inf")."""
    return float(value)  # float("nan") / float("inf") parse the strings too
