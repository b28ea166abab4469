"""The sampler's length sort on a WMT-sized length list: radix sorts against the int64-key sort.

    python -m experiments.benchmarks.length_order [--n 4500000] [--repeats 7]

`data.batching.TokenBudgetBatchSampler` sorts every example by (source length, target length,
tie) once when it is built (ties by index) and once per epoch (ties by a seeded permutation);
at 4.5M pairs that sort is most of the sampler's set-up before the first step. The lengths are
drawn log-normally (median 25 tokens, clipped to 3..256, the target 0.8-1.3x the source), like
WMT14's. Each round times the three ways in turn, in one process; the medians and the
ratios go to stdout with the load average, and each way's peak allocation (tracemalloc, in a
separate untimed call) with what the order it returns holds. All three give the same order
(checked).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import tracemalloc

import numpy as np

from data.batching import key_length_order, radix_length_order


def lengths(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    src = np.clip(rng.lognormal(np.log(25), 0.6, n), 3, 256).astype(np.int64)
    tgt = np.clip(src * rng.uniform(0.8, 1.3, n), 3, 256).astype(np.int64)
    return src, tgt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=4_500_000)
    parser.add_argument("--repeats", type=int, default=7)
    opts = parser.parse_args(argv)
    src, tgt = lengths(opts.n)
    ties = {"by index (set-up)": None,
            "by permutation (epoch)": np.random.default_rng(1).permutation(opts.n)}
    ways = {"radix (length_order)": radix_length_order, "int64 key": key_length_order,
            "np.lexsort": lambda s, t, tie: np.lexsort((np.arange(len(s)) if tie is None
                                                        else tie, t, s))}
    print(f"n = {opts.n:,}; load average before {os.getloadavg()}")
    for label, tie in ties.items():
        times: dict[str, list[float]] = {w: [] for w in ways}
        orders = {}
        for _ in range(opts.repeats):
            for way, fn in ways.items():
                start = time.perf_counter()
                orders[way] = fn(src, tgt, tie)
                times[way].append(time.perf_counter() - start)
        first = next(iter(orders.values()))
        assert all(np.array_equal(first, o) for o in orders.values()), "the orders differ"
        base = statistics.median(times["radix (length_order)"])
        for way, ts in times.items():
            med = statistics.median(ts)
            del orders[way]
            tracemalloc.start()
            order = ways[way](src, tgt, tie)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(f"ties {label:24s} {way:22s} median {med * 1e3:7.1f} ms "
                  f"({min(ts) * 1e3:.1f}-{max(ts) * 1e3:.1f}), {med / base:.2f}x radix; "
                  f"peak {peak / 1e6:.0f} MB, the order {order.nbytes / 1e6:.0f} MB")
            del order
    print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
