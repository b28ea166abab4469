"""Locks: one process trains a cell, one table run holds a results folder.

A lock is a file holding its owner's pid, host, process start time and command; a lock whose
owner is gone (or whose pid now belongs to another process) is stale and taken over.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from experiments.schema import LOCK_FILE
from experiments.store.files import cell_dir


class LockHeld(RuntimeError):
    """Another live process holds a results folder's (or cell's) lock."""


def process_start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (/proc), None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[19])  # field 22 of stat; fields[0] is field 3


def _owner_record() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "start_time": process_start_time(os.getpid()),
            "command": shlex.join(sys.argv) if sys.argv else "",
            "since": time.strftime("%Y-%m-%d %H:%M:%S")}


def lock_is_stale(owner: dict[str, Any]) -> bool:
    """A lock of this host whose process is gone, or whose pid now belongs to another process."""
    if owner.get("host") != socket.gethostname():
        return False  # cannot tell: another machine's process may be alive
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return True
    started = process_start_time(pid)
    return started is None or (owner.get("start_time") is not None
                               and started != owner.get("start_time"))


def describe_owner(owner: dict[str, Any]) -> str:
    return (f"pid {owner.get('pid')} on {owner.get('host')} since {owner.get('since')}: "
            f"{owner.get('command', '?')}")


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
        record = _owner_record()
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
        while True:
            owner = self._try_create()
            if owner is None:
                self.held = True
                return
            if not owner or lock_is_stale(owner):
                if log and owner:
                    log(f"taking over the stale lock {self.path} ({describe_owner(owner)})")
                self._remove_if(owner)
                continue
            if not wait:
                raise LockHeld(f"{self.what} is in use by {describe_owner(owner)} (lock "
                               f"{self.path}); wait for it, or pass --wait-lock to wait")
            if log and not said:
                log(f"waiting for {self.what}: in use by {describe_owner(owner)}")
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
            if current.get("pid") == os.getpid():
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
