"""``python -m reproduce unlock PATH...`` (also ``python -m data.unlock``): show a lock's owner and
whether it runs, then remove it.

The way out named by a lock whose owner cannot be judged (another host, no Slurm): run it once
you know that owner no longer works on the folder. PATH is the lock file or the folder it
guards (a results folder's ``.lock``, a data cache's ``<folder>.lock``). ``--dry-run`` only
shows.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from data.owned_lock import owner_verdict, read_owner
from data.ownership import describe


def lock_of(path: Path) -> Path:
    """The lock file ``path`` names: itself, or for a folder the lock it holds (``.lock``) or
    the lock beside it (``<folder>.lock``)."""
    if not path.is_dir():
        return path
    candidates = (path / ".lock", path.with_name(path.name + ".lock"))
    return next((c for c in candidates if c.exists()), candidates[0])


def unlock(path: Path, *, dry_run: bool = False) -> str:
    """What was found at ``path`` (a lock, or the folder it guards; removed unless ``dry_run``),
    in one line."""
    path = lock_of(Path(path))
    found = read_owner(path)
    if found is None:
        return f"{path}: no lock there"
    text, record = found
    verdict = owner_verdict(record)
    alive = {True: "runs", False: "does not run", None: "cannot tell"}[verdict.alive]
    owner = describe(record) if record else "no owner recorded"
    if dry_run:
        return f"{path}: held by {owner}; {alive} ({verdict.reason}); not removed (--dry-run)"
    current = read_owner(path)
    if current is not None and current[0] == text:
        path.unlink(missing_ok=True)
    return f"{path}: held by {owner}; {alive} ({verdict.reason}); removed"


DESCRIPTION = ("Show a lock's owner (host, pid, start time, Slurm job) and whether it still "
               "runs, then remove the lock. PATH is the lock file or the folder it guards.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("locks", nargs="+", type=Path, metavar="PATH",
                        help="a lock file, or the folder it guards. Example: results/tiny")
    parser.add_argument("--dry-run", action="store_true", help="show the owner, remove nothing")


def run(args: argparse.Namespace) -> int:
    for path in args.locks:
        print(unlock(path, dry_run=args.dry_run))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data.unlock", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
