"""Stopping a cell on request: SIGTERM/SIGINT set a flag, the monitor checkpoints at the next
logged step and raises `CellInterrupted`, and the same command resumes from that checkpoint."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any


class CellInterrupted(Exception):
    """The cell stopped on request (a signal) after saving a checkpoint it can resume from."""

    def __init__(self, cell_id: str, step: int, checkpoint: Path | None) -> None:
        self.cell_id, self.step, self.checkpoint = cell_id, step, checkpoint
        where = f"checkpoint {checkpoint.name}" if checkpoint else "no checkpoint yet"
        super().__init__(f"{cell_id} interrupted at step {step} ({where})")


_STOP: dict[str, int | None] = {"signal": None}


def request_stop(signum: int = signal.SIGTERM, _frame: Any = None) -> None:
    """Ask the running cell to checkpoint at its next logged step and stop (a signal handler)."""
    if _STOP["signal"] is None:
        _STOP["signal"] = signum


def stop_requested() -> int | None:
    """The signal number that asked this process to stop, or None."""
    return _STOP["signal"]


def install_stop_handlers() -> None:
    """SIGTERM and SIGINT ask for a stop instead of killing the process mid-write.

    Lightning's own SIGTERM handler keeps this one (it calls the handler it found).
    """
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_stop)
