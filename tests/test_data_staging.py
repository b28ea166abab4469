"""data.staging: a staging folder whose maker was killed before it wrote its record is judged by
the pid and host in the folder's name, so the next builder removes it at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from data.staging import OWNER_FILE, make_staging, remove_dead_staging

PREFIX = ".spm-train-"
# A maker killed between creating its folder and writing its record: here it exits there.
KILLED_BEFORE_RECORD = (
    "import sys, tempfile; from data.staging import named_prefix; "
    "print(tempfile.mkdtemp(dir=sys.argv[1], prefix=named_prefix(sys.argv[2])))")


def test_a_folder_whose_maker_died_before_its_record_is_removed_at_once(tmp_path: Path) -> None:
    made = subprocess.run([sys.executable, "-c", KILLED_BEFORE_RECORD, str(tmp_path), PREFIX],
                          capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1])
    folder = Path(made.stdout.strip())
    assert folder.is_dir() and not (folder / OWNER_FILE).exists()
    assert remove_dead_staging(tmp_path, f"{PREFIX}*") == [folder]


def test_a_recordless_folder_of_a_running_maker_is_kept(tmp_path: Path) -> None:
    folder = make_staging(tmp_path, PREFIX)
    assert folder.name.startswith(f"{PREFIX}{os.getpid()}@")
    (folder / OWNER_FILE).unlink()  # as if this process had not written it yet
    assert remove_dead_staging(tmp_path, f"{PREFIX}*") == []
    assert folder.is_dir()


def test_a_recordless_folder_older_than_the_process_with_its_pid_is_removed(
        tmp_path: Path) -> None:
    """The pid now belongs to a process that started after the folder was last changed."""
    folder = make_staging(tmp_path, PREFIX)
    (folder / OWNER_FILE).unlink()
    age = int(subprocess.run(["ps", "-o", "etimes=", "-p", str(os.getpid())],
                             capture_output=True, text=True, check=True).stdout)
    before_this_process = time.time() - age - 60
    os.utime(folder, (before_this_process, before_this_process))
    assert remove_dead_staging(tmp_path, f"{PREFIX}*") == [folder]


def test_another_hosts_recordless_folder_waits_for_the_grace_period(tmp_path: Path) -> None:
    young = tmp_path / f"{PREFIX}4242@node-lost~abc"
    old = tmp_path / f"{PREFIX}4243@node-lost~def"
    young.mkdir()
    old.mkdir()
    os.utime(old, (time.time() - 3600,) * 2)
    assert remove_dead_staging(tmp_path, f"{PREFIX}*") == [old]
    assert young.is_dir()
