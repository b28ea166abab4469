"""data.ownership: whether a lock's or staging folder's owner still runs. On this host by pid and
start time; on another by its Slurm job (fake squeue/sacct/scontrol on PATH here, the real local
Slurm in the last tests, which skip with the reason when ``sinfo`` does not answer)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from data.binarized import binarize
from data.corpora import load_corpus
from data.ownership import judge, owner_record

SLURM_VARIABLES = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID",
                   "SLURM_RESTART_COUNT")


@pytest.fixture
def no_slurm_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in SLURM_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, squeue: str,
               squeue_rc: int = 0, sacct: str = "") -> Path:
    """squeue/sacct/scontrol scripts that print these answers; a file logging their calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    scripts = {
        "squeue": f"echo \"squeue $*\" >> {calls}\nprintf '%s' '{squeue}'"
                  f"{' >&2' if squeue_rc else ''}\nexit {squeue_rc}",
        "sacct": f"echo \"sacct $*\" >> {calls}\nprintf '%s' '{sacct}'",
        "scontrol": "case $3 in 'node[3-7]') printf 'node%s\\n' 3 4 5 6 7;; *) echo $3;; esac",
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return calls


def elsewhere(**slurm: str) -> dict:
    return {**owner_record(), "host": "node7", "pid": 4242, **slurm}


def test_this_hosts_owner_is_judged_by_pid_and_start_time(no_slurm_env: None) -> None:
    me = owner_record()
    assert judge(me).alive is True
    assert judge({**me, "start_time": me["start_time"] + 1}).alive is False
    gone = judge({**me, "pid": 2 ** 22 + 1})
    assert gone.alive is False and "no longer runs on this host" in gone.reason


def test_another_hosts_owner_without_slurm_cannot_be_judged(no_slurm_env: None) -> None:
    verdict = judge(elsewhere())
    assert verdict.alive is None and "node7 is not this host" in verdict.reason


def test_the_record_holds_the_slurm_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in zip(SLURM_VARIABLES, ("81", "80", "3", "1"), strict=True):
        monkeypatch.setenv(variable, value)
    record = owner_record()
    assert (record["slurm_job_id"], record["slurm_array_job_id"], record["slurm_array_task_id"],
            record["slurm_restart_count"]) == ("81", "80", "3", "1")
    assert {"host", "pid", "start_time", "since", "command"} <= set(record)


@pytest.mark.parametrize(("squeue", "rc", "sacct", "alive", "said"), [
    ("RUNNING node7", 0, "", True, "RUNNING on node7"),
    ("RUNNING node[3-7]", 0, "", True, "RUNNING on node[3-7]"),
    ("RUNNING node2", 0, "", False, "now runs on node2, not on node7"),
    ("PENDING ", 0, "", False, "is PENDING"),
    ("", 0, "", False, "no longer queued or running"),
    ("slurm_load_jobs error: Invalid job id specified", 1, "CANCELLED by 0\n", False,
     "is CANCELLED (sacct)"),
    ("slurm_load_jobs error: Unable to contact slurm controller", 1, "", None,
     "Slurm does not answer"),
])
def test_another_hosts_owner_is_judged_by_its_slurm_job(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_slurm_env: None, squeue: str,
        rc: int, sacct: str, alive: bool | None, said: str) -> None:
    calls = fake_slurm(tmp_path, monkeypatch, squeue=squeue, squeue_rc=rc, sacct=sacct)
    verdict = judge(elsewhere(slurm_job_id="81", slurm_array_job_id="80",
                              slurm_array_task_id="3"))
    assert verdict.alive is alive and said in verdict.reason
    assert calls.read_text().splitlines()[0].startswith("squeue -h -j 80_3")


def test_an_earlier_run_of_this_requeued_job_is_dead(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_slurm(tmp_path, monkeypatch, squeue="RUNNING node7")
    monkeypatch.setenv("SLURM_JOB_ID", "81")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    verdict = judge(elsewhere(slurm_job_id="81", slurm_restart_count="0"))
    assert verdict.alive is False and "was restarted" in verdict.reason
    assert not calls.exists()  # told without asking Slurm
    assert judge(elsewhere(slurm_job_id="81", slurm_restart_count="1")).alive is True


# --- the real local Slurm ---------------------------------------------------------------------


def _slurm_reason() -> str | None:
    from reproduce.slurm import slurm_unavailable_reason

    return slurm_unavailable_reason()


_reason = _slurm_reason()

def _state(job: str) -> str:
    done = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True,
                          text=True, timeout=30)
    return done.stdout.strip()


@pytest.mark.slurm
@pytest.mark.skipif(_reason is not None, reason=f"no local Slurm: {_reason}")
def test_another_hosts_lock_is_taken_over_once_its_slurm_job_is_gone(
        tmp_path: Path, no_slurm_env: None, caplog: pytest.LogCaptureFixture) -> None:
    done = subprocess.run(["sbatch", "--parsable", "-o", "/dev/null", "--wrap", "sleep 600"],
                          capture_output=True, text=True, timeout=60, check=True)
    job = done.stdout.strip().split(";")[0]
    try:
        deadline = time.monotonic() + 120
        while _state(job) != "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.5)
        node = subprocess.run(["squeue", "-h", "-j", job, "-o", "%N"], capture_output=True,
                              text=True, timeout=30).stdout.strip()
        running = judge({**owner_record(), "host": f"{node}.cluster", "pid": 4242,
                         "slurm_job_id": job})
        assert running.alive is True and f"Slurm job {job} is RUNNING" in running.reason
    finally:
        subprocess.run(["scancel", job], timeout=60, check=True)
    deadline = time.monotonic() + 120
    while _state(job) not in ("", "CANCELLED") and time.monotonic() < deadline:
        time.sleep(0.5)

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    embedded = load_corpus("embedded")
    for split, count in (("train", 500), ("valid", 20)):
        text = embedded.split(split)
        (corpus / f"{split}.en").write_text("".join(s + "\n" for s in text.source[:count]))
        (corpus / f"{split}.de").write_text("".join(s + "\n" for s in text.target[:count]))
    built = binarize("local", corpus, vocab_size=100, cache_dir=tmp_path / "c")
    shutil.rmtree(built.folder)
    lock = Path(str(built.folder) + ".lock")
    record = {**owner_record(), "host": "node-lost", "pid": 4242, "slurm_job_id": job}
    lock.write_text(json.dumps(record))
    staging = tmp_path / "c" / f".{built.folder.name}-left"
    staging.mkdir()
    (staging / ".owner.json").write_text(json.dumps(record))
    again = binarize("local", corpus, vocab_size=100, cache_dir=tmp_path / "c")
    assert again.built_here and not lock.exists() and not staging.exists()
    assert f"taking over the lock {lock}" in caplog.text
    assert f"Slurm job {job} is CANCELLED" in caplog.text or \
        f"Slurm job {job} is no longer queued" in caplog.text
