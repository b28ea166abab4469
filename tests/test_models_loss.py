"""Label-smoothed cross entropy (T2T style) returning sums and token counts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.loss import label_smoothed_cross_entropy

PAD = 0


def _reference(logits: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
    """Soft-target cross entropy minus the soft target's entropy, per position (explicit)."""
    vocab = logits.shape[-1]
    soft = torch.full(logits.shape, eps / (vocab - 1), dtype=torch.float64)
    soft.scatter_(-1, target.unsqueeze(-1), 1.0 - eps)
    log_probs = F.log_softmax(logits.double(), dim=-1)
    cross_entropy = -(soft * log_probs).sum(-1)
    entropy = -(soft * soft.log()).sum(-1)
    return cross_entropy - entropy


def test_matches_explicit_soft_target_kl_and_ignores_pad() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11)
    target = torch.randint(1, 11, (3, 5))
    target[0, 3:] = PAD
    target[2, 1:] = PAD
    loss, nll, tokens = label_smoothed_cross_entropy(logits, target, 0.1, PAD)
    keep = target != PAD
    expected = _reference(logits, target, 0.1)[keep].sum()
    assert tokens.item() == keep.sum().item() == 9
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    expected_nll = F.cross_entropy(logits[keep], target[keep], reduction="sum")
    assert nll.item() == pytest.approx(expected_nll.item(), rel=1e-5)


def test_no_smoothing_is_plain_cross_entropy() -> None:
    torch.manual_seed(1)
    logits, target = torch.randn(4, 7), torch.randint(1, 7, (4,))
    loss, nll, _ = label_smoothed_cross_entropy(logits, target, 0.0, PAD)
    expected = F.cross_entropy(logits, target, reduction="sum")
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert nll.item() == pytest.approx(expected.item(), rel=1e-6)


def test_minimum_is_zero_at_the_smoothed_distribution() -> None:
    vocab, eps = 9, 0.1
    target = torch.tensor([3, 5])
    soft = torch.full((2, vocab), eps / (vocab - 1))
    soft[torch.arange(2), target] = 1 - eps
    loss, nll, _ = label_smoothed_cross_entropy(soft.log(), target, eps, PAD)
    assert loss.item() == pytest.approx(0.0, abs=1e-5)
    assert nll.item() == pytest.approx(-2 * math.log(1 - eps), rel=1e-5)


def test_pad_receives_smoothing_mass_in_the_gradient() -> None:
    logits = torch.zeros(1, 6, requires_grad=True)
    loss, _, _ = label_smoothed_cross_entropy(logits, torch.tensor([3]), 0.1, PAD)
    loss.backward()
    # d loss / d logit_j = softmax_j - soft_j: the pad column has soft target 0.1 / 5 too.
    assert logits.grad[0, PAD].item() == pytest.approx(1 / 6 - 0.1 / 5, rel=1e-5)


def test_gradient_is_zero_for_pad_positions() -> None:
    logits = torch.randn(2, 3, 5, requires_grad=True)
    target = torch.tensor([[1, 2, PAD], [PAD, PAD, PAD]])
    loss, _, tokens = label_smoothed_cross_entropy(logits, target, 0.1, PAD)
    loss.backward()
    assert tokens.item() == 2
    assert logits.grad[0, 2].abs().sum() == 0 and logits.grad[1].abs().sum() == 0
    assert logits.grad[0, 0].abs().sum() > 0


def test_sums_over_shards_add_up() -> None:
    torch.manual_seed(2)
    logits, target = torch.randn(6, 4, 13), torch.randint(0, 13, (6, 4))
    whole = label_smoothed_cross_entropy(logits, target, 0.1, PAD)
    halves = [label_smoothed_cross_entropy(logits[s], target[s], 0.1, PAD)
              for s in (slice(0, 3), slice(3, 6))]
    for i in range(3):
        assert (halves[0][i] + halves[1][i]).item() == pytest.approx(whole[i].item(), rel=1e-5)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="shapes do not match"):
        label_smoothed_cross_entropy(torch.randn(2, 3, 5), torch.zeros(2, 4, dtype=torch.long),
                                     0.1, PAD)
    with pytest.raises(ValueError, match="smoothing"):
        label_smoothed_cross_entropy(torch.randn(2, 5), torch.zeros(2, dtype=torch.long), 1.0, PAD)
