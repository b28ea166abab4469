"""The sampler's set-up sort on a WMT-sized length list: radix sorts against the int64-key sort.

    python -m experiments.benchmarks.length_order [--n 4500000] [--repeats 7]

`data.batching.TokenBudgetBatchSampler` sorts every example by (source length, target length,
index) when it is built, to cut the batches; at 4.5M pairs that sort was most of the sampler's
set-up before the first step. The lengths are drawn log-normally (median 25 tokens, clipped to
3..256, the target 0.8-1.3x the source), like WMT14's. Each round times the three ways in turn,
in one process; the medians and ratios go to stdout with the load average. Each way's peak RSS
rise is measured in a fresh process of its own (``--child WAY``: the lengths, then VmHWM reset
through /proc/self/clear_refs, then one sort; NumPy's sort buffers are not seen by tracemalloc,
and a process that has sorted before reuses freed pages). All three give the same order.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from data.batching import key_length_order, radix_length_order


def lengths(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    src = np.clip(rng.lognormal(np.log(25), 0.6, n), 3, 256).astype(np.int64)
    tgt = np.clip(src * rng.uniform(0.8, 1.3, n), 3, 256).astype(np.int64)
    return src, tgt


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1e3
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_rise_mb(fn: Callable[[], object]) -> float:
    """How far the process's peak RSS rises above its current RSS while ``fn()`` runs."""
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = _status_mb("VmRSS")
    result = fn()
    rise = _status_mb("VmHWM") - before
    del result
    return rise


def _child_rise(way: str, n: int) -> float:
    out = subprocess.run([sys.executable, "-m", "experiments.benchmarks.length_order", "--n",
                          str(n), "--child", way], check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


WAYS = {
    "radix (length_order)": radix_length_order,
    "int64 key": lambda s, t: key_length_order(s, t, None),
    "np.lexsort": lambda s, t: np.lexsort((np.arange(len(s)), t, s)),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=4_500_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--child", choices=list(WAYS), help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    src, tgt = lengths(opts.n)
    if opts.child:
        print(peak_rise_mb(lambda: WAYS[opts.child](src, tgt)))
        return
    print(f"n = {opts.n:,}; load average before {os.getloadavg()}")
    times: dict[str, list[float]] = {w: [] for w in WAYS}
    orders = {}
    for _ in range(opts.repeats):
        for way, fn in WAYS.items():
            start = time.perf_counter()
            orders[way] = fn(src, tgt)
            times[way].append(time.perf_counter() - start)
    first = orders.pop("np.lexsort")
    assert all(np.array_equal(first, o) for o in orders.values()), "the orders differ"
    orders.clear()
    del first
    base = statistics.median(times["radix (length_order)"])
    for way in WAYS:
        med, ts = statistics.median(times[way]), times[way]
        rise = _child_rise(way, opts.n)
        print(f"{way:22s} median {med * 1e3:7.1f} ms ({min(ts) * 1e3:.1f}-{max(ts) * 1e3:.1f}), "
              f"{med / base:.2f}x radix; peak RSS rise {rise:.0f} MB")
    print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
