"""``python -m reproduce``: parse the command line and hand it to reproduce.commands.

Commands: one per table (experiments.grid.registry: ``table1|table2|table3|frontier``, plus ``all``:
run the missing cells, then render), ``run CELL_ID`` (one cell; what Slurm array tasks call),
``prepare`` (binarize the corpus once), ``render TABLE`` (tables from existing results) and
``dashboard`` (the W&B Report). Bad input (and a damaged file, a results folder in use, results
of other settings) prints one clear line and exits with code 2; failed cells exit with code 1
after rendering what finished; SIGINT/SIGTERM stop the run with one line naming what finished
and what was interrupted, and exit code 128 + the signal.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from data import unlock as data_unlock
from experiments.grid.cells import TableProvider
from experiments.grid.registry import REGISTRY
from experiments.scales import SCALES
from experiments.store.files import CellFileError
from experiments.store.locks import LockHeld
from reproduce import commands
from reproduce.errors import Interrupted, UsageError

EXAMPLES = """examples:
  python -m reproduce table2                       # tiny scale, all 44 cells on this machine
  python -m reproduce table2 --rows A,G --set steps=100
  python -m reproduce all --scale base --launcher slurm --partition gpu --gpus-per-task 1 \\
      --cpus-per-task 8 --time 04:00:00 --begin 23:00
  python -m reproduce table2 --launcher slurm --dry-run   # print the sbatch scripts only
  python -m reproduce render table2 --results-dir results/tiny
  python -m reproduce table2 --from wandb --entity my-team --project adafactor-repro
  python -m reproduce run table2/H/no-warmup/seed0 --scale tiny
  python -m reproduce frontier                     # Adafactor vs 12 other optimizers, tiny
  python -m reproduce frontier --rows adafactor,lion,adam-mini --set steps=200
  python -m reproduce frontier --seeds 0,1,2       # each point averaged over three seeds
"""


def _add_scale(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scale", default="tiny", choices=SCALES,
        help="size preset (experiments.scales): tiny = embedded corpus, CPU minutes; smoke = "
        "tiny without Figure 1's cells (a quick check); tiny-d1, tiny-d1p, tiny-d2 = the "
        "pre-registered designs (docs/preregistration.md); small = Multi30k on one GPU; base = "
        "the paper (WMT14, 100k steps). Example: --scale base",
    )
    parser.add_argument(
        "--results-dir", type=Path, default=None,
        help="where each cell writes <cell-id>/{config,metrics,result} files "
        "(default results/<scale>). Example: --results-dir /scratch/me/adafactor",
    )
    parser.add_argument(
        "--set", dest="set_args", action="append", default=[], metavar="KEY=VALUE",
        help="override a field of the scale preset (unknown key or wrong type is an error); "
        "repeatable. Example: --set steps=100 --set eval_max_sentences=50",
    )
    parser.add_argument(
        "--no-wandb", action="store_true",
        help="do not mirror runs to W&B (default: mirror; offline unless WANDB_API_KEY is set)",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_cell_state(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fresh", action="store_true",
        help="discard the results and partial state of cells whose settings or data differ "
        "from this run's, instead of refusing them. Example: --fresh",
    )
    parser.add_argument(
        "--wait-lock", action="store_true",
        help="if another run holds the results folder (or cell), wait for it instead of "
        "refusing. Example: --wait-lock",
    )


def _add_render_outputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tables-dir", type=Path, default=Path("paper_tables"),
        help="where <table>.{md,csv,tex} and the PNG plots go. Example: --tables-dir /tmp/tables",
    )
    parser.add_argument(
        "--from", dest="source", choices=("results", "wandb"), default="results",
        help="build the tables from result files (default) or from the finished W&B runs of "
        "--scale via wandb.Api (needs --entity, --project and a W&B login; no training; the "
        "runs are saved as result files, config.json included, under --results-dir, default "
        "results/wandb/<entity>/<project>). Example: --from wandb",
    )
    parser.add_argument("--entity", help="W&B entity for --from wandb. Example: --entity my-team")
    parser.add_argument(
        "--project", help="W&B project for --from wandb. Example: --project adafactor-repro"
    )


def _table_parser(commands_: argparse._SubParsersAction, name: str,
                  providers: Sequence[TableProvider]) -> None:
    """The sub-command of one table (or of ``all``): run its missing cells, then render."""
    if len(providers) == 1:
        p = providers[0]
        help_, description, rows_help = p.help, p.description, p.rows_help
    else:
        help_ = "run the missing cells of every table, then render it"
        description = ("Run every cell of every table that has no result.json yet, then render "
                       "paper_tables/ and print the table.")
        rows_help = providers[0].rows_help
    sub = commands_.add_parser(name, help=help_, description=description, epilog=EXAMPLES,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_scale(sub)
    _add_render_outputs(sub)
    sub.add_argument("--rows", help=rows_help)
    if any(p.multi_seed for p in providers):
        sub.add_argument(
            "--seeds", default="0",
            help=next((p.seeds_help for p in providers if p.seeds_help), "cell seeds, "
                      "comma-separated; each peak's valid loss and BLEU are averaged over them "
                      "(default 0). Example: --seeds 0,1,2"),
        )
    for flag, text in dict((p.prepare_flag, p.prepare_help) for p in providers
                           if p.prepare is not None).items():
        sub.add_argument(f"--no-{flag}", dest=commands.skip_dest(flag), action="store_true",
                         help=f"do not {text}")
    _add_launcher(sub)


def _add_launcher(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--launcher", choices=("local", "slurm"), default="local",
        help="local: run cells here in parallel (one per core or GPU); slurm: submit one "
        "sbatch array plus a dependent render job. Example: --launcher slurm",
    )
    sub.add_argument(
        "--dry-run", action="store_true",
        help="print what would run (local: the cells; slurm: the scripts and sbatch lines) "
        "and change nothing. Example: --launcher slurm --dry-run",
    )
    _add_cell_state(sub)
    sub.add_argument(
        "--workers", type=_positive_int, default=None,
        help="local: parallel cells (default: number of GPUs, else of cores). Example: "
        "--workers 2",
    )
    slurm = sub.add_argument_group("Slurm (with --launcher slurm)")
    slurm.add_argument("--partition", help="Example: --partition gpu")
    slurm.add_argument("--account", help="Example: --account proj123")
    slurm.add_argument("--time", default="04:00:00",
                       help="wall time per cell (default 04:00:00). Example: --time 1-00:00:00")
    slurm.add_argument("--nodes", type=int, default=1,
                       help="nodes per cell (default 1). Example: --nodes 2")
    slurm.add_argument(
        "--gpus-per-task", type=int, default=0,
        help="GPUs per cell on each node; Lightning runs one process per GPU (default 0 = "
        "CPU). Example: --gpus-per-task 8",
    )
    slurm.add_argument("--cpus-per-task", type=int, default=1,
                       help="CPUs per process (default 1). Example: --cpus-per-task 8")
    slurm.add_argument("--mem", help="memory per node (sbatch --mem). Example: --mem 64G")
    slurm.add_argument(
        "--begin", help="start the array later (sbatch --begin), for nightly or weekly "
        "reruns. Example: --begin 23:00 or --begin now+7days",
    )
    slurm.add_argument("--max-parallel", type=int, default=None,
                       help="at most this many cells at once (array %%N). Example: 8")
    slurm.add_argument(
        "--wait", action="store_true",
        help="block until the array and the render job are done, then print the tables",
    )
    slurm.add_argument("--wait-timeout", type=float, default=24 * 3600.0,
                       help="seconds --wait waits at most (default one day). Example: "
                       "--wait-timeout 3600")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reproduce",
        description="Reproduce Tables 1-3 of Adafactor (Shazeer & Stern, 2018): train the missing "
        "cells (here or on Slurm) and render paper_tables/ with the paper's numbers beside ours.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands_ = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    paper = [p for p in REGISTRY.providers() if p.in_all]
    for p in paper:
        _table_parser(commands_, p.name, [p])
    _table_parser(commands_, "all", paper)
    for p in REGISTRY.providers():
        if not p.in_all:
            _table_parser(commands_, p.name, [p])

    run = commands_.add_parser(
        "run", help="train and evaluate one cell (what each Slurm array task runs)",
        description="Train and evaluate one cell with experiments.run.cell.run_cell; resumes from "
        "the cell's checkpoint when one exists.",
        epilog="example:\n  python -m reproduce run table2/H/no-warmup/seed0 --set steps=100",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("cell_id", help="cell id <table>/<row>/<column>/seed<k>, e.g. "
                     "table2/H/no-warmup/seed0")
    _add_scale(run)
    run.add_argument("--devices", type=int, default=None,
                     help="devices per node (default: Lightning's auto). Example: --devices 8")
    run.add_argument("--num-nodes", type=int, default=1, help="Example: --num-nodes 2")
    run.add_argument("--accelerator", default="auto", help="Example: --accelerator gpu")
    run.add_argument("--cache-dir", type=Path, default=None,
                     help="SentencePiece model cache (default RESULTS_DIR/.cache/vocab). "
                     "Example: --cache-dir /scratch/me/vocab")
    _add_cell_state(run)
    run.add_argument("--strategy", default="auto", choices=("auto", "ddp", "fsdp2"),
                     help="auto (DDP on more than one device), ddp, or fsdp2 (FSDP2 shards the "
                     "model; Adafactor steps the shards). Example: --strategy fsdp2")

    prepare = commands_.add_parser(
        "prepare", help="binarize the scale's corpus once (vocabulary, token ids, index)",
        description="Build the binarized corpus cache (data.binarized) that every cell and "
        "rank of --results-dir maps; the first cell does it implicitly, under a file lock. The "
        "Slurm launcher runs it as the job the array depends on.",
        epilog="example:\n  python -m reproduce prepare --scale base --results-dir results/base",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_scale(prepare)

    dashboard = commands_.add_parser(
        "dashboard", help="create the W&B Report of the tables (wandb-workspaces)",
        description="Build the W&B Report (BLEU vs the paper, valid-loss curves by row, RMS(U_t) "
        "for rows A and G, optimizer-state bytes, the frontier) from reproduce/dashboard.py and "
        "save it to W&B. Without a W&B server or key it says so and only writes the spec.",
        epilog="example:\n  python -m reproduce dashboard --entity my-team --project "
        "adafactor-repro --table table2 --results-dir results/tiny",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dashboard.add_argument("--entity", required=True, help="Example: --entity my-team")
    dashboard.add_argument("--project", required=True, help="Example: --project adafactor-repro")
    dashboard.add_argument("--table", action="append", default=None, metavar="TABLE",
                           help=f"only this table ({', '.join(REGISTRY.names())}); repeatable "
                           "(default: all). Example: --table table2")
    dashboard.add_argument("--scale", default="base", choices=SCALES,
                           help="the runs' scale tag (default base)")
    dashboard.add_argument("--out", type=Path, default=None,
                           help="where the spec JSON goes (default "
                           "results/dashboard/<entity>-<project>.json)")
    dashboard.add_argument("--results-dir", type=Path, default=None,
                           help="also write <out>.preview.md: each panel's values from these "
                           "local results. Example: --results-dir results/tiny")

    render = commands_.add_parser(
        "render", help="render paper_tables/ from existing results (or W&B runs)",
        description="Render <table>.{md,csv,tex} and the plots from result.json files "
        "(or W&B runs) without training anything.",
        epilog="example:\n  python -m reproduce render table2 --results-dir results/tiny",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    render.add_argument("tables", nargs="+", metavar="TABLE",
                        help=f"{', '.join(REGISTRY.names())} or all")
    render.add_argument("--scale", default="tiny", choices=SCALES,
                        help="only to find the default --results-dir results/<scale>")
    render.add_argument("--results-dir", type=Path, default=None,
                        help="default results/<scale>. Example: --results-dir results/base")
    flags = {p.prepare_flag: p for p in REGISTRY.providers() if p.prepare is not None}
    for flag, p in flags.items():
        render.add_argument(f"--{flag}", dest=commands.do_dest(flag), action="store_true",
                            help=f"{p.name}: first {p.prepare_help} (what `{p.name} --launcher "
                            "slurm` asks its render job to do)")
    render.add_argument("--rows", help=f"with {', '.join('--' + f for f in flags)}: only these "
                        "rows, e.g. --rows adafactor,lion")
    _add_render_outputs(render)

    unlock = commands_.add_parser(
        "unlock", help="show a lock's owner, then remove the lock (data.unlock)",
        description=data_unlock.DESCRIPTION,
        epilog="examples:\n  python -m reproduce unlock results/tiny --dry-run\n  python -m "
        "reproduce unlock results/tiny/.cache/vocab/bin-<hash>",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data_unlock.add_arguments(unlock)
    return parser


def _stop_before_start(signum: int, _frame: object) -> None:
    raise Interrupted(signum, f"stopped by {signal.Signals(signum).name} before any cell "
                      "started; nothing was changed")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    command = {"run": commands.run_one, "render": commands.render,
               "prepare": commands.prepare, "dashboard": commands.dashboard,
               "unlock": data_unlock.run}.get(args.command, commands.run_tables)
    if args.command not in ("render", "dashboard", "unlock"):
        signal.signal(signal.SIGTERM, _stop_before_start)
    try:
        return command(args)
    except (UsageError, CellFileError, LockHeld) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Interrupted as stopped:
        print(stopped, file=sys.stderr, flush=True)
        return 128 + stopped.signum
    except KeyboardInterrupt:
        print("stopped by SIGINT", file=sys.stderr, flush=True)
        return 128 + signal.SIGINT
    except BrokenPipeError:  # output piped into `head`: not an error
        sys.stderr.close()
        return 0
