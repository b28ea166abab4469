"""`OwnedLock`: an exclusive lock file that holds its owner's record (data.ownership).

The file is created whole with a hard link (atomic; fails if it exists), so a reader sees a full
record or none. A waiter judges the owner each time it looks: a dead one (a pid gone or reused on
this host; a Slurm job that no longer runs, or was requeued, for another host's) is taken over,
saying so. A live owner is waited for. An owner it cannot judge (another host without Slurm) is
waited for too, and the wait says once, and again when it gives up, the command that breaks the
lock: ``python -m reproduce unlock LOCK`` (it shows the owner first).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from data.ownership import Verdict, describe, host_name, judge, owner_record

log = logging.getLogger(__name__)
REJUDGE_S = 30.0  # another host's owner is judged again (squeue, sacct) this often


class LockTimeout(TimeoutError):
    """The lock was still held at the deadline; the message names the owner and the way out."""


def break_command(path: Path) -> str:
    """The command that shows a lock's owner and removes the lock."""
    return f"{Path(sys.executable).name} -m reproduce unlock {path}"


def read_owner(path: Path) -> tuple[str, dict[str, Any]] | None:
    """(raw text, record) of the lock at ``path``; None: no lock; record {}: unreadable."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return "", {}
    try:
        record = json.loads(text)
    except ValueError:
        return text, {}
    return text, record if isinstance(record, dict) else {}


def owner_verdict(record: dict[str, Any]) -> Verdict:
    """`data.ownership.judge`, with an unreadable record (no owner recorded) judged dead."""
    if not record:
        return Verdict(False, "the lock file records no owner")
    return judge(record)


class OwnedLock:
    """``with OwnedLock(path, what, timeout_s=...):`` (see the module docstring)."""

    def __init__(self, path: str | Path, what: str, *, timeout_s: float,
                 poll_s: float = 1.0) -> None:
        self.path = Path(path)
        self.what = what
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self._text: str | None = None  # our record as written, while held

    def _try_create(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(owner_record(), sort_keys=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.",
                                   suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.link(tmp, self.path)
        except FileExistsError:
            return False
        finally:
            Path(tmp).unlink(missing_ok=True)
        self._text = text
        return True

    def _remove_if(self, text: str) -> None:
        """Remove the lock if it still holds ``text`` (moved aside first, so a lock taken in
        between by someone else is put back, not deleted)."""
        aside = self.path.with_name(f".{self.path.name}.stale-{uuid.uuid4().hex[:12]}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            if aside.read_text() != text:
                with contextlib.suppress(FileExistsError):
                    os.link(aside, self.path)
        finally:
            aside.unlink(missing_ok=True)

    def acquire(self) -> None:
        """Take the lock, taking over a dead owner's; LockTimeout after ``timeout_s``."""
        deadline = time.monotonic() + self.timeout_s
        said = ""
        judged: tuple[str, Verdict, float] | None = None
        while True:
            if self._try_create():
                return
            found = read_owner(self.path)
            if found is None:
                continue
            text, record = found
            if judged and judged[0] == text and time.monotonic() - judged[2] < REJUDGE_S:
                verdict = judged[1]  # asking Slurm every poll would load its controller
            else:
                verdict = owner_verdict(record)
                if record.get("host") != host_name():
                    judged = (text, verdict, time.monotonic())
            if verdict.alive is False:
                who = describe(record) if record else "no owner recorded"
                log.warning("taking over the lock %s of %s: %s (%s)", self.path, self.what,
                            verdict.reason, who)
                self._remove_if(text)
                continue
            if time.monotonic() >= deadline:
                raise LockTimeout(self._held_message(record, verdict, waited=True))
            if said != text:
                log.warning("%s", self._held_message(record, verdict, waited=False))
                said = text
            time.sleep(self.poll_s)

    def _held_message(self, record: dict[str, Any], verdict: Verdict, *, waited: bool) -> str:
        head = (f"{self.what} is locked by {describe(record)} (lock {self.path})"
                + (f"; still held after {self.timeout_s:.0f} s" if waited else "; waiting"))
        if verdict.alive is None:
            return (f"{head}: cannot tell whether that owner still runs ({verdict.reason}); "
                    f"if it does not, break the lock with: {break_command(self.path)}")
        return f"{head}: {verdict.reason}"

    def release(self) -> None:
        if self._text is not None:
            found = read_owner(self.path)
            if found is not None and found[0] == self._text:
                self.path.unlink(missing_ok=True)
            self._text = None

    def __enter__(self) -> OwnedLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
