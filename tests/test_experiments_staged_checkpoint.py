"""A checkpoint save is staged beside its final name and swapped in whole
(experiments.run.staged_save): a save killed part way leaves the previous checkpoint as it was
and only a ``.<name>.staging.tmp`` leftover, which the cell lock's next holder removes."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest
import torch

from experiments.run.staged_save import staging_path, swap_into_place
from experiments.schema import CHECKPOINT_SUBDIR, LAST_CHECKPOINT
from experiments.store.checkpoints import checkpoint_step
from experiments.store.files import read_json, remove_leftover_temp_files

REPO = Path(__file__).resolve().parents[1]


def _dcp_folder(path: Path, step: int) -> None:
    path.mkdir(parents=True)
    (path / "__0_0.distcp").write_bytes(bytes([step]) * 64)
    torch.save({"global_step": step}, path / "meta.pt")


def test_a_staged_folder_replaces_the_old_one_and_a_file_replaces_a_file(tmp_path: Path) -> None:
    final = tmp_path / LAST_CHECKPOINT
    _dcp_folder(final, 10)
    staged = staging_path(final)
    _dcp_folder(staged, 20)
    swap_into_place(staged, final)
    assert checkpoint_step(final) == 20
    assert (final / "__0_0.distcp").read_bytes() == bytes([20]) * 64
    assert sorted(p.name for p in tmp_path.iterdir()) == [LAST_CHECKPOINT]
    torch.save({"global_step": 30}, staged)  # a one-process checkpoint over the folder
    swap_into_place(staged, final)
    assert final.is_file() and checkpoint_step(final) == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == [LAST_CHECKPOINT]


def test_the_next_holder_removes_a_killed_saves_staging_file_and_folder(tmp_path: Path) -> None:
    folder = tmp_path / CHECKPOINT_SUBDIR
    _dcp_folder(folder / LAST_CHECKPOINT, 10)
    _dcp_folder(staging_path(folder / LAST_CHECKPOINT), 20)
    staging_path(folder / "step20.ckpt").write_bytes(b"half a checkpoint")
    removed = remove_leftover_temp_files(folder)
    assert [p.name for p in removed] == [".last.ckpt.staging.tmp", ".step20.ckpt.staging.tmp"]
    assert sorted(p.name for p in folder.iterdir()) == [LAST_CHECKPOINT]
    assert checkpoint_step(folder / LAST_CHECKPOINT) == 10


# A real SIGKILL of the whole run at a chosen point: rank 0 about to write last.ckpt's meta.pt
# at the final step, after every rank wrote its shards. Lightning alone writes the DCP folder
# over the previous last.ckpt in place, so this kill left step-20 shards beside step-10 counters.
KILL_HOOK = textwrap.dedent("""
    import os, signal
    from pathlib import Path
    import torch
    _save = torch.save
    def _killing_save(obj, f, *args, **kwargs):
        path = Path(str(f)) if isinstance(f, (str, os.PathLike)) else None
        if (path is not None and path.name == "meta.pt" and "last.ckpt" in path.parent.name
                and isinstance(obj, dict) and obj.get("global_step") == 20):
            os.killpg(os.getpgrp(), signal.SIGKILL)
        return _save(obj, f, *args, **kwargs)
    torch.save = _killing_save
""")


def _optimizer_steps(folder: Path) -> set[int]:
    """The step counts in a DCP checkpoint's optimizer state, read back in this process."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    flat = folder.parent / f"{folder.name}.pt"
    dcp_to_torch_save(folder, flat)
    state = torch.load(flat, map_location="cpu", weights_only=False)
    steps = set()
    for value in state["optimizer_0"]["state"].values():
        if "step" in value:
            steps.add(int(torch.as_tensor(value["step"]).item()))
    return steps


@pytest.mark.slow
def test_an_fsdp2_checkpoint_save_killed_midway_leaves_the_previous_one_whole(
        tmp_path: Path) -> None:
    from test_models_fsdp import CELL, FSDP2, _cli, _env

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_HOOK)
    results, cache = tmp_path / "results", tmp_path / "cache"
    env = dict(_env(), PYTHONPATH=os.pathsep.join([str(hook), str(REPO)]))
    proc = subprocess.run(_cli(results, cache, *FSDP2), env=env, cwd=REPO, timeout=600,
                          start_new_session=True, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    folder = results / CELL / CHECKPOINT_SUBDIR
    last = folder / LAST_CHECKPOINT
    assert checkpoint_step(last) == 10
    assert _optimizer_steps(last) == {10}, "last.ckpt holds shards of another step than meta.pt"
    assert staging_path(last).is_dir()

    done = subprocess.run(_cli(results, cache, *FSDP2), env=_env(), cwd=REPO, timeout=600,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"removed {staging_path(last)}" in done.stderr
    assert not staging_path(last).exists()
    assert read_json(results / CELL / "result.json")["resumed_from_step"] == 20
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []
