"""``python -m reproduce``: run the paper's tables and render paper_tables/.

Commands: ``table1|table2|table3|all`` (run the missing cells, then render), ``frontier`` (the same
for the memory-vs-BLEU frontier of other optimizers), ``run CELL_ID`` (one
cell; what Slurm array tasks call) and ``render TABLE`` (tables from existing results). Bad input
prints one clear line and exits with code 2; failed cells exit with code 1 after rendering what
finished.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from reproduce.errors import UsageError

TABLE_CHOICES = ("table1", "table2", "table3", "all")
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
        "--scale", default="tiny", choices=("tiny", "small", "base"),
        help="size preset (experiments.scales): tiny = embedded corpus, CPU minutes; small = "
        "Multi30k on one GPU; base = the paper (WMT14, 100k steps). Example: --scale base",
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


def _add_render_outputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tables-dir", type=Path, default=Path("paper_tables"),
        help="where <table>.{md,csv,tex} and the PNG plots go. Example: --tables-dir /tmp/tables",
    )
    parser.add_argument(
        "--from", dest="source", choices=("results", "wandb"), default="results",
        help="build the tables from result files (default) or from the finished W&B runs of "
        "--scale via wandb.Api (needs --entity, --project and a W&B login; no training; the "
        "runs are saved as result files under --results-dir, default "
        "results/wandb/<entity>/<project>). Example: --from wandb",
    )
    parser.add_argument("--entity", help="W&B entity for --from wandb. Example: --entity my-team")
    parser.add_argument(
        "--project", help="W&B project for --from wandb. Example: --project adafactor-repro"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reproduce",
        description="Reproduce Tables 1-3 of Adafactor (Shazeer & Stern, 2018): train the missing "
        "cells (here or on Slurm) and render paper_tables/ with the paper's numbers beside ours.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for table in (*TABLE_CHOICES, "frontier"):
        if table == "frontier":
            sub = commands.add_parser(
                table, help="run the memory-vs-BLEU frontier (Adafactor and 12 other "
                "optimizers, an lr sweep each), then render paper_tables/frontier.*",
                description="Run every frontier cell (experiments/frontier.py: one optimizer and "
                "peak step size each) that has no result.json yet, measure each optimizer's state "
                "on Transformer base (one CPU step), then render paper_tables/frontier.{md,csv,"
                "png}.", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
            )
            rows_help = ("only these optimizers, comma-separated (adafactor, adafactor-momentum, "
                         "adam, adamw, adam-mini, adax, came, lamb, lion, tiger, sgd-momentum, "
                         "adagrad, rmsprop). Example: --rows adafactor,lion")
        else:
            what = "every table" if table == "all" else table.replace("table", "Table ")
            sub = commands.add_parser(
                table, help=f"run the missing cells of {what}, then render it",
                description=f"Run every cell of {what} that has no result.json yet, then render "
                "paper_tables/ and print the table.", epilog=EXAMPLES,
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
            rows_help = ("only these rows, comma-separated (Table 2: A..P, Q1..Q6; Table 3: "
                         "clever, naive1, naive2). Example: --rows A,B,Q3")
        _add_scale(sub)
        _add_render_outputs(sub)
        sub.add_argument("--rows", help=rows_help)
        if table == "frontier":
            sub.add_argument(
                "--seeds", default="0",
                help="cell seeds, comma-separated; each peak's valid loss and BLEU are averaged "
                "over them (default 0). Example: --seeds 0,1,2",
            )
            sub.add_argument(
                "--no-base-state", action="store_true",
                help="skip measuring each optimizer's state on Transformer base (about 5 s of "
                "CPU per optimizer, cached in <results-dir>/frontier/base_state_bytes.json)",
            )
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
        sub.add_argument(
            "--workers", type=int, default=None,
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
                           help="seconds --wait waits at most (default one day)")

    run = commands.add_parser(
        "run", help="train and evaluate one cell (what each Slurm array task runs)",
        description="Train and evaluate one cell with experiments.runner.run_cell; resumes from "
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

    render = commands.add_parser(
        "render", help="render paper_tables/ from existing results (or W&B runs)",
        description="Render <table>.{md,csv,tex} and the plots from result.json files "
        "(or W&B runs) without training anything.",
        epilog="example:\n  python -m reproduce render table2 --results-dir results/tiny",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    render.add_argument("tables", nargs="+", metavar="TABLE",
                        help="table1, table2, table3, all or frontier")
    render.add_argument("--scale", default="tiny", choices=("tiny", "small", "base"),
                        help="only to find the default --results-dir results/<scale>")
    render.add_argument("--results-dir", type=Path, default=None,
                        help="default results/<scale>. Example: --results-dir results/base")
    render.add_argument(
        "--base-state", action="store_true",
        help="frontier: first measure each optimizer's state on Transformer base (one CPU step "
        "each) where <results-dir>/frontier/base_state_bytes.json lacks it (what `frontier "
        "--launcher slurm` asks its render job to do)",
    )
    render.add_argument("--rows", help="with --base-state: only these optimizers, e.g. "
                        "--rows adafactor,lion")
    _add_render_outputs(render)
    return parser


def _results_dir(args: argparse.Namespace) -> Path:
    return args.results_dir if args.results_dir is not None else Path("results") / args.scale


def _expand(names: Sequence[str]) -> list[str]:
    from reproduce.selection import expand_tables

    tables: list[str] = []
    for name in names:
        tables += [t for t in expand_tables(name) if t not in tables]
    return tables


def _render_and_print(tables: Sequence[str], results_dir: Path, tables_dir: Path,
                      *, several: bool) -> None:
    from reproduce.publish import render_tables, table_markdown

    rendered = render_tables(tables, results_dir, tables_dir, require_results=not several)
    if not rendered:
        raise UsageError(f"no results for {', '.join(tables)} under {results_dir}")
    skipped = [t for t in tables if t not in {data.table for data, _ in rendered}]
    if skipped:
        print(f"no results yet for {', '.join(skipped)}: not rendered")
    for data, paths in rendered:
        print()
        print(table_markdown(data))
        print(f"wrote {', '.join(str(p) for p in paths)}")


def _fetch_wandb(args: argparse.Namespace, tables: Sequence[str]) -> Path:
    from reproduce.wandb_source import download_results

    if not args.entity or not args.project:
        raise UsageError("--from wandb needs --entity and --project, e.g. --entity my-team "
                         "--project adafactor-repro")
    target = args.results_dir or Path("results") / "wandb" / args.entity / args.project
    count = download_results(args.entity, args.project, target, tables=tables,
                             scale=args.scale)
    print(f"fetched {count} W&B run(s) of {args.entity}/{args.project} into {target}")
    return target


# Preset fields that change how a cell runs, not what it computes.
_NOT_RESULT_FIELDS = {"num_workers", "torch_threads", "corpus_path"}


def _check_existing_results(results_dir: Path, done: Sequence[str], scale: str,
                            overrides: dict) -> None:
    """Existing results are reused only if they come from the same scale preset (with the same
    --set overrides): a stale result must not slip into a fresh table."""
    from experiments.scales import scale_preset
    from reproduce.selection import cell_dir, result_path

    wanted = json.loads(json.dumps(scale_preset(scale, **overrides).as_dict()))
    for cell_id in done:
        path = result_path(results_dir, cell_id)
        found = json.loads(path.read_text()).get("scale")
        if found is not None and found != scale:
            raise UsageError(f"{path} was run at scale {found!r}, not {scale!r}: use another "
                             "--results-dir (the default is results/<scale>)")
        config_path = cell_dir(results_dir, cell_id) / "config.json"
        if not config_path.is_file():
            continue
        used = json.loads(config_path.read_text()).get("scale", {})
        changed = sorted(k for k in set(wanted) | set(used) - _NOT_RESULT_FIELDS
                         if k not in _NOT_RESULT_FIELDS and used.get(k) != wanted.get(k))
        if changed:
            diff = ", ".join(f"{k}: {used.get(k)!r} there, {wanted.get(k)!r} now" for k in changed)
            raise UsageError(f"{path} comes from other {scale} settings ({diff}): use another "
                             "--results-dir, the same --set overrides, or delete the stale results")


def cmd_tables(args: argparse.Namespace) -> int:
    from reproduce.overrides import check_overrides, parse_set_args
    from reproduce.selection import has_result, parse_rows, parse_seeds, select_cells

    tables = _expand([args.command])
    several = len(tables) > 1
    if args.source == "wandb":
        if args.dry_run:
            print(f"would fetch W&B runs of {args.entity}/{args.project} and render "
                  f"{', '.join(tables)} into {args.tables_dir}")
            return 0
        _render_and_print(tables, _fetch_wandb(args, tables), args.tables_dir, several=several)
        return 0
    overrides = parse_set_args(args.set_args)
    check_overrides(args.scale, overrides)
    results_dir = _results_dir(args)
    seeds = parse_seeds(args.seeds) if args.command == "frontier" else [0]
    cells = select_cells(tables, parse_rows(args.rows), seeds)
    done = [c.cell_id for c in cells if has_result(results_dir, c.cell_id)]
    pending = [c.cell_id for c in cells if c.cell_id not in done]
    _check_existing_results(results_dir, done, args.scale, overrides)
    print(f"{args.command} at scale {args.scale}: {len(cells)} cells, {len(done)} already have "
          f"results in {results_dir}, {len(pending)} to run", flush=True)
    if args.launcher == "slurm":
        return _launch_slurm(args, tables, pending, results_dir, several=several)
    if args.dry_run:
        extra = "".join(f" --set {item}" for item in args.set_args)
        for cell_id in pending:
            print(f"would run: python -m reproduce run {cell_id} --scale {args.scale} "
                  f"--results-dir {results_dir}{extra}")
        return 0
    failed = []
    if pending:
        from reproduce.local import run_cells_locally

        start = time.time()
        outcomes = run_cells_locally(
            pending, scale=args.scale, results_dir=results_dir, overrides=overrides,
            workers=args.workers, use_wandb=not args.no_wandb,
        )
        failed = [o for o in outcomes if o.status == "failed"]
        print(f"ran {len(outcomes)} cells in {time.time() - start:.0f} s, {len(failed)} failed")
    if tables == ["frontier"] and not args.no_base_state:
        _measure_base_state(results_dir, args.rows)
    _render_and_print(tables, results_dir, args.tables_dir, several=several)
    for outcome in failed:
        print(f"FAILED {outcome.cell_id}: {outcome.error}", file=sys.stderr)
    return 1 if failed else 0


def _launch_slurm(args: argparse.Namespace, tables: Sequence[str], pending: Sequence[str],
                  results_dir: Path, *, several: bool) -> int:
    from reproduce import slurm

    resources = slurm.SlurmResources(
        partition=args.partition, account=args.account, time=args.time, nodes=args.nodes,
        gpus_per_task=args.gpus_per_task, cpus_per_task=args.cpus_per_task, mem=args.mem,
        begin=slurm.validate_begin(args.begin), max_parallel=args.max_parallel,
    )
    if not pending:
        if args.dry_run:
            print("nothing to submit: every cell has a result; would render the tables")
            return 0
        _render_and_print(tables, results_dir, args.tables_dir, several=several)
        return 0
    plan = slurm.plan_submission(
        cell_ids=pending, results_dir=results_dir, tables_dir=args.tables_dir, tables=tables,
        scale=args.scale, set_args=args.set_args, use_wandb=not args.no_wandb,
        resources=resources, workdir=Path.cwd(), label=args.command,
        render_extra=_base_state_args(args),
    )
    if args.dry_run:
        print(f"# {plan.cells_path} ({len(plan.cell_ids)} lines):")
        print("".join(f"#   {c}\n" for c in plan.cell_ids), end="")
        print(f"# ---- {plan.array_path}\n{plan.array_text}")
        print(f"# ---- {plan.render_path}\n{plan.render_text}")
        for command in plan.sbatch_commands():
            print(" ".join(command))
        return 0
    array_id, render_id = slurm.submit(plan)
    print(f"submitted array job {array_id} ({len(pending)} tasks) and render job {render_id} "
          f"(afterany:{array_id}); scripts and logs in {plan.script_dir}; tables will be "
          f"written to {Path(args.tables_dir).resolve()}", flush=True)
    if not args.wait:
        return 0
    try:
        slurm.wait_for_jobs([array_id, render_id], timeout_s=args.wait_timeout)
    except TimeoutError as err:
        print(f"{err}; they go on running: render later with `python -m reproduce render "
              f"{' '.join(tables)} --results-dir {results_dir}`", file=sys.stderr)
        return 1
    _render_and_print(tables, results_dir, args.tables_dir, several=several)
    from reproduce.selection import has_result

    missing = [c for c in pending if not has_result(results_dir, c)]
    for cell_id in missing:
        print(f"FAILED {cell_id}: no result.json (see {plan.script_dir}/logs)", file=sys.stderr)
    return 1 if missing else 0


def _measure_base_state(results_dir: Path, rows_text: str | None) -> None:
    """Measure the Transformer-base optimizer state of the frontier optimizers in ``--rows``
    (all by default) that ``<results_dir>/frontier/base_state_bytes.json`` lacks."""
    from experiments.frontier import FRONTIER_ROWS
    from reproduce.frontier import measure_base_state
    from reproduce.selection import parse_rows

    rows = parse_rows(rows_text)
    unknown = [r for r in rows or () if r not in FRONTIER_ROWS]
    if unknown:
        raise UsageError(f"unknown frontier optimizer(s) {', '.join(map(repr, unknown))}; "
                         f"valid: {', '.join(FRONTIER_ROWS)}")
    measure_base_state(results_dir, rows if rows is not None else FRONTIER_ROWS)


def _base_state_args(args: argparse.Namespace) -> list[str]:
    """The render job of a frontier measures the optimizers' state on Transformer base too."""
    if args.command != "frontier" or args.no_base_state:
        return []
    return ["--base-state", *(["--rows", args.rows] if args.rows else [])]


def cmd_run(args: argparse.Namespace) -> int:
    from experiments.grid import get_cell
    from reproduce.overrides import check_overrides, parse_set_args

    try:
        get_cell(args.cell_id)
    except ValueError as err:
        raise UsageError(str(err)) from err
    overrides = parse_set_args(args.set_args)
    check_overrides(args.scale, overrides)
    from experiments.runner import run_cell

    result = run_cell(
        args.cell_id, scale=args.scale, results_dir=_results_dir(args), overrides=overrides,
        devices=args.devices, accelerator=args.accelerator, num_nodes=args.num_nodes,
        use_wandb=not args.no_wandb,
    )
    bleu = result.get("bleu")
    print(f"{args.cell_id}: {result.get('status')} BLEU "
          f"{'-' if bleu is None else f'{bleu:.2f}'} ({result.get('bleu_signature', '')})")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    tables = _expand(args.tables)
    several = len(tables) > 1
    results_dir = _fetch_wandb(args, tables) if args.source == "wandb" else _results_dir(args)
    if args.base_state and "frontier" in tables:
        _measure_base_state(results_dir, args.rows)
    _render_and_print(tables, results_dir, args.tables_dir, several=several)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "render":
            return cmd_render(args)
        return cmd_tables(args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head`: not an error
        sys.stderr.close()
        return 0
