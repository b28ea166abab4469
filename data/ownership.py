"""Who owns a lock or a staging folder, and whether that owner still runs.

`owner_record()` describes the calling process: host, pid, process start time (clock ticks since
boot, from /proc, so a reused pid is told apart), when, the command, and under Slurm the job id,
array job id, array task id and restart count. `judge(record)` says whether that owner is alive:

- on this host: dead when the pid is gone or belongs to a process started at another time;
- on another host, with Slurm ids recorded: the job is asked (``squeue -h -j JOB``, then
  ``sacct`` once squeue no longer knows it). Dead when the job no longer runs, is pending again
  (requeued), runs on nodes other than the owner's host (requeued elsewhere), or is this very job
  restarted (a higher SLURM_RESTART_COUNT). Alive when it runs on the owner's host;
- otherwise (another host, no Slurm, or Slurm not answering) it cannot be told: `Verdict.alive`
  is None and the caller names the command that breaks the lock (`reproduce unlock`).
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SLURM_FIELDS = {"slurm_job_id": "SLURM_JOB_ID", "slurm_array_job_id": "SLURM_ARRAY_JOB_ID",
                "slurm_array_task_id": "SLURM_ARRAY_TASK_ID",
                "slurm_restart_count": "SLURM_RESTART_COUNT"}
_SLURM_TIMEOUT_S = 20
# squeue states in which the job's processes run on its nodes.
_RUNNING_STATES = {"RUNNING", "COMPLETING", "SUSPENDED", "CONFIGURING", "STOPPED", "SIGNALING",
                   "STAGE_OUT", "RESIZING"}
# States in which no process of the job runs (a requeued job waits as PENDING or REQUEUED).
_NOT_RUNNING_STATES = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "COMPLETED",
                       "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
                       "DEADLINE", "OUT_OF_MEMORY", "SPECIAL_EXIT", "REVOKED"}


def host_name() -> str:
    return socket.gethostname()


def _short(host: str) -> str:
    return host.split(".")[0]


def process_start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (/proc), None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[19])  # field 22 of stat; fields[0] is field 3


def owner_record() -> dict[str, Any]:
    """This process as an owner: host, pid, start time, when, command and Slurm ids."""
    record: dict[str, Any] = {
        "host": host_name(), "pid": os.getpid(),
        "start_time": process_start_time(os.getpid()),
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": shlex.join(sys.argv) if sys.argv else ""}
    for key, variable in SLURM_FIELDS.items():
        if os.environ.get(variable):
            record[key] = os.environ[variable]
    return record


def describe(record: dict[str, Any]) -> str:
    """``pid 12 on node3 since ...: python -m reproduce prepare (Slurm job 77_1)``."""
    job = slurm_job(record)
    text = (f"pid {record.get('pid')} on {record.get('host')} since {record.get('since')}: "
            f"{record.get('command') or '?'}")
    return text + (f" (Slurm job {job})" if job else "")


@dataclass(frozen=True)
class Verdict:
    """alive: True, False, or None when it cannot be told; reason: why, in words."""

    alive: bool | None
    reason: str


def slurm_job(record: dict[str, Any]) -> str | None:
    """The job as squeue names it: ``ARRAY_TASK`` for an array task, else the job id."""
    if record.get("slurm_array_job_id") and record.get("slurm_array_task_id"):
        return f"{record['slurm_array_job_id']}_{record['slurm_array_task_id']}"
    return record.get("slurm_job_id") or None


def judge(record: dict[str, Any]) -> Verdict:
    """Whether the owner described by ``record`` still runs (see the module docstring)."""
    pid = record.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool):
        return Verdict(False, "the record names no process")
    if record.get("host") == host_name():
        started = process_start_time(pid)
        if started is None:
            return Verdict(False, f"pid {pid} no longer runs on this host")
        if record.get("start_time") is not None and started != record.get("start_time"):
            return Verdict(False, f"pid {pid} now belongs to another process")
        return Verdict(True, f"pid {pid} runs on this host")
    restarted = _restarted_job(record)
    if restarted:
        return Verdict(False, restarted)
    job = slurm_job(record)
    if job is None:
        return Verdict(None, f"host {record.get('host')} is not this host and no Slurm job "
                             "is recorded")
    return _judge_slurm_job(job, str(record.get("host")))


def _restarted_job(record: dict[str, Any]) -> str | None:
    """The reason when the owner is an earlier run of this very (requeued) Slurm job."""
    mine = owner_record()
    if not record.get("slurm_job_id") or record.get("slurm_job_id") != mine.get("slurm_job_id"):
        return None
    try:
        theirs, now = (int(record.get("slurm_restart_count") or 0),
                       int(mine.get("slurm_restart_count") or 0))
    except ValueError:
        return None
    if now > theirs:
        return (f"Slurm job {slurm_job(record)} was restarted (restart {theirs} held it, "
                f"this is restart {now})")
    return None


def _run(args: list[str]) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=_SLURM_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None


def _nodes(node_list: str) -> set[str]:
    done = _run(["scontrol", "show", "hostnames", node_list])
    if done is None or done.returncode != 0 or not done.stdout.strip():
        return {_short(node_list)}
    return {_short(n) for n in done.stdout.split()}


def _judge_slurm_job(job: str, host: str) -> Verdict:
    done = _run(["squeue", "-h", "-j", job, "-o", "%T %N"])
    if done is not None and done.returncode == 0 and done.stdout.strip():
        state, _, node_list = done.stdout.strip().splitlines()[0].partition(" ")
        if state in _NOT_RUNNING_STATES:
            return Verdict(False, f"Slurm job {job} is {state} (squeue)")
        if state in _RUNNING_STATES:
            if node_list and _short(host) not in _nodes(node_list):
                return Verdict(False, f"Slurm job {job} now runs on {node_list}, not on {host} "
                                      "(squeue)")
            return Verdict(True, f"Slurm job {job} is {state} on {node_list} (squeue)")
    unknown_to_squeue = done is not None and (
        (done.returncode == 0 and not done.stdout.strip())
        or "Invalid job id" in done.stderr)
    accounted = _run(["sacct", "-n", "-X", "-P", "-j", job, "-o", "State"])
    if accounted is not None and accounted.returncode == 0 and accounted.stdout.strip():
        state = accounted.stdout.split()[0].split()[0]
        if state in _NOT_RUNNING_STATES:
            return Verdict(False, f"Slurm job {job} is {state} (sacct)")
    if unknown_to_squeue:
        return Verdict(False, f"Slurm job {job} is no longer queued or running (squeue)")
    return Verdict(None, f"Slurm does not answer for job {job} "
                         f"({(done.stderr.strip() if done else 'squeue not found') or '?'})")
