"""What a cell's curve holds for the warmup finding (docs/preregistration.md section 3): a
validation loss at step 0, before any update, that leaves the training run unchanged, and
RMS(U_t) rows that are the mean over every step of their interval (unclipped and applied), and
the plateau maximum read from them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers import REPO, reproduce_cmd, reproduce_env

from experiments.measure.plateau import centred, plateau_maxima, window_steps

CELL = "table2/H/no-warmup/seed0"  # clipped at d = 1: applied = mean of min(RMS(U_t), 1)
RMS_KEYS = ("update_rms", "update_rms_matrices", "update_rms_matrix",
            "update_rms_applied_matrices")


def _run(results: Path, log_interval: int, *extra: str) -> list[dict]:
    done = subprocess.run(
        reproduce_cmd("run", CELL, "--scale", "tiny", "--results-dir", str(results),
                      "--no-wandb", "--set", "steps=20", "--set", f"log_interval={log_interval}",
                      "--set", "val_interval=10", "--set", "checkpoint_interval=10", *extra),
        cwd=REPO, env=reproduce_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = (results / CELL / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.slow
def test_step_zero_validation_and_interval_means(tmp_path: Path) -> None:
    every_10 = _run(tmp_path / "ten", 10)
    every_step = _run(tmp_path / "one", 1)
    first = every_10[0]
    assert first["step"] == 0 and first["valid_loss"] > every_10[1]["valid_loss"]
    assert "train_loss" not in first
    # logging every step changes nothing the run computes
    assert every_10[-1]["final"] and every_10[-1] == every_step[-1]
    assert every_10[0] == every_step[0]
    rows = {r["step"]: r for r in every_step if "train_loss" in r}
    for logged in (r for r in every_10 if "train_loss" in r):
        window = [rows[t] for t in range(logged["step"] - 9, logged["step"] + 1)]
        for key in RMS_KEYS:
            mean = sum(r[key] for r in window) / len(window)
            assert logged[key] == pytest.approx(mean, rel=1e-5), (key, logged["step"])
    applied = [r["update_rms_applied_matrices"] for r in rows.values()]
    unclipped = [r["update_rms_matrices"] for r in rows.values()]
    assert all(a <= u + 1e-6 and a <= 1.0 + 1e-6 for a, u in zip(applied, unclipped, strict=True))
    # result.json: the plateau maximum, read from the 10-step rows (window 100 steps, centred,
    # truncated at the ends: both rows around step 10)
    result = json.loads((tmp_path / "ten" / CELL / "result.json").read_text())
    found = result["plateau_max"]
    assert found["window_steps"] == 100 and found["through_step"] == 10
    logged = [r for r in every_10 if "train_loss" in r]
    for key in ("update_rms_matrices", "update_rms_matrix", "update_rms_applied_matrices"):
        assert found[key] == pytest.approx((logged[0][key] + logged[1][key]) / 2)


def test_centred_means_and_the_plateau_maximum() -> None:
    steps = list(range(10, 110, 10))
    values = [1.0, 1.0, 4.0, 1.0, 1.0, 1.0, 1.0, 1.0, 9.0, 9.0]
    assert centred(steps, values, 30) == pytest.approx(
        [1.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 11 / 3, 19 / 3, 9.0])
    assert centred(steps, values, 5) == values  # a window below the spacing: the points
    # ±window/2 around each point, so 20 steps on a 10-step spacing is 3 points, symmetric
    assert centred(steps, values, 20)[2] == pytest.approx(2.0)
    assert centred(steps, values, 20)[7] == pytest.approx(11 / 3)
    rows = [{"step": s, "train_loss": 1.0, "update_rms_matrices": v}
            for s, v in zip(steps, values, strict=True)]
    rows.append({"step": 0, "valid_loss": 7.0})  # the step-0 validation carries no RMS
    found = plateau_maxima(rows, steps=100, window=30)
    assert found["update_rms_matrices"] == pytest.approx(2.0)  # the 9s come after step 50
    assert found["update_rms_matrix"] is None and found["through_step"] == 50
    assert plateau_maxima([{"step": 10, "train_loss": 1.0}], 100, 30) is None  # torch Adam
    # the window is 100 steps of the beta2 clock: 10 optimizer steps when it runs F = 10 fast
    assert window_steps(False, 50.0) == 100 and window_steps(True, 10.0) == 10
