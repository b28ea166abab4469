"""Rebuild result files from W&B runs (``--from wandb``), then render them like local results.

The live path reads ``wandb.Api().runs("<entity>/<project>")`` and turns every run into a plain
*record*: ``{"name", "id", "state", "config", "summary", "history"}`` (``history`` = the rows of
``run.scan_history()``). ``result_from_record`` maps a record to the same result dict that
experiments.run writes to result.json (experiments.run.mirror mirrors result.json into the run
summary and each metrics.jsonl row into the history, with the same keys), so the test suite can
check the mapping on a recorded API response without a W&B server.

The W&B calls the tables rely on, exactly:
- writing (experiments.run.monitor, record, mirror): ``WandbLogger(project, group="<table>/<row>",
  job_type=<column>, tags=[<table>, "row:<row>", <column>, "scale:<scale>", "seed:<k>"],
  name=<cell id>, id=<stable hash>, config=<config.json>)``; ``logger.log_metrics(row, step)``
  for every metrics.jsonl row (the history); ``run.summary.update(summary_keys(result))`` with
  result.json's scalars (the summary); ``wandb.finish()``. Offline (no WANDB_API_KEY) these land
  in ``<cell>/wandb/offline-run-*/run-*.wandb``; ``wandb sync <that folder>`` uploads them.
- reading (here): ``wandb.Api().runs("<entity>/<project>")`` and per run ``run.name``,
  ``run.id``, ``run.state`` (only "finished" runs count), ``run.config``, ``run.summary`` and
  ``run.scan_history()``. The tables need only the summary's ``status``, ``bleu``,
  ``valid_loss``, ``cell_id`` and the config's ``scale``; the plots need the history.
tests/test_reproduce_dashboard.py reads a real offline run's summary and config back through
``result_from_record``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.grid.registry import get_cell, provider
from experiments.schema import (
    BLEU,
    CELL_ID,
    CONFIG_FILE,
    METRICS_FILE,
    RESULT_FILE,
    STATUS,
    STEP,
    Status,
    bleu_recipe,
)
from experiments.store.files import atomic_write as write_atomic
from experiments.store.files import atomic_write_json, cell_dir
from reproduce.errors import UsageError

# Keys W&B adds to summaries and history rows that are not ours.
_INTERNAL_PREFIXES = ("_", "trainer/")


def _plain(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if not str(k).startswith(_INTERNAL_PREFIXES)}


def _number(value: Any) -> Any:
    """W&B stores nan/inf as strings or floats; result.json keeps them as strings (jsonable)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def result_from_record(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The result dict of one W&B run record, or None for a run that has not finished.

    The cell id comes from the summary (``cell_id``) or else the run name (the mirror names runs
    by cell id); an id that is not a grid cell is an error naming the run.
    """
    summary = _plain(record.get("summary") or {})
    config = dict(record.get("config") or {})
    if record.get("state", "finished") != "finished" or STATUS not in summary:
        return None
    cell_id = summary.get(CELL_ID) or record.get("name")
    try:
        cell = get_cell(str(cell_id))
    except ValueError as err:
        raise ValueError(f"W&B run {record.get('id') or record.get('name')!r}: {err}") from err
    result: dict[str, Any] = {k: _number(v) for k, v in summary.items()}
    result[CELL_ID] = cell.cell_id
    for key, value in (("table", cell.table), ("row", cell.row), ("warmup", cell.warmup),
                       ("seed", cell.seed), ("paper_bleu", cell.paper_bleu)):
        result.setdefault(key, value)
    # The summary holds result.json's scalars only (experiments.run.mirror.summary_keys):
    # rebuild the nested BLEU recipe from the run config's scale preset, as the runner does.
    preset = config.get("scale")
    if isinstance(preset, Mapping):
        result.setdefault("scale", preset.get("name"))
        result.setdefault("bleu_recipe", bleu_recipe(preset))
    if result.get(STATUS) == Status.DIVERGED:
        result[BLEU] = None
    return result


def metrics_from_history(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """History rows -> metrics.jsonl records: our keys only, ``step`` from the row's own
    ``step`` (mirrored from metrics.jsonl) or else Lightning's ``trainer/global_step``."""
    records = []
    for row in rows:
        step = row.get(STEP, row.get("trainer/global_step"))
        values = {k: _number(v) for k, v in _plain(row).items() if v is not None}
        values.pop(STEP, None)
        if step is None or not values:
            continue
        records.append({STEP: int(step), **values})
    return sorted(records, key=lambda r: r[STEP])


def run_record(run: Any) -> dict[str, Any]:
    """A ``wandb.apis.public.Run`` as a plain record (this reads the run's whole history)."""
    summary = getattr(run, "summary_metrics", None)
    if summary is None:
        summary = dict(run.summary)
    return {
        "name": run.name,
        "id": run.id,
        "state": run.state,
        "config": dict(run.config),
        "summary": dict(summary),
        "history": [dict(row) for row in run.scan_history()],
    }


def fetch_records(entity: str, project: str, *, api: Any = None) -> Iterator[dict[str, Any]]:
    """Every run of ``entity/project`` as a record (live: needs network and a W&B login)."""
    import wandb

    try:
        api = api or wandb.Api()
        runs = api.runs(f"{entity}/{project}", filters={"state": "finished"})
        for run in runs:
            yield run_record(run)
    except (wandb.errors.Error, ValueError) as err:  # no login, unknown project, network
        raise UsageError(f"cannot read W&B runs of {entity}/{project}: {err}") from err


def write_results(
    records: Iterable[Mapping[str, Any]],
    results_dir: Path,
    *,
    tables: Sequence[str] | None = None,
    scale: str | None = None,
) -> int:
    """Write result.json + metrics.jsonl per finished run, and config.json where the run config
    is the cell's own (its cell and scale preset: what the unigram level is measured from);
    returns the number of cells written.

    Runs of other tables (Table 1 reads Table 2 rows A and G) or scales are left out; when a
    cell has several runs the one with the latest ``_timestamp`` wins.
    """
    wanted = set(tables or ()) | {provider(t).source for t in tables or () if provider(t).source}
    chosen: dict[str, tuple[float, dict[str, Any], list[dict[str, Any]], dict[str, Any]]] = {}
    for record in records:
        result = result_from_record(record)
        if result is None:
            continue
        if wanted and result["table"] not in wanted:
            continue
        if scale is not None and result.get("scale") not in (None, scale):
            continue
        stamp = float((record.get("summary") or {}).get("_timestamp", 0.0))
        previous = chosen.get(result["cell_id"])
        if previous is None or stamp >= previous[0]:
            chosen[result["cell_id"]] = (stamp, result, metrics_from_history(
                record.get("history") or []), _plain(record.get("config") or {}))
    for cell_id, (_, result, metrics, config) in chosen.items():
        folder = cell_dir(results_dir, cell_id)
        if _is_cells_config(config, cell_id):
            atomic_write_json(folder / CONFIG_FILE, config)
        atomic_write_json(folder / RESULT_FILE, result)
        write_atomic(folder / METRICS_FILE, "".join(json.dumps(m) + "\n" for m in metrics))
    return len(chosen)


def _is_cells_config(config: Mapping[str, Any], cell_id: str) -> bool:
    """Whether a run config is the config.json of ``cell_id`` (a cell and its scale preset)."""
    cell, scale = config.get("cell"), config.get("scale")
    return (isinstance(cell, Mapping) and isinstance(scale, Mapping)
            and cell.get("cell_id") == cell_id)


def download_results(
    entity: str, project: str, results_dir: Path, *, tables: Sequence[str] | None = None,
    scale: str | None = None, api: Any = None,
) -> int:
    """Fetch ``entity/project`` from W&B into ``results_dir`` (see write_results)."""
    return write_results(fetch_records(entity, project, api=api), Path(results_dir),
                         tables=tables, scale=scale)
