"""What each ``python -m reproduce`` command does, given its parsed arguments.

``tables``: select the cells of the asked tables, lock the results folder, check everything
before a worker starts (folders, every ``--set`` value by building one cell), reuse the cells
whose results have this run's identity (refusing those of other settings), run the rest here or
on Slurm, run each table's ``prepare`` step, render. ``run``: one cell.
``render``: tables from existing results (or W&B runs). Nothing here tests a table's name: what
differs between tables is in their providers (experiments.grid.registry).
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from experiments.grid.cells import Cell, TableProvider
from experiments.grid.registry import get_cell, provider
from experiments.run.preflight import MIN_FREE_BYTES, PreflightError, check_folder, preflight_cell
from experiments.scales import SCALES_WITHOUT_COMPANIONS, plan_cell
from experiments.schema import CellPlan
from experiments.store.files import CellFileError
from experiments.store.locks import LockHeld, results_lock
from reproduce import slurm
from reproduce.errors import Interrupted, UsageError
from reproduce.local import FAILED, SKIPPED, CellOutcome, run_cells_locally
from reproduce.overrides import check_overrides, parse_set_args
from reproduce.render import render_tables
from reproduce.selection import (
    check_existing_results,
    expand_all,
    has_result,
    parse_rows,
    parse_seeds,
    select_cells,
)
from reproduce.wandb_source import download_results


def results_dir_of(args: argparse.Namespace) -> Path:
    return args.results_dir if args.results_dir is not None else Path("results") / args.scale


def skip_dest(flag: str) -> str:
    """The argparse dest of a table command's ``--no-<flag>``."""
    return "skip_" + flag.replace("-", "_")


def do_dest(flag: str) -> str:
    """The argparse dest of render's ``--<flag>``."""
    return "do_" + flag.replace("-", "_")


def _with_prepare(tables: Sequence[str]) -> list[TableProvider]:
    return [p for p in map(provider, tables) if p.prepare is not None]


def _unskipped_prepares(args: argparse.Namespace, tables: Sequence[str]) -> list[TableProvider]:
    """A table command's prepare steps, less those its ``--no-<flag>`` options skip."""
    return [p for p in _with_prepare(tables) if not getattr(args, skip_dest(p.prepare_flag))]


def _prepare(providers: Sequence[TableProvider], results_dir: Path, rows_text: str | None) -> None:
    rows = parse_rows(rows_text)
    for p in providers:
        try:
            p.prepare(results_dir, rows)
        except ValueError as err:
            raise UsageError(str(err)) from err


def _render_and_print(tables: Sequence[str], results_dir: Path, tables_dir: Path) -> None:
    several = len(tables) > 1
    rendered = render_tables(tables, results_dir, tables_dir, require_results=not several)
    if not rendered:
        raise UsageError(f"no results for {', '.join(tables)} under {results_dir}")
    skipped = [t for t in tables if t not in {r.table for r in rendered}]
    if skipped:
        print(f"no results yet for {', '.join(skipped)}: not rendered")
    for r in rendered:
        print()
        print(r.markdown)
        print(f"wrote {', '.join(str(p) for p in r.paths)}")


def cell_cost_line(outcomes: Sequence[CellOutcome]) -> str:
    """What the cells took each, and so what the same queue takes on more cores (each cell runs
    on one core at tiny scale: the wall time of N cores is about the sum over cells / N, and
    never less than the longest cell)."""
    times = sorted(o.wall_s for o in outcomes)
    if not times:
        return "no cell ran"
    total = sum(times)
    return (f"per cell: median {statistics.median(times):.0f} s, {times[0]:.0f}-{times[-1]:.0f} s, "
            f"{total:.0f} s in all: about {max(total / 8, times[-1]) / 60:.1f} min on 8 "
            f"workers, {max(total / 32, times[-1]) / 60:.1f} min on 32")


def _fetch_wandb(args: argparse.Namespace, tables: Sequence[str]) -> Path:
    if not args.entity or not args.project:
        raise UsageError("--from wandb needs --entity and --project, e.g. --entity my-team "
                         "--project adafactor-repro")
    target = args.results_dir or Path("results") / "wandb" / args.entity / args.project
    count = download_results(args.entity, args.project, target, tables=tables,
                             scale=args.scale)
    print(f"fetched {count} W&B run(s) of {args.entity}/{args.project} into {target}")
    return target


def _plan(cell: Cell, scale: str, overrides: dict[str, object]) -> CellPlan:
    """`plan_cell`, with a design whose m is not calibrated yet as a usage error."""
    try:
        return plan_cell(cell, scale, overrides)
    except ValueError as err:
        raise UsageError(str(err)) from None


def run_tables(args: argparse.Namespace) -> int:
    """``table1|table2|table3|all|<provider>``: run the missing cells, then render. The tables
    that go with a table (Table 2's Figure 1) come with it when it runs whole, not with --rows
    and not at a scale of SCALES_WITHOUT_COMPANIONS (smoke, the designs)."""
    tables = expand_all([args.command], with_companions=args.rows is None
                        and args.scale not in SCALES_WITHOUT_COMPANIONS)
    if args.source == "wandb":
        if args.dry_run:
            print(f"would fetch W&B runs of {args.entity}/{args.project} and render "
                  f"{', '.join(tables)} into {args.tables_dir}")
            return 0
        fetched = _fetch_wandb(args, tables)
        _prepare(_unskipped_prepares(args, tables), fetched, args.rows)
        _render_and_print(tables, fetched, args.tables_dir)
        return 0
    overrides = parse_set_args(args.set_args)
    check_overrides(args.scale, overrides)
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    results_dir = results_dir_of(args)
    seeds = parse_seeds(getattr(args, "seeds", "0"))
    # Each cell's settings are resolved here, once; the workers train these plans as they are.
    plans = [_plan(cell, args.scale, overrides)
             for cell in select_cells(tables, parse_rows(args.rows), seeds)]
    if args.dry_run:  # settings only: a dry run builds nothing and changes nothing
        done, pending = check_existing_results(results_dir, plans, act=False)
        return _run_selected(args, tables, plans, done, pending, results_dir)
    lock = results_lock(results_dir)
    try:
        check_folder(results_dir, "--results-dir", min_free_bytes=MIN_FREE_BYTES)
        lock.acquire(wait=args.wait_lock, log=partial(print, flush=True))
    except (PreflightError, LockHeld) as err:
        raise UsageError(str(err)) from None
    try:
        try:
            check_folder(args.tables_dir, "--tables-dir")
            # Slurm: the cells are built on the compute nodes (no vocabulary training here)
            build = plans and args.launcher == "local"
            fingerprints = preflight_cell(plans[0], results_dir) if build else None
        except PreflightError as err:
            raise UsageError(f"{err} (checked before any cell runs)") from None
        done, pending = check_existing_results(results_dir, plans,
                                               fingerprints=fingerprints, fresh=args.fresh)
        return _run_selected(args, tables, plans, done, pending, results_dir)
    finally:
        lock.release()


def _stop_while_rendering(tables: Sequence[str], results_dir: Path, tables_dir: Path,
                          signum: int, _frame: object) -> None:
    """SIGTERM after the cells: the results stay; say how to render them again."""
    raise Interrupted(signum, f"stopped by {signal.Signals(signum).name} while rendering: the "
                      f"results in {results_dir} are kept; render them with: python -m "
                      f"reproduce render {' '.join(tables)} --results-dir {results_dir} "
                      f"--tables-dir {tables_dir}")


def _run_selected(args: argparse.Namespace, tables: Sequence[str], plans: Sequence[CellPlan],
                  done: Sequence[str], pending: Sequence[str], results_dir: Path) -> int:
    print(f"{args.command} at scale {args.scale}: {len(plans)} cells, {len(done)} already have "
          f"results in {results_dir}, {len(pending)} to run", flush=True)
    prepares = _unskipped_prepares(args, tables)
    if args.launcher == "slurm":
        return _launch_slurm(args, tables, pending, results_dir, prepares)
    if args.dry_run:
        extra = "".join(f" --set {item}" for item in args.set_args)
        for cell_id in pending:
            print(f"would run: python -m reproduce run {cell_id} --scale {args.scale} "
                  f"--results-dir {results_dir}{extra}")
        return 0
    failed: list[CellOutcome] = []
    skipped: list[CellOutcome] = []
    if pending:
        start = time.time()
        to_run = [p for p in plans if p.cell_id in set(pending)]
        outcomes = run_cells_locally(to_run, results_dir=results_dir, workers=args.workers,
                                     use_wandb=not args.no_wandb, wait_lock=args.wait_lock)
        failed = [o for o in outcomes if o.status == FAILED]
        skipped = [o for o in outcomes if o.status == SKIPPED]
        finished = len(outcomes) - len(failed) - len(skipped)
        print(f"ran {len(outcomes)} cells in {time.time() - start:.0f} s: {finished} finished, "
              f"{len(failed)} failed, {len(skipped)} skipped")
        print(cell_cost_line([o for o in outcomes if o.status != SKIPPED]))
    signal.signal(signal.SIGTERM, partial(_stop_while_rendering, tables, results_dir,
                                          args.tables_dir))
    try:
        _prepare(prepares, results_dir, args.rows)
        _render_and_print(tables, results_dir, args.tables_dir)
    except UsageError:
        if not failed:
            raise
        print(f"no table rendered: every cell that ran failed and none has results in "
              f"{results_dir}", file=sys.stderr)
    for outcome in skipped:
        print(f"SKIPPED {outcome.cell_id}: {outcome.error} (not rendered; run the same command "
              "again once it is free, or with --wait-lock to wait for it)", file=sys.stderr)
    for outcome in failed:
        print(f"FAILED {outcome.cell_id}: {outcome.error}", file=sys.stderr)
    return 1 if failed else 0


def _launch_slurm(args: argparse.Namespace, tables: Sequence[str], pending: Sequence[str],
                  results_dir: Path, prepares: Sequence[TableProvider]) -> int:
    resources = slurm.SlurmResources(
        partition=args.partition, account=args.account, time=args.time, nodes=args.nodes,
        gpus_per_task=args.gpus_per_task, cpus_per_task=args.cpus_per_task, mem=args.mem,
        begin=slurm.validate_begin(args.begin), max_parallel=args.max_parallel,
    )
    if not pending:
        if args.dry_run:
            print("nothing to submit: every cell has a result; would render the tables")
            return 0
        _render_and_print(tables, results_dir, args.tables_dir)
        return 0
    # The render job runs each table's prepare step (e.g. the frontier's base-state measurement).
    render_extra = [f"--{p.prepare_flag}" for p in prepares]
    if render_extra and args.rows:
        render_extra += ["--rows", args.rows]
    plan = slurm.plan_submission(
        cell_ids=pending, results_dir=results_dir, tables_dir=args.tables_dir, tables=tables,
        scale=args.scale, set_args=args.set_args, use_wandb=not args.no_wandb,
        resources=resources, workdir=Path.cwd(), label=args.command, render_extra=render_extra,
    )
    if args.dry_run:
        print(f"# {plan.cells_path} ({len(plan.cell_ids)} lines):")
        print("".join(f"#   {c}\n" for c in plan.cell_ids), end="")
        print(f"# ---- {plan.prepare_path}\n{plan.prepare_text}")
        print(f"# ---- {plan.array_path}\n{plan.array_text}")
        print(f"# ---- {plan.render_path}\n{plan.render_text}")
        for command in plan.sbatch_commands():
            print(" ".join(command))
        return 0
    prepare_id, array_id, render_id = slurm.submit(plan)
    print(f"submitted array job {array_id} ({len(pending)} tasks) and render job {render_id} "
          f"(afterany:{array_id}), after prepare job {prepare_id} (afterok:{prepare_id}); "
          f"scripts and logs in {plan.script_dir}; tables will be "
          f"written to {Path(args.tables_dir).resolve()}", flush=True)
    if not args.wait:
        return 0
    try:
        slurm.wait_for_jobs([prepare_id, array_id, render_id], timeout_s=args.wait_timeout)
    except TimeoutError as err:
        print(f"{err}; they go on running: render later with `python -m reproduce render "
              f"{' '.join(tables)} --results-dir {results_dir}`", file=sys.stderr)
        return 1
    _render_and_print(tables, results_dir, args.tables_dir)
    missing = [c for c in pending if not has_result(results_dir, c)]
    for cell_id in missing:
        print(f"FAILED {cell_id}: no result.json (see {plan.script_dir}/logs)", file=sys.stderr)
    return 1 if missing else 0


def run_one(args: argparse.Namespace) -> int:
    """``run CELL_ID``: train and evaluate one cell (what a Slurm array task runs)."""
    try:
        cell = get_cell(args.cell_id)
    except ValueError as err:
        raise UsageError(str(err)) from err
    overrides = parse_set_args(args.set_args)
    check_overrides(args.scale, overrides)
    # Lightning: imported only when a cell runs here
    from experiments.run.cell import CellSetupError, run_cell
    from experiments.run.stop import CellInterrupted, install_stop_handlers, stop_requested

    plan = _plan(cell, args.scale, overrides)
    install_stop_handlers()
    try:
        result = run_cell(
            plan, results_dir=results_dir_of(args),
            devices=args.devices, accelerator=args.accelerator,
            num_nodes=args.num_nodes, use_wandb=not args.no_wandb, cache_dir=args.cache_dir,
            fresh=args.fresh, wait_lock=args.wait_lock, strategy=args.strategy,
        )
    except CellInterrupted as stopped:
        signum = stop_requested() or signal.SIGTERM
        raise Interrupted(signum, f"stopped by {signal.Signals(signum).name}: {stopped}; run "
                          "the same command again to resume") from None
    except (CellFileError, LockHeld, CellSetupError) as err:
        raise UsageError(str(err)) from None
    bleu = result.get("bleu")
    print(f"{args.cell_id}: {result.get('status')} BLEU "
          f"{'-' if bleu is None else f'{bleu:.2f}'} ({result.get('bleu_signature', '')})")
    return 0


def render(args: argparse.Namespace) -> int:
    """``render TABLE...``: paper_tables/ from existing results, training nothing."""
    tables = expand_all(args.tables)
    results_dir = _fetch_wandb(args, tables) if args.source == "wandb" else results_dir_of(args)
    prepares = [p for p in _with_prepare(tables) if getattr(args, do_dest(p.prepare_flag), False)]
    _prepare(prepares, results_dir, args.rows)
    _render_and_print(tables, results_dir, args.tables_dir)
    return 0


def prepare(args: argparse.Namespace) -> int:
    """``prepare``: binarize the scale's corpus once (what the Slurm prepare job runs)."""
    from experiments.measure.corpus import prepare_scale

    overrides = parse_set_args(args.set_args)
    check_overrides(args.scale, overrides)
    try:
        prepared = prepare_scale(args.scale, results_dir_of(args), overrides)
    except (ValueError, FileNotFoundError) as err:  # corpus errors name the file
        raise UsageError(str(err)) from err
    print(prepared.summary())
    return 0


def dashboard(args: argparse.Namespace) -> int:
    """``dashboard``: write the report's spec, then save it to W&B (or say why not)."""
    from reproduce import dashboard as report

    try:
        spec = report.dashboard_spec(args.entity, args.project, args.table, args.scale)
    except ValueError as err:  # an unknown table
        raise UsageError(str(err)) from err
    out = args.out or Path("results") / "dashboard" / f"{args.entity}-{args.project}.json"
    report.write_spec(spec, out)
    panels = sum(len(s.panels) for s in spec.sections)
    print(f"wrote the report spec ({len(spec.sections)} sections, {panels} panels) to {out}")
    if args.results_dir is not None:
        preview = out.with_suffix(".preview.md")
        try:
            report.write_preview(spec, args.results_dir, preview)
        except FileNotFoundError as err:
            raise UsageError(str(err)) from err
        print(f"wrote a preview from {args.results_dir} to {preview}")
    report.build_report(spec)  # validates every panel offline
    views = report.workspace_spec_path(out)
    try:
        report.publish_workspaces(spec, views)
    except Exception as err:  # the server refuses the views: name it, keep their spec
        raise UsageError(f"saving the workspace views to W&B failed ({type(err).__name__}: "
                         f"{err}); their spec is in {views}") from err
    reason = report.wandb_unavailable_reason()
    if reason:
        print(f"not saved to W&B: {reason}; the spec above is what `dashboard` would create",
              file=sys.stderr)
        return 0
    try:
        url = report.save_report(spec)
    except Exception as err:  # the server refuses or is unreachable: name it, keep the spec
        raise UsageError(f"saving the report to W&B failed ({type(err).__name__}: {err}); "
                         f"the spec is in {out}") from err
    print(f"saved the W&B report: {url}")
    return 0
