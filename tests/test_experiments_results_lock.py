"""The results-folder and cell locks judge their owner like every other lock (data.ownership):
another host's lock whose Slurm job is gone is taken over, saying so; one that cannot be judged
names the command that breaks it; ``python -m reproduce unlock`` shows its owner and removes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_data_ownership import elsewhere, fake_slurm

from data.ownership import SLURM_FIELDS
from data.unlock import main as unlock_main
from experiments.store.locks import LockHeld, results_lock
from reproduce.cli import main as reproduce_main


@pytest.fixture
def no_slurm_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in SLURM_FIELDS.values():
        monkeypatch.delenv(variable, raising=False)


def _leave(path: Path, owner: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(owner))


def test_another_hosts_lock_whose_slurm_job_is_gone_is_taken_over(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_slurm_env: None) -> None:
    fake_slurm(tmp_path, monkeypatch, squeue="", sacct="CANCELLED")
    lock = results_lock(tmp_path / "results")
    _leave(lock.path, elsewhere(slurm_job_id="91"))
    said: list[str] = []
    lock.acquire(log=said.append)
    assert lock.held and json.loads(lock.path.read_text())["pid"] != 4242
    assert len(said) == 1 and "taking over the lock" in said[0]
    assert "Slurm job 91 is CANCELLED (sacct)" in said[0] and "node7" in said[0]
    lock.release()
    assert not lock.path.exists()


def test_a_lock_it_cannot_judge_names_the_unlock_command(
        tmp_path: Path, no_slurm_env: None, capsys: pytest.CaptureFixture) -> None:
    lock = results_lock(tmp_path / "results")
    _leave(lock.path, elsewhere())
    with pytest.raises(LockHeld) as held:
        lock.acquire()
    assert f"-m reproduce unlock {lock.path}" in str(held.value)
    assert "node7 is not this host" in str(held.value)
    assert reproduce_main(["unlock", str(tmp_path / "results"), "--dry-run"]) == 0
    assert "not removed (--dry-run)" in capsys.readouterr().out and lock.path.exists()
    assert unlock_main([str(lock.path)]) == 0
    shown = capsys.readouterr().out
    assert "held by pid 4242 on node7" in shown and shown.strip().endswith("removed")
    lock.acquire()
    assert lock.held
    lock.release()
