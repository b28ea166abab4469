"""The frontier's points: per optimizer, its best sweep cell and whether it is on the Pareto set.

An optimizer's point is the peak step size with the lowest final validation loss among the runs
that did not diverge (several seeds of one peak are averaged first). A point is on the Pareto
frontier when no other optimizer has at most its state bytes and at least its BLEU, one of them
strictly. State bytes are measured: ``optimizer_state_bytes`` of the trained optimizer, and of
the same optimizer after one CPU step on Transformer base (experiments.measure.optimizer_state).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from experiments.grid.frontier import FRONTIER, FRONTIER_OPTIMIZERS, FRONTIER_ROWS, parse_lr_column
from experiments.schema import STATUS, VALID_LOSS, Status
from reproduce.errors import UsageError
from reproduce.render.provenance import provenance


@dataclass
class SweepPoint:
    """One peak step size of one optimizer, averaged over its seeds."""

    peak: float
    runs: list[dict[str, Any]]

    @property
    def ok_runs(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r.get(STATUS) == Status.OK
                and _finite(r.get(VALID_LOSS)) and r.get("bleu") is not None]

    @property
    def diverged(self) -> bool:
        return not self.ok_runs

    def _mean(self, key: str) -> float | None:
        values = [float(r[key]) for r in self.ok_runs if r.get(key) is not None]
        return sum(values) / len(values) if values else None

    @property
    def valid_loss(self) -> float | None:
        return self._mean(VALID_LOSS)

    @property
    def bleu(self) -> float | None:
        return self._mean("bleu")

    @property
    def bleu_range(self) -> tuple[float, float] | None:
        values = [float(r["bleu"]) for r in self.ok_runs]
        return (min(values), max(values)) if values else None

    @property
    def state_bytes(self) -> int | None:
        values = [r["optimizer_state_bytes"] for r in self.runs
                  if r.get("optimizer_state_bytes") is not None]
        return max(values) if values else None


@dataclass
class FrontierRow:
    name: str
    sweep: list[SweepPoint]
    base: dict[str, Any] | None = None  # {"state_bytes": ..., "parameters": ...} on base
    pareto: bool = False

    @property
    def info(self) -> Any:
        return FRONTIER_OPTIMIZERS[self.name]

    @property
    def best(self) -> SweepPoint | None:
        candidates = [p for p in self.sweep if not p.diverged]
        return min(candidates, key=lambda p: p.valid_loss) if candidates else None

    @property
    def at_edge(self) -> bool | None:
        best = self.best
        # Ends of the planned sweep plus any extra peaks that were run: a cell that has not run
        # yet does not turn its neighbour into an edge.
        peaks = {p.peak for p in self.sweep} | set(self.info.peaks)
        if best is None or len(peaks) < 2:
            return None
        return best.peak in (min(peaks), max(peaks))

    @property
    def state_bytes(self) -> int | None:
        best = self.best
        if best is not None and best.state_bytes is not None:
            return best.state_bytes
        known = [p.state_bytes for p in self.sweep if p.state_bytes is not None]
        return known[0] if known else None

    @property
    def base_floats_per_parameter(self) -> float | None:
        """State floats (4 bytes) per parameter on Transformer base, when it was measured."""
        base = self.base or {}
        if not base.get("parameters") or base.get("state_bytes") is None:
            return None
        return base["state_bytes"] / 4 / base["parameters"]


@dataclass
class FrontierData:
    rows: list[FrontierRow]
    provenance: dict[str, list[str]] = field(default_factory=dict)
    table: str = FRONTIER

    @property
    def n_results(self) -> int:
        return sum(len(p.runs) for r in self.rows for p in r.sweep)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def build_frontier(results: Iterable[dict[str, Any]],
                   base_state: dict[str, dict[str, Any]] | None = None) -> FrontierData:
    """Group frontier results by optimizer and peak, pick each best point, mark the Pareto set."""
    runs: dict[str, dict[float, list[dict[str, Any]]]] = {}
    used = []
    for result in results:
        if result.get("table") != FRONTIER or result.get("row") not in FRONTIER_OPTIMIZERS:
            continue
        try:
            peak = parse_lr_column(str(result.get("column")))
        except ValueError as err:
            raise UsageError(f"result {result.get('cell_id')!r}: {err}") from err
        runs.setdefault(result["row"], {}).setdefault(peak, []).append(result)
        used.append(result)
    rows = []
    for name in FRONTIER_ROWS:
        if name not in runs:
            continue
        sweep = [SweepPoint(peak, runs[name][peak]) for peak in sorted(runs[name])]
        rows.append(FrontierRow(name, sweep, (base_state or {}).get(name)))
    _mark_pareto(rows)
    return FrontierData(rows, provenance(used))


def _mark_pareto(rows: Sequence[FrontierRow]) -> None:
    points = [(r, r.state_bytes, r.best.bleu) for r in rows
              if r.best is not None and r.state_bytes is not None]
    for row, size, bleu in points:
        row.pareto = not any(
            other is not row and s <= size and b >= bleu and (s < size or b > bleu)
            for other, s, b in points
        )
