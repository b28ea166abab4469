"""Which tables a command runs and renders: a table's companions come with it (Table 2 brings
Figure 1), `all` expands to the paper's tables, and --rows applies to companions where valid."""

from __future__ import annotations

import pytest

from reproduce.commands import cell_cost_line
from reproduce.errors import UsageError
from reproduce.local import CellOutcome
from reproduce.selection import expand_all, select_cells


def test_table2_brings_figure1_and_all_keeps_each_table_once() -> None:
    assert expand_all(["table2"]) == ["table2", "figure1"]
    assert expand_all(["all"]) == ["table1", "figure1", "table2", "table3"]
    assert expand_all(["table3"]) == ["table3"]
    with pytest.raises(UsageError, match="unknown table 'tabel2'"):
        expand_all(["tabel2"])


def test_rows_select_the_companions_cells_where_they_exist() -> None:
    ids = [c.cell_id for c in select_cells(expand_all(["table2"]), ["A", "N"])]
    assert ids == ["table2/A/warmup/seed0", "table2/A/no-warmup/seed0",
                   "table2/N/warmup/seed0", "table2/N/no-warmup/seed0", "figure1/A/warmup/seed0"]
    assert all(c.table != "figure1" for c in select_cells(expand_all(["table2"]), ["N"]))
    assert len(select_cells(expand_all(["table2"]))) == 44 + 2


def test_cell_cost_line_says_what_more_workers_would_take() -> None:
    outcomes = [CellOutcome(f"c{i}", "ok", wall_s=s) for i, s in enumerate((10.0, 30.0, 20.0))]
    line = cell_cost_line(outcomes)
    assert "median 20 s, 10-30 s, 60 s in all" in line
    assert "about 0.5 min on 8 workers, 0.5 min on 32" in line  # never below the longest cell
    many = [CellOutcome(f"c{i}", "ok", wall_s=60.0) for i in range(64)]
    assert "about 8.0 min on 8 workers, 2.0 min on 32" in cell_cost_line(many)
    assert cell_cost_line([]) == "no cell ran"
