"""Cell ids and the table-provider registry: a new table is one provider, and the registry, the
cell lookup and the grid renderer take it as it is."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from helpers import UNIGRAM_LEVEL, plateau_curve, write_result, write_unigram_levels

from experiments.grid import PROVIDERS, TABLE2
from experiments.grid.cells import Registry, TableProvider, check_column, parse_cell_id
from experiments.grid.registry import REGISTRY
from experiments.store.files import load_results
from reproduce.render import Inputs, render_grid


def _warmup_only(row: str, column: str, seed: int):
    """A table of Table 2's rows A and G with warmup only, trained as its own cells."""
    check_column("figure1", column, ("warmup",))
    return replace(TABLE2.cell(row, column, seed), table="figure1")


FIGURE1 = TableProvider(
    name="figure1", rows=("A", "G"), row_columns=lambda row: ("warmup",),
    build_cell=_warmup_only, caption="Figure 1's rows as a table.", agreement_rows=("A", "G"),
)


def test_parse_cell_id() -> None:
    assert parse_cell_id("table2/H/no-warmup/seed12") == ("table2", "H", "no-warmup", 12)
    for bad in ("table2/H/no-warmup", "table2/H/no-warmup/seed01", "a/b/c/d/seed0"):
        with pytest.raises(ValueError):
            parse_cell_id(bad)


def test_every_registered_cell_round_trips_through_its_id() -> None:
    for provider in REGISTRY.providers():
        for cell in provider.cells(seeds=(0, 2)):
            assert REGISTRY.get_cell(cell.cell_id) == cell


def test_a_new_provider_registers_without_other_changes(tmp_path: Path) -> None:
    registry = Registry([*PROVIDERS, FIGURE1])
    assert registry.names() == ("table1", "table2", "table3", "figure1")
    assert registry.paper_tables() == ["table1", "table2", "table3"]  # in_all is opt-in
    cells = registry.table_cells("figure1")
    assert [c.cell_id for c in cells] == ["figure1/A/warmup/seed0", "figure1/G/warmup/seed0"]
    assert registry.get_cell("figure1/G/warmup/seed0").optimizer["beta2"] == 0.9
    with pytest.raises(ValueError, match="unknown column 'no-warmup' for figure1"):
        registry.get_cell("figure1/G/no-warmup/seed0")
    with pytest.raises(ValueError, match="registered twice"):
        Registry([FIGURE1, FIGURE1])

    write_result(tmp_path / "results", "figure1/A/warmup/seed0", 25.0)
    write_result(tmp_path / "results", "figure1/G/warmup/seed0", 3.0, metrics=plateau_curve(),
                 valid_loss=UNIGRAM_LEVEL)
    write_unigram_levels(tmp_path / "results", "figure1",
                         ["figure1/A/warmup/seed0", "figure1/G/warmup/seed0"])
    inputs = Inputs(load_results(tmp_path / "results"), tmp_path / "results")
    rendered = render_grid(FIGURE1, inputs, tmp_path / "tables")
    assert sorted(p.name for p in rendered.paths) == [
        "figure1.csv", "figure1.md", "figure1.tex", "figure1_valid_loss.png"]  # G has a curve
    assert rendered.markdown.startswith("# Figure 1's rows as a table.")
    # G stays on the unigram plateau: collapsed, which the paper's 18.4 is not.
    assert "collapse agrees with the paper in 1/2 cells of all rows" in rendered.markdown
