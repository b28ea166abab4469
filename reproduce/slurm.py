"""Slurm launcher: a prepare job, one sbatch array (one task per cell), a job that renders tables.

The prepare job runs ``python -m reproduce prepare`` once: it binarizes the corpus (vocabulary,
token ids, length index; data.binarized) into the results folder's cache, which every array task
and rank then reads. The array waits for it with ``--dependency=afterok:<prepare>`` and
``--kill-on-invalid-dep=yes`` (a failed prepare cancels the array instead of leaving it pending
forever).

Each array task looks its cell id up by SLURM_ARRAY_TASK_ID in ``cells.txt`` (written next to the
script, one id per line, stable order) and runs it through ``srun python -m reproduce run CELL``:
only under srun does Lightning's SLURMEnvironment see the job, so that on ``--signal=SIGUSR1@90``
it saves ``hpc_ckpt_N.ckpt`` in the cell's folder and requeues the task (``--requeue``); the
requeued task resumes from that checkpoint. The render job waits for the array with
``--dependency=afterany`` (so it renders whatever finished, even if some cells failed).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from reproduce.errors import UsageError

CELLS_FILE = "cells.txt"
ARRAY_SCRIPT = "array.sbatch"
RENDER_SCRIPT = "render.sbatch"
PREPARE_SCRIPT = "prepare.sbatch"
REQUEUE_SIGNAL = "SIGUSR1@90"  # Lightning's auto-requeue listens for SIGUSR1
_TIME_RE = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")


@dataclass(frozen=True)
class SlurmResources:
    """Per array task (= one cell). A task uses ``nodes`` nodes with ``gpus_per_task`` GPUs on
    each; Lightning runs one process (Slurm task) per GPU, each with ``cpus_per_task`` CPUs."""

    partition: str | None = None
    account: str | None = None
    time: str = "04:00:00"
    nodes: int = 1
    gpus_per_task: int = 0
    cpus_per_task: int = 1
    mem: str | None = None
    begin: str | None = None
    max_parallel: int | None = None
    render_time: str = "00:30:00"
    prepare_time: str = "04:00:00"
    prepare_cpus: int | None = None  # default: cpus_per_task x tasks_per_node (encoding threads)

    def __post_init__(self) -> None:
        for name in ("nodes", "cpus_per_task"):
            if getattr(self, name) < 1:
                flag = "--" + name.replace("_", "-")
                raise UsageError(f"{flag} must be >= 1, got {getattr(self, name)}")
        if self.gpus_per_task < 0:
            raise UsageError(f"--gpus-per-task must be >= 0, got {self.gpus_per_task}")
        if self.max_parallel is not None and self.max_parallel < 1:
            raise UsageError(f"--max-parallel must be >= 1, got {self.max_parallel}")
        for name in ("time", "render_time", "prepare_time"):
            if not _TIME_RE.match(getattr(self, name)):
                raise UsageError(
                    f"--{name.replace('_', '-')} {getattr(self, name)!r} is not a Slurm time "
                    "(minutes, HH:MM:SS or D-HH:MM:SS)"
                )

    @property
    def tasks_per_node(self) -> int:
        return max(1, self.gpus_per_task)


def _common_lines(res: SlurmResources, job_name: str, output: Path, workdir: Path) -> list[str]:
    lines = [f"#SBATCH --job-name={job_name}"]
    if res.partition:
        lines.append(f"#SBATCH --partition={res.partition}")
    if res.account:
        lines.append(f"#SBATCH --account={res.account}")
    lines += [f"#SBATCH --output={output}", f"#SBATCH --chdir={workdir}"]
    return lines


def array_script(
    *,
    cells_file: Path,
    n_cells: int,
    resources: SlurmResources,
    python: str,
    workdir: Path,
    log_dir: Path,
    run_args: Sequence[str],
    job_name: str = "adafactor-cells",
) -> str:
    """The sbatch array script; ``run_args`` follow ``python -m reproduce run "$CELL"``."""
    if n_cells < 1:
        raise ValueError("an array needs at least one cell")
    res = resources
    array = f"0-{n_cells - 1}" + (f"%{res.max_parallel}" if res.max_parallel else "")
    lines = [
        "#!/bin/bash",
        f"# Written by `python -m reproduce` on {datetime.now():%Y-%m-%d %H:%M}: one array task "
        f"per line of {cells_file.name}.",
    ]
    lines += _common_lines(res, job_name, log_dir / "%A_%a.out", workdir)
    lines += [
        f"#SBATCH --array={array}",
        f"#SBATCH --time={res.time}",
        f"#SBATCH --nodes={res.nodes}",
        f"#SBATCH --ntasks-per-node={res.tasks_per_node}",
        f"#SBATCH --cpus-per-task={res.cpus_per_task}",
    ]
    if res.gpus_per_task:
        lines.append(f"#SBATCH --gpus-per-node={res.gpus_per_task}")
    if res.mem:
        lines.append(f"#SBATCH --mem={res.mem}")
    if res.begin:
        lines.append(f"#SBATCH --begin={res.begin}")
    lines += [
        "#SBATCH --requeue",
        f"#SBATCH --signal={REQUEUE_SIGNAL}",
        "#SBATCH --open-mode=append",
        "",
        "set -euo pipefail",
        f'CELL=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {shlex.quote(str(cells_file))})',
        'if [ -z "$CELL" ]; then',
        f'    echo "no cell on line $((SLURM_ARRAY_TASK_ID + 1)) of {cells_file}" >&2; exit 1',
        "fi",
        "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}",
        'echo "array task ${SLURM_ARRAY_TASK_ID} (restart ${SLURM_RESTART_COUNT:-0}):'
        ' $CELL on $(hostname)"',
        "# srun: Lightning detects Slurm only inside a job step (requeue on SIGUSR1).",
        f'srun {shlex.quote(python)} -m reproduce run "$CELL" '
        + " ".join(shlex.quote(a) for a in run_args),
        "",
    ]
    return "\n".join(lines)


def _one_task_script(
    res: SlurmResources, *, purpose: str, job_name: str, log: Path, workdir: Path, time: str,
    cpus: int, extra: Sequence[str], command: str,
) -> str:
    """An sbatch script of one task on ``cpus`` CPUs that runs ``command``."""
    lines = ["#!/bin/bash", f"# Written by `python -m reproduce`: {purpose}"]
    lines += _common_lines(res, job_name, log, workdir)
    lines += [f"#SBATCH --time={time}", "#SBATCH --ntasks=1", f"#SBATCH --cpus-per-task={cpus}",
              *extra, "", "set -euo pipefail", command, ""]
    return "\n".join(lines)


def _reproduce_command(python: str, subcommand: str, args: Sequence[str]) -> str:
    return f"{shlex.quote(python)} -m reproduce {subcommand} " + " ".join(
        shlex.quote(a) for a in args)


def render_script(
    *,
    resources: SlurmResources,
    python: str,
    workdir: Path,
    log_dir: Path,
    render_args: Sequence[str],
    job_name: str = "adafactor-render",
) -> str:
    """The sbatch script of the render job (submitted with --dependency=afterany:<array>)."""
    return _one_task_script(
        resources, purpose="renders paper_tables/ once every array task has ended.",
        job_name=job_name, log=log_dir / "render_%j.out", workdir=workdir,
        time=resources.render_time, cpus=1, extra=(),
        command=_reproduce_command(python, "render", render_args),
    )


def prepare_script(
    *,
    resources: SlurmResources,
    python: str,
    workdir: Path,
    log_dir: Path,
    prepare_args: Sequence[str],
    job_name: str = "adafactor-prepare",
) -> str:
    """The sbatch script of the prepare job (the array waits for it with afterok)."""
    res = resources
    extra = ([f"#SBATCH --mem={res.mem}"] if res.mem else []) + (
        [f"#SBATCH --begin={res.begin}"] if res.begin else [])
    return _one_task_script(
        res, purpose="binarizes the corpus once (data.binarized) before the array starts.",
        job_name=job_name, log=log_dir / "prepare_%j.out", workdir=workdir,
        time=res.prepare_time, cpus=res.prepare_cpus or res.cpus_per_task * res.tasks_per_node,
        extra=extra, command=_reproduce_command(python, "prepare", prepare_args),
    )


@dataclass
class SlurmPlan:
    """Everything needed to submit: scripts, cell list and where they go."""

    script_dir: Path
    cell_ids: list[str]
    array_text: str
    render_text: str
    prepare_text: str = ""

    @property
    def array_path(self) -> Path:
        return self.script_dir / ARRAY_SCRIPT

    @property
    def render_path(self) -> Path:
        return self.script_dir / RENDER_SCRIPT

    @property
    def cells_path(self) -> Path:
        return self.script_dir / CELLS_FILE

    @property
    def prepare_path(self) -> Path:
        return self.script_dir / PREPARE_SCRIPT

    def sbatch_commands(self, array_job_id: str = "<ARRAY_JOB_ID>",
                        prepare_job_id: str = "<PREPARE_JOB_ID>") -> list[list[str]]:
        """prepare -> array (afterok, killed if prepare fails) -> render (afterany)."""
        return [
            ["sbatch", "--parsable", str(self.prepare_path)],
            ["sbatch", "--parsable", f"--dependency=afterok:{prepare_job_id}",
             "--kill-on-invalid-dep=yes", str(self.array_path)],
            ["sbatch", "--parsable", f"--dependency=afterany:{array_job_id}",
             str(self.render_path)],
        ]


def plan_submission(
    *,
    cell_ids: Sequence[str],
    results_dir: Path,
    tables_dir: Path,
    tables: Sequence[str],
    scale: str,
    set_args: Sequence[str],
    use_wandb: bool,
    resources: SlurmResources,
    workdir: Path,
    python: str | None = None,
    label: str = "",
    render_extra: Sequence[str] = (),
) -> SlurmPlan:
    """Build the scripts (nothing is written or submitted)."""
    results_dir, tables_dir = Path(results_dir).resolve(), Path(tables_dir).resolve()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    script_dir = results_dir / "slurm" / (f"{stamp}-{label}" if label else stamp)
    python = python or sys.executable
    common = ["--scale", scale, "--results-dir", str(results_dir)]
    run_args = [*common, "--devices", str(max(1, resources.gpus_per_task)),
                "--num-nodes", str(resources.nodes)]
    if resources.gpus_per_task:
        run_args += ["--accelerator", "gpu"]
    for item in set_args:
        run_args += ["--set", item]
    if not use_wandb:
        run_args.append("--no-wandb")
    render_args = [*tables, "--results-dir", str(results_dir), "--tables-dir", str(tables_dir),
                   *render_extra]
    log_dir = script_dir / "logs"
    array_text = array_script(
        cells_file=script_dir / CELLS_FILE, n_cells=len(cell_ids), resources=resources,
        python=python, workdir=workdir, log_dir=log_dir, run_args=run_args,
    )
    render_text = render_script(resources=resources, python=python, workdir=workdir,
                                log_dir=log_dir, render_args=render_args)
    prepare_args = list(common)
    for item in set_args:
        prepare_args += ["--set", item]
    prepare_text = prepare_script(resources=resources, python=python, workdir=workdir,
                                  log_dir=log_dir, prepare_args=prepare_args)
    return SlurmPlan(script_dir, list(cell_ids), array_text, render_text, prepare_text)


def write_plan(plan: SlurmPlan) -> None:
    (plan.script_dir / "logs").mkdir(parents=True, exist_ok=True)
    plan.cells_path.write_text("".join(c + "\n" for c in plan.cell_ids))
    plan.array_path.write_text(plan.array_text)
    plan.render_path.write_text(plan.render_text)
    plan.prepare_path.write_text(plan.prepare_text)


def slurm_unavailable_reason() -> str | None:
    """None when ``sinfo`` answers, else why not (used by the CLI and to skip tests)."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "Slurm commands (sinfo, sbatch) are not installed"
    try:
        done = subprocess.run(["sinfo", "-h"], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 15 s (is slurmctld running?)"
    if done.returncode != 0:
        return f"sinfo failed: {done.stderr.strip() or done.stdout.strip()}"
    return None


def _sbatch(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise UsageError(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return done.stdout.strip().split(";")[0]  # --parsable: "jobid" or "jobid;cluster"


def submit(plan: SlurmPlan) -> tuple[str, str, str]:
    """Write the plan and submit it: (prepare job id, array job id, render job id)."""
    reason = slurm_unavailable_reason()
    if reason:
        raise UsageError(f"cannot submit to Slurm: {reason}")
    write_plan(plan)
    prepare_id = _sbatch(plan.sbatch_commands()[0])
    array_id = _sbatch(plan.sbatch_commands(prepare_job_id=prepare_id)[1])
    render_id = _sbatch(plan.sbatch_commands(array_id, prepare_id)[2])
    return prepare_id, array_id, render_id


def jobs_in_queue(job_ids: Sequence[str]) -> list[str]:
    """Ids (array tasks as ``<job>_<task>``) of the given jobs that are still queued or running."""
    done = subprocess.run(
        ["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i %T"],
        capture_output=True, text=True, timeout=30,
    )
    if done.returncode != 0:
        if "Invalid job id" in done.stderr:  # jobs purged from slurmctld: finished long ago
            return []
        raise RuntimeError(f"squeue failed: {done.stderr.strip()}")
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def job_states(job_id: str) -> dict[str, str]:
    """``{"<job>_<task>": "COMPLETED", ...}`` from ``scontrol show job`` (no accounting needed;
    finished jobs stay visible for MinJobAge seconds)."""
    done = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True,
                          text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"scontrol show job {job_id} failed: {done.stderr.strip()}")
    states = {}
    for line in done.stdout.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if "JobId" not in fields:
            continue
        key = fields["JobId"]
        if fields.get("ArrayTaskId"):
            key = f"{fields.get('ArrayJobId', key)}_{fields['ArrayTaskId']}"
        states[key] = fields.get("JobState", "UNKNOWN")
    return states


def wait_for_jobs(job_ids: Sequence[str], *, timeout_s: float, poll_s: float = 3.0) -> None:
    """Block until none of ``job_ids`` is queued or running; TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = jobs_in_queue(job_ids)
        if not left:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"Slurm jobs still queued/running after {timeout_s:.0f} s: {left}")
        time.sleep(poll_s)


def validate_begin(begin: str | None) -> str | None:
    """sbatch --begin accepts many forms (now+1hour, 2026-01-01T02:00, tomorrow, 23:00); reject
    only what cannot be one (spaces, empty)."""
    if begin is None:
        return None
    if not begin.strip() or re.search(r"\s", begin.strip()):
        raise UsageError(f"--begin {begin!r}: give one sbatch --begin value such as now+1hour, "
                         "23:00, tomorrow or 2026-01-01T02:00:00")
    return begin.strip()
