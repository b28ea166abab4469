"""table2 --seeds: each cell runs once per seed; the table shows each cell's mean BLEU and range
and each seed's verdicts and orderings; the CSV has one row per cell and seed; Figure 1, the
reference beside it, runs seed 0 only."""

from __future__ import annotations

import csv
from pathlib import Path

from helpers import write_result

from reproduce.render import render_tables
from reproduce.selection import select_cells

# (seed 0, seed 1) BLEU of each cell: A collapses in the paper, H does not
BLEU = {"table2/A/warmup": (10.0, 12.0), "table2/A/no-warmup": (2.0, "diverged"),
        "table2/H/warmup": (11.0, 13.0), "table2/H/no-warmup": (9.0, 10.0)}


def test_two_seeds_render_mean_range_and_each_seeds_orderings(tmp_path: Path) -> None:
    results, out = tmp_path / "results", tmp_path / "tables"
    for cell, values in BLEU.items():
        for seed, bleu in enumerate(values):
            write_result(results, f"{cell}/seed{seed}", bleu)
    rendered = {r.table: r for r in render_tables(["table2"], results, out)}
    text = rendered["table2"].markdown
    row_a = next(line for line in text.splitlines() if line.startswith("| A |"))
    assert "| 11.0 (10.0-12.0) |" in row_a  # with warmup: mean and range
    assert "| 1.0 (0.0-2.0) †" not in row_a  # seed 0 is not judged collapsed (no curve)
    assert "| 1.0 (0.0-2.0) |" in row_a and "| ?/diverged |" in row_a  # each seed's verdict
    assert "Seeds: 0, 1;" in text
    # seed 0: H's no-warmup BLEU 9 is above A's 2 (1/1); the drops 0.8 vs 0.18 (1/1)
    assert "Seed 0: Warmup finding" in text and "Seed 1: Warmup finding" in text
    assert "no-warmup BLEU lower 1/1" in text and "larger relative drop 1/1" in text
    rows = list(csv.DictReader((out / "table2.csv").open()))
    ran = [r for r in rows if r["bleu"]]
    assert sorted((r["cell_id"], r["seed"]) for r in ran) == sorted(
        (f"{cell}/seed{seed}", str(seed)) for cell in BLEU for seed in (0, 1))
    assert {r["ordering_bleu_lower"] for r in rows} == {"1/1"}


def test_one_seed_renders_as_before(tmp_path: Path) -> None:
    results, out = tmp_path / "results", tmp_path / "tables"
    for cell, values in BLEU.items():
        write_result(results, f"{cell}/seed0", values[0])
    text = render_tables(["table2"], results, out)[0].markdown
    assert "Seed" not in text and "| 10.0 |" in text
    rows = list(csv.DictReader((out / "table2.csv").open()))
    assert {r["seed"] for r in rows} == {"0"}


def test_figure1_runs_seed_0_beside_a_multi_seed_table2() -> None:
    cells = select_cells(["table2", "figure1"], ["A", "G"], [0, 1, 2])
    table2 = [c for c in cells if c.table == "table2"]
    figure1 = [c for c in cells if c.table == "figure1"]
    assert len(table2) == 2 * 2 * 3 and {c.seed for c in table2} == {0, 1, 2}
    assert len(figure1) == 2 and {c.seed for c in figure1} == {0}

