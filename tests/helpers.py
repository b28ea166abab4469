"""Helpers shared by test modules: result files in the runner's format, real `python -m
reproduce` subprocesses and their process tree (/proc)."""

from __future__ import annotations

import json
from pathlib import Path

from experiments.grid.registry import get_cell, table_cells
from experiments.identity import cell_identity
from experiments.scales import resolve_cell_preset
from experiments.store.files import atomic_write_json

RECIPE = {"split": "valid", "corpus": "embedded", "max_sentences": 200, "sentences": 200,
          "decode": "greedy", "beam": 1, "length_penalty": None}
SIGNATURE = "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.4.2"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_result(results_dir: Path, cell_id: str, bleu: float | str, *, scale: str = "tiny",
                 metrics: list[dict] | None = None, steps: int = 400,
                 valid_loss: float = 4.5, settings: dict | None = None) -> dict:
    """One cell's result.json (and metrics.jsonl) as experiments.run.record writes them, with
    the identity of the cell at ``scale`` under ``settings`` (--set values) and ``steps`` (the
    data fingerprints left out, so only the settings are compared)."""
    table, row, column, seed = cell_id.split("/")
    diverged = bleu == "diverged"
    result = {
        "cell_id": cell_id, "table": table, "row": row, "column": column,
        "warmup": column == "warmup", "seed": int(seed[4:]), "scale": scale,
        "status": "diverged" if diverged else "ok",
        "bleu": None if diverged else float(bleu), "bleu_signature": SIGNATURE,
        "tokenized_bleu": None if diverged else float(bleu) + 1.0,
        "tokenized_bleu_signature": "nrefs:1|case:mixed|eff:no|tok:intl|smooth:exp|version:2.4.2",
        "bleu_recipe": RECIPE, "valid_loss": valid_loss, "train_loss": valid_loss - 0.1,
        "steps": steps,
    }
    cell = get_cell(cell_id)
    preset = resolve_cell_preset(cell, scale, {"steps": steps, **(settings or {})})
    result["identity"] = cell_identity(cell, preset, None)
    atomic_write_json(results_dir / cell_id / "result.json", result)
    if metrics is not None:
        lines = "".join(json.dumps(m) + "\n" for m in metrics)
        (results_dir / cell_id / "metrics.jsonl").write_text(lines)
    return result


def curve(rms_peak: float) -> list[dict]:
    rows = []
    for step in range(10, 410, 10):
        row = {"step": step, "train_loss": 8.0 - step / 100, "update_rms": 1.0 + rms_peak / step}
        if step % 100 == 0:
            row["valid_loss"] = 8.5 - step / 100
        rows.append(row)
    return rows


# The unigram level the fixtures' curves are read against: a curve that stays at it is a plateau.
UNIGRAM_LEVEL = 6.0


def plateau_curve() -> list[dict]:
    """A run that never leaves the unigram plateau (collapsed by the curve rule)."""
    return [{"step": step, "train_loss": UNIGRAM_LEVEL, "update_rms": 1.0,
             **({"valid_loss": UNIGRAM_LEVEL} if step % 100 == 0 else {})}
            for step in range(10, 410, 10)]


def write_unigram_levels(results_dir: Path, table: str, cell_ids: list[str],
                         level: float = UNIGRAM_LEVEL) -> None:
    """<results_dir>/<table>/unigram.json as experiments.measure.unigram writes it."""
    atomic_write_json(results_dir / table / "unigram.json", {"levels": [
        {"settings": {"corpus": "embedded"}, "unigram_loss": level, "cells": sorted(cell_ids)}]})


def paper_like_results(results_dir: Path, flips: dict[str, float | str] | None = None) -> None:
    """Every Table 2 cell with the paper's BLEU, except the cells in ``flips``; a cell under
    5 BLEU stays on the unigram plateau, the others learn (rows A, G, B with an update_rms
    series), and the unigram level is recorded for every cell; Figure 1's two cells too."""
    flips = flips or {}
    cells = table_cells("table2")
    for cell in cells:
        bleu = flips.get(cell.cell_id, cell.paper_bleu)
        if bleu != "diverged" and float(bleu) < 5.0:
            write_result(results_dir, cell.cell_id, bleu, metrics=plateau_curve(),
                         valid_loss=UNIGRAM_LEVEL)
            continue
        metrics = curve(50.0 if cell.row == "A" else 5.0) if cell.row in ("A", "G", "B") else None
        write_result(results_dir, cell.cell_id, bleu, metrics=metrics)
    write_unigram_levels(results_dir, "table2", [c.cell_id for c in cells])
    for cell in table_cells("figure1"):  # Table 2's companion
        write_result(results_dir, cell.cell_id, cell.paper_bleu, steps=3000,
                     metrics=curve(50.0 if cell.row == "A" else 5.0))


# --- real processes: python -m reproduce, and the /proc process tree ---------------------------

REPO = Path(__file__).resolve().parents[1]
# A cell in a few seconds: 10 steps, checkpoints every 5, 8 BLEU sentences.
TINY_SET = {"steps": 10, "log_interval": 5, "val_interval": 5, "checkpoint_interval": 5,
            "eval_max_sentences": 8, "max_tokens": 512}


def set_args(settings: dict) -> list[str]:
    """``{"steps": 10}`` -> ``["--set", "steps=10"]`` (values as JSON)."""
    out: list[str] = []
    for key, value in settings.items():
        out += ["--set", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    return out


def reproduce_env(**extra: str) -> dict[str, str]:
    """The environment for a ``python -m reproduce`` subprocess: offline W&B, this checkout."""
    import os

    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", PYTHONWARNINGS="ignore",
               PYTHONPATH=str(REPO))
    env.pop("WANDB_API_KEY", None)
    env.update(extra)
    return env


def reproduce_cmd(*args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "reproduce", *args]


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a live process, from /proc; None if it is gone or a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), int(fields[19])


def descendants(pid: int) -> dict[int, int]:
    """Every live descendant of ``pid``: {pid: start time}."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                children.setdefault(stat[0], []).append(int(entry.name))
                starts[int(entry.name)] = stat[1]
    found: dict[int, int] = {}
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        if child not in found and child in starts:
            found[child] = starts[child]
            todo += children.get(child, [])
    return found


def survivors(processes: dict[int, int]) -> list[int]:
    """The processes of a ``descendants`` snapshot that still live (same pid and start time)."""
    alive = []
    for pid, start in processes.items():
        stat = _stat(pid)
        if stat is not None and stat[1] == start:
            alive.append(pid)
    return alive


def write_local_corpus(folder: Path, train: int = 3000, valid: int = 60) -> Path:
    """A ``corpus=local`` folder of <split>.{en,de} files cut from the embedded corpus."""
    from data.embedded import embedded_splits

    splits = embedded_splits()
    folder.mkdir(parents=True, exist_ok=True)
    for name, count in (("train", train), ("valid", valid)):
        pairs = splits[name][:count]
        (folder / f"{name}.en").write_text("".join(en + "\n" for en, _ in pairs))
        (folder / f"{name}.de").write_text("".join(de + "\n" for _, de in pairs))
    return folder
# --- gloo process groups spawned for real (the distributed Adafactor tests) -------------------


def free_port() -> int:
    """A TCP port free on localhost now (for a process group's rendezvous)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, fn, world: int, port: int, args: tuple) -> None:
    import os

    import torch
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        fn(rank, world, *args)
    finally:
        dist.destroy_process_group()


def spawn_gloo(fn, world: int, *args) -> None:
    """Run fn(rank, world, *args) in `world` spawned processes joined by a gloo process group.

    fn must be importable by name (a module-level function); a failure in any rank raises here.
    """
    import torch.multiprocessing as mp

    mp.start_processes(_rank_main, args=(fn, world, free_port(), args), nprocs=world,
                       start_method="spawn", join=True)


class CollectiveRecorder:
    """Records every c10d collective (op name, elements) dispatched while active: a counting
    wrapper independent of CommDebugMode."""

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode

        recorder = self
        self.calls: list[tuple[str, int]] = []

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                if func.namespace == "c10d" or "_c10d_functional" in func.namespace:
                    recorder.calls.append((func.__name__.split(".")[0], _numel(args)))
                return func(*args, **(kwargs or {}))

        self._mode = _Mode()

    def __enter__(self) -> CollectiveRecorder:
        self._mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._mode.__exit__(*exc)


def _numel(args) -> int:
    import torch

    if isinstance(args, torch.Tensor):
        return args.numel()
    if isinstance(args, (list, tuple)):
        return sum(_numel(a) for a in args)
    return 0
