"""Optimizer-state memory of Adafactor vs Adam (and the frontier's other optimizers), measured.

``python -m experiments.measure.optimizer_state [--scales tiny base] [--rows B O ...] [--json]``
builds each preset's Transformer (vocabulary size from the scale preset: tiny 1,000, base 32,768),
builds the row's optimizer exactly as a grid cell does, takes one real optimizer step on CPU (a
forward and backward pass over a small random batch) and reports
``adafactor.optimizer_state_bytes``: the bytes of every tensor in the optimizer's state after that
step. ``--frontier`` does the same for every optimizer of the frontier grid
(experiments.grid.frontier), with the frontier's model settings. ``measure_base_state`` keeps the
frontier's Transformer-base numbers in ``<results_dir>/frontier/base_state_bytes.json`` for
paper_tables/frontier.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch

from adafactor import optimizer_state_bytes
from experiments.grid import TABLE2
from experiments.grid.cells import Cell
from experiments.grid.frontier import FRONTIER, FRONTIER_OPTIMIZERS, FRONTIER_ROWS, frontier_cell
from experiments.optimizers import build_optimizer
from experiments.scales import scale_preset
from experiments.store.files import atomic_write_json
from experiments.store.prepared import base_state_path, load_base_state
from models.loss import label_smoothed_cross_entropy
from models.presets import model_config
from models.transformer import Transformer

DEFAULT_ROWS = ("B", "A", "C", "J", "O", "P")


def measure(scale: str, row: str, *, batch: int = 2, length: int = 8) -> dict[str, Any]:
    """State bytes of Table 2 ``row``'s optimizer on ``scale``'s model after one CPU step."""
    cell = TABLE2.cell(row, "warmup", 0)
    return {"row": row, **measure_cell(scale, cell, batch=batch, length=length)}


def measure_frontier(scale: str, name: str, *, batch: int = 2, length: int = 8) -> dict[str, Any]:
    """State bytes of frontier optimizer ``name`` on ``scale``'s model after one CPU step."""
    cell = frontier_cell(name, FRONTIER_OPTIMIZERS[name].peaks[0], 0)
    return {"row": name, **measure_cell(scale, cell, batch=batch, length=length)}


def measure_cell(scale: str, cell: Cell, *, batch: int = 2, length: int = 8) -> dict[str, Any]:
    """State bytes of ``cell``'s optimizer on ``scale``'s model (with the cell's model settings)
    after one CPU step."""
    preset = scale_preset(scale)
    cfg = model_config(preset.model, preset.vocab_size,
                       **{**preset.model_overrides, **cell.model_overrides})
    torch.manual_seed(0)
    model = Transformer(cfg, pad_id=0)
    optimizer = build_optimizer(model.named_parameters(), cell.optimizer, cell.schedule,
                                track_stats=False, model_cfg=cfg)
    for group in optimizer.param_groups:
        group["lr"] = 1e-4
    src = torch.randint(4, cfg.vocab_size, (batch, length))
    tgt = torch.randint(4, cfg.vocab_size, (batch, length + 1))
    loss, _, n_tokens = label_smoothed_cross_entropy(
        model(src, tgt[:, :-1]), tgt[:, 1:], cfg.label_smoothing, 0)
    (loss / n_tokens).backward()
    optimizer.step()
    n_params = sum(p.numel() for p in model.parameters())
    state = optimizer_state_bytes(optimizer)
    return {
        "scale": scale,
        "optimizer": cell.description,
        "parameters": n_params,
        "parameter_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
        "optimizer_state_bytes": state,
        "state_bytes_per_parameter": state / n_params,
    }


def measure_base_state(results_dir: Path, names: Sequence[str] | None = None,
                       log: Callable[[str], Any] | None = None) -> Path:
    """Measure (one CPU step on Transformer base) the frontier optimizers of ``names`` (default
    all) that ``<results_dir>/frontier/base_state_bytes.json`` lacks; the file is rewritten
    atomically after each one, so an interrupted run keeps what it measured."""
    names = FRONTIER_ROWS if names is None else tuple(names)
    unknown = [n for n in names if n not in FRONTIER_OPTIMIZERS]
    if unknown:
        raise ValueError(f"unknown frontier optimizer(s) {', '.join(map(repr, unknown))}; "
                         f"valid: {', '.join(FRONTIER_ROWS)}")
    log = log or partial(print, flush=True)
    path = base_state_path(results_dir, FRONTIER)
    state = load_base_state(results_dir, FRONTIER) or {}
    for name in names:
        if name in state:
            continue
        log(f"measuring {name}'s optimizer state on Transformer base (one CPU step)")
        measured = measure_frontier("base", name)
        state[name] = {"state_bytes": measured["optimizer_state_bytes"],
                       "parameters": measured["parameters"]}
        atomic_write_json(path, state)
    return path


def _format(rows: list[dict[str, Any]]) -> str:
    lines = ["| scale | row | parameters | optimizer-state bytes | bytes/param | optimizer |",
             "|---|---|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['scale']} | {r['row']} | {r['parameters']:,} | "
                     f"{r['optimizer_state_bytes']:,} | {r['state_bytes_per_parameter']:.4f} | "
                     f"{r['optimizer']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.measure.optimizer_state",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--scales", nargs="+", default=["tiny", "base"])
    parser.add_argument("--rows", nargs="+", default=list(DEFAULT_ROWS))
    parser.add_argument("--frontier", action="store_true",
                        help="measure the frontier grid's optimizers instead of Table 2 rows")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args(argv)
    if args.frontier:
        rows = [measure_frontier(scale, name) for scale in args.scales for name in FRONTIER_ROWS]
    else:
        rows = [measure(scale, row) for scale in args.scales for row in args.rows]
    if args.json:
        for r in rows:
            print(json.dumps(r))
    else:
        print(_format(rows))
        for scale in args.scales:
            by_row = {r["row"]: r for r in rows if r["scale"] == scale}
            if "B" in by_row and "O" in by_row:
                ratio = by_row["O"]["optimizer_state_bytes"] / by_row["B"]["optimizer_state_bytes"]
                print(f"{scale}: Adafactor (row O) state = {ratio:.4%} of Adam (row B) state")
    return 0


if __name__ == "__main__":
    sys.exit(main())
