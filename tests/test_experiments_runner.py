"""One grid cell as a Lightning run (through ``python -m reproduce run``): result files, SIGKILL +
resume, DDP (gloo) vs one process, the offline W&B mirror, divergence, skipping finished cells.

Every run is real: the embedded corpus, a trained SentencePiece model, the tiny Transformer, our
Adafactor, Lightning (DDP over gloo for two CPU processes) and W&B in offline mode. The runs are
shortened with scale overrides (40 steps, 24 evaluation sentences).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.grid.registry import get_cell
from experiments.run.cell import run_cell
from experiments.run.mirror import offline_wandb_run, summary_keys
from experiments.scales import plan_cell
from experiments.store.checkpoints import checkpoint_step
from experiments.store.files import CellFileError, read_json, read_metrics

REPO = Path(__file__).resolve().parents[1]
CELL = "table2/N/no-warmup/seed0"
TEST_SCALE = {
    "steps": 40,
    "log_interval": 10,
    "val_interval": 20,
    "checkpoint_interval": 10,
    "eval_max_sentences": 24,
    "max_tokens": 512,
    "time_rescale": None,  # the fraction rule: schedule of 100k paper steps in 40 steps
}
# Timing fields differ between runs; everything else in metrics.jsonl must match exactly.
TIMING_KEYS = {"tokens_per_s", "train_time_s", "wall_time_s"}


def _cli(cell_id: str, results: Path, cache: Path, overrides: dict, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "reproduce", "run", cell_id, "--scale", "tiny",
           "--results-dir", str(results), "--cache-dir", str(cache), "--accelerator", "cpu"]
    for key, value in overrides.items():
        cmd += ["--set", f"{key}={json.dumps(value)}"]
    return cmd + list(extra)


def _env() -> dict[str, str]:
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", PYTHONWARNINGS="ignore")
    env.pop("WANDB_API_KEY", None)
    return env


def _without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def _checkpoint_step(path: Path) -> int:
    try:
        return checkpoint_step(path)
    except CellFileError:  # being written: not readable yet
        return 10**9


def _logged_past(metrics: Path, step: int) -> bool:
    """Whether metrics.jsonl has a training row after ``step`` (a torn last line is skipped)."""
    return any(r.get("step", 0) > step for r in read_metrics(metrics, strict=False))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("vocab-cache")


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, cache_dir: Path) -> tuple[Path, dict]:
    """An uninterrupted run of CELL (with the offline W&B mirror), shared by several tests."""
    results = tmp_path_factory.mktemp("straight")
    subprocess.run(_cli(CELL, results, cache_dir, TEST_SCALE), check=True, env=_env(),
                   cwd=REPO, timeout=600)
    return results, read_json(results / CELL / "result.json")


@pytest.mark.slow
def test_cell_writes_config_metrics_and_result(straight_run) -> None:
    results, result = straight_run
    cell_dir = results / CELL
    config = read_json(cell_dir / "config.json")
    assert config["cell"]["cell_id"] == CELL and config["steps"] == 40
    assert config["scale"]["paper_time_factor"] == 100_000 / 40
    assert result["status"] == "ok" and result["steps"] == 40
    assert result["paper_bleu"] == 22.4
    assert result["bleu_recipe"]["split"] == "valid" and result["bleu_recipe"]["sentences"] == 24
    assert "tok:13a" in result["bleu_signature"] and "tok:intl" in result[
        "tokenized_bleu_signature"]
    # Adafactor row N: an unfactored second moment (one float per parameter), no momentum, and a
    # 4-byte float32 step counter per parameter tensor (as in torch.optim)
    extra = result["optimizer_state_bytes"] - result["parameter_bytes"]
    assert extra > 0 and extra % 4 == 0 and extra < 4 * 200
    assert result["peak_memory_bytes"] > 0 and result["tokens_per_s"] > 0
    rows = read_metrics(cell_dir / "metrics.jsonl")
    train_rows = [r for r in rows if "train_loss" in r]
    assert [r["step"] for r in train_rows] == [10, 20, 30, 40]
    for key in ("lr", "step_size", "beta2hat", "update_rms", "clipped_fraction", "tokens_per_s"):
        assert key in train_rows[-1], key
    assert 0.0 <= train_rows[-1]["clipped_fraction"] <= 1.0
    validated = [r["step"] for r in rows if "valid_loss" in r and not r.get("final")]
    assert validated == [0, 20]  # step 0: before any update
    assert rows[-1]["final"] is True and rows[-1]["valid_loss"] == result["valid_loss"]
    assert isinstance(result["bleu"], float) and rows[-1]["bleu"] == result["bleu"]
    assert rows[-1]["tokenized_bleu"] == result["tokenized_bleu"] is not None
    assert result["train_loss"] == train_rows[-1]["train_loss"]
    assert train_rows[-1]["train_loss"] < train_rows[0]["train_loss"]  # it learns


@pytest.mark.slow
def test_offline_wandb_run_holds_the_result_values(straight_run) -> None:
    results, result = straight_run
    run = offline_wandb_run(results / CELL)
    assert run["run"]["group"] == "table2/N" and run["run"]["name"] == CELL
    assert {"table2", "row:N", "no-warmup", "scale:tiny"} <= set(run["run"]["tags"])
    expected = summary_keys(result)
    assert {k: run["summary"].get(k) for k in expected} == expected
    assert {"train_loss", "valid_loss", "update_rms", "lr", "bleu"} <= run["history_keys"]


@pytest.mark.slow
def test_finished_cell_is_returned_without_training(straight_run, cache_dir: Path) -> None:
    results, result = straight_run
    path = results / CELL / "result.json"
    before = path.stat().st_mtime_ns
    again = run_cell(plan_cell(get_cell(CELL), "tiny", TEST_SCALE), results_dir=results,
                     use_wandb=False, cache_dir=cache_dir)
    assert again == result and path.stat().st_mtime_ns == before


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_gives_the_same_final_losses(
    straight_run, tmp_path: Path, cache_dir: Path
) -> None:
    _, straight = straight_run
    results = tmp_path / "killed"
    cmd = _cli(CELL, results, cache_dir, TEST_SCALE, "--no-wandb")
    last = results / CELL / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(cmd, env=_env(), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        # Kill once the run has logged a row past its first checkpoint (polled, with a deadline).
        metrics = results / CELL / "metrics.jsonl"
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline and not (
                last.exists() and _logged_past(metrics, _checkpoint_step(last))):
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert last.exists(), "the run was killed before its first checkpoint"
    assert not (results / CELL / "result.json").exists(), "the run finished before the kill"

    subprocess.run(cmd, check=True, env=_env(), cwd=REPO, timeout=600)
    resumed = read_json(results / CELL / "result.json")
    assert resumed["resumed_from_step"] in (10, 20, 30)
    for key in ("train_loss", "valid_loss", "bleu"):
        assert resumed[key] == pytest.approx(straight[key], abs=1e-6), key
    straight_rows = read_metrics(straight_run[0] / CELL / "metrics.jsonl")
    resumed_rows = read_metrics(results / CELL / "metrics.jsonl")
    assert len(resumed_rows) == len(straight_rows)
    for a, b in zip(_without_timing(resumed_rows), _without_timing(straight_rows), strict=True):
        assert a.keys() == b.keys()
        for key, value in a.items():
            assert value == (pytest.approx(b[key], abs=1e-6) if isinstance(value, float)
                             else b[key]), (a["step"], key)


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process_with_the_same_global_batch(
    tmp_path: Path, cache_dir: Path
) -> None:
    """Rank r of 2 takes batches r, r+2, ...; one process accumulating 2 batches sees the same
    global batch per optimizer step. Dropout off, so both compute the same function."""
    no_dropout = {"dropout": 0.0, "attention_dropout": 0.0, "relu_dropout": 0.0}
    common = {**TEST_SCALE, "steps": 20, "val_interval": 10, "checkpoint_interval": 20,
              "model_overrides": no_dropout}
    cell = "table2/J/warmup/seed0"
    one = tmp_path / "one"
    two = tmp_path / "two"
    subprocess.run(_cli(cell, one, cache_dir, {**common, "accumulate_grad_batches": 2},
                        "--no-wandb"), check=True, env=_env(), cwd=REPO, timeout=600)
    subprocess.run(_cli(cell, two, cache_dir, common, "--no-wandb", "--devices", "2"),
                   check=True, env=_env(), cwd=REPO, timeout=600)
    r1, r2 = read_json(one / cell / "result.json"), read_json(two / cell / "result.json")
    assert read_json(two / cell / "config.json")["trainer"]["strategy"] == "ddp"
    rows1 = [r for r in read_metrics(one / cell / "metrics.jsonl") if "train_loss" in r]
    rows2 = [r for r in read_metrics(two / cell / "metrics.jsonl") if "train_loss" in r]
    assert [r["step"] for r in rows1] == [r["step"] for r in rows2] == [10, 20]
    for a, b in zip(rows1, rows2, strict=True):
        assert a["target_tokens"] == b["target_tokens"]  # same global batches
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
    assert r2["valid_loss"] == pytest.approx(r1["valid_loss"], rel=1e-5)
    assert r2["bleu_recipe"]["sentences"] == r1["bleu_recipe"]["sentences"] == 24
    assert r2["bleu"] == pytest.approx(r1["bleu"], abs=1e-6)


@pytest.mark.slow
def test_non_finite_loss_ends_the_cell_as_diverged(tmp_path: Path, cache_dir: Path) -> None:
    """SGD at 300 s_t times 10^4 blows up: the cell stops early and is recorded as diverged."""
    plan = plan_cell(get_cell("table2/Q6/no-warmup/seed0"), "tiny",
                     {**TEST_SCALE, "lr_scale": 1e4})
    result = run_cell(plan, results_dir=tmp_path, cache_dir=cache_dir, accelerator="cpu",
                      use_wandb=False)
    assert result["status"] == "diverged" and result["bleu"] is None
    assert result["paper_bleu"] == "diverged"
    assert 1 <= result["diverged_step"] < 40 and result["steps"] < 40
    rows = read_metrics(tmp_path / "table2/Q6/no-warmup/seed0" / "metrics.jsonl")
    assert any(r.get("diverged") for r in rows)


@pytest.mark.slow
def test_an_sgd_row_stops_at_blow_up_before_its_loss_is_non_finite(tmp_path: Path,
                                                                     cache_dir: Path) -> None:
    """Table 2's SGD rows carry the blow-up stop (2 x the first loss); the same cell with the
    stop removed runs on to a non-finite loss, later."""
    cell = get_cell("table2/Q6/no-warmup/seed0")
    assert cell.preset_overrides == {"blowup_factor": 2.0}
    steps = {}
    for name, extra in (("stop", {}), ("no-stop", {"blowup_factor": None})):
        plan = plan_cell(cell, "tiny", {**TEST_SCALE, **extra})
        result = run_cell(plan, results_dir=tmp_path / name, cache_dir=cache_dir,
                          accelerator="cpu", use_wandb=False)
        assert result["status"] == "diverged", name
        steps[name] = result["diverged_step"]
        reason = result["diverged_reason"]
        assert (reason.startswith("training loss ") if name == "stop"
                else reason == "non-finite training loss"), reason
    assert steps["stop"] < steps["no-stop"], steps
