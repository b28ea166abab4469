"""Which floating-point arithmetic a cell ran on, recorded beside its numbers.

The same code and seed give bit-identical results on one machine, but not across CPUs: torch
picks its vectorised kernels by the CPU's instruction set (``AVX2``, ``AVX512``) and MKL its
code paths by CPU model, and a cell on a slow plateau (the tiny table's row A at 400 steps)
turns that rounding difference into several BLEU. The signature says which arithmetic produced
a committed number, so a check that wants the same digits knows when it may ask for them.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


@functools.lru_cache(maxsize=1)
def numerics_signature() -> str:
    """'torch <version>; <capability>; <CPU model>[; <GPU name>]', e.g.
    'torch 2.13.0+cpu; AVX512; Intel(R) Xeon(R) Processor'."""
    import torch

    parts = [f"torch {torch.__version__}", torch.backends.cpu.get_cpu_capability(), _cpu_model()]
    if torch.cuda.is_available():
        parts.append(torch.cuda.get_device_name(0))
    return "; ".join(parts)
