"""The paper's tables as data: completeness, stable ids, the paper's numbers, bad input."""

from __future__ import annotations

import pytest

from experiments.grid.registry import REGISTRY, get_cell, source_cell, table_cells

TABLE2_ROWS = [*"ABCDEFGHIJKLMNOP", "Q1", "Q2", "Q3", "Q4", "Q5", "Q6"]


def test_table2_has_44_cells_with_unique_ids_in_paper_order() -> None:
    cells = table_cells("table2")
    ids = [c.cell_id for c in cells]
    assert len(cells) == 44
    assert len(set(ids)) == 44
    assert ids[:3] == ["table2/A/warmup/seed0", "table2/A/no-warmup/seed0", "table2/B/warmup/seed0"]
    assert [c.row for c in cells[::2]] == TABLE2_ROWS
    assert all(get_cell(i).cell_id == i for i in ids)  # ids round-trip


def test_ids_are_stable_strings() -> None:
    cell = get_cell("table2/H/no-warmup/seed0")
    assert (cell.table, cell.row, cell.column, cell.seed, cell.warmup) == (
        "table2", "H", "no-warmup", 0, False)
    assert get_cell("table2/H/warmup/seed3").cell_id == "table2/H/warmup/seed3"
    assert len(table_cells("table2", seeds=(0, 1, 2))) == 132


@pytest.mark.parametrize(
    ("cell_id", "bleu"),
    [
        ("table2/A/warmup/seed0", 25.6),
        ("table2/A/no-warmup/seed0", 0.1),
        ("table2/E/warmup/seed0", 0.3),
        ("table2/G/no-warmup/seed0", 15.6),
        ("table2/N/warmup/seed0", 25.9),
        ("table2/O/no-warmup/seed0", 25.5),
        ("table2/Q3/no-warmup/seed0", "diverged"),
        ("table2/Q6/warmup/seed0", "diverged"),
        ("table2/Q5/warmup/seed0", 24.3),
        ("table1/G/warmup/seed0", 18.4),
        ("table1/A/no-warmup/seed0", 0.1),
        ("table3/clever/adafactor/seed0", 26.6),
        ("table3/naive1/adam/seed0", 25.8),
        ("table3/naive2/adafactor/seed0", 25.4),
    ],
)
def test_paper_numbers_match_paper_md(cell_id: str, bleu: float | str) -> None:
    assert get_cell(cell_id).paper_bleu == bleu


def test_row_switches_are_the_papers() -> None:
    b = get_cell("table2/B/warmup/seed0")
    assert b.optimizer == {"name": "adam", "betas": (0.9, 0.999), "eps": 1e-9}
    assert b.schedule == {"kind": "absolute", "multiplier": 0.1, "warmup": True}
    e = get_cell("table2/E/no-warmup/seed0").optimizer
    assert (e["factored"], e["beta2"], e["clip_threshold"]) == ("col", 0.999, None)
    k = get_cell("table2/K/warmup/seed0").optimizer
    assert (k["beta2"], k["decay_exponent"]) == (None, 0.5)
    o = get_cell("table2/O/no-warmup/seed0")
    assert o.optimizer["scale_parameter"] and o.optimizer["factored"] is True
    assert o.schedule == {"kind": "relative", "multiplier": 1.0, "warmup": False}
    assert get_cell("table2/P/warmup/seed0").optimizer["beta1"] == 0.9
    assert get_cell("table2/Q4/warmup/seed0").schedule["multiplier"] == 150.0
    assert get_cell("table2/Q4/warmup/seed0").optimizer == {"name": "sgd"}


def test_table1_is_rows_a_and_g_of_table2() -> None:
    for cell in table_cells("table1"):
        twin = get_cell(cell.cell_id.replace("table1", "table2"))
        assert (cell.optimizer, cell.schedule, cell.paper_bleu) == (
            twin.optimizer, twin.schedule, twin.paper_bleu)
    assert [c.row for c in table_cells("table1")] == ["A", "A", "G", "G"]


def test_table3_untied_embeddings_and_budget() -> None:
    cells = table_cells("table3")
    assert len(cells) == 6
    for cell in cells:
        assert cell.model_overrides["tie_embeddings"] is False
        assert (cell.steps_factor, cell.max_tokens_factor) == (0.5, 4.0)
    adam = get_cell("table3/naive1/adam/seed0")
    assert adam.optimizer["betas"] == (0.9, 0.98)
    assert adam.schedule == {"kind": "vaswani", "warmup_steps": 4000}
    assert adam.model_overrides["emb_init_std"] == 1.0
    assert get_cell("table3/naive2/adam/seed0").model_overrides["emb_multiplier"] == 1.0


def test_registry_counts_and_the_paper_tables() -> None:
    assert REGISTRY.paper_tables() == ["table1", "table2", "table3"]
    assert [len(table_cells(t)) for t in REGISTRY.paper_tables()] == [4, 44, 6]


def test_table1_cells_are_trained_as_their_table2_cells() -> None:
    for cell in table_cells("table1"):
        trained = source_cell(cell)
        assert trained.cell_id == cell.cell_id.replace("table1/", "table2/", 1)
        assert (trained.optimizer, trained.schedule) == (cell.optimizer, cell.schedule)
    table2 = get_cell("table2/G/warmup/seed0")
    assert source_cell(table2) is table2


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: table_cells("table4"), "unknown table 'table4'"),
        (lambda: table_cells("table2", rows=["A", "Z"]), "unknown row(s) 'Z'"),
        (lambda: table_cells("table1", rows=["B"]), "valid rows: A, G"),
        (lambda: get_cell("table2/Z/warmup/seed0"), "unknown row 'Z'"),
        (lambda: get_cell("table2/A/cold/seed0"), "unknown column 'cold'"),
        (lambda: get_cell("table2/A/warmup"), "must look like"),
        (lambda: get_cell("table2/A/warmup/s0"), "bad seed part"),
        (lambda: table_cells("table2", seeds=(-1,)), "seed must be"),
    ],
)
def test_bad_input_names_the_problem(call, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()
