"""Label-smoothed cross entropy as in T2T (``smoothing_cross_entropy``), returning sums.

The soft target puts ``1 - smoothing`` on the gold token and ``smoothing / (V - 1)`` on each of the
other V - 1 tokens, padding included (T2T does not exclude it). Like T2T, the entropy of that soft
target is subtracted, so the loss is KL(soft target || model): 0 for a perfect fit, same gradients
as the plain soft-target cross entropy. Positions whose target is ``pad_id`` are ignored.
Sums (not means) are returned so that data-parallel ranks can add them before dividing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _soft_target_entropy(confidence: float, low_confidence: float, vocab_size: int) -> float:
    entropy = -confidence * math.log(confidence) if confidence > 0 else 0.0
    if low_confidence > 0:
        entropy -= (vocab_size - 1) * low_confidence * math.log(low_confidence)
    return entropy


def label_smoothed_cross_entropy(
    logits: Tensor, target: Tensor, smoothing: float, pad_id: int
) -> tuple[Tensor, Tensor, Tensor]:
    """(smoothed loss summed over non-pad targets, NLL summed, number of non-pad targets).

    ``logits``: [..., V] (any float dtype; computed in fp32). ``target``: [...] token ids.
    """
    if logits.shape[:-1] != target.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and target {tuple(target.shape)} shapes do not match "
            "(expected logits [..., V] and target [...])"
        )
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    vocab_size = logits.shape[-1]
    if vocab_size < 2:
        raise ValueError(f"label smoothing needs a vocabulary of at least 2, got {vocab_size}")
    log_probs = F.log_softmax(logits.float(), dim=-1)
    keep = target != pad_id
    safe_target = target.masked_fill(~keep, 0).unsqueeze(-1)
    nll = -log_probs.gather(-1, safe_target).squeeze(-1)
    confidence = 1.0 - smoothing
    low_confidence = smoothing / (vocab_size - 1)
    if smoothing > 0:
        sum_neg_log_probs = -log_probs.sum(dim=-1)
        cross_entropy = confidence * nll + low_confidence * (sum_neg_log_probs - nll)
    else:
        cross_entropy = nll
    loss = cross_entropy - _soft_target_entropy(confidence, low_confidence, vocab_size)
    zero = torch.zeros((), dtype=loss.dtype, device=loss.device)
    return (
        torch.where(keep, loss, zero).sum(),
        torch.where(keep, nll, zero).sum(),
        keep.sum(),
    )
