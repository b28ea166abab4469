"""The cell-result contract through real ``python -m reproduce`` processes: identity checked at
every reuse and resume (settings, corpus, missing config.json, ``run`` on a finished cell), a lock
per results folder, SIGTERM/SIGINT stops with a /proc process-tree check, the final evaluation
resuming with its train_loss, the W&B mirror falling back to offline, damaged files named and
recovered, and everything checked before the first worker starts.

Cells are tiny (10 steps on a 3000-pair ``corpus=local`` folder, 8 BLEU sentences) so each run
takes seconds; the vocabulary is trained once per results folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from helpers import (
    REPO,
    TINY_SET,
    descendants,
    reproduce_cmd,
    reproduce_env,
    set_args,
    survivors,
    write_local_corpus,
)

from experiments.scales import scale_preset

CELL = "table2/A/warmup/seed0"
OTHER = "table2/A/no-warmup/seed0"
TINY_LR_SCALE = scale_preset("tiny").lr_scale


def _run(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(reproduce_cmd(*args), cwd=REPO, env=env or reproduce_env(),
                          capture_output=True, text=True, timeout=timeout)


def _clean(done: subprocess.CompletedProcess) -> str:
    """Its output, asserting there is no traceback in it."""
    text = done.stdout + done.stderr
    assert "Traceback" not in text, text[-3000:]
    return text


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_local_corpus(tmp_path_factory.mktemp("corpus") / "a")


@pytest.fixture(scope="module")
def base(corpus: Path) -> dict:
    return {**TINY_SET, "corpus": "local", "corpus_path": str(corpus)}


@pytest.fixture(scope="module")
def settings(base: dict) -> list[str]:
    return set_args(base)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, settings: list[str]) -> Path:
    """A results folder holding one finished cell (CELL), trained for real."""
    results = tmp_path_factory.mktemp("finished") / "results"
    done = _run("run", CELL, "--results-dir", str(results), "--no-wandb", *settings)
    assert done.returncode == 0, done.stdout + done.stderr
    return results


def _copy(finished: Path, tmp_path: Path) -> Path:
    target = tmp_path / "results"
    shutil.copytree(finished, target)
    return target


def _rows(results: Path, cell: str = CELL) -> list[dict]:
    return [json.loads(line) for line in (results / cell / "metrics.jsonl").read_text()
            .splitlines() if line.strip()]


def _one_row_per_step(rows: list[dict]) -> None:
    keys = [(r["step"], bool(r.get("final"))) for r in rows]
    assert len(keys) == len(set(keys)), keys
    assert sum(bool(r.get("final")) for r in rows) == 1


# --- 1 + 6: a half-finished cell under other settings; the final evaluation resumes ------------

@pytest.mark.slow
def test_partial_cell_is_refused_under_other_settings_and_resumes_its_final_evaluation(
        finished: Path, tmp_path: Path, base: dict, settings: list[str]) -> None:
    results = _copy(finished, tmp_path)
    before = json.loads((results / CELL / "result.json").read_text())
    (results / CELL / "result.json").unlink()  # killed during the final evaluation
    for command in (["run", CELL], ["table2", "--rows", "A", "--tables-dir", str(tmp_path / "t")]):
        done = _run(*command, "--results-dir", str(results), "--no-wandb",
                    *set_args({**base, "lr_scale": 1.0}))
        assert done.returncode == 2, _clean(done)
        assert f"lr_scale: {TINY_LR_SCALE!r} there, 1.0 now" in done.stderr
        assert "--fresh" in done.stderr
        assert not (results / CELL / "result.json").exists()
    done = _run("run", CELL, "--results-dir", str(results), "--no-wandb", *settings)
    assert done.returncode == 0, _clean(done)
    after = json.loads((results / CELL / "result.json").read_text())
    assert after["resumed_from_step"] == 10 and after["steps"] == 10
    assert after["train_loss"] is not None and after["train_loss"] == before["train_loss"]
    assert after["valid_loss"] == pytest.approx(before["valid_loss"], abs=1e-6)
    _one_row_per_step(_rows(results))


# --- 3 + 4: a finished cell is checked without config.json, and by `run CELL` -------------------

@pytest.mark.slow
def test_finished_cell_without_config_is_still_checked_by_run_and_by_table(
        finished: Path, tmp_path: Path, base: dict) -> None:
    results = _copy(finished, tmp_path)
    (results / CELL / "config.json").unlink()
    table = _run("table2", "--rows", "A", "--results-dir", str(results), "--dry-run",
                 *set_args({**base, "steps": 20}))
    assert table.returncode == 2, _clean(table)
    assert "steps: 10 there, 20 now" in table.stderr
    one = _run("run", CELL, "--results-dir", str(results), "--no-wandb",
               *set_args({**base, "steps": 20}))
    assert one.returncode == 2, _clean(one)
    assert "steps: 10 there, 20 now" in one.stderr and str(results / CELL) in one.stderr


# --- 2: the corpus is fingerprinted by content, not by folder ------------------------------------

@pytest.mark.slow
def test_changed_corpus_is_refused_and_the_same_files_elsewhere_are_reused(
        finished: Path, tmp_path: Path, corpus: Path) -> None:
    results = _copy(finished, tmp_path)
    moved = tmp_path / "moved"
    shutil.copytree(corpus, moved)
    same = set_args({**TINY_SET, "corpus": "local", "corpus_path": str(moved)})
    done = _run("run", CELL, "--results-dir", str(results), "--no-wandb", *same)
    assert done.returncode == 0, _clean(done)
    assert f"{CELL}: ok" in done.stdout or f"{CELL}: diverged" in done.stdout
    train_de = moved / "train.de"
    train_de.write_text(train_de.read_text().replace("\n", " und\n", 1))
    done = _run("table2", "--rows", "A", "--results-dir", str(results), "--no-wandb",
                "--tables-dir", str(tmp_path / "t"), *same)
    assert done.returncode == 2, _clean(done)
    assert "corpus.files.train.de.sha256" in done.stderr and "running" not in done.stdout


# --- 9: damaged files are named; the cell re-runs from the newest valid checkpoint ---------------

@pytest.mark.slow
def test_damaged_result_and_checkpoint_are_named_and_recovered(
        finished: Path, tmp_path: Path, settings: list[str]) -> None:
    results = _copy(finished, tmp_path)
    result = results / CELL / "result.json"
    result.write_text(result.read_text()[:40])
    last = results / CELL / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    render = _run("render", "table2", "--results-dir", str(results),
                  "--tables-dir", str(tmp_path / "t"))
    assert render.returncode == 2, _clean(render)
    assert f"{result} is damaged: not valid JSON" in render.stderr

    done = _run("run", CELL, "--results-dir", str(results), "--no-wandb", *settings)
    assert done.returncode == 0, _clean(done)
    assert f"{result} is damaged" in done.stderr and "runs again" in done.stderr
    assert f"checkpoint {last} is damaged" in done.stderr
    assert f"resuming from {results / CELL / 'checkpoints' / 'step10.ckpt'}" in done.stderr
    redone = json.loads(result.read_text())
    assert redone["resumed_from_step"] == 10 and redone["train_loss"] is not None
    _one_row_per_step(_rows(results))

    metrics = results / CELL / "metrics.jsonl"
    lines = metrics.read_bytes().split(b"\n")
    metrics.write_bytes(b"\n".join([lines[0][:-1] + b"\xff}", *lines[1:]]))
    render = _run("render", "table2", "--results-dir", str(results),
                  "--tables-dir", str(tmp_path / "t"))
    assert render.returncode == 2, _clean(render)
    assert f"{metrics}:1: not UTF-8 text" in render.stderr


# --- 5: one results folder, one run ---------------------------------------------------------------

def _read_until(proc: subprocess.Popen, text: str, timeout_s: float) -> str:
    """The lines ``proc`` printed up to the first holding ``text`` (fails after timeout_s)."""
    import selectors

    read, deadline = [], time.monotonic() + timeout_s
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(timeout=deadline - time.monotonic()):
                break
            line = proc.stdout.readline()
            if not line:
                break
            read.append(line)
            if text in line:
                return "".join(read)
    pytest.fail(f"no {text!r} from the waiter within {timeout_s:.0f} s: {''.join(read)}")

@pytest.mark.slow
def test_two_runs_on_one_folder_one_refused_one_waiting(tmp_path: Path,
                                                         settings: list[str]) -> None:
    results, tables = tmp_path / "results", tmp_path / "tables"
    common = ["table2", "--rows", "A", "--workers", "1", "--results-dir", str(results),
              "--tables-dir", str(tables), "--no-wandb", *settings]
    first = subprocess.Popen(reproduce_cmd(*common), cwd=REPO, env=reproduce_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    waiter = None
    try:
        deadline = time.monotonic() + 120
        while not (results / ".lock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        # The first run is stopped (SIGSTOP) while the others meet its lock, so that it cannot
        # finish before the waiter waits, however slow the machine.
        os.killpg(first.pid, signal.SIGSTOP)
        second = _run(*common, timeout=120)
        assert second.returncode == 2, _clean(second)
        assert f"in use by pid {first.pid}" in second.stderr and "--wait-lock" in second.stderr
        waiter = subprocess.Popen(reproduce_cmd(*common, "--wait-lock"), cwd=REPO,
                                  env=reproduce_env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, start_new_session=True)
        said = _read_until(waiter, "waiting for results folder", timeout_s=120)
        os.killpg(first.pid, signal.SIGCONT)
        out, err = first.communicate(timeout=600)
        assert first.returncode == 0, out + err
        out, err = waiter.communicate(timeout=300)
        out = said + out
        assert waiter.returncode == 0, out + err
        assert "waiting for results folder" in out and "2 already have results" in out
    finally:
        for proc in (first, waiter):
            if proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # the run and its workers
    for cell in (CELL, OTHER):
        result = json.loads((results / cell / "result.json").read_text())
        assert result["resumed_from_step"] is None and result["train_loss"] is not None
        _one_row_per_step(_rows(results, cell))
    assert not (results / ".lock").exists()


# --- 7: signals stop the queue and leave no process behind ----------------------------------------

def _start_and_signal(tmp_path: Path, base: dict, signum: int,
                      group: bool) -> tuple[subprocess.Popen, str, str, dict[int, int], Path]:
    """Start ``table2 --rows A`` (one worker, 40 steps), signal it once its first cell has a
    metrics row; return the process, its output, a snapshot of its process tree, results."""
    results = tmp_path / "results"
    command = reproduce_cmd("table2", "--rows", "A", "--workers", "1", "--results-dir",
                            str(results), "--tables-dir", str(tmp_path / "t"), "--no-wandb",
                            *set_args({**base, "steps": 40}))
    proc = subprocess.Popen(command, cwd=REPO, env=reproduce_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            files = results.glob("table2/*/*/*/metrics.jsonl")
            if any("train_loss" in p.read_text() for p in files):
                break
            time.sleep(0.1)
        tree = descendants(proc.pid)
        assert tree, "no worker process to check"
        if group:
            os.killpg(proc.pid, signum)  # what Ctrl-C in a terminal does
        else:
            os.kill(proc.pid, signum)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:  # it did not stop: kill its session (the survivors check sees
            os.killpg(proc.pid, signal.SIGKILL)  # workers that outlived a parent that did)
    return proc, out, err, tree, results


def _assert_stopped(proc: subprocess.Popen, out: str, err: str, tree: dict[int, int],
                    results: Path, name: str) -> int:
    deadline = time.monotonic() + 15
    while survivors(tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = survivors(tree)
    for pid in left:  # do not leave them to the rest of the suite either
        os.kill(pid, signal.SIGKILL)
    assert left == [], f"left behind: {left}"
    assert proc.returncode == 128 + signal.Signals[name].value, out + err
    assert "Traceback" not in out + err, err[-3000:]
    summary = [line for line in err.splitlines() if line.startswith(f"stopped by {name}")]
    assert len(summary) == 1, err
    assert "0 finished, 1 interrupted" in summary[0] and "1 not started" in summary[0]
    assert "run the same command again to resume" in summary[0]
    started = [c for c in (CELL, OTHER) if (results / c / "metrics.jsonl").exists()]
    assert len(started) == 1  # the queue stopped: the second cell never started
    assert not (results / started[0] / "result.json").exists()
    step = int(summary[0].split(" at step ")[1].split(")")[0].split()[0])
    ckpt = torch.load(results / started[0] / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=True, mmap=True)
    assert ckpt["global_step"] == step and 5 <= step < 40
    assert max(r["step"] for r in _rows(results, started[0])) == step
    return step


@pytest.mark.slow
def test_sigterm_to_the_parent_stops_every_worker_and_the_cell_resumes(
        tmp_path: Path, base: dict) -> None:
    proc, out, err, tree, results = _start_and_signal(tmp_path, base, signal.SIGTERM,
                                                       group=False)
    step = _assert_stopped(proc, out, err, tree, results, "SIGTERM")
    cell = next(c for c in (CELL, OTHER) if (results / c / "metrics.jsonl").exists())
    done = _run("run", cell, "--results-dir", str(results), "--no-wandb",
                *set_args({**base, "steps": 40}))
    assert done.returncode == 0, _clean(done)
    result = json.loads((results / cell / "result.json").read_text())
    assert result["resumed_from_step"] == step and result["steps"] == 40
    rows = _rows(results, cell)
    _one_row_per_step(rows)
    assert [r["step"] for r in rows if "train_loss" in r] == list(range(5, 45, 5))


@pytest.mark.slow
def test_ctrl_c_stops_the_queue_without_a_traceback(tmp_path: Path, base: dict) -> None:
    proc, out, err, tree, results = _start_and_signal(tmp_path, base, signal.SIGINT,
                                                       group=True)
    _assert_stopped(proc, out, err, tree, results, "SIGINT")


# --- 8: an unreachable W&B never fails a cell ----------------------------------------------------

@pytest.mark.slow
def test_unreachable_wandb_falls_back_to_offline_once(tmp_path: Path,
                                                      settings: list[str]) -> None:
    env = reproduce_env(WANDB_API_KEY="x" * 40, WANDB_BASE_URL="http://127.0.0.1:9",
                        ADAFACTOR_WANDB_INIT_TIMEOUT="3")
    env.pop("WANDB_MODE")
    results = tmp_path / "results"
    start = time.monotonic()
    done = _run("run", CELL, "--results-dir", str(results), *settings, env=env)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert done.stderr.count("W&B could not be reached") == 1
    assert "goes on with W&B offline" in done.stderr
    assert (results / CELL / "result.json").is_file()
    assert list((results / CELL / "wandb").glob("offline-run-*"))
    assert time.monotonic() - start < 300


# --- 10: everything is checked before the first worker starts ------------------------------------

@pytest.mark.parametrize(("setting", "message"), [
    ("corpus=nope", "scale setting 'corpus' = 'nope': allowed is one of embedded,"),
    ("model=nope", "scale setting 'model' = 'nope': allowed is one of base,"),
    ("precision=nope", "scale setting 'precision' = 'nope': allowed is one of 32-true,"),
    ("seed=-1", "scale setting 'seed' = -1: allowed is a finite number >= 0"),
])
def test_bad_set_values_are_refused_before_anything_runs(tmp_path: Path, setting: str,
                                                         message: str) -> None:
    done = _run("table2", "--rows", "A", "--results-dir", str(tmp_path / "r"), "--no-wandb",
                "--set", setting, timeout=120)
    assert done.returncode == 2, _clean(done)
    assert message in done.stderr and "running" not in done.stdout


@pytest.mark.slow
def test_values_that_need_the_data_are_checked_by_building_one_cell(
        tmp_path: Path, base: dict) -> None:
    for key, value, message in (
            ("eval_split", "nope", "scale setting 'eval_split' = 'nope': allowed is one of"),
            ("vocab_size", 5, "vocab_size must be an int >= 8, got 5 (checked before any cell "
             "runs)")):
        done = _run("table2", "--rows", "A", "--results-dir", str(tmp_path / "r"),
                    "--tables-dir", str(tmp_path / "t"), "--no-wandb",
                    *set_args({**base, key: value}), timeout=300)
        assert done.returncode == 2, _clean(done)
        assert message in done.stderr, done.stderr
        assert "running" not in done.stdout


def test_unwritable_folders_and_bad_worker_counts_are_refused_up_front(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = _run("table2", "--rows", "A", "--results-dir", str(blocker / "r"), "--no-wandb",
                timeout=120)
    assert done.returncode == 2, _clean(done)
    assert f"--results-dir {blocker / 'r'} is not writable" in done.stderr
    done = _run("table2", "--rows", "A", "--workers", "-3", timeout=120)
    assert done.returncode == 2 and "--workers: must be at least 1, got -3" in done.stderr


@pytest.mark.slow
def test_unwritable_tables_dir_is_refused_before_training(tmp_path: Path,
                                                          settings: list[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = _run("table2", "--rows", "A", "--results-dir", str(tmp_path / "r"), "--no-wandb",
                "--tables-dir", str(blocker / "t"), *settings, timeout=300)
    assert done.returncode == 2, _clean(done)
    assert f"--tables-dir {blocker / 't'} is not writable" in done.stderr
    assert not list((tmp_path / "r").glob("table2/*/*/*/metrics.jsonl"))


@pytest.mark.slow
def test_when_every_cell_fails_the_failed_cells_are_named_with_exit_1(
        tmp_path: Path, settings: list[str]) -> None:
    results = tmp_path / "results"
    for cell in (CELL, OTHER):  # each cell's checkpoint folder cannot be created
        (results / cell).mkdir(parents=True)
        (results / cell / "checkpoints").write_text("not a folder")
    done = _run("table2", "--rows", "A", "--workers", "2", "--results-dir", str(results),
                "--tables-dir", str(tmp_path / "t"), "--no-wandb", *settings)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"FAILED {CELL}:" in done.stderr and f"FAILED {OTHER}:" in done.stderr
    assert "ran 2 cells" in done.stdout and "2 failed" in done.stdout
    assert "no results" not in done.stderr.replace("no table rendered", "")
