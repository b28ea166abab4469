"""``--from wandb``: W&B run records -> result files -> tables.

No W&B server runs here, so the mapping is tested on a recorded API response
(test_reproduce_wandb_runs.json: per run the name, id, state, config, summary and history rows
that wandb.Api returns, built from four real tiny cells; see its ``_recorded`` note). The live
path (wandb.Api) is exercised up to the point where it needs a login.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from experiments.measure.unigram import measure_unigram_levels
from experiments.store.files import load_results, read_json, read_metrics
from experiments.store.prepared import load_unigram_levels
from reproduce.cli import main
from reproduce.wandb_source import metrics_from_history, result_from_record, write_results

FIXTURE = Path(__file__).with_name("test_reproduce_wandb_runs.json")


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return json.loads(FIXTURE.read_text())["runs"]


def _record(records: list[dict], run_id: str) -> dict:
    return next(r for r in records if r["id"] == run_id)


def test_result_from_record_maps_summary_and_config(records: list[dict]) -> None:
    record = records[0]
    result = result_from_record(record)
    assert result is not None
    assert result["cell_id"] == "table2/A/warmup/seed0" and result["warmup"] is True
    assert result["bleu"] == record["summary"]["bleu"] and result["status"] == "ok"
    assert result["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    # The nested BLEU recipe is not a summary scalar: it comes back from the run config.
    assert result["bleu_recipe"] == {"split": "valid", "corpus": "embedded", "max_sentences": 200,
                                     "decode": "greedy", "beam": 1, "length_penalty": None}
    assert not any(k.startswith(("_", "trainer/")) for k in result)


def test_unfinished_runs_are_skipped_and_bad_names_fail(records: list[dict]) -> None:
    assert result_from_record(_record(records, "crashedrun000001")) is None
    bad = dict(records[0], name="table2/Z/warmup/seed0", id="xyz")
    bad["summary"] = {k: v for k, v in bad["summary"].items() if k != "cell_id"}
    with pytest.raises(ValueError, match=r"W&B run 'xyz': unknown row 'Z' for table2"):
        result_from_record(bad)


def test_history_rows_become_metrics_records(records: list[dict]) -> None:
    rows = metrics_from_history(records[0]["history"])
    history = records[0]["history"]
    assert [r["step"] for r in rows] == [h["trainer/global_step"] for h in history]
    assert rows[0]["step"] == 10 and rows[-1]["final"] is True
    assert all("update_rms" in r for r in rows[:3])
    assert not any(k.startswith(("_", "trainer/")) for r in rows for k in r)


def test_write_results_picks_newest_run_of_the_scale(tmp_path: Path, records: list[dict]) -> None:
    count = write_results(records, tmp_path, tables=["table1"], scale="tiny")
    results = {r["cell_id"]: r for r in load_results(tmp_path)}
    # table1 reads table2 rows A and G: 4 cells plus the diverged Q6 cell of table2.
    assert count == 5 and set(results) == {
        "table2/A/warmup/seed0", "table2/A/no-warmup/seed0", "table2/G/warmup/seed0",
        "table2/G/no-warmup/seed0", "table2/Q6/warmup/seed0"}
    newest = _record(records, records[2]["id"])["summary"]["bleu"]
    assert results["table2/A/no-warmup/seed0"]["bleu"] == newest != 9.9
    assert results["table2/G/warmup/seed0"]["scale"] == "tiny"
    assert results["table2/Q6/warmup/seed0"]["status"] == "diverged"
    assert results["table2/Q6/warmup/seed0"]["bleu"] is None
    metrics = read_metrics(tmp_path / "table2/A/warmup/seed0/metrics.jsonl")
    assert metrics[0]["step"] == 10 and "update_rms" in metrics[0]


def test_render_from_recorded_runs_matches_their_summaries(tmp_path: Path,
                                                            records: list[dict]) -> None:
    from reproduce.render import render_tables

    write_results(records, tmp_path / "results", tables=["table2"], scale="tiny")
    render_tables(["table2"], tmp_path / "results", tmp_path / "tables")
    rows = {(r["row"], r["warmup"]): r for r in csv.DictReader((tmp_path / "tables" /
                                                                 "table2.csv").open())}
    summary = records[0]["summary"]
    assert float(rows[("A", "yes")]["bleu"]) == pytest.approx(summary["bleu"], abs=0.005)
    assert rows[("Q6", "yes")]["bleu"] == "diverged"
    assert rows[("B", "yes")]["bleu"] == ""  # the crashed run fills nothing
    assert (tmp_path / "tables" / "table2_update_rms.png").is_file()


def test_live_path_without_login_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    code = main(["render", "table2", "--from", "wandb", "--entity", "nobody", "--project", "p",
                 "--results-dir", str(tmp_path / "r")])
    assert code == 2
    assert "cannot read W&B runs of nobody/p" in capsys.readouterr().err


def test_recorded_runs_give_the_unigram_level_and_curve_verdicts(tmp_path: Path,
                                                                  records: list[dict]) -> None:
    """The run config is config.json: written back, the unigram level is measured from it, and
    the table reads every finished curve against that level (without it only divergence)."""
    from reproduce.render import render_tables

    results = tmp_path / "results"
    write_results(records, results, tables=["table2"], scale="tiny")
    config = read_json(results / "table2/A/warmup/seed0/config.json")
    want = {k: v for k, v in records[0]["config"].items() if not k.startswith("_")}
    assert config == want and config["scale"]["corpus"] == "embedded"
    measure_unigram_levels(results, "table2", log=lambda _: None)
    levels = load_unigram_levels(results, "table2")
    assert set(levels) == {"table2/A/warmup/seed0", "table2/A/no-warmup/seed0",
                           "table2/G/warmup/seed0", "table2/G/no-warmup/seed0"}
    # The recorded Q6 run carries another cell's config: it is not taken as Q6's.
    assert not (results / "table2/Q6/warmup/seed0/config.json").exists()
    render_tables(["table2"], results, tmp_path / "tables")
    rows = {(r["row"], r["warmup"]): r for r in csv.DictReader((tmp_path / "tables" /
                                                                 "table2.csv").open())}
    for key in (("A", "yes"), ("A", "no"), ("G", "yes"), ("G", "no")):
        assert float(rows[key]["unigram_level"]) == pytest.approx(levels["table2/A/warmup/seed0"],
                                                                  abs=1e-4)
        assert rows[key]["verdict"] != ""


def test_table_from_wandb_measures_the_unigram_level_unless_told_not_to(
        tmp_path: Path, records: list[dict], monkeypatch: pytest.MonkeyPatch) -> None:
    """`table2 --from wandb` runs the table's prepare step on the fetched runs, as a local run
    does. No W&B server runs here: the fetch writes the recorded API response instead."""
    import reproduce.commands as commands

    def fetch(entity: str, project: str, target: Path, **kw: object) -> int:
        return write_results(records, target, tables=kw["tables"], scale=kw["scale"])

    monkeypatch.setattr(commands, "download_results", fetch)
    for extra, measured in (((), True), (("--no-unigram-level",), False)):
        results = tmp_path / f"r{measured}"
        argv = ["table2", "--from", "wandb", "--entity", "e", "--project", "p", "--scale",
                "tiny", "--results-dir", str(results), "--tables-dir", str(tmp_path / "t"),
                *extra]
        assert main(argv) == 0
        assert bool(load_unigram_levels(results, "table2")) is measured
