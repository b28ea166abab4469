"""The Slurm chain against the real local Slurm with accounting (.ci/start-slurm.sh): the prepare
job binarizes the corpus, the array (afterok, --kill-on-invalid-dep) trains on it, the render job
(afterany) renders; the chain is read back from ``sacct``. A failing prepare cancels the array.

Skips with the reason when ``sinfo`` does not answer or accounting (slurmdbd) is off.
"""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from reproduce import slurm

REPO = Path(__file__).resolve().parents[1]
TINY_RUN = ["--set", "steps=20", "--set", "log_interval=5", "--set", "val_interval=100",
            "--set", "checkpoint_interval=1000", "--set", "eval_max_sentences=20"]
WAIT_S = 900


def _accounting_reason() -> str | None:
    reason = slurm.slurm_unavailable_reason()
    if reason:
        return reason
    done = subprocess.run(["sacct", "-n", "-X", "-S", "now-1minutes"], capture_output=True,
                          text=True, timeout=30)
    if done.returncode != 0:
        return f"sacct does not answer: {done.stderr.strip()}"
    return None


_reason = _accounting_reason()
pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.skipif(_reason is not None, reason=f"no local Slurm with accounting: {_reason}"),
]


def sacct_jobs(job_ids: list[str]) -> dict[str, dict[str, str]]:
    """JobID -> {State, Start, End, SubmitLine} of the jobs (array tasks as <job>_<task>)."""
    done = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-j", ",".join(job_ids), "-o",
         "JobID,State,Start,End,SubmitLine%300"],
        capture_output=True, text=True, timeout=30, check=True,
    )
    jobs = {}
    for line in done.stdout.splitlines():
        job, state, start, end, submit = line.split("|", 4)
        jobs[job] = {"State": state.split()[0], "Start": start, "End": end, "SubmitLine": submit}
    return jobs


def _submit(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    done = subprocess.run(
        [sys.executable, "-m", "reproduce", "table2", "--rows", "A", "--launcher", "slurm",
         "--cpus-per-task", "1", "--time", "00:15:00", "--results-dir", str(tmp_path / "r"),
         "--tables-dir", str(tmp_path / "t"), "--no-wandb", "--wait", "--wait-timeout",
         str(WAIT_S), *TINY_RUN, *extra],
        cwd=REPO, capture_output=True, text=True, timeout=WAIT_S + 120,
    )
    found = re.search(r"array job (\d+) .* render job (\d+) .* prepare job (\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    array_id, render_id, prepare_id = found.groups()
    return done, [prepare_id, array_id, render_id]


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_prepare_then_array_then_render_in_sacct(tmp_path: Path) -> None:
    done, (prepare_id, array_id, render_id) = _submit(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    jobs = sacct_jobs([prepare_id, array_id, render_id])
    tasks = [f"{array_id}_0", f"{array_id}_1"]
    assert {j: jobs[j]["State"] for j in [prepare_id, *tasks, render_id]} == dict.fromkeys(
        [prepare_id, *tasks, render_id], "COMPLETED"), jobs
    assert f"--dependency=afterok:{prepare_id}" in jobs[tasks[0]]["SubmitLine"]
    assert "--kill-on-invalid-dep=yes" in jobs[tasks[0]]["SubmitLine"]
    assert f"--dependency=afterany:{array_id}" in jobs[render_id]["SubmitLine"]
    for task in tasks:
        assert _time(jobs[task]["Start"]) >= _time(jobs[prepare_id]["End"])
        assert _time(jobs[render_id]["Start"]) >= _time(jobs[task]["End"])
    # one binarized corpus, built by the prepare job, mapped by both cells
    cache = tmp_path / "r" / ".cache" / "vocab"
    assert len(list(cache.glob("bin-*/manifest.json"))) == 1
    script_dir = next((tmp_path / "r" / "slurm").iterdir())
    assert "built " in (script_dir / "logs" / f"prepare_{prepare_id}.out").read_text()
    assert (tmp_path / "t" / "table2.csv").is_file()


def test_a_failed_prepare_cancels_the_array(tmp_path: Path) -> None:
    done, (prepare_id, array_id, _) = _submit(
        tmp_path, "--set", f"corpus_path={tmp_path / 'missing'}", "--set", "corpus=local")
    assert done.returncode == 2 and "no results for table2" in done.stderr  # no cell ran
    jobs = sacct_jobs([prepare_id, array_id])
    assert jobs[prepare_id]["State"] == "FAILED"
    array_states = {j: v["State"] for j, v in jobs.items() if j.startswith(f"{array_id}_")}
    assert array_states and set(array_states.values()) == {"CANCELLED"}, jobs
    assert not (tmp_path / "r" / "table2").exists()  # no cell ran
