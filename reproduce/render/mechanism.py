"""Figure 1's mechanism as numbers (docs/preregistration.md section 2): the undershoot and the
overshoot of RMS(U_t) for row A (beta2 = 0.999) with warmup, and row G's band, on a centred mean
over 100 steps of the beta2 clock (tau), for the paper's read-offs and for a design's own
table2/A/warmup and table2/G/warmup cells.

This is what a design is calibrated on, never Table 2's answer: a design *matches* when all four
numbers are within their tolerances, and its distance is d = |ln(o / 2.20)| + |ln(tau_o / 830)|.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from experiments.grid.figure1 import PAPER_FIGURE1_BANDS, PAPER_FIGURE1_POINTS
from experiments.measure.plateau import centred, tau_per_step
from experiments.schema import UPDATE_RMS_MATRIX
from experiments.store.files import MetricsLoader, series

PAPER_SETTLED_FROM = 2100  # the paper's curve is held at 1.0 from here
U_BY, O_BY, G_FROM = 1000, 3000, 100  # tau limits of the undershoot, the overshoot, G's band
SETTLED = 1.1  # tau_s: the first tau after the overshoot with A <= this
# (lowest, highest) of each number for a match (section 2's table)
TOLERANCES = {"u": (0.0, 0.6), "tau_u": (150, 600), "o": (1.76, 2.75), "tau_o": (550, 1250),
              "tau_s": (0, 3000), "g_min": (0.75, math.inf), "g_max": (0.0, 1.20)}
PAPER_O, PAPER_TAU_O = 2.20, 830  # the paper's curve under the same window (tested)


@dataclass(frozen=True)
class Mechanism:
    """The four numbers of one seed (None where the run does not reach them)."""

    u: float | None
    tau_u: float | None
    o: float | None
    tau_o: float | None
    tau_s: float | None
    g_range: tuple[float, float] | None

    def failures(self) -> list[str]:
        """The numbers outside their tolerance (a missing number fails)."""
        values = {"u": self.u, "tau_u": self.tau_u, "o": self.o, "tau_o": self.tau_o,
                  "tau_s": self.tau_s, "g_min": self.g_range and self.g_range[0],
                  "g_max": self.g_range and self.g_range[1]}
        return [k for k, v in values.items()
                if v is None or not TOLERANCES[k][0] <= v <= TOLERANCES[k][1]]

    @property
    def distance(self) -> float | None:
        if self.o is None or self.tau_o is None or self.o <= 0 or self.tau_o <= 0:
            return None
        return abs(math.log(self.o / PAPER_O)) + abs(math.log(self.tau_o / PAPER_TAU_O))

    def text(self) -> str:
        def num(v: float | None, fmt: str) -> str:
            return "-" if v is None else format(v, fmt)

        g = "-" if self.g_range is None else f"{self.g_range[0]:.2f}-{self.g_range[1]:.2f}"
        failed = self.failures()
        d = self.distance
        return (f"u {num(self.u, '.2f')} at tau {num(self.tau_u, '.0f')}, o {num(self.o, '.2f')} "
                f"at tau {num(self.tau_o, '.0f')}, tau_s {num(self.tau_s, '.0f')}, G {g}; "
                f"d = {num(d, '.3f')}; "
                + ("matches" if not failed else "does not match (" + ", ".join(failed) + ")"))


def paper_curve() -> tuple[list[int], list[float]]:
    """The paper's row A read-offs at every step from 300: linear between the points, 1.0 from
    step 2100 (where the paper says it settles) to 3000."""
    points = PAPER_FIGURE1_POINTS["A"]
    taus = list(range(points[0][0], O_BY + 1))
    values = []
    for t in taus:
        if t >= PAPER_SETTLED_FROM:
            values.append(1.0)
            continue
        for (t0, v0), (t1, v1) in pairwise(points):
            if t0 <= t <= t1:
                values.append(v0 + (v1 - v0) * (t - t0) / (t1 - t0))
                break
    return taus, values


def mechanism(a: tuple[Sequence[float], Sequence[float]],
              g: tuple[Sequence[float], Sequence[float]] | None) -> Mechanism:
    """The numbers from row A's and row G's (tau, RMS(U_t)) series (G may be missing)."""
    taus, smooth = list(a[0]), centred(*a)
    early = [(v, t) for t, v in zip(taus, smooth, strict=True) if t <= U_BY]
    u, tau_u = min(early) if early else (None, None)
    later = [(v, t) for t, v in zip(taus, smooth, strict=True)
             if tau_u is not None and tau_u <= t <= O_BY]
    o, tau_o = max(later, key=lambda p: (p[0], -p[1])) if later else (None, None)
    settled = [t for t, v in zip(taus, smooth, strict=True)
               if tau_o is not None and t > tau_o and v <= SETTLED]
    g_range = None
    if g is not None and len(g[0]):
        band = [v for t, v in zip(g[0], centred(*g), strict=True) if G_FROM <= t <= O_BY]
        g_range = (min(band), max(band)) if band else None
    return Mechanism(u, tau_u, o, tau_o, settled[0] if settled else None, g_range)


def result_tau_per_step(result: dict[str, Any]) -> float:
    """`tau_per_step` of a run, from the settings its result records."""
    scale = ((result.get("identity") or {}).get("settings") or {}).get("scale") or {}
    return tau_per_step(bool(scale.get("decay_time_rescale")),
                        scale.get("paper_time_factor") or 1.0)


def table_mechanism(table: str, seed: int, results: dict[str, dict[str, Any]],
                    load_metrics: MetricsLoader) -> Mechanism | None:
    """The numbers of a table's A and G cells with warmup of one seed (None without A's)."""
    curves = {}
    for row in ("A", "G"):
        cell_id = f"{table}/{row}/warmup/seed{seed}"
        if cell_id not in results:
            continue
        steps, values = series(load_metrics(cell_id), UPDATE_RMS_MATRIX)
        if steps:
            scale = result_tau_per_step(results[cell_id])
            curves[row] = ([s * scale for s in steps], values)
    if "A" not in curves:
        return None
    return mechanism(curves["A"], curves.get("G"))


def _paper_mechanism() -> Mechanism:
    taus, values = paper_curve()
    low, high = PAPER_FIGURE1_BANDS["G"]
    found = mechanism((taus, values), None)
    return Mechanism(found.u, found.tau_u, found.o, found.tau_o, found.tau_s, (low, high))


PAPER_MECHANISM = _paper_mechanism()  # u 0.43 at 300, o 2.20 at 830, tau_s 2000, G 0.8-1.13
