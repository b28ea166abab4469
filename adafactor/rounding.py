"""Writing fp32 results back into bf16 parameters with keyed stochastic rounding.

bf16 keeps 8 mantissa bits, so a small update (say 1e-4 relative) rounds back to the old value
under round-to-nearest and training silently stalls. Stochastic rounding rounds up with probability
equal to the dropped fraction, so the expected stored value equals the fp32 result (the paper's
reference code used randomized rounding for bf16 weights for the same reason).
"""

from __future__ import annotations

import itertools

import torch

_LOW_HALF_MASK = -65536  # 0xFFFF0000 as int32: keeps sign, exponent and the 7 bf16 mantissa bits


# ---- counter-based rounding noise ------------------------------------------------------------
# Noise for element e of a tensor at step t is a hash of (the tensor's rounding key, t, e): no
# generator state, so it is the same on every path (this module's torch ops, the fused kernel's
# C++), independent of thread scheduling, and distinct per parameter, step and optimizer.
_M32 = 0xFFFFFFFF
IntLike = int | torch.Tensor  # a Python int, or an int64 tensor (a graph value under compile)
_KEY_COUNTER = itertools.count()


def mix32(x: IntLike) -> IntLike:
    """The "lowbias32" integer hash on uint32 values held in Python ints or int64 tensors (every
    product is masked back to 32 bits, so int64 never overflows)."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def step_seeds(key: int, step: IntLike) -> tuple[IntLike, IntLike]:
    """The two 32-bit seeds of one tensor's rounding noise at one step."""
    a = mix32((step & _M32) ^ 0x9E3779B9)
    s0 = mix32((key & _M32) ^ a)
    s1 = mix32(((key >> 32) & _M32) ^ mix32(s0 ^ ((step >> 32) & _M32) ^ 0x85EBCA6B))
    return s0, s1


def rounding_noise(numel: int, key: int, step: IntLike, device: torch.device) -> torch.Tensor:
    """16 uniform random bits (int32 in [0, 2^16)) per element, from (key, step, element index);
    the same bits the fused kernel uses."""
    return noise_at(torch.arange(numel, dtype=torch.int64, device=device), key, step)


def noise_at(index: torch.Tensor, key: int, step: IntLike) -> torch.Tensor:
    """`rounding_noise` of the elements at `index` (int64 flat indices into the whole tensor):
    a shard draws the bits its elements would get unsharded."""
    s0, s1 = step_seeds(key, step)
    return (mix32((mix32((index & _M32) ^ s0) + s1) & _M32) >> 16).to(torch.int32)


def new_key_base() -> int:
    """A 63-bit base for an optimizer's rounding keys: distinct per optimizer in a process (a
    counter) and reproducible from torch.initial_seed(); parameter i gets base + i."""
    seed, count = torch.initial_seed() & ((1 << 64) - 1), next(_KEY_COUNTER)
    hi = mix32((seed >> 32) ^ mix32(count & _M32))
    lo = mix32((seed & _M32) ^ mix32(hi ^ 0x27D4EB2F))
    return ((hi << 32) | lo) & ((1 << 62) - 1)


def copy_keyed_rounded_(
    dst: torch.Tensor, src: torch.Tensor, key: int, step: IntLike,
    index: torch.Tensor | None = None,
) -> torch.Tensor:
    """dst (bf16) <- src (fp32) with unbiased stochastic rounding whose noise is
    `rounding_noise(key, step)` (compiles without graph breaks: no generator). `index` (the
    shape of src): each element's flat index in the whole tensor, when src is a shard of it."""
    if isinstance(step, torch.Tensor):
        step = step.to(device=src.device, dtype=torch.int64)
    bits = src.contiguous().view(torch.int32)
    if index is None:
        noise = rounding_noise(src.numel(), key, step, src.device).view(src.shape)
    else:
        noise = noise_at(index, key, step)
    dst.copy_(((bits + noise) & _LOW_HALF_MASK).view(torch.float32))
    return dst
