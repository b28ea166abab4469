"""Reading a cell's metrics.jsonl (one JSON object per logged step, written by experiments)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Every record of a metrics.jsonl; [] when the file does not exist yet.

    A cell that is still running may be half-way through writing its last line: an unparsable
    LAST line is ignored, an unparsable line anywhere else is an error naming file and line.
    """
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number == len(lines):
                break
            raise ValueError(f"{path}:{number}: not a JSON line ({err})") from err
    return records


def series(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the records that carry ``key`` (and a ``step``), in step order."""
    points = sorted(
        (float(r["step"]), float(r[key]))
        for r in records
        if r.get(key) is not None and r.get("step") is not None
    )
    return [p[0] for p in points], [p[1] for p in points]


def last_value(records: list[dict[str, Any]], key: str) -> tuple[float, float] | None:
    """(step, value) of the last record that carries ``key``, or None."""
    steps, values = series(records, key)
    return (steps[-1], values[-1]) if steps else None
