"""SIGTERM while a table run renders (after its cells) says the results are kept and how to
render them again, not that nothing was changed."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from reproduce import commands
from reproduce.cli import main


def test_sigterm_while_rendering_names_the_render_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    def every_cell_done(results_dir, plans, **_):
        return [p.cell_id for p in plans], []

    def terminated(*_):
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(commands, "check_existing_results", every_cell_done)
    monkeypatch.setattr(commands, "preflight_cell", lambda *_: None)
    monkeypatch.setattr(commands, "_render_and_print", terminated)
    previous = signal.getsignal(signal.SIGTERM)
    results, tables = tmp_path / "results", tmp_path / "tables"
    try:
        code = main(["table2", "--rows", "A", "--results-dir", str(results), "--tables-dir",
                     str(tables), "--no-wandb"])
    finally:
        signal.signal(signal.SIGTERM, previous)
    err = capsys.readouterr().err
    assert code == 128 + signal.SIGTERM, err
    assert "nothing was changed" not in err
    assert (f"the results in {results} are kept; render them with: python -m reproduce render "
            f"table2 --results-dir {results} --tables-dir {tables}") in err, err
