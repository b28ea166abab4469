"""Staging folders (a cache being built, a vocabulary being trained) that outlive a killed maker.

`make_staging(parent, prefix)` makes a fresh folder holding its maker's record (data.ownership)
in ``OWNER_FILE``. `remove_dead_staging(parent, pattern)` is called by the next builder: it
removes every matching folder whose maker is judged dead (a kill -9, an OOM kill, a time limit,
a node lost under Slurm), the way a stale lock is told apart. The folder's name also carries
its maker's pid and host (``<prefix><pid>@<host>~XXXXXXXX``), so a folder without a record (its
maker killed between creating it and writing the record) is judged by that pid on this host. One
with neither (another host's, or an older version's) is removed once it is older than
``NO_RECORD_GRACE_S``. A maker that cannot be judged keeps its folder.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from data.ownership import describe, host_name, judge, owner_record, process_start_time

log = logging.getLogger(__name__)

OWNER_FILE = ".owner.json"
NO_RECORD_GRACE_S = 600.0


def named_prefix(prefix: str) -> str:
    """``<prefix><pid>@<host>~``: the start of this process's staging folders' names."""
    return f"{prefix}{os.getpid()}@{host_name()}~"


def make_staging(parent: Path, prefix: str) -> Path:
    """A new folder ``<parent>/<prefix><pid>@<host>~XXXXXXXX`` recording this process as its
    maker."""
    folder = Path(tempfile.mkdtemp(dir=parent, prefix=named_prefix(prefix)))
    tmp = folder / f"{OWNER_FILE}.tmp"
    tmp.write_text(json.dumps(owner_record(), sort_keys=True))
    os.replace(tmp, folder / OWNER_FILE)
    return folder


def staging_owner_gone(folder: Path) -> str | None:
    """Why ``folder``'s maker is gone (so the folder is a leftover), or None."""
    try:
        record = json.loads((folder / OWNER_FILE).read_text())
    except FileNotFoundError:
        return _recordless_owner_gone(folder)
    except (OSError, ValueError):
        record = {}
    if not isinstance(record, dict) or not record:
        return "its maker's record is unreadable"
    verdict = judge(record)
    return f"{verdict.reason} ({describe(record)})" if verdict.alive is False else None


_NAMED_OWNER = re.compile(r"(\d+)@([^~/]+)~[^~]*$")


def _recordless_owner_gone(folder: Path) -> str | None:
    """Why the maker of a folder without a record is gone, judged by the pid in its name."""
    modified = folder.stat().st_mtime
    named = _NAMED_OWNER.search(folder.name)
    if named and named.group(2) == host_name():
        pid = int(named.group(1))
        started = _start_epoch(pid)
        if started is None:
            return f"no maker recorded; pid {pid} no longer runs on this host"
        if started > modified + 1.0:  # /proc's boot time has whole seconds
            return f"no maker recorded; pid {pid} now belongs to a process started later"
        return None
    age = time.time() - modified
    return f"no maker recorded, {age:.0f} s old" if age > NO_RECORD_GRACE_S else None


def _start_epoch(pid: int) -> float | None:
    """When ``pid`` started (seconds since the epoch), None if it does not run."""
    ticks = process_start_time(pid)
    if ticks is None:
        return None
    boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                if line.startswith("btime "))
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def remove_dead_staging(parent: Path, pattern: str) -> list[Path]:
    """Remove the folders ``parent.glob(pattern)`` whose maker is gone; the removed ones."""
    removed = []
    for folder in sorted(Path(parent).glob(pattern)):
        if not folder.is_dir() or folder.is_symlink():
            continue
        try:
            why = staging_owner_gone(folder)
        except FileNotFoundError:  # removed meanwhile by another cleaner
            continue
        if why is None:
            continue
        log.warning("removing %s, left by a build that did not finish: %s", folder, why)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed
