"""``python -m data.unlock LOCK...``: show a lock's owner and whether it runs, then remove it.

The way out named by a lock whose owner cannot be judged (another host, no Slurm): run it once
you know that owner no longer works on the folder. ``--dry-run`` only shows.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from data.owned_lock import owner_verdict, read_owner
from data.ownership import describe


def unlock(path: Path, *, dry_run: bool = False) -> str:
    """What was found at ``path`` (and removed, unless ``dry_run``), in one line."""
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data.unlock", description=__doc__.split(
        "\n")[0].split(": ", 1)[1])
    parser.add_argument("locks", nargs="+", type=Path, metavar="LOCK")
    parser.add_argument("--dry-run", action="store_true", help="show the owner, remove nothing")
    args = parser.parse_args(argv)
    for path in args.locks:
        print(unlock(path, dry_run=args.dry_run))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
