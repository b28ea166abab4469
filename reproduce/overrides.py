"""``--set key=value`` overrides of the scale preset, fail-loud (unknown key or wrong type).

The KEY=VALUE parsing itself is experiments.scales.split_key_value (one parser for every entry
point, the benchmarks' ``--override`` too).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from experiments.scales import scale_preset, split_key_value
from reproduce.errors import UsageError


def parse_set_args(items: Sequence[str] | None) -> dict[str, Any]:
    """``["steps=40", "decode=greedy"]`` -> ``{"steps": 40, "decode": "greedy"}``."""
    overrides: dict[str, Any] = {}
    for item in items or ():
        try:
            key, value = split_key_value(item)
        except ValueError as err:
            raise UsageError(f"--set {err}") from None
        if key in overrides:
            raise UsageError(f"--set {key} given twice")
        overrides[key] = value
    return overrides


def check_overrides(scale: str, overrides: dict[str, Any]) -> None:
    """Build the preset once so a bad key, type or value fails here, before anything runs."""
    try:
        scale_preset(scale, **overrides)
    except (ValueError, TypeError) as err:
        raise UsageError(f"--set: {err}") from err
