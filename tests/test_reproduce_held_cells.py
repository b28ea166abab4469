"""A table run meets a cell that another process holds: without --wait-lock it skips that cell
and says so at the end; with --wait-lock its worker waits for the cell (the flag reaches the
workers) and trains it once it is free (real ``python -m reproduce`` processes, tiny cells)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from helpers import REPO, TINY_SET, reproduce_cmd, reproduce_env, set_args

from experiments.schema import LOG_FILE
from experiments.store.locks import cell_lock

HELD = "table2/A/warmup/seed0"
OTHER = "table2/A/no-warmup/seed0"


def _table(results: Path, tables: Path, *extra: str) -> list[str]:
    return reproduce_cmd("table2", "--rows", "A", "--results-dir", str(results), "--tables-dir",
                         str(tables), "--no-wandb", "--workers", "2", *set_args(TINY_SET),
                         *extra)


@pytest.mark.slow
def test_a_held_cell_is_skipped_and_named_at_the_end(tmp_path: Path) -> None:
    results = tmp_path / "results"
    lock = cell_lock(results, HELD)
    lock.acquire()
    try:
        done = subprocess.run(_table(results, tmp_path / "tables"), cwd=REPO,
                              env=reproduce_env(), capture_output=True, text=True, timeout=600)
    finally:
        lock.release()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 finished, 0 failed, 1 skipped" in done.stdout, done.stdout
    assert f"SKIPPED {HELD}: cell {HELD} is in use by pid" in done.stderr, done.stderr
    assert (results / OTHER / "result.json").is_file()
    assert not (results / HELD / "result.json").exists()


@pytest.mark.slow
def test_wait_lock_reaches_the_workers(tmp_path: Path) -> None:
    results = tmp_path / "results"
    lock = cell_lock(results, HELD)
    lock.acquire()
    run = subprocess.Popen(_table(results, tmp_path / "tables", "--wait-lock"), cwd=REPO,
                           env=reproduce_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        log = results / HELD / LOG_FILE
        deadline = time.monotonic() + 300
        while not (log.is_file() and "waiting for cell" in log.read_text()):
            assert run.poll() is None and time.monotonic() < deadline, "the worker never waited"
            time.sleep(0.5)
    finally:
        lock.release()
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, out + err
    assert "2 finished, 0 failed, 0 skipped" in out, out
    assert (results / HELD / "result.json").is_file()
