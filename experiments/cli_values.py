"""KEY=VALUE command-line overrides, parsed the same way by every entry point."""

from __future__ import annotations

import argparse
import json
from typing import Any


def parse_value(text: str) -> Any:
    """JSON when it parses (``400`` -> int, ``0.5`` -> float, ``null`` -> None, ``true``,
    ``{"d_model": 64}``), otherwise the text itself (``beam``, ``/data/wmt``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_key_value(text: str) -> tuple[str, Any]:
    """``"steps=40"`` -> ``("steps", 40)``; an argparse ``type=`` (bad input is a usage error)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"override {text!r} must look like KEY=VALUE")
    return key, parse_value(value.strip())
