"""The committed paper_tables/table2.csv is what the committed code produces.

Three cells of the default tiny preset are re-run from scratch: one that the committed table marks
collapsed (curve rule), one it does not, and one SGD row. Their re-rendered CSV rows must equal
the committed ones to the printed digits when they run on the arithmetic that made the committed
table (the CSV's numerics column); on another CPU, the fields that rounding cannot move. A stale
table (the code changed, the table did not) fails
here; regenerate it with `python -m reproduce table2` from a fresh clone.
"""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest
from helpers import REPO, reproduce_cmd, reproduce_env

COMMITTED = REPO / "paper_tables" / "table2.csv"
# Every field the code computes for a cell (the BLEU-quarter mark depends on the column's other
# cells, so it is left out: only three cells are re-run).
COMPARED = ("bleu", "tokenized_bleu", "valid_loss", "status", "steps", "scale", "collapsed",
            "verdict", "verdict_reason", "unigram_level")
# On other arithmetic (another CPU instruction set or model, experiments.identity) the digits
# differ; what rounding cannot move is still compared: the verdict, the unigram level (counted
# from the corpus), the run's length and status.
ANY_ARITHMETIC = ("status", "steps", "scale", "collapsed", "verdict", "unigram_level")


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(encoding="utf-8") as f:
        return {r["cell_id"]: r for r in csv.DictReader(f)}


def pick_guard_cells(rows: dict[str, dict[str, str]]) -> list[str]:
    """(a collapsed cell, rows A-P first; a non-collapsed A-P cell; another SGD cell) of the
    committed table. At 400 steps no A-P cell collapses by the curve rule (all are slow), so
    the collapsed one may be an SGD row's."""
    adafactor = [r for r in rows.values() if not r["row"].startswith("Q")]
    collapsed = sorted((r for r in rows.values() if r["collapsed"] == "yes"),
                       key=lambda r: r["row"].startswith("Q"))
    trained = [r for r in adafactor if r["collapsed"] == "no"]
    assert collapsed and trained, f"{COMMITTED} lacks a collapsed or a non-collapsed cell"
    picked = [collapsed[0]["cell_id"], trained[0]["cell_id"]]
    sgd = [r["cell_id"] for r in rows.values() if r["row"].startswith("Q") and r["bleu"]
           and r["cell_id"] not in picked]
    assert sgd, f"{COMMITTED} has no SGD cell to re-run"
    return [*picked, sgd[0]]


@pytest.mark.slow
def test_committed_table2_rows_are_what_the_code_produces(tmp_path: Path) -> None:
    committed = _rows(COMMITTED)
    cells = pick_guard_cells(committed)
    results, tables = tmp_path / "results", tmp_path / "tables"
    for cell_id in cells:
        done = subprocess.run(reproduce_cmd("run", cell_id, "--scale", "tiny", "--results-dir",
                                            str(results), "--no-wandb"),
                              cwd=REPO, env=reproduce_env(), capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
    done = subprocess.run(reproduce_cmd("render", "table2", "--unigram-level", "--results-dir",
                                        str(results), "--tables-dir", str(tables)),
                          cwd=REPO, env=reproduce_env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    fresh = _rows(tables / "table2.csv")
    for cell_id in cells:
        assert fresh[cell_id]["numerics"], f"{cell_id}: the re-run recorded no arithmetic"
        same_arithmetic = fresh[cell_id]["numerics"] == committed[cell_id]["numerics"]
        fields = COMPARED if same_arithmetic else ANY_ARITHMETIC
        want = {k: committed[cell_id][k] for k in fields}
        got = {k: fresh[cell_id][k] for k in fields}
        where = ("same arithmetic" if same_arithmetic else
                 f"committed on {committed[cell_id]['numerics']!r}, re-run on "
                 f"{fresh[cell_id]['numerics']!r}: digits not compared")
        assert got == want, f"{cell_id} ({where}): committed {want}, re-run {got}"
