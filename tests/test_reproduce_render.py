"""Rendering paper_tables/ from result.json files (fixture data written here, in the runner's
format), the curve collapse rule beside the secondary BLEU rule, and the agreement count."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from helpers import (
    PNG_MAGIC,
    SIGNATURE,
    UNIGRAM_LEVEL,
    paper_like_results,
    plateau_curve,
    write_result,
    write_unigram_levels,
)
from helpers import curve as helpers_curve

from experiments.grid.registry import table_cells
from experiments.store.prepared import load_unigram_levels
from reproduce.render import Inputs, render_tables
from reproduce.render.collapse_bleu import collapsed_cells
from reproduce.render.table_data import TableData, build_table
from reproduce.render.table_text import csv_text, latex, markdown


def test_collapse_rule_quarter_of_best_in_column() -> None:
    marks = collapsed_cells({"best": 20.0, "edge": 5.0, "below": 4.99, "div": "diverged",
                             "missing": None})
    assert marks == {"best": False, "edge": False, "below": True, "div": True, "missing": None}
    assert collapsed_cells({"a": "diverged", "b": "diverged"}) == {"a": True, "b": True}


def test_table2_agreement_counts_disagreements(tmp_path: Path) -> None:
    # Ours: A without warmup did NOT collapse (paper: 0.1) and E with warmup did not (paper 0.3).
    flips = {"table2/A/no-warmup/seed0": 20.0, "table2/E/warmup/seed0": 24.0}
    paper_like_results(tmp_path, flips)
    data = _table("table2", tmp_path)
    assert data.agreement() == (30, 32, 32)
    text = markdown(data)
    assert "collapse agrees with the paper in 30/32 cells of rows A-P" in text
    row_a = next(line for line in text.splitlines() if line.startswith("| A |"))
    # Ours 20.0 not collapsed but flagged as disagreeing; the paper's 0.1 carries the dagger.
    assert "20.0 ✗" in row_a and "0.1 †" in row_a
    assert "Ours: scale tiny" in text and "embedded valid split (200 sentences)" in text
    assert SIGNATURE in text


def test_table2_csv_has_all_44_cells(tmp_path: Path) -> None:
    paper_like_results(tmp_path)
    rows = list(csv.DictReader(csv_text(_table("table2", tmp_path)).splitlines()))
    assert len(rows) == 44
    assert {r["warmup"] for r in rows} == {"yes", "no"}
    by_cell = {(r["row"], r["warmup"]): r for r in rows}
    assert by_cell[("Q6", "yes")]["bleu"] == "diverged"
    assert by_cell[("Q6", "yes")]["paper_bleu"] == "diverged"
    assert float(by_cell[("N", "yes")]["bleu"]) == pytest.approx(25.9)
    assert by_cell[("N", "yes")]["paper_bleu"] == "25.9"
    assert by_cell[("A", "no")]["collapsed"] == "yes"
    assert by_cell[("A", "no")]["verdict"] == "plateau"
    assert by_cell[("A", "no")]["bleu_quarter_collapsed"] == "yes"
    assert float(by_cell[("A", "no")]["unigram_level"]) == UNIGRAM_LEVEL
    assert by_cell[("A", "yes")]["collapsed"] == "no"
    assert by_cell[("A", "yes")]["verdict"] == "slow"  # 5.5 -> 4.5 over its last interval
    assert by_cell[("Q6", "yes")]["verdict"] == "diverged"
    assert all(r["collapse_agrees"] == "yes" for r in rows if not r["row"].startswith("Q"))


def test_missing_cells_are_marked_not_run(tmp_path: Path) -> None:
    write_result(tmp_path, "table2/A/warmup/seed0", 20.0)
    write_result(tmp_path, "table2/A/no-warmup/seed0", "diverged")
    data = _table("table2", tmp_path)  # no unigram level yet: only the diverged run is judged
    assert data.agreement() == (1, 1, 32)
    assert "1 run but not judged: no unigram level measured" in data.agreement_line()
    write_unigram_levels(tmp_path, "table2", ["table2/A/warmup/seed0"])
    data = _table("table2", tmp_path)
    assert data.n_results == 2
    assert data.agreement() == (2, 2, 32)
    assert "(30 of them not run yet)" in data.agreement_line()
    rows = list(csv.DictReader(csv_text(data).splitlines()))
    b_warm = next(r for r in rows if r["row"] == "B" and r["warmup"] == "yes")
    assert b_warm["bleu"] == "" and b_warm["status"] == "not run"
    assert "| B | Adam" in markdown(data)


def test_table1_reuses_table2_rows_a_and_g(tmp_path: Path) -> None:
    write_result(tmp_path, "table2/A/warmup/seed0", 21.0)
    write_result(tmp_path, "table2/G/no-warmup/seed0", 12.0)
    data = _table("table1", tmp_path)
    assert data.cell("A", "warmup").bleu == pytest.approx(21.0)
    assert data.cell("G", "no-warmup").bleu == pytest.approx(12.0)
    assert data.cell("A", "no-warmup").result is None
    rows = list(csv.DictReader(csv_text(data).splitlines()))
    assert [r["result_cell_id"] for r in rows if r["bleu"]] == [
        "table2/A/warmup/seed0", "table2/G/no-warmup/seed0"]


def test_table3_columns_are_optimizers(tmp_path: Path) -> None:
    for cell in table_cells("table3"):
        if cell.row == "naive1":
            write_result(tmp_path, cell.cell_id, 3.0, metrics=plateau_curve(),
                         valid_loss=UNIGRAM_LEVEL)
        else:
            write_result(tmp_path, cell.cell_id, 20.0)
    write_unigram_levels(tmp_path, "table3", [c.cell_id for c in table_cells("table3")])
    data = _table("table3", tmp_path)
    assert data.columns == ("adam", "adafactor")
    assert data.cell("naive1", "adam").collapsed is True  # on the plateau
    assert data.cell("naive1", "adam").bleu_collapsed is True  # 3.0 < 20/4
    assert data.agreement() == (4, 6, 6)
    assert "Adafactor: ours" in markdown(data)


def test_a_slow_learner_is_not_a_collapse_whatever_its_bleu(tmp_path: Path) -> None:
    """A run still learning at the end is slow, not collapsed, even when
    its BLEU is far below the column's best (the secondary rule still says so, labelled)."""
    paper_like_results(tmp_path)
    write_result(tmp_path, "table2/B/no-warmup/seed0", 2.0, metrics=helpers_curve(5.0))
    data = _table("table2", tmp_path)
    b = data.cell("B", "no-warmup")
    assert b.verdict is not None and b.verdict.verdict == "slow" and b.collapsed is False
    assert b.bleu_collapsed is True and b.paper_collapsed is False and b.agrees is True
    row_b = next(line for line in markdown(data).splitlines() if line.startswith("| B |"))
    assert "| 2.0 | slow |" in row_b and row_b.endswith("| yes | - |")  # BLEU<1/4, max RMS
    assert data.bleu_agreement() == (31, 32)
    assert "by the secondary BLEU rule (below a quarter of the column's best) 31/32" in (
        data.agreement_line())


def test_latex_escapes_and_marks(tmp_path: Path) -> None:
    paper_like_results(tmp_path)
    tex = latex(_table("table2", tmp_path))
    assert r"\begin{tabular}{llrrrr}" in tex and r"\end{table}" in tex
    assert r"$^\dagger$" in tex
    assert "1 - t^-0.8" not in tex and r"1 - t\textasciicircum{}-0.8" in tex
    assert tex.count(r" \\") == 2 + 22  # two header lines, one line per row


def test_mixed_scales_are_flagged(tmp_path: Path) -> None:
    write_result(tmp_path, "table2/A/warmup/seed0", 20.0, scale="tiny")
    write_result(tmp_path, "table2/B/warmup/seed0", 20.0, scale="small")
    assert "MIXED" in markdown(_table("table2", tmp_path))


def test_render_tables_writes_files_and_plots(tmp_path: Path) -> None:
    results, out = tmp_path / "results", tmp_path / "tables"
    paper_like_results(results)
    rendered = render_tables(["table1", "table2"], results, out)
    names = sorted(p.name for r in rendered for p in r.paths)
    for name in ("table2.md", "table2.csv", "table2.tex", "table2_valid_loss.png",
                 "table2_update_rms.png", "table1.md", "table1_valid_loss.png",
                 "table1_update_rms.png"):
        assert name in names
        assert (out / name).stat().st_size > 0
    assert (out / "table2_update_rms.png").read_bytes()[:8] == PNG_MAGIC
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temp files


def test_render_tables_without_results_is_an_error(tmp_path: Path) -> None:
    from reproduce.errors import UsageError

    with pytest.raises(UsageError, match="does not exist"):
        render_tables(["table2"], tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no results for table2"):
        render_tables(["table2"], tmp_path / "empty", tmp_path / "out")


def _load(results_dir: Path) -> list[dict]:
    from experiments.store.files import load_results

    return load_results(results_dir)


def _table(table: str, results_dir: Path) -> TableData:
    """``table`` built as render_tables builds it: curves and unigram levels from the folder."""
    inputs = Inputs(json.loads(json.dumps(_load(results_dir))), results_dir)
    return build_table(table, inputs.results, inputs.metrics,
                       load_unigram_levels(results_dir, "table2" if table == "table1" else table))


def test_each_csv_row_records_its_commit_and_arithmetic(tmp_path: Path) -> None:
    results, out = tmp_path / "results", tmp_path / "tables"
    result = write_result(results, "table2/A/warmup/seed0", 10.0)
    render_tables(["table2"], results, out)
    row = next(r for r in csv.DictReader((out / "table2.csv").open()) if r["bleu"])
    recorded = result["identity"]["recorded"]
    assert row["numerics"] == recorded["numerics"] and recorded["git_commit"]
    assert row["git_commit"].removesuffix("+dirty") == recorded["git_commit"]
    assert row["git_commit"].endswith("+dirty") == bool(recorded["git_dirty"])
