"""Everything that writes paper_tables/: ``render_tables`` is the one entry point.

Each table's provider (experiments.grid.registry) names its ``kind``; ``RENDERERS`` maps a kind
to the function that writes that kind of table (md/csv/tex and plots for a grid table beside the
paper's numbers, md/csv/png for an optimizer frontier). A new table of an existing kind needs
nothing here; a new kind is one module plus one entry in ``RENDERERS``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.grid import sensitivity
from experiments.grid.cells import TableProvider
from experiments.grid.registry import provider as table_provider
from experiments.schema import METRICS_FILE
from experiments.store.files import atomic_write, cell_dir, load_results, read_metrics
from experiments.store.prepared import load_base_state, load_unigram_levels
from reproduce.errors import UsageError
from reproduce.render.figure1_data import build_figure1, figure1_csv, figure1_markdown
from reproduce.render.figure1_plot import plot_figure1
from reproduce.render.frontier_data import build_frontier
from reproduce.render.frontier_plot import plot_frontier
from reproduce.render.frontier_text import frontier_csv, frontier_markdown
from reproduce.render.sensitivity_data import build_sensitivity
from reproduce.render.sensitivity_plot import plot_sensitivity
from reproduce.render.sensitivity_text import sensitivity_csv, sensitivity_markdown
from reproduce.render.table_data import build_seed_tables
from reproduce.render.table_plots import plot_update_rms, plot_valid_loss
from reproduce.render.table_text import markdown, write_table_files


@dataclass
class Rendered:
    """One rendered table: its markdown (what the CLI prints) and the files written."""

    table: str
    markdown: str
    paths: list[Path]


@dataclass
class Inputs:
    """What a renderer reads: the results and the folder they came from."""

    results: list[dict[str, Any]]
    results_dir: Path

    def metrics(self, cell_id: str) -> list[dict[str, Any]]:
        return read_metrics(cell_dir(self.results_dir, cell_id) / METRICS_FILE)


def render_grid(provider: TableProvider, inputs: Inputs, out_dir: Path) -> Rendered | None:
    """<table>.{md,csv,tex}, <table>_valid_loss.png and (Tables 1, 2) <table>_update_rms.png."""
    levels = load_unigram_levels(inputs.results_dir, provider.source or provider.name)
    datas = build_seed_tables(provider, inputs.results, inputs.metrics, levels)
    data = datas[0]  # the valid-loss panels show the first seed
    if sum(d.n_results for d in datas) == 0:
        return None
    paths = write_table_files(datas, out_dir)
    plot = plot_valid_loss(data, inputs.metrics, Path(out_dir) / f"{data.table}_valid_loss.png")
    if plot is not None:
        paths.append(plot)
    if provider.update_rms_plot:
        figure = plot_update_rms(inputs.metrics, Path(out_dir) / f"{provider.name}_update_rms.png",
                                 provider.source or provider.name)
        if figure is not None and figure not in paths:
            paths.append(figure)
    return Rendered(provider.name, markdown(datas), paths)


def render_sweep(provider: TableProvider, inputs: Inputs, out_dir: Path) -> Rendered | None:
    """<table>.{md,csv,png}: each optimizer's best point, state bytes against BLEU."""
    data = build_frontier(inputs.results, load_base_state(inputs.results_dir, provider.name))
    if data.n_results == 0:
        return None
    out_dir = Path(out_dir)
    text = frontier_markdown(data)
    paths = []
    for suffix, body in (("md", text), ("csv", frontier_csv(data))):
        path = out_dir / f"{provider.name}.{suffix}"
        atomic_write(path, body)
        paths.append(path)
    plot = plot_frontier(data, out_dir / f"{provider.name}.png")
    if plot is not None:
        paths.append(plot)
    return Rendered(provider.name, text, paths)


def render_figure1(provider: TableProvider, inputs: Inputs, out_dir: Path) -> Rendered | None:
    """<table>.{md,csv,png}: the smoothed RMS(U_t) of rows A and G beside the paper's values."""
    data = build_figure1(inputs.results, inputs.metrics)
    if data.n_results == 0:
        return None
    return _write_text_and_plot(provider.name, figure1_markdown(data), figure1_csv(data),
                                lambda path: plot_figure1(data, path), Path(out_dir))


def render_sensitivity(provider: TableProvider, inputs: Inputs, out_dir: Path
                       ) -> Rendered | None:
    """<table>.{md,csv,png}: the LR-sensitivity grid, its gaps named."""
    levels = load_unigram_levels(inputs.results_dir, provider.name)
    data = build_sensitivity(inputs.results, inputs.metrics, levels,
                             grid=sensitivity.GRIDS[provider.name])
    if data.n_results == 0:
        return None
    return _write_text_and_plot(provider.name, sensitivity_markdown(data), sensitivity_csv(data),
                                lambda path: plot_sensitivity(data, path), Path(out_dir))


def _write_text_and_plot(name: str, text: str, csv: str, plot: Callable[[Path], Path | None],
                         out_dir: Path) -> Rendered:
    """<name>.md, <name>.csv and <name>.png (when the plot has something to draw)."""
    paths = []
    for suffix, body in (("md", text), ("csv", csv)):
        path = out_dir / f"{name}.{suffix}"
        atomic_write(path, body)
        paths.append(path)
    png = plot(out_dir / f"{name}.png")
    if png is not None:
        paths.append(png)
    return Rendered(name, text, paths)


Renderer = Callable[[TableProvider, Inputs, Path], "Rendered | None"]
RENDERERS: dict[str, Renderer] = {"grid": render_grid, "sweep": render_sweep,
                                  "figure1": render_figure1, "sensitivity": render_sensitivity}


def render_tables(tables: Sequence[str], results_dir: Path, out_dir: Path, *,
                  require_results: bool = True) -> list[Rendered]:
    """Render every table in ``tables`` from the result files under ``results_dir``.

    With ``require_results`` a table without a single result is a UsageError (a typo in
    --results-dir must not silently produce an empty table); without it, it is skipped.
    """
    try:
        inputs = Inputs(load_results(Path(results_dir)), Path(results_dir))
    except FileNotFoundError as err:
        raise UsageError(f"no results: {err}") from err
    rendered = []
    for table in tables:
        provider = table_provider(table)
        result = RENDERERS[provider.kind](provider, inputs, out_dir)
        if result is not None:
            rendered.append(result)
        elif require_results:
            raise UsageError(f"no results for {table} under {results_dir} (run `python -m "
                             f"reproduce {table} --results-dir {results_dir}` first)")
    return rendered
