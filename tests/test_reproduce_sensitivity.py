"""The LR-sensitivity grid: its cells run under the calibration rule, the numbers it renders
from (partial) synthetic results, the unigram level it measures, and a real short run."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import PNG_MAGIC, write_result

from experiments.grid.registry import get_cell, table_cells
from experiments.grid.sensitivity import MULTIPLIERS, PROVIDER
from experiments.identity import git_state, numerics_signature
from experiments.measure.unigram import measure_unigram_levels
from experiments.scales import resolve_cell_preset, scale_preset
from experiments.store.files import atomic_write_json
from experiments.store.prepared import load_unigram_levels, unigram_path
from reproduce.render import render_tables

REPO = Path(__file__).resolve().parents[1]
LEVEL = 4.6


def test_grid_cells_run_under_the_calibration_rule() -> None:
    assert len(table_cells("sensitivity", seeds=[0, 1])) == 16 * 2 * len(MULTIPLIERS) * 2
    cell = get_cell("sensitivity/B/no-warmup-m3.16/seed1")
    assert cell.optimizer == get_cell("table2/B/no-warmup/seed0").optimizer and not cell.warmup
    preset = resolve_cell_preset(cell, "tiny")
    assert preset.time_rescale == pytest.approx(10_000 / 200)  # the plateau ends at step 200
    assert preset.lr_scale == pytest.approx(3.16 * 8**0.5)  # width-matched, d_model = 64
    assert preset.relative_lr_scale == pytest.approx(3.16) and preset.blowup_factor == 2.0
    assert resolve_cell_preset(cell, "tiny", {"steps": 40}).time_rescale == pytest.approx(500)
    with pytest.raises(ValueError, match="valid columns"):
        PROVIDER.cell("B", "warmup-m2", 0)


def _cell(results: Path, cell_id: str, valid: list[float], final: float | None) -> None:
    """A result whose validation curve is ``valid`` then ``final`` (None: it blew up)."""
    metrics = [{"step": 10, "train_loss": 6.5}]
    metrics += [{"step": 100 * (i + 1), "valid_loss": v} for i, v in enumerate(valid)]
    if final is not None:
        metrics.append({"step": 100 * len(valid), "final": True, "valid_loss": final})
    write_result(results, cell_id, 1.0 if final is not None else "diverged", metrics=metrics)
    path = results / cell_id / "result.json"
    result = json.loads(path.read_text())
    result["valid_loss"] = final
    atomic_write_json(path, result)


def _synthetic_grid(results: Path) -> None:
    curves = {0.316: ([5.0, 3.0, 2.6], 2.5), 1.0: ([4.0, 2.0, 1.5], 1.5),
              3.16: ([3.0, 1.5, 1.2], 1.2), 10.0: ([4.5, 4.4, 4.3], 4.3),
              31.6: ([9.0], None)}
    for m, (valid, final) in curves.items():
        _cell(results, f"sensitivity/B/warmup-m{m:g}/seed0", valid, final)
    _cell(results, "sensitivity/H/no-warmup-m1/seed0", [4.0, 2.0], 1.0)
    ids = [f"sensitivity/B/warmup-m{m:g}/seed0" for m in MULTIPLIERS]
    atomic_write_json(unigram_path(results, "sensitivity"), {"levels": [
        {"settings": {}, "unigram_loss": LEVEL, "cells": [*ids, "sensitivity/H/no-warmup-m1/seed0"]}
    ]})


def test_render_a_partial_grid_says_what_is_missing(tmp_path: Path) -> None:
    results, out = tmp_path / "results", tmp_path / "tables"
    _synthetic_grid(results)
    [rendered] = render_tables(["sensitivity"], results, out)
    text = rendered.markdown
    # B with warmup: slow, trained, trained, collapsed (4.3 >= 0.9 x 4.6), blew up.
    rows = {(r["row"], r["column"]): r for r in csv.DictReader((out / "sensitivity.csv").open())}
    b = rows[("B", "warmup")]
    assert b["largest_stable_multiplier"] == "3.16" and b["complete"] == "yes"
    # mean of min(final, 6.5) over the grid (the blown-up run counts as 6.5) minus the best 1.2
    assert float(b["lr_sensitivity"]) == pytest.approx((2.5 + 1.5 + 1.2 + 4.3 + 6.5) / 5 - 1.2)
    assert b["verdicts_m0.316"] == "slow" and b["verdicts_m10"] == "collapsed"
    assert b["verdicts_m31.6"] == "diverged" and b["paper_collapsed"] == "no"
    h = rows[("H", "no-warmup")]
    assert h["complete"] == "no" and h["largest_stable_multiplier"] == "1"
    assert h["missing_runs"] == "4" and h["verdicts_m1"] == "slow"
    assert b["numerics"] == h["numerics"] == numerics_signature()
    assert b["git_commit"].startswith(git_state()["git_commit"])
    assert rows[("A", "no-warmup")]["git_commit"] == ""  # not run at all
    assert rows[("A", "no-warmup")]["paper_collapsed"] == "yes"
    assert "| B | with warmup | trains | 3.16 | 2.000 |" in text
    assert "| H | no warmup | trains | 1 (partial) |" in text
    assert "Missing: 154 of 160 runs." in text
    assert "H no warmup: no-warmup-m0.316/seed0, no-warmup-m3.16/seed0" in text
    assert "Not run at all: A with warmup" in text
    assert "Unigram level: 4.600 (6 runs)" in text and "Ordering (no warmup): 0/0 pairs" in text
    assert (out / "sensitivity.png").read_bytes()[:8] == PNG_MAGIC


def test_without_a_unigram_level_the_verdicts_are_unknown(tmp_path: Path) -> None:
    results, out = tmp_path / "results", tmp_path / "tables"
    _synthetic_grid(results)
    unigram_path(results, "sensitivity").unlink()
    [rendered] = render_tables(["sensitivity"], results, out)
    assert "not measured" in rendered.markdown
    assert "| B | with warmup | trains | - (partial) |" not in rendered.markdown
    b = next(r for r in csv.DictReader((out / "sensitivity.csv").open()) if r["row"] == "B")
    assert b["largest_stable_multiplier"] == "" and b["verdicts_m1"] == "?"
    assert b["verdicts_m31.6"] == "diverged"  # a non-finite loss needs no unigram level


def test_measure_unigram_levels_once_per_setting(tmp_path: Path) -> None:
    results = tmp_path / "results"
    preset = scale_preset("tiny", eval_max_sentences=50)
    ids = ["sensitivity/B/warmup-m1/seed0", "sensitivity/H/warmup-m1/seed0"]
    for cell_id in ids:
        atomic_write_json(results / cell_id / "config.json",
                          {"cell": get_cell(cell_id).as_dict(), "scale": preset.as_dict()})
    said: list[str] = []
    measure_unigram_levels(results, "sensitivity", None, log=said.append)
    levels = load_unigram_levels(results, "sensitivity")
    assert set(levels) == set(ids) and len(said) == 1 and 3.0 < levels[ids[0]] < 6.9
    measure_unigram_levels(results, "sensitivity", ["B"], log=said.append)
    assert len(said) == 1 and load_unigram_levels(results, "sensitivity") == levels


@pytest.mark.slow
def test_sensitivity_command_end_to_end(tmp_path: Path) -> None:
    results, tables = tmp_path / "results", tmp_path / "tables"
    done = subprocess.run(
        [sys.executable, "-m", "reproduce", "sensitivity", "--rows", "B,H", "--workers", "2",
         "--results-dir", str(results), "--tables-dir", str(tables), "--no-wandb",
         "--set", "steps=6", "--set", "val_interval=3", "--set", "checkpoint_interval=3",
         "--set", "log_interval=3", "--set", "eval_max_sentences=5"],
        cwd=REPO, capture_output=True, text=True, timeout=1200,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "20 cells, 0 already have results" in done.stdout
    config = json.loads((results / "sensitivity/B/warmup-m10/seed0/config.json").read_text())
    assert config["scale"]["lr_scale"] == pytest.approx(10 * 8**0.5)
    assert config["scale"]["time_rescale"] == pytest.approx(10_000 / 3)
    rows = {(r["row"], r["column"]): r for r in csv.DictReader((tables / "sensitivity.csv").open())}
    assert rows[("B", "warmup")]["complete"] == "yes"
    assert rows[("H", "no-warmup")]["complete"] == "yes"
    assert rows[("A", "warmup")]["complete"] == "no"
    assert all(rows[(r, c)]["lr_sensitivity"] for r in "BH" for c in ("warmup", "no-warmup"))
    assert "Unigram level: " in done.stdout and "not measured" not in done.stdout
    assert (tables / "sensitivity.png").read_bytes()[:8] == PNG_MAGIC


def test_the_edge_grid_of_design_d3(tmp_path: Path) -> None:
    """sensitivity-edge: rows of D3 at m = 10^(k/10), k = 10..15 (ids with 3 digits), and the
    edge ordering with ties at 1/2: A's edge 12.6 below H's 20.0 (1), C's 20.0 = H's (1/2)."""
    cells = table_cells("sensitivity-edge")
    assert len(cells) == 12 * 2 * 6
    assert {c.column for c in cells if c.row == "A"} >= {"no-warmup-m12.6", "warmup-m31.6"}
    cell = get_cell("sensitivity-edge/A/no-warmup-m25.1/seed0")
    assert cell.lr_multiplier == pytest.approx(10**1.4)
    results, out = tmp_path / "results", tmp_path / "tables"
    edges = {"A": 12.6, "C": 20.0, "H": 20.0}
    ids = []
    for row, edge in edges.items():
        for k in range(10, 16):
            m = float(f"{10 ** (k / 10):.3g}")
            cell_id = f"sensitivity-edge/{row}/no-warmup-m{m:.3g}/seed0"
            _cell(results, cell_id, [5.0, 3.0, 2.0], 1.9 if m <= edge else None)
            ids.append(cell_id)
    atomic_write_json(unigram_path(results, "sensitivity-edge"), {"levels": [
        {"settings": {}, "unigram_loss": LEVEL, "cells": ids}]})
    [rendered] = render_tables(["sensitivity-edge"], results, out)
    assert "The stability edge (design D3" in rendered.markdown
    assert "Edge ordering (design D3, ties count 1/2): 1.5/2 pairs" in rendered.markdown
    rows = {r["row"]: r for r in csv.DictReader((out / "sensitivity-edge.csv").open())}
    assert rows["A"]["largest_stable_multiplier"] == "12.6" and "final_loss_m15.8" in rows["A"]
