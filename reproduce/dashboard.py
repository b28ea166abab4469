"""``python -m reproduce dashboard``: a W&B Report of the tables, built from code.

`dashboard_spec` describes the report as plain data (sections, each a run set filtered by the
tags experiments.run.mirror gives every run, and its panels with the keys they plot). The keys come
from experiments.schema's HISTORY/SUMMARY/CONFIG constants, the same names the runner logs; a
test trains a real cell with offline W&B and fails if a plotted key is not in that run's log.

Per grid table (Tables 1-3): BLEU per row and column, ours beside the paper's (bar plots of the
summary, one per column); validation-loss curves grouped by row (the run group is
``<table>/<row>``); optimizer-state bytes per row; for tables with Figure 1, RMS(U_t) against
step for rows A and G. Per sweep table (the frontier): valid loss against state bytes.

`build_report` turns the spec into ``wandb_workspaces.reports.v2`` objects and `save_report`
saves them (that needs a W&B server and an API key: ``Report.save`` resolves the project). Without
one the command says so and writes the spec as JSON; ``--results-dir`` also writes a Markdown
preview of what each panel shows for local results.

The same panels also make saved workspace views (``wandb_workspaces.workspaces``, see
`workspace_views`: one view per run set of the report, since a view filters all its panels
alike). `publish_workspaces` writes their spec to a file and saves them when a server is there.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from experiments.grid.cells import TableProvider
from experiments.grid.registry import REGISTRY
from experiments.schema import (
    BLEU,
    CONFIG_KEYS,
    HISTORY_KEYS,
    METRICS_FILE,
    PAPER_BLEU,
    STATE_BYTES,
    SUMMARY_KEYS,
    UPDATE_RMS,
    UPDATE_RMS_MATRICES,
    UPDATE_RMS_MATRIX,
    VALID_LOSS,
)
from experiments.store.files import (
    atomic_write,
    atomic_write_json,
    load_results,
    read_metrics,
    series,
)

STEP = "Step"  # W&B's x axis for history panels (our rows are logged with step=global step)
GROUP = "group"  # run attribute: the mirror names the group "<table>/<row>"
FIGURE1_ROWS = ("A", "G")


@dataclass(frozen=True)
class PanelSpec:
    """One panel: ``kind`` line (history against step), bar (summary per group) or scatter."""

    kind: str
    title: str
    y: tuple[str, ...]
    source: str  # "history" or "summary": where W&B keeps the plotted keys
    x: str = STEP
    groupby: str | None = GROUP


@dataclass(frozen=True)
class SectionSpec:
    """A heading, a run set (runs carrying every tag in ``tags``) and its panels."""

    title: str
    tags: tuple[str, ...]
    panels: tuple[PanelSpec, ...]
    runset: str = ""


@dataclass(frozen=True)
class DashboardSpec:
    entity: str
    project: str
    title: str
    sections: tuple[SectionSpec, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def plotted_keys(self) -> dict[str, set[str]]:
        """{"history": keys, "summary": keys}: every key a panel reads."""
        keys: dict[str, set[str]] = {"history": set(), "summary": set()}
        for section in self.sections:
            for panel in section.panels:
                keys[panel.source].update(panel.y)
                if panel.source == "summary" and panel.x != STEP:
                    keys["summary"].add(panel.x)
        return keys


def _grid_sections(p: TableProvider, scale: str) -> list[SectionSpec]:
    base = (p.name, f"scale:{scale}")
    sections = [
        SectionSpec(f"{p.name}: BLEU, ours vs the paper ({column})", (*base, column),
                    (PanelSpec("bar", f"BLEU per row, {column}", (BLEU, PAPER_BLEU), "summary"),),
                    runset=f"{p.name} {column}")
        for column in dict.fromkeys(c for r in p.rows for c in p.row_columns(r))
    ]
    sections.append(SectionSpec(
        f"{p.name}: training", base,
        (PanelSpec("line", "validation loss by row", (VALID_LOSS,), "history"),
         PanelSpec("bar", "optimizer state bytes per row", (STATE_BYTES,), "summary")),
        runset=p.name))
    if p.update_rms_plot:
        for row in FIGURE1_ROWS:
            sections.append(SectionSpec(
                f"{p.name}: RMS(U_t) against step, row {row} (Figure 1)", (*base, f"row:{row}"),
                (PanelSpec("line", f"RMS(U_t), row {row}", (UPDATE_RMS,), "history"),),
                runset=f"{p.name} row {row}"))
    return sections


def _sweep_sections(p: TableProvider, scale: str) -> list[SectionSpec]:
    return [SectionSpec(
        f"{p.name}: valid loss against optimizer state", (p.name, f"scale:{scale}"),
        (PanelSpec("scatter", "valid loss vs state bytes", (VALID_LOSS,), "summary",
                   x=STATE_BYTES, groupby=None),
         PanelSpec("line", "validation loss by optimizer", (VALID_LOSS,), "history")),
        runset=p.name)]


def _curve_sections(p: TableProvider, scale: str) -> list[SectionSpec]:
    """Other kinds (e.g. a sensitivity study): its loss curves, grouped by row."""
    return [SectionSpec(f"{p.name}: curves", (p.name, f"scale:{scale}"),
                        (PanelSpec("line", "validation loss by row", (VALID_LOSS,), "history"),),
                        runset=p.name)]


def _figure1_sections(p: TableProvider, scale: str) -> list[SectionSpec]:
    """Figure 1: RMS(U_t) against step for each row, one named matrix and the mean over them."""
    return [SectionSpec(
        f"{p.name}: RMS(U_t) against step, row {row}", (p.name, f"scale:{scale}", f"row:{row}"),
        (PanelSpec("line", f"RMS(U_t), row {row}", (UPDATE_RMS_MATRIX, UPDATE_RMS_MATRICES),
                   "history"),),
        runset=f"{p.name} row {row}") for row in p.rows]


_SECTIONS = {"grid": _grid_sections, "sweep": _sweep_sections, "figure1": _figure1_sections}


def dashboard_spec(entity: str, project: str, tables: Sequence[str] | None = None,
                   scale: str = "base") -> DashboardSpec:
    """The report of ``tables`` (default: every registered table) at ``scale``."""
    names = list(tables) if tables else REGISTRY.names()
    sections: list[SectionSpec] = []
    for name in names:
        p = REGISTRY.provider(name)
        if p.source is not None:  # an excerpt of another table (Table 1 of Table 2): same runs
            continue
        sections += _SECTIONS.get(p.kind, _curve_sections)(p, scale)
    spec = DashboardSpec(entity, project, f"Adafactor reproduction ({scale}): "
                         f"{', '.join(names)}", tuple(sections))
    check_keys(spec)
    return spec


def check_keys(spec: DashboardSpec) -> None:
    """Every plotted key is one of experiments.schema's keys (so renaming one there is caught)."""
    keys = spec.plotted_keys()
    unknown = (keys["history"] - set(HISTORY_KEYS)) | (keys["summary"] - set(SUMMARY_KEYS))
    if unknown:
        raise ValueError(f"dashboard plots keys the runner does not log: {sorted(unknown)}")


# ----------------------------------------------------------------------------- wandb-workspaces


def _panel(p: PanelSpec) -> Any:
    """The ``wandb_workspaces.reports.v2`` panel of ``p`` (reports and workspaces share them)."""
    import wandb_workspaces.reports.v2 as wr

    if p.kind == "line":
        return wr.LinePlot(title=p.title, x=p.x, y=list(p.y), groupby=p.groupby,
                           groupby_aggfunc="mean" if p.groupby else None)
    if p.kind == "bar":
        return wr.BarPlot(title=p.title, metrics=[wr.SummaryMetric(k) for k in p.y],
                          groupby=p.groupby, orientation="v")
    if p.kind == "scatter":
        return wr.ScatterPlot(title=p.title, x=wr.SummaryMetric(p.x),
                              y=wr.SummaryMetric(p.y[0]))
    raise ValueError(f"unknown panel kind {p.kind!r}")


def build_report(spec: DashboardSpec) -> Any:
    """The ``wandb_workspaces.reports.v2.Report`` of ``spec`` (built offline, not saved)."""
    import wandb_workspaces.reports.v2 as wr
    from wandb_workspaces import expr

    panel = _panel
    blocks: list[Any] = [wr.H1(spec.title), wr.P(
        "Generated by `python -m reproduce dashboard` from reproduce/dashboard.py; the panels "
        "plot the keys experiments/schema.py names.")]
    for section in spec.sections:
        runset = wr.Runset(entity=spec.entity, project=spec.project, name=section.runset,
                           filters=[expr.Tags().isin([tag]) for tag in section.tags],
                           groupby=[GROUP])
        blocks += [wr.H2(section.title),
                   wr.PanelGrid(runsets=[runset], panels=[panel(p) for p in section.panels])]
    return wr.Report(entity=spec.entity, project=spec.project, title=spec.title[:128],
                     description="Adafactor (Shazeer & Stern, 2018): paper vs ours",
                     blocks=blocks)


def wandb_unavailable_reason() -> str | None:
    """None when a W&B key is configured (env or ~/.netrc), else why the report cannot be saved."""
    if os.environ.get("WANDB_MODE") in ("offline", "disabled"):
        return f"WANDB_MODE={os.environ['WANDB_MODE']}"
    if os.environ.get("WANDB_API_KEY"):
        return None
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    if netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="replace"):
        return None
    return "no W&B API key (set WANDB_API_KEY or run `wandb login`)"


def save_report(spec: DashboardSpec) -> str:
    """Create the report on the W&B server and return its URL."""
    report = build_report(spec)
    report.save()
    return str(report.url)


# ----------------------------------------------------------------------------- workspace views
# A saved W&B workspace view has one run set, whose filters apply to all of its panels; a report
# has one per section. So each distinct run set of the report (its tags) becomes one saved view
# holding that run set's sections, with the same panels (`_panel`) and the same grouping.

VIEW_PREFIX = "Adafactor repro:"


@dataclass(frozen=True)
class ViewSpec:
    """One saved workspace view: its name, the tags every run must carry, its sections."""

    name: str
    tags: tuple[str, ...]
    sections: tuple[SectionSpec, ...]


def has_workspace_api() -> bool:
    """Whether the installed wandb-workspaces has the workspace API (``workspaces.Workspace``)."""
    try:
        from wandb_workspaces.workspaces import Workspace  # noqa: F401
    except ImportError:
        return False
    return True


def workspace_views(spec: DashboardSpec) -> tuple[ViewSpec, ...]:
    """The report's sections as saved views, one per distinct run set, in the report's order."""
    by_tags: dict[tuple[str, ...], list[SectionSpec]] = {}
    for section in spec.sections:
        by_tags.setdefault(section.tags, []).append(section)
    return tuple(ViewSpec(f"{VIEW_PREFIX} {' '.join(tags)}", tags, tuple(sections))
                 for tags, sections in by_tags.items())


def build_workspaces(spec: DashboardSpec) -> list[Any]:
    """The ``wandb_workspaces.workspaces.Workspace`` of each view (built offline, not saved)."""
    import wandb_workspaces.workspaces as ws
    from wandb_workspaces import expr

    return [ws.Workspace(
        entity=spec.entity, project=spec.project, name=view.name,
        sections=[ws.Section(name=s.title, panels=[_panel(p) for p in s.panels], is_open=True)
                  for s in view.sections],
        runset_settings=ws.RunsetSettings(filters=[expr.Tags().isin([t]) for t in view.tags],
                                          groupby=[expr.Metric("Group")]))
        for view in workspace_views(spec)]


def workspace_spec_path(report_spec: Path) -> Path:
    """Where the views' spec goes, beside the report's: ``<name>.workspace.json``."""
    return Path(report_spec).with_suffix(".workspace.json")


def write_workspace_spec(spec: DashboardSpec, path: Path) -> None:
    views = [asdict(v) for v in workspace_views(spec)]
    atomic_write_json(path, {"entity": spec.entity, "project": spec.project, "views": views})


def save_workspaces(spec: DashboardSpec) -> list[str]:
    """Create each view on the W&B server (a new saved view each time) and return their URLs."""
    urls = []
    for workspace in build_workspaces(spec):
        workspace.save()
        urls.append(str(workspace.url))
    return urls


def publish_workspaces(spec: DashboardSpec, path: Path, log: Any = print) -> list[str]:
    """Write the views' spec to ``path``, then save them to W&B, or say why not (no server)."""
    if not has_workspace_api():
        log("no saved workspace views: the installed wandb-workspaces has no workspace API")
        return []
    write_workspace_spec(spec, path)
    build_workspaces(spec)  # validates every view offline
    log(f"wrote the workspace view spec ({len(workspace_views(spec))} views) to {path}")
    reason = wandb_unavailable_reason()
    if reason:
        log(f"workspace views not saved to W&B: {reason}; {path} is what would be created")
        return []
    urls = save_workspaces(spec)
    for url in urls:
        log(f"saved the W&B workspace view: {url}")
    return urls


# ----------------------------------------------------------------------------- local preview


def _fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "-" if value is None else str(value)


def preview_markdown(spec: DashboardSpec, results_dir: Path) -> str:
    """What each panel would show, computed from local result files (for checking the spec)."""
    results = load_results(results_dir)
    lines = [f"# {spec.title}", "", f"Preview from {results_dir} ({len(results)} results).", ""]
    for section in spec.sections:
        table = section.tags[0]
        wanted = {t for t in section.tags[1:] if not t.startswith("scale:")}
        runs = [r for r in results if r.get("table") == table and all(
            (t.startswith("row:") and r.get("row") == t[4:]) or r.get("column") == t
            for t in wanted)]
        lines += [f"## {section.title}", "", f"run set: tags {list(section.tags)}, "
                  f"{len(runs)} local result(s)", ""]
        for panel in section.panels:
            lines.append(f"### {panel.title} ({panel.kind}: {', '.join(panel.y)}"
                         f"{'' if panel.x == STEP else f' vs {panel.x}'})")
            lines.append("")
            if panel.source == "summary":
                keys = list(dict.fromkeys([*([panel.x] if panel.x != STEP else []), *panel.y]))
                lines += ["| run | " + " | ".join(keys) + " |",
                          "|---|" + "---|" * len(keys)]
                lines += [f"| {r['cell_id']} | " + " | ".join(_fmt(r.get(k)) for k in keys)
                          + " |" for r in runs]
            else:
                lines += ["| run | points | first | last |", "|---|---|---|---|"]
                for r in runs:
                    records = read_metrics(results_dir / r["cell_id"] / METRICS_FILE)
                    steps, values = series(records, panel.y[0])
                    first = f"{_fmt(values[0], 3)} @ {steps[0]:.0f}" if values else "-"
                    last = f"{_fmt(values[-1], 3)} @ {steps[-1]:.0f}" if values else "-"
                    lines.append(f"| {r['cell_id']} | {len(values)} | {first} | {last} |")
            lines.append("")
    return "\n".join(lines) + "\n"


def write_spec(spec: DashboardSpec, path: Path) -> None:
    atomic_write_json(path, {**spec.to_dict(), "config_keys": list(CONFIG_KEYS)})


def write_preview(spec: DashboardSpec, results_dir: Path, path: Path) -> None:
    atomic_write(path, preview_markdown(spec, results_dir))
