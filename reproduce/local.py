"""Local launcher: run cells in parallel worker processes on this machine.

The parent hands each worker planned cells (experiments.schema.CellPlan, resolved once there).
One worker per core (or per GPU, each worker pinned to one through CUDA_VISIBLE_DEVICES), each
with one intra-op thread, so cells do not fight over cores. Workers are long-lived spawned
processes that import torch and Lightning once and then take cells from a queue; each cell's
console output goes to ``<cell dir>/run.log``. A cell that raises (or a worker that dies) is
reported and the others go on; the caller exits non-zero at the end.

SIGINT or SIGTERM to this process stops the queue: no cell starts any more, each running worker
is told to stop (it checkpoints at its next logged step), every worker is waited for (killed if
it does not stop in time), and `Interrupted` is raised naming what finished and what was
interrupted.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from experiments.schema import (
    BLEU,
    LOG_FILE,
    METRICS_FILE,
    STATUS,
    TRAIN_LOSS,
    CellPlan,
    Status,
)
from experiments.store.files import cell_dir, last_value, read_metrics
from reproduce.errors import Interrupted

STATUS_EVERY_S = 20.0
STOP_GRACE_S = 120.0  # how long stopping workers get to checkpoint before they are killed
# A cell's outcome here: a result's Status (it has a result.json), or one of these three.
FAILED = "failed"
INTERRUPTED = "interrupted"
SKIPPED = "skipped"  # another process holds the cell's lock (and --wait-lock was not given)


@dataclass
class CellOutcome:
    cell_id: str
    status: str  # Status.OK, Status.DIVERGED, FAILED, INTERRUPTED or SKIPPED
    bleu: float | None = None
    wall_s: float = 0.0
    error: str | None = None


def default_workers() -> tuple[int, list[str | None]]:
    """(number of workers, GPU index per worker or None): one per GPU if CUDA sees any, else one
    per core this process may use."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        import torch

        n_gpus = torch.cuda.device_count()
    except Exception:  # a broken CUDA install must not stop a CPU run
        n_gpus = 0
    if n_gpus > 0:
        ids = visible.split(",") if visible else [str(i) for i in range(n_gpus)]
        return n_gpus, list(ids[:n_gpus])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cores or 1), [None] * max(1, cores or 1)


def _redirect_output(log_path: Path) -> None:
    """Send this process's stdout/stderr (file descriptors too) to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _worker(
    tasks: Any,
    events: Any,
    worker: int,
    gpu: str | None,
    results_dir: str,
    use_wandb: bool,
    wait_lock: bool = False,
) -> None:
    """Worker process body: take planned cells until None, report start/done/error events."""
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    import torch

    torch.set_num_threads(1)
    from experiments.run.cell import run_cell
    from experiments.run.stop import CellInterrupted, install_stop_handlers, stop_requested
    from experiments.store.locks import LockHeld

    install_stop_handlers()
    while True:
        if stop_requested() is not None:
            return
        plan = tasks.get()
        if plan is None or stop_requested() is not None:
            return
        cell_id = plan.cell_id
        events.put(("start", worker, cell_id, None))
        _redirect_output(cell_dir(Path(results_dir), cell_id) / LOG_FILE)
        start = time.time()
        try:
            result = run_cell(
                plan,
                results_dir=Path(results_dir),
                devices=1,
                accelerator="gpu" if gpu is not None else "cpu",
                use_wandb=use_wandb,
                wait_lock=wait_lock,
            )
            summary = {
                "status": str(result.get(STATUS, Status.OK)),
                "bleu": result.get(BLEU),
                "wall_s": time.time() - start,
            }
            events.put(("done", worker, cell_id, summary))
        except CellInterrupted as stopped:
            events.put(("interrupted", worker, cell_id, {"step": stopped.step}))
            return
        except LockHeld as held:
            print(held, file=sys.stderr, flush=True)
            events.put(("skipped", worker, cell_id, str(held)))
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            events.put(("error", worker, cell_id, traceback.format_exc(limit=8)))


def _progress_text(cell_id: str, results_dir: Path) -> str:
    """``cell (step S, loss L, BLEU B)`` from the cell's metrics.jsonl so far."""
    records = read_metrics(cell_dir(results_dir, cell_id) / METRICS_FILE, strict=False)
    parts = []
    for key, label, fmt in ((TRAIN_LOSS, "loss", ".3f"), (BLEU, "BLEU", ".2f")):
        last = last_value(records, key)
        if last is not None:
            if not parts:
                parts.append(f"step {int(last[0])}")
            parts.append(f"{label} {last[1]:{fmt}}")
    return cell_id + (f" ({', '.join(parts)})" if parts else " (starting)")


def run_cells_locally(
    plans: Sequence[CellPlan],
    *,
    results_dir: Path,
    workers: int | None = None,
    use_wandb: bool = True,
    wait_lock: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[CellOutcome]:
    """Run ``plans`` (none of which has a result yet) and return one outcome per cell.

    ``wait_lock``: a worker whose cell another process holds waits for it instead of failing it.
    Raises `Interrupted` after a SIGINT/SIGTERM, once every worker has stopped.
    """
    log = log or partial(print, flush=True)
    results_dir = Path(results_dir).resolve()
    cell_ids = [p.cell_id for p in plans]
    n_default, gpus = default_workers()
    n_workers = max(1, min(workers or n_default, len(cell_ids)))
    gpus = (gpus * n_workers)[:n_workers] if gpus[0] is not None else [None] * n_workers
    total = len(cell_ids)
    if total == 0:
        return []
    ctx = mp.get_context("spawn")
    tasks, events = ctx.Queue(), ctx.Queue()
    for plan in plans:
        tasks.put(plan)

    def start_worker(index: int) -> Any:
        process = ctx.Process(
            target=_worker,
            args=(tasks, events, index, gpus[index], str(results_dir), use_wandb, wait_lock),
        )
        process.start()
        return process

    stop: dict[str, Any] = {"signal": None, "since": None}

    def on_signal(signum: int, _frame: Any) -> None:
        if stop["signal"] is None:
            stop["signal"] = signum

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    processes: dict[int, Any] = {}
    outcomes: dict[str, CellOutcome] = {}
    try:
        processes.update({i: start_worker(i) for i in range(n_workers)})
        _supervise(processes, start_worker, tasks, events, cell_ids, outcomes, stop,
                   results_dir, log, "GPU" if gpus[0] is not None else "core")
    finally:
        for _ in processes:
            tasks.put(None)
        deadline = time.time() + (STOP_GRACE_S if stop["signal"] is not None else 10)
        for process in processes.values():
            process.join(timeout=max(0.1, deadline - time.time()))
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if stop["signal"] is not None:
        raise Interrupted(stop["signal"], _stop_summary(stop["signal"], cell_ids, outcomes))
    return [outcomes[c] for c in cell_ids if c in outcomes]


def _stop_summary(signum: int, cell_ids: Sequence[str], outcomes: dict[str, CellOutcome]) -> str:
    """One line: what finished, what was interrupted (and where), what never started."""
    name = signal.Signals(signum).name
    finished = [c for c in cell_ids if c in outcomes and outcomes[c].status in tuple(Status)]
    failed = [c for c in cell_ids if c in outcomes and outcomes[c].status == FAILED]
    stopped = [outcomes[c] for c in cell_ids if c in outcomes
               and outcomes[c].status == INTERRUPTED]
    waiting = [c for c in cell_ids if c not in outcomes]
    parts = [f"{len(finished)} finished"]
    if stopped:
        parts.append(f"{len(stopped)} interrupted (" + ", ".join(
            f"{o.cell_id}{'' if o.error is None else ' ' + o.error}" for o in stopped) + ")")
    if failed:
        parts.append(f"{len(failed)} failed ({', '.join(failed)})")
    parts.append(f"{len(waiting)} not started")
    return (f"stopped by {name}: {', '.join(parts)}; run the same command again to resume "
            "(finished cells are kept, interrupted ones resume from their checkpoint)")


def _supervise(processes: dict[int, Any], start_worker: Callable[[int], Any], tasks: Any,
               events: Any, cell_ids: Sequence[str], outcomes: dict[str, CellOutcome],
               stop: dict[str, Any], results_dir: Path, log: Callable[[str], None],
               unit: str) -> None:
    """The parent's loop: report events, replace dead workers, stop everything on a signal."""
    total = len(cell_ids)
    running: dict[int, tuple[str, float]] = {}  # worker -> (cell id, start time)
    log(f"running {total} cells with {len(processes)} worker(s) (one per {unit}); "
        f"logs in {results_dir}/<cell>/{LOG_FILE}")
    last_status = time.time()
    stopping = False
    while len(outcomes) < total:
        if stop["signal"] is not None and not stopping:
            stopping = True
            stop["since"] = time.time()
            _stop_workers(processes, tasks, log, stop["signal"])
        for kind, worker, cell_id, payload in _pending_events(events):
            _handle_event(kind, worker, cell_id, payload, running, outcomes, total, stopping,
                          results_dir, log)
        # A worker that died in a cell (killed, segfault) fails that cell and is replaced;
        # one that died without a cell (it could not even start) is not.
        for index, process in list(processes.items()):
            cell = running.get(index)
            if process.is_alive() or cell is None or len(outcomes) >= total:
                continue
            for event in _pending_events(events, timeout=0.2):  # what it sent before dying
                _handle_event(*event, running, outcomes, total, stopping, results_dir, log)
            running.pop(index, None)
            if cell[0] not in outcomes:
                status = INTERRUPTED if stopping else FAILED
                outcomes[cell[0]] = CellOutcome(
                    cell[0], status, None, time.time() - cell[1],
                    error=f"worker process died (exit code {process.exitcode})",
                )
                log(f"[{len(outcomes)}/{total}] {status.upper():8s} worker died (exit code "
                    f"{process.exitcode})  {cell[0]}")
            if not stopping and len(outcomes) + len(running) < total:
                processes[index] = start_worker(index)
        if not any(p.is_alive() for p in processes.values()):
            if not stopping:
                for cell_id in cell_ids:  # every worker is gone: nothing will run the rest
                    outcomes.setdefault(cell_id, CellOutcome(
                        cell_id, FAILED, error="not run: every worker process exited"))
            return
        if stopping and time.time() - stop["since"] > STOP_GRACE_S:
            return  # the caller kills what is left
        if running and not stopping and time.time() - last_status > STATUS_EVERY_S:
            last_status = time.time()
            now = ", ".join(_progress_text(c, results_dir) for c, _ in running.values())
            log(f"[{len(outcomes)}/{total}] running: {now}")


def _pending_events(events: Any, timeout: float = 0.5) -> list[tuple[str, int, str, Any]]:
    """Every event the workers have sent (waiting up to ``timeout`` seconds for the first)."""
    batch = []
    try:
        batch.append(events.get(timeout=timeout))
        while True:
            batch.append(events.get_nowait())
    except queue.Empty:
        pass
    return batch


def _handle_event(kind: str, worker: int, cell_id: str, payload: Any,
                  running: dict[int, tuple[str, float]], outcomes: dict[str, CellOutcome],
                  total: int, stopping: bool, results_dir: Path,
                  log: Callable[[str], None]) -> None:
    if kind == "start":
        running[worker] = (cell_id, time.time())
        if not stopping:
            log(f"[{len(outcomes)}/{total}] started {cell_id}")
    elif kind in ("done", "error", "interrupted", "skipped"):
        _, started = running.pop(worker, (cell_id, time.time()))
        if kind == "done":
            outcome = CellOutcome(cell_id, payload["status"], payload["bleu"],
                                  payload["wall_s"])
            bleu = "-" if outcome.bleu is None else f"{outcome.bleu:.2f}"
            text = f"{outcome.status:8s} BLEU {bleu}"
        elif kind == "interrupted":
            outcome = CellOutcome(cell_id, INTERRUPTED, None, time.time() - started,
                                  error=f"at step {payload['step']}")
            text = f"stopped  at step {payload['step']} (checkpointed)"
        elif kind == "skipped":
            outcome = CellOutcome(cell_id, SKIPPED, None, time.time() - started, error=payload)
            text = "SKIPPED  held by another process"
        else:
            outcome = CellOutcome(cell_id, FAILED, None, time.time() - started,
                                  error=payload.strip().splitlines()[-1])
            text = f"FAILED   {outcome.error} (see {cell_dir(results_dir, cell_id)}/" \
                   f"{LOG_FILE})"
        outcomes[cell_id] = outcome
        log(f"[{len(outcomes)}/{total}] {text}  {cell_id}  ({outcome.wall_s:.0f} s)")


def _stop_workers(processes: dict[int, Any], tasks: Any, log: Callable[[str], None],
                  signum: int) -> None:
    """Take the queued cells back and tell every worker to stop (SIGTERM: checkpoint, exit)."""
    while True:
        try:
            tasks.get_nowait()
        except queue.Empty:
            break
    for _ in processes:
        tasks.put(None)
    for process in processes.values():
        if process.is_alive() and process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
    log(f"{signal.Signals(signum).name}: stopping; running cells checkpoint at their next "
        "logged step")
