"""Writing fp32 results back into low-precision parameters.

bf16 keeps 8 mantissa bits, so a small update (say 1e-4 relative) rounds back to the old value
under round-to-nearest and training silently stalls. Stochastic rounding rounds up with probability
equal to the dropped fraction, so the expected stored value equals the fp32 result (the paper's
reference code used randomized rounding for bf16 weights for the same reason).
"""

from __future__ import annotations

import torch

_LOW_HALF_MASK = -65536  # 0xFFFF0000 as int32: keeps sign, exponent and the 7 bf16 mantissa bits


def copy_stochastically_rounded_(
    dst: torch.Tensor, src: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """dst (bf16) <- src (fp32) with unbiased stochastic rounding; returns dst.

    Adding uniform random bits below bf16's last mantissa bit to the fp32 bit pattern and truncating
    rounds the magnitude up with probability (dropped part / ulp); signs are handled by the sign-
    magnitude layout. Uses `generator`, or the global torch RNG of src's device.
    """
    if dst.dtype != torch.bfloat16 or src.dtype != torch.float32:
        raise TypeError(f"expects bf16 dst and fp32 src, got {dst.dtype} and {src.dtype}")
    src = src.contiguous()
    bits = src.view(torch.int32)
    noise = torch.randint(
        0, 1 << 16, src.shape, dtype=torch.int32, device=src.device, generator=generator
    )
    noise.add_(bits).bitwise_and_(_LOW_HALF_MASK)
    # The low 16 bits are now zero, so the fp32 -> bf16 conversion below is exact.
    dst.copy_(noise.view(torch.float32))
    return dst


def write_back_(
    dst: torch.Tensor,
    src32: torch.Tensor,
    stochastic_rounding: bool,
    generator: torch.Generator | None = None,
) -> None:
    """Store an fp32 result into a parameter of any float dtype (no-op when src32 is dst)."""
    if src32 is dst:
        return
    if dst.dtype == torch.bfloat16 and stochastic_rounding:
        copy_stochastically_rounded_(dst, src32, generator)
    else:
        dst.copy_(src32)
