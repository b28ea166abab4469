"""KEY=VALUE command-line values: the one parser every entry point uses (``--set``,
the benchmarks' ``--override``)."""

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


def split_key_value(text: str) -> tuple[str, Any]:
    """``"steps=40"`` -> ``("steps", 40)``; ValueError for anything not ``KEY=VALUE``."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"{text!r}: expected KEY=VALUE, e.g. steps=40")
    return key, parse_value(value.strip())


def parse_key_value(text: str) -> tuple[str, Any]:
    """`split_key_value` as an argparse ``type=`` (bad input is a usage error)."""
    try:
        return split_key_value(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
