"""Staging folders (a cache being built, a vocabulary being trained) that outlive a killed maker.

`make_staging(parent, prefix)` makes a fresh folder holding its maker's record (data.ownership)
in ``OWNER_FILE``. `remove_dead_staging(parent, pattern)` is called by the next builder: it
removes every matching folder whose maker is judged dead (a kill -9, an OOM kill, a time limit,
a node lost under Slurm), the way a stale lock is told apart. A folder without a record (its
maker killed between creating it and writing the record, or made by an older version) is removed
once it is older than ``NO_RECORD_GRACE_S``. A maker that cannot be judged keeps its folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from data.ownership import describe, judge, owner_record

log = logging.getLogger(__name__)

OWNER_FILE = ".owner.json"
NO_RECORD_GRACE_S = 600.0


def make_staging(parent: Path, prefix: str) -> Path:
    """A new folder ``<parent>/<prefix>XXXXXXXX`` recording this process as its maker."""
    folder = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    tmp = folder / f"{OWNER_FILE}.tmp"
    tmp.write_text(json.dumps(owner_record(), sort_keys=True))
    os.replace(tmp, folder / OWNER_FILE)
    return folder


def staging_owner_gone(folder: Path) -> str | None:
    """Why ``folder``'s maker is gone (so the folder is a leftover), or None."""
    try:
        record = json.loads((folder / OWNER_FILE).read_text())
    except FileNotFoundError:
        age = time.time() - folder.stat().st_mtime
        return (f"no maker recorded, {age:.0f} s old" if age > NO_RECORD_GRACE_S else None)
    except (OSError, ValueError):
        record = {}
    if not isinstance(record, dict) or not record:
        return "its maker's record is unreadable"
    verdict = judge(record)
    return f"{verdict.reason} ({describe(record)})" if verdict.alive is False else None


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
