"""Figure 1: its cells carry the paper's schedule, the trailing mean, the rendering from synthetic
per-step metrics, and one short real run through the CLI (run twice: the second only renders)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import PNG_MAGIC, write_result

from experiments.grid.registry import get_cell, table_cells
from experiments.identity import cell_identity, git_state, numerics_signature
from experiments.scales import plan_cell, resolve_cell_preset
from experiments.store.files import atomic_write_json
from reproduce.errors import UsageError
from reproduce.render import render_tables
from reproduce.render.figure1_data import trailing_mean
from reproduce.selection import check_existing_results

REPO = Path(__file__).resolve().parents[1]


def test_figure1_cells_run_the_papers_schedule_unscaled() -> None:
    assert [c.cell_id for c in table_cells("figure1")] == ["figure1/A/warmup/seed0",
                                                          "figure1/G/warmup/seed0"]
    cell = get_cell("figure1/A/warmup/seed0")
    assert cell.optimizer == get_cell("table2/A/warmup/seed0").optimizer
    preset = resolve_cell_preset(cell, "tiny")
    assert (preset.time_rescale, preset.lr_scale, preset.steps, preset.log_interval) == (
        1.0, 1.0, 3000, 1)
    assert resolve_cell_preset(cell, "tiny", {"steps": 20}).steps == 20  # --set wins
    assert resolve_cell_preset(get_cell("table2/A/warmup/seed0"), "tiny").steps == 400


def test_reuse_check_compares_with_the_cells_own_preset(tmp_path: Path) -> None:
    cell_id = "figure1/G/warmup/seed0"
    cell = get_cell(cell_id)
    preset = resolve_cell_preset(cell, "tiny")
    write_result(tmp_path, cell_id, 1.0, steps=3000)
    atomic_write_json(tmp_path / cell_id / "config.json",
                      {"identity": cell_identity(cell, preset, None)})
    done, pending = check_existing_results(tmp_path, [plan_cell(cell, "tiny")], act=False,
                                           log=print)
    assert (done, pending) == ([cell_id], [])  # its own 3000 steps are what it asks for
    with pytest.raises(UsageError, match="steps"):
        check_existing_results(tmp_path, [plan_cell(cell, "tiny", {"steps": 12})],
                               act=False, log=print)


def test_trailing_mean_covers_the_last_window_steps() -> None:
    steps, values = trailing_mean([1, 2, 3, 4], [1.0, 3.0, 5.0, 7.0], 2)
    assert steps == [1, 2, 3, 4] and values == [1.0, 2.0, 4.0, 6.0]


def test_render_from_per_step_metrics(tmp_path: Path) -> None:
    results, out = tmp_path / "results", tmp_path / "tables"
    for row, dip in (("A", 0.5), ("G", 0.95)):
        metrics = [{"step": s, "update_rms_matrix": dip if s < 300 else 1.4,
                    "update_rms_matrices": 1.0} for s in range(1, 1001)]
        write_result(results, f"figure1/{row}/warmup/seed0", 1.0, metrics=metrics)
    [rendered] = render_tables(["figure1"], results, out)
    rows = list(csv.DictReader((out / "figure1.csv").open()))
    assert {(r["row"], r["series"]) for r in rows} == {("A", "matrix"), ("A", "mean"),
                                                       ("G", "matrix"), ("G", "mean")}
    commit = git_state()["git_commit"]
    assert all(r["numerics"] == numerics_signature() and r["git_commit"].startswith(commit)
               for r in rows)
    a = {int(r["step"]): float(r["update_rms"]) for r in rows if r["row"] == "A"
         and r["series"] == "matrix"}
    assert a[200] == pytest.approx(0.5) and a[400] == pytest.approx((99 * 0.5 + 101 * 1.4) / 200)
    assert "trailing mean over the last 200 steps" in rendered.markdown
    assert "| A | matrix | 400 | 0.50 (1) | 1.40 (" in rendered.markdown
    assert "0.33 at step 300" in rendered.markdown  # the paper's read-off values beside
    assert (out / "figure1.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.slow
def test_figure1_command_end_to_end(tmp_path: Path) -> None:
    results, tables = tmp_path / "results", tmp_path / "tables"
    command = [sys.executable, "-m", "reproduce", "figure1", "--rows", "A", "--workers", "1",
               "--results-dir", str(results), "--tables-dir", str(tables), "--no-wandb",
               "--set", "steps=12", "--set", "eval_max_sentences=10"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    cell_dir = results / "figure1/A/warmup/seed0"
    config = json.loads((cell_dir / "config.json").read_text())
    assert config["scale"]["time_rescale"] == 1.0 and config["scale"]["lr_scale"] == 1.0
    assert config["scale"]["steps"] == 12 and config["cell"]["preset_overrides"]["steps"] == 3000
    logged = [json.loads(line) for line in (cell_dir / "metrics.jsonl").read_text().splitlines()]
    per_step = [r["step"] for r in logged if "update_rms_matrix" in r]
    assert per_step == list(range(1, 13))  # every step, for the named matrix and the mean
    assert all("update_rms_matrices" in r for r in logged if "update_rms_matrix" in r)
    rows = list(csv.DictReader((tables / "figure1.csv").open()))
    assert {r["row"] for r in rows} == {"A"} and rows[0]["step"] == "10"
    assert "Not run yet: figure1/G/warmup/seed0" in done.stdout
    assert (tables / "figure1.png").read_bytes()[:8] == PNG_MAGIC

    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 already have results" in again.stdout  # the cell's own preset fits its result
