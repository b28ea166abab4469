"""Scale presets (fail-loud overrides) and the time-rescaled paper schedules."""

from __future__ import annotations

import math

import pytest

from experiments.optimizers import step_size_schedule
from experiments.scales import PAPER_STEPS, scale_preset


def test_base_is_the_paper() -> None:
    base = scale_preset("base")
    assert (base.corpus, base.vocab_size, base.steps, base.max_tokens) == (
        "wmt14", 32_768, 100_000, 4096)
    assert (base.decode, base.beam_size, base.length_penalty, base.eval_split) == (
        "beam", 4, 0.6, "valid")
    assert base.paper_time_factor == 1.0 and base.lr_scale == 1.0


def test_small_is_multi30k_and_tiny_is_embedded() -> None:
    assert scale_preset("small").corpus == "multi30k"
    tiny = scale_preset("tiny")
    assert tiny.corpus == "embedded"
    # tiny: the paper's first 20k steps of schedule in 400 steps (warmup/plateau = first half)
    assert tiny.paper_time_factor == 50.0 and tiny.steps == 400
    assert scale_preset("small").paper_time_factor == PAPER_STEPS / scale_preset("small").steps


def test_overrides_apply_and_rescale_time() -> None:
    p = scale_preset("tiny", steps=50, log_interval=5, checkpoint_interval=25, time_rescale=None)
    assert p.steps == 50 and p.paper_time_factor == PAPER_STEPS / 50
    assert scale_preset("tiny", time_rescale=3.0).paper_time_factor == 3.0


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"stepz": 3}, ValueError, "unknown scale override 'stepz'"),
        ({"steps": "100"}, TypeError, "'steps' must be int"),
        ({"steps": 1.5}, TypeError, "'steps' must be int"),
        ({"lr_scale": True}, TypeError, "'lr_scale' must be float"),
        ({"decode": "sample"}, ValueError, "'decode' = 'sample': allowed is one of beam, greedy"),
        ({"steps": 0}, ValueError, "'steps' = 0: allowed is a finite number >= 1"),
        ({"checkpoint_interval": 15, "log_interval": 10}, ValueError, "multiple of log_interval"),
    ],
)
def test_bad_overrides_fail_loud(overrides, error, message: str) -> None:
    with pytest.raises(error, match=message):
        scale_preset("tiny", **overrides)


def test_unknown_scale() -> None:
    with pytest.raises(ValueError, match=r"unknown scale 'huge'.*tiny, small, base"):
        scale_preset("huge")


def test_paper_schedules_at_base_scale() -> None:
    warm = step_size_schedule({"kind": "absolute", "multiplier": 0.1, "warmup": True})
    cold = step_size_schedule({"kind": "absolute", "multiplier": 0.1, "warmup": False})
    assert warm(1) == pytest.approx(1e-7)
    assert warm(10_000) == pytest.approx(1e-3)
    assert warm(40_000) == pytest.approx(0.1 / 200)
    assert cold(1) == pytest.approx(1e-3) and cold(10_000) == pytest.approx(1e-3)
    assert cold(100_000) == pytest.approx(0.1 / math.sqrt(100_000))
    rel = step_size_schedule({"kind": "relative", "multiplier": 1.0, "warmup": False})
    assert rel(1) == pytest.approx(1e-2) and rel(40_000) == pytest.approx(1 / 200)
    sgd = step_size_schedule({"kind": "sgd", "multiplier": 150.0, "warmup": True})
    assert sgd(5000) == pytest.approx(150 * 5e-3)


def test_rescaled_schedules_keep_the_fraction_of_training() -> None:
    """With 400 steps, warmup ends (and the no-warmup plateau stops) at step 40 = 10%."""
    factor = PAPER_STEPS / 400
    warm = step_size_schedule({"kind": "absolute", "multiplier": 0.1, "warmup": True},
                              time_factor=factor)
    cold = step_size_schedule({"kind": "absolute", "multiplier": 0.1, "warmup": False},
                              time_factor=factor, lr_scale=2.0, relative_lr_scale=7.0)
    rel = step_size_schedule({"kind": "relative", "multiplier": 1.0, "warmup": False},
                             time_factor=factor, lr_scale=2.0, relative_lr_scale=7.0)
    assert rel(1) == pytest.approx(7e-2)
    assert max(range(1, 401), key=warm) == 40
    assert warm(40) == pytest.approx(1e-3)
    assert warm(20) == pytest.approx(0.5e-3)
    assert cold(1) == pytest.approx(2e-3) and cold(40) == pytest.approx(2e-3)
    assert cold(41) < 2e-3
    assert cold(400) == pytest.approx(2 * 0.1 / math.sqrt(100_000))


def test_vaswani_schedule() -> None:
    f = step_size_schedule({"kind": "vaswani", "warmup_steps": 4000}, d_model=512)
    assert f(4000) == pytest.approx(512**-0.5 * 4000**-0.5)
    assert max(range(1, 8001, 50), key=f) in range(3951, 4051)
    g = step_size_schedule({"kind": "vaswani", "warmup_steps": 4000}, d_model=512,
                           time_factor=10.0)
    assert g(400) == pytest.approx(f(4000))
    with pytest.raises(ValueError, match="needs d_model"):
        step_size_schedule({"kind": "vaswani"})


def test_bad_schedules() -> None:
    with pytest.raises(ValueError, match="unknown schedule kind 'cosine'"):
        step_size_schedule({"kind": "cosine"})
    with pytest.raises(ValueError, match="needs a 'warmup' flag"):
        step_size_schedule({"kind": "absolute", "multiplier": 0.1})
    with pytest.raises(ValueError, match="steps count from 1"):
        step_size_schedule({"kind": "sgd", "multiplier": 1.0, "warmup": True})(0)
