"""The curve collapse rule on synthetic curves, and the unigram level it compares with."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from experiments.measure.unigram import preset_unigram_level, unigram_loss
from experiments.scales import scale_preset
from models.loss import label_smoothed_cross_entropy
from reproduce.render.collapse_curve import (
    COLLAPSED,
    DIVERGED,
    SLOW,
    TRAINED,
    curve_verdict,
    loss_curve,
    run_verdict,
)

UNIGRAM = 4.6


def test_non_finite_loss_is_diverged() -> None:
    verdict = curve_verdict([3.0, 2.0, float("nan")], UNIGRAM)
    assert verdict.verdict == DIVERGED and verdict.collapsed
    assert curve_verdict([3.0, 2.0], UNIGRAM, stopped=True).verdict == DIVERGED
    assert curve_verdict([3.0, float("inf"), 1.0], UNIGRAM).verdict == DIVERGED


def test_giving_back_more_than_half_the_progress_and_staying_is_collapse() -> None:
    # 4.0 -> 1.0 (progress 3.0), back up to 3.0 > 1.0 + 1.5 and it stays there.
    verdict = curve_verdict([4.0, 2.0, 1.0, 3.0, 3.2, 3.1], UNIGRAM)
    assert verdict.verdict == COLLAPSED and "gave back" in verdict.reason


def test_a_spike_that_recovers_is_not_collapse() -> None:
    verdict = curve_verdict([4.0, 2.0, 1.0, 3.5, 1.0, 0.995], UNIGRAM)
    assert verdict.verdict == TRAINED
    # Giving back less than half the progress is no collapse either (and it is not falling).
    assert curve_verdict([4.0, 2.0, 1.0, 2.2, 2.2], UNIGRAM).verdict == TRAINED


def test_ending_near_the_unigram_level_is_collapse() -> None:
    verdict = curve_verdict([4.9, 4.5, 4.3, 4.2], UNIGRAM)  # 4.2 >= 0.9 * 4.6 = 4.14
    assert verdict.verdict == COLLAPSED and "unigram" in verdict.reason
    assert curve_verdict([4.9, 4.5, 4.3, 4.1], UNIGRAM).verdict == SLOW


def test_still_falling_by_more_than_one_percent_is_slow_not_collapsed() -> None:
    verdict = curve_verdict([4.0, 3.0, 2.5, 2.0], UNIGRAM)
    assert verdict.verdict == SLOW and not verdict.collapsed
    assert curve_verdict([4.0, 3.0, 2.0, 1.99], UNIGRAM).verdict == TRAINED
    assert curve_verdict([2.0], UNIGRAM).verdict == TRAINED


def test_bad_unigram_level_is_an_error() -> None:
    with pytest.raises(ValueError, match="unigram level"):
        curve_verdict([1.0], 0.0)


def test_loss_curve_reads_metrics_with_the_final_row_last() -> None:
    records = [{"step": 100, "valid_loss": 3.0, "train_loss": 3.1},
               {"step": 200, "valid_loss": 2.0},
               {"step": 200, "final": True, "valid_loss": 1.9}, {"step": 10, "train_loss": 5.0}]
    assert loss_curve(records) == ([3.0, 2.0, 1.9], False)
    diverged = [{"step": 30, "train_loss": "nan", "diverged": True}]
    assert loss_curve(diverged, {"status": "diverged"}) == ([], True)
    assert loss_curve([], {"status": "ok", "valid_loss": 2.5}) == ([2.5], False)


def test_a_diverged_verdict_says_which_stop_ended_the_run() -> None:
    blown = {"status": "diverged", "diverged_reason": "training loss 14.2 > 2 x the first "
             "batch's 6.9"}
    assert run_verdict([], blown, UNIGRAM).reason == blown["diverged_reason"]
    assert run_verdict([], blown, None).reason == blown["diverged_reason"]
    assert "non-finite, or past the blow-up factor" in run_verdict(
        [], {"status": "diverged"}, UNIGRAM).reason  # a result from before the field
    nan_curve = curve_verdict([3.0, float("nan")], UNIGRAM, stopped=True,
                              stop_reason="anything")
    assert nan_curve.reason == "non-finite loss (point 2 of 2)"


def test_unigram_loss_is_the_model_loss_of_unigram_logits() -> None:
    train, held_out, vocab, eos = [[2, 3, 3], [4, 2]], [[3, 2], [5]], 7, 1
    ours = unigram_loss(train, held_out, vocab, eos_id=eos, smoothing=0.1)
    counts = torch.zeros(vocab, dtype=torch.float64)
    for seq in train:
        for t in [*seq, eos]:
            counts[t] += 1
    log_p = torch.log((counts + 0.5) / (counts + 0.5).sum())
    targets = torch.tensor([3, 2, eos, 5, eos])
    loss, _, n = label_smoothed_cross_entropy(log_p.expand(len(targets), vocab), targets, 0.1, 0)
    assert ours == pytest.approx(float(loss / n), rel=1e-6)


def test_unigram_level_of_the_embedded_corpus(tmp_path: Path) -> None:
    level = preset_unigram_level(scale_preset("tiny"), tmp_path / "vocab")
    assert level["corpus"] == "embedded" and level["eval_sentences"] == 200
    # Better than a uniform guess over the vocabulary, far worse than a trained tiny model (~1.5).
    assert 3.0 < level["unigram_loss"] < math.log(level["vocab_size"])
