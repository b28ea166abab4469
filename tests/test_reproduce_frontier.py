"""paper_tables/frontier.{md,csv,png} (reproduce/render/frontier_*.py): best peak per optimizer,
Pareto and edge marks, base-state bytes, the plot, and the ``python -m reproduce frontier``
command."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import PNG_MAGIC, RECIPE, SIGNATURE

from experiments.grid.frontier import FRONTIER, FRONTIER_OPTIMIZERS, lr_column
from experiments.measure.optimizer_state import measure_base_state
from experiments.schema import BASE_STATE_FILE
from experiments.store.files import atomic_write_json, load_results
from experiments.store.prepared import load_base_state
from reproduce.cli import main
from reproduce.errors import UsageError
from reproduce.render import render_tables
from reproduce.render.frontier_data import build_frontier
from reproduce.render.frontier_plot import plot_frontier
from reproduce.render.frontier_text import frontier_csv as csv_text
from reproduce.render.frontier_text import frontier_markdown as markdown
from reproduce.selection import parse_seeds

REPO = Path(__file__).resolve().parents[1]
RECIPE_TEXT = "embedded valid split (200 sentences), greedy decoding"


def result(row: str, peak: float, *, seed: int = 0, bleu: float | None = 20.0,
           valid_loss: float | None = 3.0, state: int | None = 1000, status: str = "ok",
           table: str = "frontier", scale: str = "tiny") -> dict:
    """One cell's result dict, in experiments.run.record's format."""
    column = f"lr{peak:g}"
    cell_id = f"{table}/{row}/{column}/seed{seed}"
    diverged = status == "diverged"
    return {
        "cell_id": cell_id, "table": table, "row": row, "column": column, "warmup": True,
        "seed": seed, "scale": scale, "status": status,
        "diverged_step": 7 if diverged else None,
        "bleu": None if diverged else bleu, "bleu_signature": SIGNATURE,
        "tokenized_bleu": None if diverged or bleu is None else bleu + 1.0,
        "tokenized_bleu_signature": "nrefs:1|case:mixed|eff:no|tok:intl|smooth:exp|version:2.4.2",
        "bleu_recipe": RECIPE, "paper_bleu": None,
        "valid_loss": None if diverged else valid_loss, "train_loss": 3.1,
        "optimizer_state_bytes": state, "parameter_bytes": 4000,
        "steps": 7 if diverged else 400,
    }


def csv_rows(data) -> dict[str, dict[str, str]]:
    return {r["optimizer"]: r for r in csv.DictReader(csv_text(data).splitlines())}


def md_row(text: str, label: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"| {label} |"))


# --- choosing each optimizer's point -----------------------------------------------------------


def test_best_peak_is_the_lowest_valid_loss_not_the_highest_bleu() -> None:
    data = build_frontier([
        result("adam", 1e-3, valid_loss=3.0, bleu=10.0, state=111),
        result("adam", 3e-3, valid_loss=2.5, bleu=8.0, state=111),
        result("adam", 1e-2, valid_loss=2.8, bleu=15.0, state=111),
    ])
    (row,) = data.rows
    assert row.best.peak == 3e-3
    got = csv_rows(data)["adam"]
    assert (got["best_peak"], got["bleu"], got["valid_loss"]) == ("0.003", "8.00", "2.500000")
    assert got["best_at_sweep_edge"] == "no" and got["seeds"] == "1"
    assert got["state_bytes"] == "111"
    assert got["sweep"] == "0.001: 3.000 / 10.0; 0.003: 2.500 / 8.0; 0.01: 2.800 / 15.0"
    line = md_row(markdown(data), "Adam")
    assert "| 8.0 | 2.500 | 0.003 |" in line and "(edge)" not in line


def test_diverged_and_non_finite_runs_are_never_chosen() -> None:
    data = build_frontier([
        # Diverged with an absurdly good (stale) loss and BLEU: still not a candidate.
        result("lion", 1e-4, status="diverged", state=222) | {"valid_loss": 0.1, "bleu": 40.0},
        result("lion", 3e-4, valid_loss=float("nan"), bleu=30.0, state=222),
        result("lion", 1e-3, valid_loss=4.0, bleu=5.0, state=222),
        result("tiger", 1e-4, valid_loss=float("inf"), bleu=30.0),
        result("tiger", 3e-4, valid_loss=-float("inf"), bleu=30.0),
        result("tiger", 1e-3, valid_loss=3.5, bleu=None),  # no BLEU: not a finished run
        result("tiger", 1e-3, seed=1, valid_loss=3.9, bleu=7.0),
    ])
    rows = {r.name: r for r in data.rows}
    assert rows["lion"].best.peak == 1e-3
    assert rows["lion"].best.bleu == 5.0
    assert rows["tiger"].best.peak == 1e-3
    assert rows["tiger"].best.valid_loss == 3.9  # the BLEU-less seed is not averaged in
    assert rows["tiger"].best.bleu == 7.0
    got = csv_rows(data)
    assert got["lion"]["sweep"].startswith("0.0001: diverged; 0.0003: diverged; 0.001: 4.000")
    assert got["tiger"]["seeds"] == "1"


def test_an_optimizer_with_every_cell_diverged_shows_diverged() -> None:
    data = build_frontier([
        result("sgd-momentum", p, status="diverged", state=333) for p in (3e-2, 1e-1, 3e-1)
    ] + [result("adam", 1e-3, state=999, bleu=20.0)])
    rows = {r.name: r for r in data.rows}
    assert rows["sgd-momentum"].best is None
    assert rows["sgd-momentum"].pareto is False
    assert rows["adam"].pareto is True  # the diverged optimizer is not a point
    line = md_row(markdown(data), FRONTIER_OPTIMIZERS["sgd-momentum"].label)
    cells = [c.strip() for c in line.split("|")]
    assert cells[2] == "diverged" and cells[3] == "-" and cells[4] == "-"
    got = csv_rows(data)["sgd-momentum"]
    assert got["bleu"] == "diverged"
    assert (got["best_peak"], got["valid_loss"], got["seeds"]) == ("", "", "")
    assert (got["pareto"], got["best_at_sweep_edge"]) == ("no", "")
    assert got["state_bytes"] == "333"  # measured even though the runs diverged
    assert got["sweep"] == "0.03: diverged; 0.1: diverged; 0.3: diverged"


def test_seeds_of_one_peak_are_averaged() -> None:
    runs = [
        # 1e-3: seed 0 alone (2.0) would beat 3e-3, but the mean (3.0) does not.
        result("adamw", 1e-3, seed=0, valid_loss=2.0, bleu=10.0),
        result("adamw", 1e-3, seed=1, valid_loss=4.0, bleu=20.0),
        result("adamw", 3e-3, seed=0, valid_loss=2.9, bleu=12.0),
    ]
    (row,) = build_frontier(runs).rows
    assert row.best.peak == 3e-3
    runs[1] = result("adamw", 1e-3, seed=1, valid_loss=3.0, bleu=20.0)  # mean 2.5 < 2.9
    runs.append(result("adamw", 1e-3, seed=2, status="diverged"))  # not averaged in
    data = build_frontier(runs)
    (row,) = data.rows
    assert row.best.peak == 1e-3
    assert row.best.valid_loss == pytest.approx(2.5)
    assert row.best.bleu == pytest.approx(15.0)
    got = csv_rows(data)["adamw"]
    assert (got["bleu"], got["valid_loss"], got["seeds"]) == ("15.00", "2.500000", "2")
    assert (got["bleu_min"], got["bleu_max"]) == ("10.00", "20.00")
    assert "| 15.0 (2 seeds: 10.0-20.0) |" in md_row(markdown(data), "AdamW")


@pytest.mark.parametrize("text", ["0,x", "-1", "0,0", "", "01"])
def test_bad_seeds_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="--seeds"):
        parse_seeds(text)


def test_frontier_seeds_select_one_cell_per_peak_and_seed(tmp_path: Path, capsys) -> None:
    assert main(["frontier", "--rows", "tiger", "--seeds", "0,2", "--results-dir",
                 str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "6 cells" in out
    for peak in FRONTIER_OPTIMIZERS["tiger"].peaks:
        for seed in (0, 2):
            assert f"frontier/tiger/{lr_column(peak)}/seed{seed} " in out


def test_pareto_marks() -> None:
    data = build_frontier([
        result("adafactor", 5e-2, state=100, bleu=20.0),
        result("came", 1e-3, state=100, bleu=20.0),  # equal to Adafactor: both on the front
        result("adam", 1e-3, state=300, bleu=25.0),  # most BLEU
        result("lion", 3e-4, state=200, bleu=18.0),  # more memory and less BLEU than Adafactor
        result("sgd-momentum", 1e-1, state=100, bleu=19.0),  # same memory, less BLEU
        result("adamw", 1e-3, state=400, bleu=25.0),  # same BLEU as Adam, more memory
    ])
    pareto = {r.name: r.pareto for r in data.rows}
    assert pareto == {"adafactor": True, "adam": True, "adamw": False, "came": True,
                      "lion": False, "sgd-momentum": False}
    got = csv_rows(data)
    assert {k: v["pareto"] for k, v in got.items()} == {
        k: "yes" if v else "no" for k, v in pareto.items()}
    text = markdown(data)
    assert md_row(text, "Adafactor").split("|")[8].strip() == "yes"
    assert md_row(text, "Lion").split("|")[8].strip() == ""


def test_rows_follow_frontier_order_not_input_order() -> None:
    data = build_frontier([result("rmsprop", 1e-3), result("adafactor", 5e-2),
                           result("lion", 3e-4)])
    assert [r.name for r in data.rows] == ["adafactor", "lion", "rmsprop"]


# Tiger's planned sweep is (3e-4, 1e-3, 3e-3).
@pytest.mark.parametrize(
    ("losses", "edge"),
    [
        ({3e-4: 2.0, 1e-3: 3.0, 3e-3: 4.0}, "yes"),  # best is the smallest peak
        ({3e-4: 4.0, 1e-3: 3.0, 3e-3: 2.0}, "yes"),  # best is the largest peak
        ({3e-4: 4.0, 1e-3: 2.0, 3e-3: 3.0}, "no"),
        ({1e-3: 2.0}, "no"),  # the middle peak alone: its unrun neighbours are still the ends
        ({3e-4: 2.0}, "yes"),  # the smallest planned peak alone
        ({3e-4: 4.0, 1e-3: 3.0, 3e-3: 2.5, 1e-2: 2.0}, "yes"),  # an extra, larger peak
        ({3e-4: 4.0, 1e-3: 3.0, 3e-3: 2.0, 1e-2: 2.5}, "no"),  # planned max inside wider sweep
    ],
)
def test_edge_mark(losses: dict[float, float], edge: str) -> None:
    assert FRONTIER_OPTIMIZERS["tiger"].peaks == (3e-4, 1e-3, 3e-3)
    data = build_frontier([result("tiger", p, valid_loss=v) for p, v in losses.items()])
    got = csv_rows(data)["tiger"]
    assert got["best_at_sweep_edge"] == edge
    assert ("(edge)" in md_row(markdown(data), "Tiger")) == (edge == "yes")


def test_results_of_other_tables_are_ignored() -> None:
    table2 = result("adam", 1e-3, table="table2", scale="small", valid_loss=0.1) | {
        "cell_id": "table2/B/warmup/seed0", "row": "B", "column": "warmup",
        "bleu_signature": "other-signature"}
    stray = result("adam", 1e-3, table="table3", valid_loss=0.1, bleu=99.0)  # frontier-like
    unknown = result("adamax", 1e-3, valid_loss=0.1)  # not a frontier optimizer
    data = build_frontier([table2, stray, unknown, result("adam", 3e-3, valid_loss=2.0)])
    assert [r.name for r in data.rows] == ["adam"]
    assert data.n_results == 1
    assert data.rows[0].best.peak == 3e-3
    text = markdown(data)
    assert "MIXED" not in text and "other-signature" not in text
    assert "Ours: scale tiny; training steps: 400;" in text
    assert build_frontier([table2, stray]).rows == []


def test_markdown_carries_signature_recipe_and_scale() -> None:
    data = build_frontier([result("adafactor", 5e-2), result("adam", 1e-3, bleu=21.5)])
    text = markdown(data)
    assert SIGNATURE in text
    assert RECIPE_TEXT in text
    assert "Ours: scale tiny; training steps: 400" in text
    assert "MIXED" not in text
    mixed = build_frontier([result("adafactor", 5e-2),
                            result("adam", 1e-3, scale="small") | {"bleu_signature": "x"}])
    assert "MIXED" in markdown(mixed)


def test_csv_carries_signature_and_recipe() -> None:
    text = csv_text(build_frontier([result("adafactor", 5e-2)]))
    assert SIGNATURE in text
    assert "embedded" in text and "greedy" in text


def test_a_malformed_result_column_is_a_usage_error_naming_the_cell() -> None:
    bad = result("adam", 1e-3) | {"column": "lr1e-3", "cell_id": "frontier/adam/lr1e-3/seed0"}
    with pytest.raises(UsageError, match="frontier/adam/lr1e-3/seed0"):
        build_frontier([bad])


def test_base_state_bytes_appear_in_md_and_csv(tmp_path: Path) -> None:
    assert load_base_state(tmp_path, FRONTIER) is None
    base = {"lion": {"state_bytes": 2_000_000, "parameters": 1_000_000},
            "adam": {"state_bytes": 8_000_000, "parameters": 1_000_000}}
    atomic_write_json(tmp_path / "frontier" / BASE_STATE_FILE, base)
    assert load_base_state(tmp_path, FRONTIER) == base
    data = build_frontier([result("lion", 3e-4, state=4096), result("tiger", 3e-4)],
                          load_base_state(tmp_path, FRONTIER))
    got = csv_rows(data)
    assert got["lion"]["state_bytes_base"] == "2000000"
    assert got["lion"]["parameters_base"] == "1000000"
    assert got["lion"]["state_per_parameter_base"] == "0.500000"  # bytes / 4 / parameters
    assert got["tiger"]["state_bytes_base"] == got["tiger"]["state_per_parameter_base"] == ""
    line = md_row(markdown(data), "Lion")
    assert "| 4.00 KiB | 1.91 MiB | 0.5000 |" in line
    assert "| - | - |" in md_row(markdown(data), "Tiger")


def test_render_tables_renders_the_frontier_from_result_files(tmp_path: Path) -> None:
    results, out = tmp_path / "results", tmp_path / "tables"
    for r, commit in ((result("adafactor", 5e-2, state=100, bleu=19.0), "aaa"),
                      (result("adam", 1e-3, state=800, bleu=21.0), "bbb"),
                      (result("adam", 3e-3, status="diverged", state=800), "ccc")):
        r["identity"] = {"recorded": {"git_commit": commit, "git_dirty": commit == "ccc",
                                      "numerics": "torch 2.13.0+cpu; AVX2; Intel(R), 2 GHz"}}
        atomic_write_json(results / r["cell_id"] / "result.json", r)
    atomic_write_json(results / "frontier" / BASE_STATE_FILE,
                      {"adam": {"state_bytes": 400, "parameters": 50}})
    rendered = render_tables(["frontier"], results, out)
    ((done),) = rendered
    assert done.table == "frontier" and done.markdown == (out / "frontier.md").read_text()
    assert sorted(p.name for p in done.paths) == ["frontier.csv", "frontier.md", "frontier.png"]
    rows = list(csv.DictReader((out / "frontier.csv").open()))
    assert [r["optimizer"] for r in rows] == ["adafactor", "adam"]
    assert rows[1]["state_per_parameter_base"] == "2.000000"
    # what each optimizer's sweep ran on: every run's commit, the arithmetic (quoted: a comma)
    assert rows[0]["git_commit"] == "aaa"
    assert rows[1]["git_commit"] == "bbb; ccc+dirty (MIXED: results come from different settings)"
    assert rows[1]["numerics"] == "torch 2.13.0+cpu; AVX2; Intel(R), 2 GHz"
    assert all(r["pareto"] == "yes" for r in rows)
    assert (out / "frontier.png").read_bytes()[:8] == PNG_MAGIC
    assert SIGNATURE in (out / "frontier.md").read_text()


def test_render_tables_without_frontier_results_is_an_error(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "table2/A/warmup/seed0/result.json",
                      result("adam", 1e-3, table="table2"))
    with pytest.raises(UsageError, match="no results for frontier under"):
        render_tables(["frontier"], tmp_path, tmp_path / "out")
    assert render_tables(["frontier"], tmp_path, tmp_path / "out", require_results=False) == []


# --- plot --------------------------------------------------------------------------------------


def test_plot_frontier_writes_a_png(tmp_path: Path) -> None:
    data = build_frontier([result("adafactor", 5e-2, state=100, bleu=19.0),
                           result("adam", 1e-3, state=800, bleu=21.0),
                           result("lion", 3e-4, state=400, bleu=15.0)])
    path = plot_frontier(data, tmp_path / "sub" / "frontier.png")
    assert path == tmp_path / "sub" / "frontier.png"
    blob = path.read_bytes()
    assert blob[:8] == PNG_MAGIC and len(blob) > 1000


def test_plot_frontier_without_points_returns_none(tmp_path: Path) -> None:
    diverged = build_frontier([result("lion", 3e-4, status="diverged")])
    assert plot_frontier(diverged, tmp_path / "a.png") is None
    assert plot_frontier(build_frontier([]), tmp_path / "b.png") is None
    assert not list(tmp_path.iterdir())
    bad = result("lion", 3e-4, status="diverged")
    atomic_write_json(tmp_path / "results" / bad["cell_id"] / "result.json", bad)
    (done,) = render_tables(["frontier"], tmp_path / "results", tmp_path / "tables")
    assert sorted(p.name for p in done.paths) == ["frontier.csv", "frontier.md"]


# --- base-state measurement (cached) -----------------------------------------------------------


def test_measure_base_state_only_measures_what_the_file_lacks(tmp_path: Path,
                                                              monkeypatch) -> None:
    import experiments.measure.optimizer_state as memory_report

    path = tmp_path / "frontier" / BASE_STATE_FILE
    atomic_write_json(path, {"lion": {"state_bytes": 8, "parameters": 2}})
    calls = []

    def fake(scale, name, **kwargs):
        calls.append((scale, name))
        return {"optimizer_state_bytes": 12, "parameters": 3, "row": name}

    monkeypatch.setattr(memory_report, "measure_frontier", fake)
    written = measure_base_state(tmp_path, ["lion", "tiger"], log=lambda *a, **k: None)
    assert written == path
    assert calls == [("base", "tiger")]
    assert json.loads(path.read_text()) == {"lion": {"state_bytes": 8, "parameters": 2},
                                            "tiger": {"state_bytes": 12, "parameters": 3}}


@pytest.mark.slow
def test_measure_base_state_real_then_cached(tmp_path: Path, monkeypatch) -> None:
    import experiments.measure.optimizer_state as memory_report

    path = measure_base_state(tmp_path, ["lion"], log=lambda *a, **k: None)
    assert path == tmp_path / "frontier" / BASE_STATE_FILE
    state = json.loads(path.read_text())
    assert list(state) == ["lion"]
    assert state["lion"]["parameters"] > 50e6  # Transformer base
    assert state["lion"]["state_bytes"] == 4 * state["lion"]["parameters"]  # one float each
    before = path.read_bytes()

    def must_not_run(*args, **kwargs):
        raise AssertionError("measure_frontier called although the file has lion")

    monkeypatch.setattr(memory_report, "measure_frontier", must_not_run)
    assert measure_base_state(tmp_path, ["lion"], log=lambda *a, **k: None) == path
    assert path.read_bytes() == before
    assert load_base_state(tmp_path, FRONTIER) == state


# --- the command line --------------------------------------------------------------------------


def test_frontier_unknown_row_exits_2(tmp_path: Path, capsys) -> None:
    code = main(["frontier", "--rows", "nosuch", "--results-dir", str(tmp_path / "res"),
                 "--tables-dir", str(tmp_path / "tables"), "--no-wandb", "--no-base-state"])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown row(s) 'nosuch'" in err and "frontier: adafactor" in err
    assert "Traceback" not in err
    assert not (tmp_path / "res").exists() and not (tmp_path / "tables").exists()


def test_frontier_dry_run_lists_the_sweep(tmp_path: Path, capsys) -> None:
    assert main(["frontier", "--rows", "lion", "--results-dir", str(tmp_path),
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "frontier at scale tiny: 3 cells, 0 already have results" in out
    for column in (lr_column(p) for p in FRONTIER_OPTIMIZERS["lion"].peaks):
        assert f"would run: python -m reproduce run frontier/lion/{column}/seed0" in out


def _cli(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, "-m", "reproduce", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_frontier_command_end_to_end(tmp_path: Path) -> None:
    res, tables = tmp_path / "res", tmp_path / "tables"
    done = _cli("frontier", "--rows", "tiger", "--results-dir", str(res),
                "--tables-dir", str(tables), "--no-wandb", "--no-base-state",
                "--set", "steps=12", "--set", "val_interval=6", "--set", "checkpoint_interval=6",
                "--set", "log_interval=6", "--set", "eval_max_sentences=10", timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in ("frontier.md", "frontier.csv", "frontier.png"):
        assert (tables / name).stat().st_size > 0, name
    assert (tables / "frontier.png").read_bytes()[:8] == PNG_MAGIC
    assert not (res / "frontier" / BASE_STATE_FILE).exists()  # --no-base-state

    results = load_results(res)
    assert sorted(r["cell_id"] for r in results) == sorted(
        f"frontier/tiger/{lr_column(p)}/seed0" for p in FRONTIER_OPTIMIZERS["tiger"].peaks)
    assert {r["steps"] for r in results if r["status"] == "ok"} <= {12}
    config = json.loads((res / "frontier/tiger/lr0.001/seed0/config.json").read_text())
    assert config["model"]["kernel_layout"] == "out_in"
    assert config["cell"]["schedule"] == {"kind": "peak", "peak": 1e-3, "warmup": True}

    rows = list(csv.DictReader((tables / "frontier.csv").open()))
    assert len(rows) == 1
    (row,) = rows
    assert row["optimizer"] == "tiger"
    assert float(row["best_peak"]) in FRONTIER_OPTIMIZERS["tiger"].peaks
    best = next(r for r in results if r["column"] == f"lr{row['best_peak']}")
    ok = [r for r in results if r["status"] == "ok" and math.isfinite(r["valid_loss"])]
    assert best["valid_loss"] == min(r["valid_loss"] for r in ok)
    # Tiger keeps one float32 per parameter.
    assert int(row["state_bytes"]) == best["parameter_bytes"]
    assert row["state_bytes_base"] == ""
    assert "Tiger" in (tables / "frontier.md").read_text()

    # Re-render from the results alone: no training, same table.
    old_csv = (tables / "frontier.csv").read_text()
    for path in tables.iterdir():
        path.unlink()
    mtimes = {p: p.stat().st_mtime_ns for p in res.rglob("result.json")}
    again = _cli("render", "frontier", "--results-dir", str(res), "--tables-dir", str(tables),
                 timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tables / "frontier.csv").read_text() == old_csv
    assert (tables / "frontier.md").is_file() and (tables / "frontier.png").is_file()
    assert {p: p.stat().st_mtime_ns for p in res.rglob("result.json")} == mtimes
    assert "| Tiger |" in again.stdout
