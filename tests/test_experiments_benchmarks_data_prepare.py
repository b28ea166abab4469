"""Smoke test of experiments/benchmarks/data_prepare.py on a 1x stand-in with a small vocabulary:
every row is measured in a child process and carries wall time and peak RSS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.benchmarks import data_prepare


def test_standin_repeats_the_training_text(shared_data_dir: Path, multi30k_dir: Path,
                                           tmp_path: Path) -> None:
    folder = data_prepare.make_standin(tmp_path / "x2", shared_data_dir, 2)
    lines = (multi30k_dir / "train.en").read_bytes().count(b"\n")
    assert (folder / "train.de").read_bytes().count(b"\n") == 2 * lines
    assert (folder / "newstest2013.en").is_file()


@pytest.mark.slow  # several fresh processes import torch and Lightning (~1-2 min on 2 cores)
def test_benchmark_rows_have_time_and_rss(shared_data_dir: Path, multi30k_dir: Path,
                                          tmp_path: Path) -> None:
    code = data_prepare.main([
        "--source", str(shared_data_dir), "--repeat", "1", "--vocab-size", "500",
        "--ranks", "2", "--rank-rounds", "3", "--rank-timeout", "240",
        "--arrow-repeat", "0", "--work", str(tmp_path / "w"),
        "--out", str(tmp_path / "out")])
    assert code == 0
    out = json.loads((tmp_path / "out" / "data_prepare.json").read_text())
    rows = out["rows"]
    assert rows["prepare_cold"]["built"] and rows["prepare_vocab_cached"]["built"]
    assert rows["prepare_cold"]["pairs"]["train"] == 29_000
    for row in (rows["prepare_cold"], rows["first_step_0"], *rows["gloo_ranks"]):
        assert row["wall_s"] > 0 and 0 < row["peak_rss_gb"] < 8
    # Three rounds of 2 ranks: before DDP was freed ahead of the process group, about half the
    # rounds hung in teardown (a timeout here, with the stuck rank's stack in the message).
    for key in ("gloo_ranks", "gloo_ranks_1", "gloo_ranks_2"):
        assert sorted(r["rank"] for r in rows[key]) == [0, 1]
