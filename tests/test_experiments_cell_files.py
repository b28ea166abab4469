"""experiments.store and experiments.identity on real files and real processes: tolerant
and strict metrics readers, damaged files named, checkpoint fallback, the lock (live owner, dead
owner, reused pid), corpus fingerprints and the identity check of a cell folder."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import write_local_corpus

from data.ownership import process_start_time
from experiments.grid.registry import get_cell
from experiments.identity import cell_identity, check_cell_folder, data_fingerprints
from experiments.run.preflight import PreflightError, check_folder
from experiments.scales import scale_preset
from experiments.store.checkpoints import find_resume_checkpoint
from experiments.store.files import (
    CellFileError,
    IdentityMismatch,
    MetricsWriter,
    atomic_write_json,
    read_json,
    read_metrics,
)
from experiments.store.locks import FileLock, LockHeld

CELL = "table2/A/warmup/seed0"


def test_metrics_readers_keep_one_row_per_step_and_name_a_damaged_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 10, "train_loss": 5.5}\n{"step": 10, "train_loss": 5.0}\n'
                     b'{"step": 20, "final": true, "bleu": 1.0}\n'
                     b'{"step": 20, "final": true, "bleu": 2.0}\n{"st')
    assert read_metrics(path) == [{"step": 10, "train_loss": 5.0},
                                  {"step": 20, "final": True, "bleu": 2.0}]
    path.write_bytes(b'{"step": 10}\n{"step": \xff20}\n{"step": 30}\n')
    with pytest.raises(CellFileError, match=rf"{path}:2: not UTF-8"):
        read_metrics(path)
    assert read_metrics(path, strict=False) == [{"step": 10}, {"step": 30}]


def test_resume_truncation_drops_the_final_rows(tmp_path: Path) -> None:
    """A kill between the final row and result.json must not leave two final rows."""
    writer = MetricsWriter(tmp_path / "metrics.jsonl")
    for row in ({"step": 10, "train_loss": 5.0}, {"step": 20, "train_loss": 4.0},
                {"step": 20, "final": True, "valid_loss": 4.1}):
        writer.append(row)
    writer.truncate_after(20)
    assert read_metrics(writer.path) == [{"step": 10, "train_loss": 5.0},
                                         {"step": 20, "train_loss": 4.0}]


def test_damaged_json_and_checkpoints_are_named_and_the_newest_valid_checkpoint_is_used(
        tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_text('{"cell_id": "x", "bl')
    with pytest.raises(CellFileError, match=rf"{path} is damaged: not valid JSON"):
        read_json(path)
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    torch.save({"global_step": 30}, folder / "step30.ckpt")
    (folder / "last.ckpt").write_bytes(b"PK\x03\x04 half a zip")
    said: list[str] = []
    found = find_resume_checkpoint(tmp_path, log=said.append)
    assert found == (folder / "step30.ckpt", 30)
    assert len(said) == 1 and f"checkpoint {folder / 'last.ckpt'} is damaged" in said[0]
    assert "resuming from" in said[0] and "step 30" in said[0]


def test_lock_names_a_live_owner_and_takes_over_dead_or_reused_pids(tmp_path: Path) -> None:
    path = tmp_path / ".lock"
    first = FileLock(path, "results folder X")
    first.acquire()
    with pytest.raises(LockHeld, match=rf"in use by pid {os.getpid()} on {socket.gethostname()}"):
        FileLock(path, "results folder X").acquire()
    first.release()
    assert not path.exists()

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    owner = {"pid": int(dead.stdout), "host": socket.gethostname(), "start_time": 1,
             "command": "gone"}
    path.write_text(json.dumps(owner))
    said: list[str] = []
    FileLock(path, "X").acquire(log=said.append)  # a dead owner: stale
    assert said and "taking over the lock" in said[0] and "no longer runs" in said[0]
    path.unlink()
    reused = {**owner, "pid": os.getpid(), "start_time": process_start_time(os.getpid()) - 1}
    path.write_text(json.dumps(reused))
    FileLock(path, "X").acquire()  # the pid lives, but it is another process now
    assert json.loads(path.read_text())["start_time"] == process_start_time(os.getpid())
    path.write_text(json.dumps({**owner, "host": "another-machine"}))
    with pytest.raises(LockHeld, match="another-machine"):
        FileLock(path, "X").acquire()  # cannot tell from here: refused


def test_corpus_fingerprint_follows_the_files_not_the_folder(tmp_path: Path) -> None:
    a = write_local_corpus(tmp_path / "a", train=50, valid=5)
    b = tmp_path / "b"
    b.mkdir()
    for f in a.iterdir():
        (b / f.name).write_bytes(f.read_bytes())
    preset = scale_preset("tiny", corpus="local", corpus_path=str(a))
    same = data_fingerprints(scale_preset("tiny", corpus="local", corpus_path=str(b)), None)
    assert data_fingerprints(preset, None) == same
    (b / "train.de").write_text((b / "train.de").read_text().replace("die", "der", 1))
    changed = data_fingerprints(scale_preset("tiny", corpus="local", corpus_path=str(b)), None)
    assert changed["corpus"]["files"]["train.de"] != same["corpus"]["files"]["train.de"]
    assert changed["corpus"]["files"]["train.en"] == same["corpus"]["files"]["train.en"]


def _identity(**overrides) -> dict:
    return cell_identity(get_cell(CELL), scale_preset("tiny", **overrides),
                         {"corpus": {"kind": "embedded", "generator_sha256": "g"},
                          "vocab_sha256": "v", "package": "0.1.0"})


def test_identity_is_checked_for_partial_and_finished_cells(tmp_path: Path) -> None:
    out = tmp_path / CELL
    atomic_write_json(out / "config.json", {"identity": _identity(steps=60)})
    (out / "metrics.jsonl").write_text('{"step": 10, "train_loss": 5.0}\n')
    # a half-finished cell: refused under other settings, resumed under the same
    tiny_lr = re.escape(repr(scale_preset("tiny").lr_scale))  # the preset's, whatever it is now
    with pytest.raises(IdentityMismatch, match=rf"lr_scale: {tiny_lr} there, 1\.0 now.*--fresh"):
        check_cell_folder(out, _identity(steps=60, lr_scale=1.0))
    assert check_cell_folder(out, _identity(steps=60)) == ("partial", None)
    # a finished cell without config.json: result.json's identity is checked
    atomic_write_json(out / "result.json", {"cell_id": CELL, "identity": _identity(steps=60)})
    (out / "config.json").unlink()
    with pytest.raises(IdentityMismatch, match=r"steps: 60 there, 20 now"):
        check_cell_folder(out, _identity(steps=20))
    wanted = _identity(steps=60)
    other_data = {**wanted, "fingerprints": {**wanted["fingerprints"], "vocab_sha256": "w"}}
    with pytest.raises(IdentityMismatch, match=r"vocab_sha256: 'v' there, 'w' now"):
        check_cell_folder(out, other_data)
    assert check_cell_folder(out, wanted)[0] == "done"
    # --fresh discards it; a damaged result.json is set aside and its cell runs again
    assert check_cell_folder(out, _identity(steps=20), fresh=True,
                             log=lambda _: None) == ("new", None)
    assert not (out / "result.json").exists() and not (out / "metrics.jsonl").exists()
    (out / "result.json").write_text('{"cell_id": "tab')
    said: list[str] = []
    assert check_cell_folder(out, wanted, log=said.append) == ("new", None)
    assert f"{out / 'result.json'} is damaged" in said[0] and "runs again" in said[0]
    assert (out / "result.json.damaged").is_file()


def test_a_finished_cell_with_no_identity_is_refused_not_reused(tmp_path: Path) -> None:
    """A result.json and config.json that record no identity cannot be checked against the
    settings, so the cell is refused (or discarded with --fresh), never counted as done."""
    out = tmp_path / CELL
    atomic_write_json(out / "config.json", {"scale": {"steps": 60}})
    atomic_write_json(out / "result.json", {"cell_id": CELL, "status": "ok", "steps": 60})
    with pytest.raises(CellFileError, match=r"no identity.*pass --fresh"):
        check_cell_folder(out, _identity(steps=60))
    assert check_cell_folder(out, _identity(steps=60), fresh=True,
                             log=lambda _: None) == ("new", None)


def test_folder_checks_name_the_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(PreflightError, match=rf"--results-dir {blocker / 'r'} is not writable"):
        check_folder(blocker / "r", "--results-dir")
    with pytest.raises(PreflightError, match=r"MiB free, less than"):
        check_folder(tmp_path, "--results-dir", min_free_bytes=1 << 62)


def test_a_later_preset_field_at_its_default_keeps_earlier_cells_valid(tmp_path: Path) -> None:
    """A cell folder written before decay_time_rescale existed has no such key in its identity:
    it is still the same cell while the field is off, and another cell when it is on."""
    out = tmp_path / CELL
    earlier = _identity(steps=60)
    earlier["settings"]["scale"].pop("decay_time_rescale", None)  # as written before the field
    atomic_write_json(out / "result.json", {"cell_id": CELL, "identity": earlier})
    assert "decay_time_rescale" not in _identity(steps=60)["settings"]["scale"]
    assert check_cell_folder(out, _identity(steps=60))[0] == "done"
    with pytest.raises(IdentityMismatch, match=r"decay_time_rescale: None there, True now"):
        check_cell_folder(out, _identity(steps=60, decay_time_rescale=True))
