"""Result files: atomic JSON writes, metrics.jsonl truncation on resume, load_results, W&B names."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.grid.registry import get_cell
from experiments.run.mirror import wandb_run_id, wandb_settings
from experiments.store.files import (
    MetricsWriter,
    atomic_write,
    atomic_write_json,
    load_results,
    read_json,
)

WRITER = """
import sys
from experiments.store.files import atomic_write_json
path = sys.argv[1]
i = 0
while True:
    atomic_write_json(path, {"version": i % 2, "payload": [i % 2] * 200_000})
    i += 1
"""


def test_sigkill_during_writes_never_leaves_a_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    atomic_write_json(path, {"version": 0, "payload": [0] * 200_000})
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)])
    try:
        reads = 0
        deadline = time.monotonic() + 60
        while reads < 30 and time.monotonic() < deadline:
            data = read_json(path)  # a torn file would raise JSONDecodeError here
            assert data["payload"] == [data["version"]] * 200_000
            reads += 1
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    final = read_json(path)
    assert final["payload"] == [final["version"]] * 200_000


def test_failed_write_keeps_the_old_file_and_no_temp_files(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "config.json"
    atomic_write_json(path, {"a": 1})

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("experiments.store.files.os.replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_json(path, {"a": 2})
    assert read_json(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_non_finite_values_are_written_as_strings(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "r.json", {"loss": float("nan"), "x": float("inf")})
    assert read_json(tmp_path / "r.json") == {"loss": "nan", "x": "inf"}


def test_metrics_truncate_after_checkpoint_step(tmp_path: Path) -> None:
    writer = MetricsWriter(tmp_path / "metrics.jsonl")
    for step in (10, 20, 30, 40):
        writer.append({"step": step, "train_loss": step / 10})
    with open(writer.path, "a") as f:
        f.write('{"step": 50, "train_lo')  # torn line of a killed process
    writer.truncate_after(20)
    assert [r["step"] for r in writer.rows()] == [10, 20]
    writer.append({"step": 30, "train_loss": 3.0})
    assert [r["step"] for r in writer.rows()] == [10, 20, 30]
    writer.truncate_after(0)
    assert writer.rows() == []


def test_load_results_reads_every_cell(tmp_path: Path) -> None:
    for cell_id in ("table2/B/warmup/seed0", "table2/A/no-warmup/seed0"):
        atomic_write_json(tmp_path / cell_id / "result.json", {"cell_id": cell_id, "bleu": 1.0})
    (tmp_path / "table2/C/warmup/seed0").mkdir(parents=True)  # started, no result yet
    results = load_results(tmp_path)
    assert [r["cell_id"] for r in results] == ["table2/A/no-warmup/seed0", "table2/B/warmup/seed0"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_results(tmp_path / "missing")


def test_wandb_naming_groups_by_table_row_and_warmup(tmp_path: Path) -> None:
    cell = get_cell("table2/H/no-warmup/seed0")
    s = wandb_settings(cell, "tiny", tmp_path)
    assert s["group"] == "table2/H" and s["name"] == "table2/H/no-warmup/seed0"
    assert {"table2", "row:H", "no-warmup", "scale:tiny"} <= set(s["tags"])
    assert s["id"] == wandb_run_id(cell.cell_id, tmp_path, "tiny")  # stable across restarts
    assert s["id"] != wandb_run_id(cell.cell_id, tmp_path / "other", "tiny")
    assert json.loads(json.dumps(s)) == s  # plain data: survives JSON unchanged


def test_atomic_write_gives_the_permissions_of_a_normally_created_file(tmp_path: Path) -> None:
    # mkstemp creates 0600 files; results and tables must stay readable by the user's group.
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "table.md", "text\n")
        atomic_write_json(tmp_path / "result.json", {"bleu": 1.0})
    finally:
        os.umask(old)
    assert (tmp_path / "table.md").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "result.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "table.md").read_text() == "text\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_read_metrics_ignores_only_a_torn_last_line(tmp_path: Path) -> None:
    """A cell still running may be half-way through its last line; anything else is an error."""
    from experiments.store.files import MetricsWriter, read_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 10, "train_loss": 5.5}\n{"step": 20, "train_loss": 4.25}\n{"st')
    assert read_metrics(path) == [{"step": 10, "train_loss": 5.5},
                                  {"step": 20, "train_loss": 4.25}]
    assert MetricsWriter(path).rows() == read_metrics(path)
    path.write_text('{"step": 10}\n{"st\n{"step": 20}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not a JSON line"):
        read_metrics(path)
