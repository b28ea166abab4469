"""The ``python -m reproduce`` command line: help, bad input (exit code 2), dry runs, skipping
cells that have results, Slurm script generation, rendering from existing results."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import paper_like_results, write_result

from reproduce.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reproduce", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_help_explains_each_option_with_an_example() -> None:
    done = run_cli("table2", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for option in ("--scale", "--launcher", "--rows", "--results-dir", "--from", "--dry-run",
                   "--set", "--partition", "--account", "--time", "--gpus-per-task",
                   "--cpus-per-task", "--nodes", "--begin"):
        assert option in text, option
    table2 = next(a for a in build_parser()._subparsers._group_actions[0].choices.values()
                  if a.prog.endswith(" table2"))
    for action in table2._actions:
        if action.option_strings and action.nargs != 0 and action.dest != "help":
            assert "Example:" in (action.help or ""), action.option_strings  # values shown
    assert "python -m reproduce table2" in text  # the examples epilog


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["table2", "--rows", "A,Z9", "--dry-run"],
         "unknown row(s) 'Z9'; valid rows: table2: A, B"),
        (["table3", "--rows", "A", "--dry-run"], "valid rows: table3: clever, naive1, naive2"),
        (["table2", "--set", "stepz=3", "--dry-run"], "unknown scale override 'stepz'"),
        (["table2", "--set", "steps=abc", "--dry-run"], "'steps' must be int, got str"),
        (["table2", "--set", "steps", "--dry-run"], "expected KEY=VALUE"),
        (["render", "table7"], "unknown table 'table7'"),
        (["run", "table2/Z/warmup/seed0"], "unknown row 'Z' for table2"),
        (["table2", "--from", "wandb"], "--from wandb needs --entity and --project"),
        (["table2", "--launcher", "slurm", "--time", "soon", "--dry-run"], "not a Slurm time"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(args: list[str], message: str,
                                                capsys: pytest.CaptureFixture) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_unknown_table_is_an_argparse_error() -> None:
    done = run_cli("table9")
    assert done.returncode == 2
    assert "invalid choice: 'table9'" in done.stderr


def test_render_missing_results_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["render", "table2", "--results-dir", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["render", "table2", "--results-dir", str(tmp_path / "empty")]) == 2
    assert "no results for table2" in capsys.readouterr().err


def test_dry_run_skips_cells_with_results(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_result(tmp_path, "table2/A/warmup/seed0", 20.0)
    assert main(["table2", "--rows", "A,G", "--results-dir", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "4 cells, 1 already have results" in out
    assert "run table2/A/warmup/seed0" not in out
    for cell in ("table2/A/no-warmup/seed0", "table2/G/warmup/seed0", "table2/G/no-warmup/seed0"):
        assert f"would run: python -m reproduce run {cell}" in out


def test_table1_runs_the_table2_cells(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["all", "--rows", "A", "--results-dir", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 cells" in out and "table1/" not in out.replace("table1,", "")


def test_existing_result_of_another_scale_is_refused(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    write_result(tmp_path, "table2/A/warmup/seed0", 20.0, scale="small")
    assert main(["table2", "--rows", "A", "--results-dir", str(tmp_path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "comes from other settings (" in err and "model: 'small' there, 'tiny' now" in err


def test_slurm_dry_run_prints_scripts_and_sbatch_lines(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    write_result(tmp_path, "table2/A/warmup/seed0", 20.0, steps=50)
    args = ["table2", "--rows", "A,B", "--results-dir", str(tmp_path), "--launcher", "slurm",
            "--dry-run", "--partition", "gpu", "--account", "proj1", "--time", "02:00:00",
            "--gpus-per-task", "4", "--cpus-per-task", "8", "--nodes", "2",
            "--begin", "now+1hour", "--set", "steps=50", "--tables-dir", str(tmp_path / "t")]
    assert main(args) == 0
    out = capsys.readouterr().out
    for line in ("#SBATCH --array=0-2", "#SBATCH --partition=gpu", "#SBATCH --account=proj1",
                 "#SBATCH --time=02:00:00", "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4",
                 "#SBATCH --gpus-per-node=4", "#SBATCH --cpus-per-task=8",
                 "#SBATCH --begin=now+1hour", "#SBATCH --requeue", "#SBATCH --signal=SIGUSR1@90",
                 "--dependency=afterany:<ARRAY_JOB_ID>",
                 "--dependency=afterok:<PREPARE_JOB_ID> --kill-on-invalid-dep=yes",
                 "prepare.sbatch", "#SBATCH --cpus-per-task=32"):
        assert line in out, line
    assert f"-m reproduce prepare --scale tiny --results-dir {tmp_path.resolve()} --set steps=50" \
        in out
    assert f"srun {sys.executable} -m reproduce run \"$CELL\" --scale tiny" in out
    assert "--devices 4 --num-nodes 2 --accelerator gpu --set steps=50" in out
    assert f"-m reproduce render table2 --results-dir {tmp_path.resolve()}" in out
    # cells.txt order = array task order; the cell with a result is not resubmitted.
    listed = [line[4:] for line in out.splitlines() if line.startswith("#   ")]
    assert listed == ["table2/A/no-warmup/seed0", "table2/B/warmup/seed0",
                      "table2/B/no-warmup/seed0"]
    assert not (tmp_path / "slurm").exists()  # a dry run writes nothing


def test_render_command_writes_paper_tables(tmp_path: Path) -> None:
    results = tmp_path / "results"
    paper_like_results(results)
    tables = tmp_path / "tables"
    done = run_cli("render", "table2", "--results-dir", str(results), "--tables-dir", str(tables))
    assert done.returncode == 0, done.stderr
    assert "collapse agrees with the paper in 32/32 cells of rows A-P" in done.stdout
    rows = list(csv.DictReader((tables / "table2.csv").open()))
    assert len(rows) == 44 and all(r["bleu"] for r in rows)


def test_table_command_with_all_results_only_renders(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    results = tmp_path / "results"
    paper_like_results(results)
    tables = tmp_path / "tables"
    code = main(["table2", "--results-dir", str(results), "--tables-dir", str(tables)])
    assert code == 0
    out = capsys.readouterr().out
    assert "46 cells, 46 already have results" in out and "worker(s)" not in out
    assert (tables / "table2.md").is_file() and (tables / "table2_valid_loss.png").is_file()


def test_results_of_other_preset_settings_are_refused(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    from experiments.scales import scale_preset

    steps = scale_preset("tiny").steps
    write_result(tmp_path, "table2/A/warmup/seed0", 20.0, steps=steps)
    args = ["table2", "--rows", "A", "--results-dir", str(tmp_path), "--dry-run"]
    assert main(args) == 0  # same settings: reused
    assert "2 cells, 1 already have results" in capsys.readouterr().out
    assert main([*args, "--set", "steps=123"]) == 2
    assert f"steps: {steps!r} there, 123 now" in capsys.readouterr().err
    write_result(tmp_path, "table2/A/warmup/seed0", 20.0, steps=7)
    assert main(args) == 2
    assert "steps: 7 there, " in capsys.readouterr().err
