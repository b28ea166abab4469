"""The W&B Report built from code: its spec offline (panels, keys, run filters), the keys checked
against a real tiny cell's offline W&B log, the CLI without a W&B key, and the run summaries
that `--from wandb` reads back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from experiments import schema
from experiments.grid.registry import get_cell
from experiments.run import mirror
from reproduce import dashboard
from reproduce.wandb_source import result_from_record
from tests.helpers import paper_like_results

REPO = Path(__file__).resolve().parents[1]
CELL = "table2/A/warmup/seed0"
TINY = {"steps": 20, "log_interval": 5, "val_interval": 10, "checkpoint_interval": 1000,
        "eval_max_sentences": 16, "max_tokens": 512}


def _panels(spec: dashboard.DashboardSpec) -> list[tuple[str, dashboard.PanelSpec]]:
    return [(s.title, p) for s in spec.sections for p in s.panels]


def test_table2_spec_has_the_issue_panels_keys_and_filters() -> None:
    spec = dashboard.dashboard_spec("team", "proj", ["table2"], scale="tiny")
    titles = [s.title for s in spec.sections]
    assert titles == ["table2: BLEU, ours vs the paper (warmup)",
                      "table2: BLEU, ours vs the paper (no-warmup)", "table2: training",
                      "table2: RMS(U_t) against step, row A (Figure 1)",
                      "table2: RMS(U_t) against step, row G (Figure 1)"]
    by_title = {p.title: (s, p) for s in spec.sections for p in s.panels}
    section, bleu = by_title["BLEU per row, warmup"]
    assert (bleu.kind, bleu.y, bleu.source, bleu.groupby) == (
        "bar", ("bleu", "paper_bleu"), "summary", "group")
    assert section.tags == ("table2", "scale:tiny", "warmup")
    section, loss = by_title["validation loss by row"]
    assert (loss.kind, loss.x, loss.y, loss.groupby) == ("line", "Step", ("valid_loss",), "group")
    assert by_title["optimizer state bytes per row"][1].y == ("optimizer_state_bytes",)
    section, rms = by_title["RMS(U_t), row A"]
    assert rms.y == ("update_rms",) and section.tags == ("table2", "scale:tiny", "row:A")
    assert spec.plotted_keys() == {
        "history": {"valid_loss", "update_rms"},
        "summary": {"bleu", "paper_bleu", "optimizer_state_bytes"}}


def test_every_table_has_a_section_and_the_frontier_plots_state_vs_loss() -> None:
    spec = dashboard.dashboard_spec("team", "proj", scale="base")
    tables = {s.tags[0] for s in spec.sections}
    # table1 is an excerpt of table2's runs; the sensitivity study gets its loss curves
    assert tables == {"table2", "table3", "frontier", "figure1", "sensitivity",
                      "sensitivity-edge"}
    figure1 = [s for s in spec.sections if s.tags[0] == "figure1"]
    assert [s.tags[-1] for s in figure1] == ["row:A", "row:G"]
    assert figure1[0].panels[0].y == ("update_rms_matrix", "update_rms_matrices")
    scatter = [p for _, p in _panels(spec) if p.kind == "scatter"]
    assert [(p.x, p.y) for p in scatter] == [("optimizer_state_bytes", ("valid_loss",))]


def test_a_key_the_runner_does_not_log_is_refused() -> None:
    spec = dashboard.dashboard_spec("team", "proj", ["table2"])
    section = spec.sections[0]
    renamed = replace(section, panels=(replace(section.panels[0], y=("BLEU",)),))
    with pytest.raises(ValueError, match=r"does not log: \['BLEU'\]"):
        dashboard.check_keys(replace(spec, sections=(renamed,)))


def test_the_report_objects_are_built_offline() -> None:
    spec = dashboard.dashboard_spec("team", "proj", ["table2"], scale="tiny")
    report = dashboard.build_report(spec)
    grids = [b for b in report.blocks if type(b).__name__ == "PanelGrid"]
    assert len(grids) == len(spec.sections)
    first = grids[0]
    assert first.runsets[0].entity == "team" and first.runsets[0].project == "proj"
    assert [type(p).__name__ for g in grids for p in g.panels] == [
        "BarPlot", "BarPlot", "LinePlot", "BarPlot", "LinePlot", "LinePlot"]
    line = grids[2].panels[0]
    assert line.y == ["valid_loss"] and line.groupby == "group"


def _wire_keys(workspace) -> dict[str, set[str]]:
    """The keys the saved view's panels read, from the wire format `Workspace.save` uploads."""
    view = workspace._to_model().model_dump(by_alias=True)
    keys: dict[str, set[str]] = {"history": set(), "summary": set()}
    for section in view["spec"]["section"]["panelBankConfig"]["sections"]:
        for panel in section["panels"]:
            config = panel["config"]
            for key in config.get("metrics", []):
                if key.startswith("summary_metrics."):
                    keys["summary"].add(key[len("summary_metrics."):])
                else:
                    keys["history"].add(key)
            for axis in ("xAxis", "yAxis"):
                if str(config.get(axis, "")).startswith("summary:"):
                    keys["summary"].add(config[axis][len("summary:"):])
    return keys


@pytest.mark.skipif(not dashboard.has_workspace_api(),
                    reason="the installed wandb-workspaces has no workspace API")
@pytest.mark.parametrize("tables", [["table2"], None])
def test_saved_workspace_views_hold_the_report_panels_and_the_logged_keys(tables) -> None:
    spec = dashboard.dashboard_spec("team", "proj", tables, scale="tiny")
    views = dashboard.workspace_views(spec)
    # one view per run set of the report, the report's sections and panels in the same order
    assert [s for v in views for s in v.sections] == list(spec.sections)
    assert all(s.tags == v.tags for v in views for s in v.sections)
    assert len({v.tags for v in views}) == len(views) == len({s.tags for s in spec.sections})
    workspaces = dashboard.build_workspaces(spec)  # offline: nothing is saved
    keys: dict[str, set[str]] = {"history": set(), "summary": set()}
    for view, workspace in zip(views, workspaces, strict=True):
        assert (workspace.entity, workspace.project, workspace.name) == ("team", "proj", view.name)
        wire = workspace._to_model().model_dump(by_alias=True)
        run_set = wire["spec"]["section"]["runSets"][0]
        assert [f["value"] for f in run_set["filters"]["filters"]] == [[t] for t in view.tags]
        assert run_set["grouping"] == [{"section": "run", "name": "group"}]
        for kind, found in _wire_keys(workspace).items():
            keys[kind] |= found
    # exactly the keys the report plots, and only keys experiments/schema.py names
    assert keys == spec.plotted_keys()
    assert keys["history"] <= set(schema.HISTORY_KEYS)
    assert keys["summary"] <= set(schema.SUMMARY_KEYS)
    if tables:
        assert [v.name for v in views] == [
            "Adafactor repro: table2 scale:tiny warmup",
            "Adafactor repro: table2 scale:tiny no-warmup",
            "Adafactor repro: table2 scale:tiny", "Adafactor repro: table2 scale:tiny row:A",
            "Adafactor repro: table2 scale:tiny row:G"]


@pytest.mark.skipif(not dashboard.has_workspace_api(),
                    reason="the installed wandb-workspaces has no workspace API")
def test_workspace_views_without_a_key_say_so_and_write_their_spec(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    spec = dashboard.dashboard_spec("team", "proj", ["table2"], scale="tiny")
    path = dashboard.workspace_spec_path(tmp_path / "team-proj.json")
    said: list[str] = []
    assert dashboard.publish_workspaces(spec, path, log=said.append) == []
    assert path == tmp_path / "team-proj.workspace.json"
    assert said[-1] == (f"workspace views not saved to W&B: WANDB_MODE=offline; {path} is what "
                        "would be created")
    written = json.loads(path.read_text())
    assert (written["entity"], written["project"]) == ("team", "proj")
    assert [v["name"] for v in written["views"]] == [
        v.name for v in dashboard.workspace_views(spec)]
    panel = written["views"][2]["sections"][0]["panels"][0]
    assert (panel["kind"], panel["y"]) == ("line", ["valid_loss"])


def test_cli_without_a_key_says_so_and_writes_spec_and_preview(tmp_path: Path) -> None:
    results = tmp_path / "results"
    paper_like_results(results)
    out = tmp_path / "dash" / "spec.json"
    done = subprocess.run(
        [sys.executable, "-m", "reproduce", "dashboard", "--entity", "team", "--project", "proj",
         "--table", "table2", "--scale", "tiny", "--out", str(out), "--results-dir",
         str(results)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "WANDB_MODE": "offline"},
    )
    assert done.returncode == 0, done.stderr
    assert "not saved to W&B: WANDB_MODE=offline" in done.stderr
    assert "workspace views not saved to W&B: WANDB_MODE=offline" in done.stdout
    views = json.loads(out.with_suffix(".workspace.json").read_text())
    assert views, "the saved-view spec is empty"
    spec = json.loads(out.read_text())
    assert spec["entity"] == "team" and len(spec["sections"]) == 5
    assert spec["config_keys"] == list(schema.CONFIG_KEYS)
    preview = out.with_suffix(".preview.md").read_text()
    assert "| table2/A/warmup/seed0 | 40 |" in preview  # A's update_rms curve, 40 points
    paper_a = get_cell(CELL).paper_bleu  # the synthetic results carry the paper's BLEU
    assert f"| table2/A/warmup/seed0 | {paper_a:.2f} |" in preview


@pytest.fixture(scope="module")
def tiny_cell(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A real tiny table2 cell trained with offline W&B (what the dashboard plots)."""
    from experiments.grid.registry import get_cell
    from experiments.run.cell import run_cell
    from experiments.scales import plan_cell

    results = tmp_path_factory.mktemp("dash-results")
    result = run_cell(plan_cell(get_cell(CELL), "tiny", TINY), results_dir=results, use_wandb=True,
                      accelerator="cpu", cache_dir=tmp_path_factory.mktemp("dash-cache"))
    return results, result


@pytest.mark.slow
def test_every_plotted_key_is_in_a_real_cells_wandb_log(tiny_cell: tuple[Path, dict]) -> None:
    results, _ = tiny_cell
    run = mirror.offline_wandb_run(results / CELL)
    spec = dashboard.dashboard_spec("team", "proj", ["table2"], scale="tiny")
    keys = spec.plotted_keys()
    assert keys["history"] <= run["history_keys"], keys["history"] - run["history_keys"]
    assert keys["summary"] <= set(run["summary"]), keys["summary"] - set(run["summary"])
    for key in schema.CONFIG_KEYS:
        mirror.nested_get(run["config"], key)  # KeyError if the runner stops logging it
    # the run carries every tag a section filters on for its row and column
    wanted = {t for s in spec.sections for t in s.tags
              if not t.startswith("row:") or t == "row:A"} - {"no-warmup"}
    assert wanted <= set(run["run"]["tags"])
    assert run["run"]["group"] == "table2/A"


@pytest.mark.slow
def test_offline_summary_reads_back_as_the_result(tiny_cell: tuple[Path, dict]) -> None:
    """What `wandb sync` uploads from the offline run is what `--from wandb` turns into results."""
    results, result = tiny_cell
    run = mirror.offline_wandb_run(results / CELL)
    record = {"name": run["run"]["name"], "id": run["run"]["id"], "state": "finished",
              "summary": run["summary"], "config": run["config"]}
    back = result_from_record(record)
    assert back is not None
    for key, value in mirror.summary_keys(result).items():
        assert back[key] == value, key
    # the recipe is rebuilt from the run config's preset; the evaluated count is not in it
    recipe = {k: v for k, v in result["bleu_recipe"].items() if k != "sentences"}
    assert {k: back["bleu_recipe"].get(k) for k in recipe} == recipe
