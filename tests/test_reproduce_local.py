"""The local launcher for real: two tiny cells in parallel worker processes through the CLI, one
of which fails (its checkpoint folder cannot be created); the other's result must survive, the
table must be rendered from it and the command must exit non-zero naming the failed cell."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_RUN = ["--set", "steps=10", "--set", "val_interval=5", "--set", "checkpoint_interval=5",
            "--set", "log_interval=5", "--set", "eval_max_sentences=20"]


@pytest.mark.slow
def test_parallel_cells_survive_a_failing_cell(tmp_path: Path) -> None:
    results, tables = tmp_path / "results", tmp_path / "tables"
    broken = results / "table2/A/no-warmup/seed0/checkpoints"
    broken.parent.mkdir(parents=True)
    broken.write_text("a file where the checkpoint folder goes")
    done = subprocess.run(
        [sys.executable, "-m", "reproduce", "table2", "--rows", "A", "--workers", "2",
         "--results-dir", str(results), "--tables-dir", str(tables), "--no-wandb", *TINY_RUN],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "2 cells, 0 already have results" in out
    assert "running 2 cells with 2 worker(s)" in out
    assert "[2/2]" in out and "FAILED" in out
    assert "FAILED table2/A/no-warmup/seed0" in done.stderr
    assert (results / "table2/A/warmup/seed0/result.json").is_file()
    assert not (results / "table2/A/no-warmup/seed0/result.json").exists()
    assert "Traceback" in (results / "table2/A/no-warmup/seed0/run.log").read_text()

    rows = {r["warmup"]: r for r in csv.DictReader((tables / "table2.csv").open())
            if r["row"] == "A"}
    assert rows["yes"]["status"] == "ok" and rows["yes"]["steps"] == "10"
    assert rows["no"]["status"] == "not run" and rows["no"]["bleu"] == ""
    assert "| A |" in out  # the table is printed at the end


def test_progress_reads_a_metrics_file_being_written(tmp_path: Path) -> None:
    from experiments.store.files import read_metrics
    from reproduce.local import _progress_text

    cell = "table2/A/warmup/seed0"
    metrics = tmp_path / cell / "metrics.jsonl"
    metrics.parent.mkdir(parents=True)
    assert _progress_text(cell, tmp_path) == f"{cell} (starting)"
    metrics.write_text('{"step": 10, "train_loss": 5.5}\n{"step": 20, "train_loss": 4.25}\n{"st')
    assert _progress_text(cell, tmp_path) == f"{cell} (step 20, loss 4.250)"
    metrics.write_text('{"step": 10, "train_loss": 5.5}\n{"st\n{"step": 20, "train_loss": 4.25}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not a JSON line"):  # strict reader
        read_metrics(metrics)
