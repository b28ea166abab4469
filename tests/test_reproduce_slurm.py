"""The Slurm launcher against the real local Slurm (.ci/start-slurm.sh): a tiny two-cell array is
submitted through the CLI (``--wait``), one task is preempted (SIGUSR1, as ``--signal=SIGUSR1@90``
sends before the time limit) and requeued by Lightning, every task must complete and the dependent
job must render the table; ``--begin`` must hold the array back.

Skips with the reason when ``sinfo`` is absent or not answering.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from reproduce import slurm

REPO = Path(__file__).resolve().parents[1]
# Small enough for two CPU tasks to finish in a minute or two on a 2-core machine, long enough
# (200 steps) to be preempted mid-training.
TINY_RUN = ["--set", "steps=200", "--set", "log_interval=5", "--set", "val_interval=100",
            "--set", "checkpoint_interval=1000", "--set", "eval_max_sentences=20"]
WAIT_S = 600

_reason = slurm.slurm_unavailable_reason()
pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.skipif(_reason is not None, reason=f"no local Slurm: {_reason}"),
]


def _cancel(job_ids: list[str]) -> None:
    if job_ids:
        subprocess.run(["scancel", *job_ids], capture_output=True, timeout=30)


def _wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:.0f} s for {what}")
        time.sleep(0.5)


def test_array_with_a_preempted_task_completes_and_renders(tmp_path: Path) -> None:
    results, tables = tmp_path / "results", tmp_path / "tables"
    cli = subprocess.Popen(
        [sys.executable, "-m", "reproduce", "table2", "--rows", "A", "--launcher", "slurm",
         "--cpus-per-task", "1", "--time", "00:15:00", "--results-dir", str(results),
         "--tables-dir", str(tables), "--no-wandb", "--wait", "--wait-timeout", str(WAIT_S),
         *TINY_RUN],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    first_line = cli.stdout.readline() + cli.stdout.readline()  # header + "submitted ..."
    found = re.search(r"submitted array job (\d+) \(2 tasks\) and render job (\d+)", first_line)
    if not found:
        cli.kill()
        pytest.fail(f"no submission: {first_line}{cli.communicate()[1]}")
    array_id, render_id = found.groups()
    cell = results / "table2/A/warmup/seed0"
    task = f"{array_id}_0"
    try:
        _wait_for(lambda: (cell / "metrics.jsonl").is_file(), 300, "training to start")
        subprocess.run(["scancel", "--signal=USR1", task], check=True, timeout=30)
        _wait_for(lambda: any(cell.glob("hpc_ckpt_*.ckpt")), 120, "Lightning's hpc checkpoint")
        # Slurm holds a requeued job back for a while (its start time); release it at once.
        _wait_for(lambda: "PENDING" in slurm.job_states(task).values(), 60, "the requeue")
        subprocess.run(["scontrol", "update", f"JobId={task}", "StartTime=now"], check=True,
                       timeout=30)
        out, err = cli.communicate(timeout=WAIT_S + 60)
    except (TimeoutError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        cli.kill()
        _cancel([array_id, render_id])
        raise
    assert cli.returncode == 0, out + err
    assert "| A | Adam without momentum" in out  # --wait prints the rendered table

    assert slurm.job_states(array_id) == {task: "COMPLETED", f"{array_id}_1": "COMPLETED"}
    assert slurm.job_states(render_id) == {render_id: "COMPLETED"}
    script_dir = next((results / "slurm").iterdir())
    cells = (script_dir / "cells.txt").read_text().split()
    assert cells == ["table2/A/warmup/seed0", "table2/A/no-warmup/seed0"]
    for index, cell_id in enumerate(cells):
        log = (script_dir / "logs" / f"{array_id}_{index}.out").read_text()
        assert f"array task {index} (restart 0): {cell_id}" in log
    assert "(restart 1): table2/A/warmup/seed0" in (script_dir / "logs" / f"{task}.out").read_text()
    result = json.loads((cell / "result.json").read_text())
    assert result["steps"] == 200
    assert result["resumed_from_step"] is not None and 0 < result["resumed_from_step"] < 200

    table = csv.DictReader((tables / "table2.csv").open())
    rows = {r["warmup"]: r for r in table if r["row"] == "A"}
    assert set(rows) == {"yes", "no"}
    for row in rows.values():
        # row A trains without a non-finite loss at tiny scale, with warmup or without (the
        # committed table2.csv: both "ok" at 400 steps), so each runs its 200 steps
        assert row["status"] == "ok" and row["bleu"] != ""
        assert row["scale"] == "tiny" and row["steps"] == "200"
    assert "collapse agrees with the paper in" in (tables / "table2.md").read_text()


def test_begin_schedules_the_array_for_later(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "reproduce", "table2", "--rows", "A", "--launcher", "slurm",
         "--begin", "now+1hour", "--results-dir", str(tmp_path / "results"),
         "--tables-dir", str(tmp_path / "tables"), "--no-wandb", *TINY_RUN],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    array_id, render_id, prepare_id = re.search(
        r"array job (\d+) .* render job (\d+) .* prepare job (\d+)", done.stdout).groups()
    try:
        listing = subprocess.run(
            ["squeue", "-h", "-j", f"{prepare_id},{array_id},{render_id}", "-o", "%i %T %S"],
            capture_output=True, text=True, timeout=30,
        ).stdout
        jobs = {line.split()[0]: line.split()[1:] for line in listing.splitlines() if line}
        state, start = jobs[f"{array_id}_[0-1]"]
        assert state == "PENDING"
        # Eligible about an hour from now (allow for clock granularity and a slow submit).
        delay = datetime.fromisoformat(start) - datetime.now()
        assert timedelta(minutes=55) < delay <= timedelta(hours=1), delay
        assert jobs[render_id][0] == "PENDING"
        assert jobs[prepare_id][0] == "PENDING"  # the prepare job waits for --begin too
    finally:
        _cancel([prepare_id, array_id, render_id])
