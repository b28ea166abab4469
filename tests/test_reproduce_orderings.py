"""The warmup finding's row-pair orderings (docs/preregistration.md section 3): the exact
Mann-Whitney 5% levels, the paper's own numbers (64/64, 56/56), the 400-step table's 47/64 and
33/56, ties, diverged runs, an undefined drop, and where they are rendered."""

from __future__ import annotations

import csv
import io
from math import comb
from pathlib import Path

import pytest

from experiments.grid.registry import provider
from reproduce.render.orderings import _u_counts, mann_whitney_level, warmup_finding
from reproduce.render.table_data import build_table
from reproduce.render.table_text import csv_text, markdown

TABLE2 = provider("table2")
# Our BLEU (with warmup, without) in the Table 2 of 400 steps, committed 2026-12-02 (Xeon).
TINY_400 = {"A": (7.72, 1.85), "B": (20.43, 1.66), "C": (7.52, 2.55), "D": (10.49, 3.71),
            "E": (0.12, 0.00), "F": (9.97, 3.43), "G": (12.29, 2.37), "H": (15.12, 12.24),
            "I": (6.50, 1.14), "J": (14.73, 4.65), "K": (10.75, 1.50), "L": (14.77, 2.46),
            "M": (7.45, 3.36), "N": (14.63, 8.43), "O": (11.51, 18.34), "P": (14.82, 23.27)}


def _table(bleu: dict[str, tuple[float | str, float | str]]):
    results = []
    for cell in TABLE2.cells():
        if cell.row in bleu:
            value = bleu[cell.row][0 if cell.column == "warmup" else 1]
            status = "diverged" if value == "diverged" else "ok"
            results.append({"cell_id": cell.cell_id, "status": status,
                            "bleu": None if status == "diverged" else value, "steps": 400})
    return build_table(TABLE2, results)


def test_the_five_percent_levels_are_the_exact_mann_whitney_ones() -> None:
    assert sum(_u_counts(8, 8)) == comb(16, 8) and sum(_u_counts(7, 8)) == comb(15, 7)
    assert mann_whitney_level(8, 8) == 49 and mann_whitney_level(7, 8) == 43
    tail = sum(_u_counts(8, 8)[49:]) / comb(16, 8)
    assert tail == pytest.approx(0.0415, abs=1e-4)
    assert sum(_u_counts(8, 8)[48:]) / comb(16, 8) > 0.05
    assert mann_whitney_level(1, 1) is None  # two rows can never reach 5%


def test_the_papers_own_numbers_score_every_pair() -> None:
    paper = {}
    for cell in TABLE2.cells():
        if cell.row in TINY_400:
            paper.setdefault(cell.row, {})[cell.column] = cell.paper_bleu
    finding = warmup_finding(_table({r: (v["warmup"], v["no-warmup"]) for r, v in paper.items()}))
    assert (finding.bleu_lower.score, finding.bleu_lower.pairs) == (64, 64)
    assert (finding.larger_drop.score, finding.larger_drop.pairs) == (56, 56)  # E left out
    assert finding.bleu_lower.level == 49 and finding.larger_drop.level == 43


def test_the_400_step_table_scores_the_issues_numbers() -> None:
    finding = warmup_finding(_table(TINY_400))
    assert (finding.bleu_lower.score, finding.larger_drop.score) == (47, 33)
    assert finding.larger_drop.undefined == ()  # E, whose with-warmup BLEU is 0.12, is left out


def test_ties_diverged_runs_and_an_undefined_drop() -> None:
    bleu = {"A": (10.0, "diverged"), "B": (0.5, 0.0), "C": (10.0, 5.0), "H": (10.0, 5.0)}
    finding = warmup_finding(_table(bleu))
    # no-warmup BLEU: A 0 < B 0 is a tie (1/2), A < H (1), C 5 vs B 0 (0), C = H (1/2)
    assert (finding.bleu_lower.score, finding.bleu_lower.pairs) == (2.0, 4)
    # drops: A 1.0, C 0.5, H 0.5; B's with-warmup BLEU 0.5 < 1: its pairs score 1/2
    assert (finding.larger_drop.score, finding.larger_drop.pairs) == (0.5 + 1 + 0.5 + 0.5, 4)
    assert finding.larger_drop.undefined == ("B",)
    # the curve rule judges a diverged run without its curve; the others need their metrics
    assert finding.collapse_rows_collapsed == (1, 1, 2)  # A collapsed, C not judged
    assert finding.stable_rows_collapsed == (0, 0, 2)
    assert "1/2 (1 not judged) paper-collapse rows" in finding.line()


def test_the_orderings_are_in_the_markdown_and_every_csv_row(tmp_path: Path) -> None:
    data = _table(TINY_400)
    text = markdown(data)
    assert "no-warmup BLEU lower 47/64 (5% level 49)" in text
    assert "larger relative drop 33/56 (5% level 43)" in text
    rows = list(csv.DictReader(io.StringIO(csv_text(data))))
    assert {(r["ordering_bleu_lower"], r["ordering_larger_drop"]) for r in rows} == {
        ("47/64", "33/56")}
    assert warmup_finding(_table({"A": (1.0, 2.0)})) is None  # no stable row: no pair
