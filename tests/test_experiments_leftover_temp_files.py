"""A writer killed mid atomic_write leaves ``.<name>.XXXX.tmp`` in a cell folder; the next
holder of the cell's lock removes it (and leaves the lock's own temporary files alone)."""

from __future__ import annotations

from pathlib import Path

from experiments.schema import LOCK_FILE, RESULT_FILE
from experiments.store.files import atomic_write_json, remove_leftover_temp_files


def test_a_killed_writers_temp_files_are_removed(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / RESULT_FILE, {"status": "ok"})
    left = [tmp_path / f".{RESULT_FILE}.k1ll3d.tmp", tmp_path / ".config.json.x9.tmp"]
    for path in left:
        path.write_text('{"half')
    waiter = tmp_path / f"{LOCK_FILE}.w4it.tmp"
    waiter.write_text("{}")
    assert remove_leftover_temp_files(tmp_path) == sorted(left)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([RESULT_FILE, waiter.name])
