"""The errors the CLI turns into one clear line and an exit code, without a traceback."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input (unknown table, row or key, wrong type, missing results): no traceback, exit 2."""


class Interrupted(Exception):
    """A run stopped by SIGINT/SIGTERM: its one-line summary, exit code 128 + signal."""

    def __init__(self, signum: int, summary: str) -> None:
        super().__init__(summary)
        self.signum = signum
