"""Figure 1's mechanism numbers (docs/preregistration.md section 2): the paper's read-offs under
the centred 100-tau window give the pre-registered 0.43 at 300, 2.20 at 830 and 2000; the
tolerances and the distance; a design's beta2 clock; the line in the rendered table."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from helpers import write_result
from test_reproduce_render import _table

from experiments.measure.plateau import centred
from reproduce.render.mechanism import (
    PAPER_MECHANISM,
    Mechanism,
    mechanism,
    paper_curve,
    table_mechanism,
)
from reproduce.render.table_text import markdown


def test_the_papers_read_offs_give_the_preregistered_numbers() -> None:
    p = PAPER_MECHANISM
    assert p.u == pytest.approx(0.43, abs=0.005) and p.tau_u == 300
    assert p.o == pytest.approx(2.20, abs=0.005) and p.tau_o == 830
    assert p.tau_s == 2000 and p.failures() == [] and p.distance == pytest.approx(0, abs=1e-4)
    taus, values = paper_curve()
    assert values[taus.index(800)] == pytest.approx(2.24) and values[-1] == 1.0


def test_centred_means_truncate_at_the_ends() -> None:
    assert centred([0, 10, 20, 30], [1.0, 2.0, 3.0, 10.0], window=20) == pytest.approx(
        [1.5, 2.0, 5.0, 6.5])


def test_a_curve_without_the_overshoot_does_not_match_and_says_why() -> None:
    taus = list(range(10, 3001, 10))
    flat = mechanism((taus, [1.0] * len(taus)), (taus, [1.0] * len(taus)))
    assert set(flat.failures()) == {"u", "tau_u", "o", "tau_o"}  # no dip, no overshoot
    early = Mechanism(0.4, 300, 2.2, 400, 900, (0.9, 1.1))
    assert early.failures() == ["tau_o"]
    assert early.distance == pytest.approx(math.log(830 / 400))


def test_a_designs_own_cells_on_its_beta2_clock(tmp_path: Path) -> None:
    """Under decay_time_rescale one step is F taus: a dip at step 30 of F = 10 is at tau 300."""
    settings = {"decay_time_rescale": True, "time_rescale": 10.0}
    steps = list(range(10, 301, 10))
    dip = [{"step": s, "train_loss": 1.0, "update_rms_matrix": 0.3 if s == 30 else 1.0}
           for s in steps]
    for row in ("A", "G"):
        write_result(tmp_path, f"table2/{row}/warmup/seed0", 5.0, settings=settings,
                     metrics=dip if row == "A" else [{**r, "update_rms_matrix": 1.0}
                                                     for r in dip])
    data = _table("table2", tmp_path)
    assert data.mechanism is not None and data.mechanism.tau_u == 300
    assert data.mechanism.g_range == (1.0, 1.0)
    assert "Figure 1's mechanism on this table's rows A and G" in markdown(data)
    assert table_mechanism("table2", 1, {}, lambda _: []) is None  # no A cell of seed 1
