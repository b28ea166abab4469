"""Local launcher: run cells in parallel worker processes on this machine.

One worker per core (or per GPU, each worker pinned to one through CUDA_VISIBLE_DEVICES), each
with one intra-op thread, so cells do not fight over cores. Workers are long-lived spawned
processes that import torch and Lightning once and then take cells from a queue; each cell's
console output goes to ``<cell dir>/run.log``. A cell that raises (or a worker that dies) is
reported and the others go on; the caller exits non-zero at the end.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from experiments.tracking import METRICS_FILE, cell_dir, last_value, read_metrics

LOG_FILE = "run.log"
STATUS_EVERY_S = 20.0


@dataclass
class CellOutcome:
    cell_id: str
    status: str  # "ok", "diverged" (both have a result.json) or "failed"
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
    scale: str,
    results_dir: str,
    overrides: dict[str, Any],
    use_wandb: bool,
) -> None:
    """Worker process body: take cell ids until None, report start/done/error events."""
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    import torch

    torch.set_num_threads(1)
    from experiments.runner import run_cell

    while True:
        cell_id = tasks.get()
        if cell_id is None:
            return
        events.put(("start", worker, cell_id, None))
        _redirect_output(cell_dir(Path(results_dir), cell_id) / LOG_FILE)
        start = time.time()
        try:
            result = run_cell(
                cell_id,
                scale=scale,
                results_dir=Path(results_dir),
                overrides=dict(overrides),
                devices=1,
                accelerator="gpu" if gpu is not None else "cpu",
                use_wandb=use_wandb,
            )
            summary = {
                "status": str(result.get("status", "ok")),
                "bleu": result.get("bleu"),
                "wall_s": time.time() - start,
            }
            events.put(("done", worker, cell_id, summary))
        except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: stop, take no more
            return
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            events.put(("error", worker, cell_id, traceback.format_exc(limit=8)))


def _progress_text(cell_id: str, results_dir: Path) -> str:
    """``cell (step S, loss L, BLEU B)`` from the cell's metrics.jsonl so far."""
    records = read_metrics(cell_dir(results_dir, cell_id) / METRICS_FILE)
    parts = []
    for key, label, fmt in (("train_loss", "loss", ".3f"), ("bleu", "BLEU", ".2f")):
        last = last_value(records, key)
        if last is not None:
            if not parts:
                parts.append(f"step {int(last[0])}")
            parts.append(f"{label} {last[1]:{fmt}}")
    return cell_id + (f" ({', '.join(parts)})" if parts else " (starting)")


def run_cells_locally(
    cell_ids: Sequence[str],
    *,
    scale: str,
    results_dir: Path,
    overrides: dict[str, Any] | None = None,
    workers: int | None = None,
    use_wandb: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[CellOutcome]:
    """Run ``cell_ids`` (none of which has a result yet) and return one outcome per cell."""
    log = log or partial(print, flush=True)
    results_dir = Path(results_dir).resolve()
    overrides = dict(overrides or {})
    n_default, gpus = default_workers()
    n_workers = max(1, min(workers or n_default, len(cell_ids)))
    gpus = (gpus * n_workers)[:n_workers] if gpus[0] is not None else [None] * n_workers
    total = len(cell_ids)
    if total == 0:
        return []
    ctx = mp.get_context("spawn")
    tasks, events = ctx.Queue(), ctx.Queue()
    for cell_id in cell_ids:
        tasks.put(cell_id)

    def start_worker(index: int) -> Any:
        process = ctx.Process(
            target=_worker,
            args=(tasks, events, index, gpus[index], scale, str(results_dir), overrides, use_wandb),
        )
        process.start()
        return process

    processes = {i: start_worker(i) for i in range(n_workers)}
    running: dict[int, tuple[str, float]] = {}  # worker -> (cell id, start time)
    outcomes: dict[str, CellOutcome] = {}
    unit = "GPU" if gpus[0] is not None else "core"
    log(f"running {total} cells with {n_workers} worker(s) (one per {unit}); "
        f"logs in {results_dir}/<cell>/{LOG_FILE}")
    last_status = time.time()
    try:
        while len(outcomes) < total:
            try:
                kind, worker, cell_id, payload = events.get(timeout=2.0)
            except queue.Empty:
                kind = None
            if kind == "start":
                running[worker] = (cell_id, time.time())
                log(f"[{len(outcomes)}/{total}] started {cell_id}")
            elif kind in ("done", "error"):
                _, started = running.pop(worker, (cell_id, time.time()))
                if kind == "done":
                    outcome = CellOutcome(cell_id, payload["status"], payload["bleu"],
                                          payload["wall_s"])
                    bleu = "-" if outcome.bleu is None else f"{outcome.bleu:.2f}"
                    text = f"{outcome.status:8s} BLEU {bleu}"
                else:
                    outcome = CellOutcome(cell_id, "failed", None, time.time() - started,
                                          error=payload.strip().splitlines()[-1])
                    text = f"FAILED   {outcome.error} (see {cell_dir(results_dir, cell_id)}/" \
                           f"{LOG_FILE})"
                outcomes[cell_id] = outcome
                log(f"[{len(outcomes)}/{total}] {text}  {cell_id}  ({outcome.wall_s:.0f} s)")
            # A worker that died in a cell (killed, segfault) fails that cell and is replaced;
            # one that died without a cell (it could not even start) is not.
            for index, process in list(processes.items()):
                cell = running.get(index)
                if process.is_alive() or cell is None or len(outcomes) >= total:
                    continue
                del running[index]
                if cell[0] not in outcomes:
                    outcomes[cell[0]] = CellOutcome(
                        cell[0], "failed", None, time.time() - cell[1],
                        error=f"worker process died (exit code {process.exitcode})",
                    )
                    log(f"[{len(outcomes)}/{total}] FAILED   worker died (exit code "
                        f"{process.exitcode})  {cell[0]}")
                if len(outcomes) + len(running) < total:
                    processes[index] = start_worker(index)
            if not running and not any(p.is_alive() for p in processes.values()):
                for cell_id in cell_ids:  # every worker is gone: nothing will run the rest
                    outcomes.setdefault(cell_id, CellOutcome(
                        cell_id, "failed", error="not run: every worker process exited"))
                break
            if running and time.time() - last_status > STATUS_EVERY_S:
                last_status = time.time()
                now = ", ".join(_progress_text(c, results_dir) for c, _ in running.values())
                log(f"[{len(outcomes)}/{total}] running: {now}")
    finally:
        for _ in processes:
            tasks.put(None)
        deadline = time.time() + 10
        for process in processes.values():
            process.join(timeout=max(0.1, deadline - time.time()))
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
    return [outcomes[c] for c in cell_ids if c in outcomes]
