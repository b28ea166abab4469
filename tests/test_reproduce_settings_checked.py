"""Every field of the scale preset is checked before anything starts: a bad ``--set`` value of
any field (non-finite numbers included) is one line naming the key, the value and what is
allowed, with exit code 2 and no traceback, and nothing is written."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from experiments.scales import ScalePreset
from reproduce.cli import main

# One bad value per preset field; a new field fails test_every_field_has_a_bad_value until added.
BAD_VALUES = {
    "name": "small", "model": "huge", "corpus": "nonsense", "vocab_size": 0, "max_tokens": -5,
    "steps": 0, "val_interval": 0, "checkpoint_interval": 0, "eval_split": "holdout",
    "eval_max_sentences": 0, "decode": "sample", "beam_size": 0, "length_penalty": "NaN",
    "seed": -1, "lr_scale": "NaN", "relative_lr_scale": "Infinity", "time_rescale": "NaN",
    "corpus_path": "", "model_overrides": {"d_model": -1}, "max_len": 0, "precision": "8-bit",
    "num_workers": -1, "log_interval": 0, "torch_threads": 0, "accumulate_grad_batches": 0,
    "blowup_factor": "-Infinity", "decay_time_rescale": "sometimes",
}
NON_FINITE = {"lr_scale": "NaN", "relative_lr_scale": "NaN", "time_rescale": "Infinity",
              "length_penalty": "Infinity", "blowup_factor": "NaN"}


def test_every_field_has_a_bad_value() -> None:
    assert set(BAD_VALUES) == {f.name for f in dataclasses.fields(ScalePreset)}


def _set(value: object) -> str:
    """The text of ``--set KEY=<text>`` (text is read as JSON, else as itself: NaN is a float)."""
    return value if isinstance(value, str) else json.dumps(value)


@pytest.mark.parametrize("key", sorted(BAD_VALUES))
def test_a_bad_value_of_each_field_is_one_line_naming_the_key(
        key: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    results = tmp_path / "results"
    code = main(["table2", "--rows", "A", "--results-dir", str(results), "--tables-dir",
                 str(tmp_path / "tables"), "--no-wandb", "--set",
                 f"{key}={_set(BAD_VALUES[key])}"])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: --set") and repr(key) in lines[0], err
    assert "Traceback" not in err
    assert not results.exists()


@pytest.mark.parametrize("key", sorted(NON_FINITE))
def test_non_finite_numbers_are_refused(key: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    code = main(["run", "table2/A/warmup/seed0", "--results-dir", str(tmp_path), "--no-wandb",
                 "--set", f"{key}={NON_FINITE[key]}"])
    err = capsys.readouterr().err
    assert code == 2 and f"{key!r} = {float(NON_FINITE[key])!r}" in err and "finite" in err, err
