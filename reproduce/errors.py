"""The one error type the CLI turns into a clear message and exit code 2."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input (unknown table, row or key, wrong type, missing results): no traceback, exit 2."""
