"""How far fp32 summation order alone moves a short tiny-scale run: the bound of the FSDP2 test.

    python -m experiments.benchmarks.rounding_spread [--seeds 0,1,2] [--cell-row J] [--out DIR]

tests/test_models_fsdp.py compares ``reproduce run --strategy fsdp2`` on 2 processes with one
process accumulating the same 2 batches. They run the same math in another order (the DTensor
step and a gradient sum over ranks against the fused step), and 20 steps of warmup amplify the
difference. This script measures that amplification on the machine at hand, from runs that are
all correct: one process with Adafactor's two CPU implementations (fused_cpu, reference) and
fsdp2 on 2 gloo processes, for each seed; and, for scale, one process that sees only one of the
two batches per step (a wiring bug). It prints the relative differences of the train loss at
steps 10 and 20 and of the final valid loss, and the spread between the implementations.

The implementation is forced in the child process (``--child IMPL``) by changing
``adafactor.Adafactor``'s default before ``reproduce run`` starts, since a cell has no setting
for it: every cell of the grid runs the default, "auto" (the fused step on CPU).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import runpy
import subprocess
import sys
import tempfile
from pathlib import Path

from experiments.store.files import read_json, read_metrics

REPO = Path(__file__).resolve().parents[2]
IMPLEMENTATIONS = ("fused_cpu", "reference")
# The settings of the runs (and of tests/test_models_fsdp.py's Lightning runs).
OVERRIDES = {"steps": 20, "log_interval": 10, "val_interval": 10, "checkpoint_interval": 10,
             "eval_max_sentences": 24, "max_tokens": 512, "time_rescale": None}


def _child(implementation: str, argv: list[str]) -> None:
    """Run ``python -m reproduce argv`` with Adafactor's default implementation replaced."""
    import adafactor.optimizer as optimizer_module

    original = optimizer_module.Adafactor.__init__

    @functools.wraps(original)
    def init(self, *args, **kwargs):
        kwargs["implementation"] = implementation
        original(self, *args, **kwargs)

    optimizer_module.Adafactor.__init__ = init
    sys.argv = ["reproduce", *argv]
    runpy.run_module("reproduce", run_name="__main__", alter_sys=True)


def run_args(cell: str, results: Path, cache: Path, *extra: str) -> list[str]:
    """What follows ``python -m reproduce`` for one 20-step tiny run of ``cell`` on the CPU
    (tests/test_models_fsdp.py runs the same)."""
    argv = ["run", cell, "--scale", "tiny", "--results-dir", str(results), "--cache-dir",
            str(cache), "--accelerator", "cpu", "--no-wandb"]
    for key, value in OVERRIDES.items():
        argv += ["--set", f"{key}={json.dumps(value)}"]
    return argv + list(extra)


def _run(cell: str, results: Path, cache: Path, implementation: str | None,
         extra: list[str]) -> dict[str, float]:
    """One cell run; its train losses by step and its final valid loss."""
    argv = run_args(cell, results, cache, *extra)
    if implementation is None:
        cmd = [sys.executable, "-m", "reproduce", *argv]
    else:
        cmd = [sys.executable, "-m", "experiments.benchmarks.rounding_spread", "--child",
               implementation, *argv]
    env = dict(os.environ, WANDB_MODE="offline", PYTHONWARNINGS="ignore")
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    rows = [r for r in read_metrics(results / cell / "metrics.jsonl") if "train_loss" in r]
    out = {f"train_loss@{r['step']}": r["train_loss"] for r in rows}
    return out | {"valid_loss": read_json(results / cell / "result.json")["valid_loss"]}


def relative_difference(a: dict[str, float], b: dict[str, float]) -> float:
    """The largest |a - b| / |b| over the quantities both runs report."""
    return max(abs(a[k] - b[k]) / abs(b[k]) for k in b)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--child"]:
        _child(args[1], args[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--cell-row", default="J")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: temp)")
    opts = parser.parse_args(args)
    out = opts.out or Path(tempfile.mkdtemp(prefix="rounding-spread-"))
    cache = out / "cache"
    print(f"load average {os.getloadavg()}; results under {out}")
    spread = 0.0
    for seed in (int(s) for s in opts.seeds.split(",")):
        cell = f"table2/{opts.cell_row}/warmup/seed{seed}"
        runs = {impl: _run(cell, out / f"{impl}-{seed}", cache, impl,
                           ["--set", "accumulate_grad_batches=2"]) for impl in IMPLEMENTATIONS}
        runs["fsdp2"] = _run(cell, out / f"fsdp2-{seed}", cache, None,
                             ["--devices", "2", "--strategy", "fsdp2"])
        for name, run in runs.items():
            print(f"{cell} {name:9s} " + " ".join(f"{k} {v:.9f}" for k, v in run.items()))
        for a, b in itertools.combinations(IMPLEMENTATIONS, 2):
            d = relative_difference(runs[a], runs[b])
            spread = max(spread, d)
            print(f"  {a} vs {b}: {d:.3g}")
        for impl in IMPLEMENTATIONS:
            print(f"  fsdp2 vs {impl}: {relative_difference(runs['fsdp2'], runs[impl]):.3g}")
        if seed == 0:
            bug = _run(cell, out / "one-batch-0", cache, None, [])
            print(f"  one of the 2 batches per step vs fused_cpu: "
                  f"{relative_difference(bug, runs['fused_cpu']):.3g}")
    print(f"spread among the implementations: {spread:.3g} (4x: {4 * spread:.3g}); "
          f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
