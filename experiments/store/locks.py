"""Locks: one process trains a cell, one table run holds a results folder.

A lock is a file holding its owner's record (data.ownership: host, pid, process start time,
command, Slurm job and array task). An owner judged gone (a dead or reused pid on this host;
on another host a Slurm job that no longer runs there) is taken over, saying so. An owner that
cannot be judged (another host, no Slurm) is named with the command that breaks the lock,
``python -m reproduce unlock LOCK``, which shows the owner first.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from data.owned_lock import REJUDGE_S, break_command
from data.ownership import Verdict, describe, host_name, judge, owner_record
from experiments.schema import LOCK_FILE
from experiments.store.files import cell_dir


class LockHeld(RuntimeError):
    """Another live process holds a results folder's (or cell's) lock."""


def lock_verdict(owner: dict[str, Any]) -> Verdict:
    """Whether a lock's owner still runs (data.ownership.judge: this host's pid and start time,
    another host's Slurm job); a lock that records no process is dead."""
    return judge(owner) if owner else Verdict(False, "the lock records no owner")


def lock_is_stale(owner: dict[str, Any]) -> bool:
    """A lock whose owner is judged gone (a dead or reused pid here, a Slurm job gone there)."""
    return lock_verdict(owner).alive is False


def describe_owner(owner: dict[str, Any]) -> str:
    return describe(owner)


class FileLock:
    """An exclusive lock file holding its owner's pid, host, process start time and command.

    Created with a hard link (atomic, fails if the file exists). A lock whose owner is gone,
    or whose pid was reused by another process, is stale and taken over.
    """

    def __init__(self, path: Path, what: str) -> None:
        self.path = Path(path)
        self.what = what
        self.held = False

    def _try_create(self) -> dict[str, Any] | None:
        """None when created; otherwise the current owner's record."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = owner_record()
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".lock.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
            try:
                os.link(tmp, self.path)
                return None
            except FileExistsError:
                pass
        finally:
            Path(tmp).unlink(missing_ok=True)
        try:
            owner = json.loads(self.path.read_text())
            return owner if isinstance(owner, dict) else {}
        except (OSError, ValueError):
            return {}  # half-written by a process killed between mkstemp and link: stale

    def acquire(self, *, wait: bool = False, poll_s: float = 1.0,
                log: Callable[[str], None] | None = None) -> None:
        """Take the lock; LockHeld naming the owner when a live process has it (unless ``wait``)."""
        said = False
        judged: tuple[dict[str, Any], Verdict, float] | None = None
        while True:
            owner = self._try_create()
            if owner is None:
                self.held = True
                return
            if judged and judged[0] == owner and time.monotonic() - judged[2] < REJUDGE_S:
                verdict = judged[1]  # asking Slurm every poll would load its controller
            else:
                verdict = lock_verdict(owner)
                judged = (owner, verdict, time.monotonic())
            if verdict.alive is False:
                if log and owner:
                    log(f"taking over the lock {self.path} of {self.what}: {verdict.reason} "
                        f"({describe_owner(owner)})")
                self._remove_if(owner)
                continue
            held = f"{self.what} is in use by {describe_owner(owner)} (lock {self.path})"
            if verdict.alive is None:
                held += (f"; cannot tell whether that owner still runs ({verdict.reason}); if "
                         f"it does not, break the lock with: {break_command(self.path)}")
            if not wait:
                raise LockHeld(held + ("" if verdict.alive is None else
                                       "; wait for it, or pass --wait-lock to wait"))
            if log and not said:
                log(f"waiting for {self.what}: {held[len(self.what) + 4:]}")
                said = True
            time.sleep(poll_s)

    def _remove_if(self, owner: dict[str, Any]) -> None:
        try:
            current = json.loads(self.path.read_text()) if self.path.exists() else None
        except (OSError, ValueError):
            current = {}
        if current == owner or not current:
            self.path.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            try:
                current = json.loads(self.path.read_text())
            except (OSError, ValueError):
                current = {}
            if current.get("pid") == os.getpid() and current.get("host") == host_name():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> FileLock:
        if not self.held:
            self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def results_lock(results_dir: Path) -> FileLock:
    """The lock of a whole results folder (held by a table run)."""
    return FileLock(Path(results_dir) / LOCK_FILE, f"results folder {results_dir}")


def cell_lock(results_dir: Path, cell_id: str) -> FileLock:
    """The lock of one cell folder (held by the process training it)."""
    return FileLock(cell_dir(results_dir, cell_id) / LOCK_FILE, f"cell {cell_id}")
