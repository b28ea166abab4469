"""The W&B mirror of a cell's files, and an offline W&B run read back.

The project's files are the source of truth; W&B (offline unless WANDB_API_KEY is set) is a
mirror with the same keys (experiments.schema; an offline W&B run cannot be resumed into, so the
files must be). An online W&B that cannot be reached within ``WANDB_INIT_TIMEOUT_S`` does not
stop a cell: it goes on with W&B offline and says so once.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from experiments.store.files import cell_dir, jsonable

WANDB_PROJECT = "adafactor-repro"
WANDB_INIT_TIMEOUT_S = 20.0


# --- W&B ------------------------------------------------------------------------------------


def wandb_mode() -> str:
    """'online' only when an API key is set and WANDB_MODE does not say otherwise."""
    explicit = os.environ.get("WANDB_MODE")
    if explicit:
        return explicit
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def wandb_run_id(cell_id: str, results_dir: Path, scale: str) -> str:
    """A stable run id, so a resumed cell continues the same W&B run (online mode)."""
    key = f"{Path(results_dir).resolve()}|{scale}|{cell_id}"
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def wandb_settings(cell: Any, scale: str, results_dir: Path) -> dict[str, Any]:
    """Project, group, tags and name so that a dashboard groups by table, row and warmup."""
    return {
        "project": os.environ.get("WANDB_PROJECT", WANDB_PROJECT),
        "group": f"{cell.table}/{cell.row}",
        "job_type": cell.column,
        "tags": [cell.table, f"row:{cell.row}", cell.column, f"scale:{scale}", f"seed:{cell.seed}"],
        "name": cell.cell_id,
        "id": wandb_run_id(cell.cell_id, results_dir, scale),
    }


def _init_timeout_s() -> float:
    return float(os.environ.get("ADAFACTOR_WANDB_INIT_TIMEOUT", WANDB_INIT_TIMEOUT_S))


def make_wandb_logger(cell: Any, scale: str, results_dir: Path, config: dict[str, Any]):
    """Lightning's WandbLogger for a cell, writing under ``<cell dir>/wandb``.

    The run is started here, with a short ``init_timeout``: if W&B cannot be reached, the run is
    torn down once and restarted offline (it can be synced later), so the mirror never fails a
    cell.
    """
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    settings = wandb_settings(cell, scale, results_dir)
    save_dir = cell_dir(results_dir, cell.cell_id)
    save_dir.mkdir(parents=True, exist_ok=True)

    def logger(mode: str) -> WandbLogger:
        made = WandbLogger(save_dir=str(save_dir), mode=mode, resume="allow",
                           config=jsonable(config),
                           settings=wandb.Settings(init_timeout=_init_timeout_s()), **settings)
        made.experiment  # noqa: B018  (starts the run now, inside the timeout)
        return made

    mode = wandb_mode()
    if mode == "offline" or mode == "disabled":
        return logger(mode)
    try:
        return logger(mode)
    except Exception as err:  # CommError, UsageError, auth errors: all mean "not reachable"
        text = " ".join(str(err).split())[:200]
        print(f"W&B could not be reached ({type(err).__name__}: {text}); {cell.cell_id} goes on "
              f"with W&B offline (sync later with `wandb sync {save_dir / 'wandb'}`)",
              file=sys.stderr, flush=True)
        wandb.teardown()
        return logger("offline")


def summary_keys(result: dict[str, Any]) -> dict[str, Any]:
    """The result.json values mirrored into ``wandb.summary`` (scalars and strings only)."""
    return {k: v for k, v in jsonable(result).items() if isinstance(v, str | int | float | bool)
            or v is None}


# --- reading an offline W&B run back ------------------------------------------------------------
# wandb >= 0.19 keeps an offline run's summary only inside its binary ``run-<id>.wandb`` log (no
# wandb-summary.json), so tests and tools read that log: a 7-byte header (":W&B", magic 0xBEE1,
# version 0) followed by LevelDB-log framed protobuf ``Record`` messages in 32 KiB blocks.

_WANDB_BLOCK = 32 * 1024
_WANDB_HEADER = 7
_CHUNK_HEADER = 7  # crc32 (4), length (2, little endian), type (1)
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def read_wandb_records(path: Path) -> list[Any]:
    """The protobuf records of an offline W&B run file (``run-<id>.wandb``), in order."""
    from wandb.proto import wandb_internal_pb2

    raw = Path(path).read_bytes()
    if raw[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run log (header {raw[:4]!r})")
    records, pending, pos = [], b"", _WANDB_HEADER
    while pos + _CHUNK_HEADER <= len(raw):
        left_in_block = _WANDB_BLOCK - pos % _WANDB_BLOCK
        if left_in_block < _CHUNK_HEADER:  # block trailer padding
            pos += left_in_block
            continue
        length = int.from_bytes(raw[pos + 4 : pos + 6], "little")
        kind = raw[pos + 6]
        chunk = raw[pos + _CHUNK_HEADER : pos + _CHUNK_HEADER + length]
        pos += _CHUNK_HEADER + length
        if kind == 0 and length == 0:  # zero padding at the end of a block
            continue
        if kind in (_FULL, _FIRST):
            pending = chunk
        elif kind in (_MIDDLE, _LAST):
            pending += chunk
        else:
            raise ValueError(f"{path}: unknown chunk type {kind} at byte {pos}")
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def _item_key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def offline_wandb_run(cell_results_dir: Path) -> dict[str, Any]:
    """Summary, run metadata and history keys of the (newest) offline W&B run of one cell."""
    files = sorted(Path(cell_results_dir).glob("wandb/offline-run-*/run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"no offline W&B run under {Path(cell_results_dir) / 'wandb'}")
    summary: dict[str, Any] = {}
    run: dict[str, Any] = {}
    config: dict[str, Any] = {}
    history_keys: set[str] = set()
    for record in read_wandb_records(files[-1]):
        kind = record.WhichOneof("record_type")
        if kind == "summary":
            for item in record.summary.update:
                summary[_item_key(item)] = json.loads(item.value_json)
            for item in record.summary.remove:
                summary.pop(_item_key(item), None)
        elif kind == "run":
            r = record.run
            run = {"id": r.run_id, "project": r.project, "group": r.run_group,
                   "job_type": r.job_type, "name": r.display_name, "tags": list(r.tags)}
            for item in r.config.update:
                config[_item_key(item)] = json.loads(item.value_json)
        elif kind == "history":
            history_keys.update(_item_key(item) for item in record.history.item)
        elif kind == "config":
            for item in record.config.update:
                config[_item_key(item)] = json.loads(item.value_json)
    return {"summary": summary, "run": run, "config": config, "history_keys": history_keys,
            "file": files[-1]}


def nested_get(mapping: dict[str, Any], dotted: str) -> Any:
    """``mapping["a"]["b"]`` for ``"a.b"`` (W&B config values may be wrapped as {"value": v})."""
    value: Any = mapping
    for part in dotted.split("."):
        if isinstance(value, dict) and "value" in value and part not in value:
            value = value["value"]
        if not isinstance(value, dict) or part not in value:
            raise KeyError(dotted)
        value = value[part]
    return value
