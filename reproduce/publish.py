"""Turn a results folder into paper_tables/: md, csv, tex per table, plus the PNG plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from experiments.tracking import load_results
from reproduce.errors import UsageError
from reproduce.frontier import (
    FrontierData,
    build_frontier,
    load_base_state,
    write_frontier_files,
)
from reproduce.frontier import markdown as frontier_markdown
from reproduce.metrics import read_metrics
from reproduce.plots import plot_update_rms, plot_valid_loss
from reproduce.render import TableData, build_table, markdown, write_table_files
from reproduce.selection import METRICS_FILE, cell_dir


def collect_results(results_dir: Path) -> list[dict]:
    """Every result.json under ``results_dir``; a missing folder is a UsageError."""
    try:
        return load_results(Path(results_dir))
    except FileNotFoundError as err:
        raise UsageError(f"no results: {err}") from err


def render_tables(
    tables: Sequence[str], results_dir: Path, out_dir: Path, *, require_results: bool = True
) -> list[tuple[TableData | FrontierData, list[Path]]]:
    """Render every table in ``tables`` from ``results_dir`` into ``out_dir``.

    With ``require_results`` a table without a single result is a UsageError (a typo in
    --results-dir must not silently produce an empty table).
    """
    results = collect_results(results_dir)

    def load_metrics(cell_id: str) -> list[dict]:
        return read_metrics(cell_dir(results_dir, cell_id) / METRICS_FILE)

    rendered: list[tuple[TableData | FrontierData, list[Path]]] = []
    for table in tables:
        if table == "frontier":
            frontier = build_frontier(results, load_base_state(results_dir))
            if frontier.n_results == 0:
                if require_results:
                    raise UsageError(
                        f"no frontier results under {results_dir} (run `python -m reproduce "
                        f"frontier --results-dir {results_dir}` first)"
                    )
                continue
            rendered.append((frontier, write_frontier_files(frontier, out_dir)))
            continue
        data = build_table(table, results)
        if data.n_results == 0:
            if require_results:
                raise UsageError(
                    f"no results for {table} under {results_dir} (run `python -m reproduce "
                    f"{table} --results-dir {results_dir}` first)"
                )
            continue
        paths = write_table_files(data, out_dir)
        plot = plot_valid_loss(data, load_metrics, Path(out_dir) / f"{table}_valid_loss.png")
        if plot is not None:
            paths.append(plot)
        if table in ("table1", "table2"):
            figure = plot_update_rms(load_metrics, Path(out_dir) / "figure1_update_rms.png")
            if figure is not None and figure not in paths:
                paths.append(figure)
        rendered.append((data, paths))
    return rendered


def table_markdown(data: TableData | FrontierData) -> str:
    """The markdown of a rendered table or of the frontier."""
    if isinstance(data, FrontierData):
        return frontier_markdown(data)
    return markdown(data)
