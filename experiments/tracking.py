"""Result files of a cell and their W&B mirror.

``<results_dir>/<cell_id>/`` holds ``config.json`` (written at start), ``metrics.jsonl`` (one JSON
line per logged step/validation, appended and flushed line by line) and ``result.json`` (written
once at the end). JSON files are written atomically: a temp file in the same folder, fsync, then
``os.replace``, so a killed process leaves either the old file or the new one, never half of one.
The project's files are the source of truth; W&B (offline unless WANDB_API_KEY is set) is a
mirror with the same keys (an offline W&B run cannot be resumed into, so the files must be).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

RESULT_FILE = "result.json"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
WANDB_PROJECT = "adafactor-repro"

# --- the keys dashboards and `--from wandb` read: one place (reproduce/dashboard.py plots these;
# tests/test_reproduce_dashboard.py trains a real cell and fails if one is not in its W&B log) ---
# History (metrics.jsonl rows = W&B history, logged by experiments.runner.CellMonitor):
TRAIN_LOSS = "train_loss"
VALID_LOSS = "valid_loss"
UPDATE_RMS = "update_rms"  # mean over tensors of RMS(U_t) (Adafactor.step_stats), Figure 1
HISTORY_KEYS = (TRAIN_LOSS, VALID_LOSS, UPDATE_RMS)
# Summary (result.json's scalars = wandb.summary, written by experiments.runner.run_cell):
BLEU = "bleu"
PAPER_BLEU = "paper_bleu"
STATE_BYTES = "optimizer_state_bytes"
STATUS = "status"
CELL_ID = "cell_id"
SUMMARY_KEYS = (BLEU, PAPER_BLEU, STATE_BYTES, VALID_LOSS, STATUS, CELL_ID)
# Run config (experiments.runner.build_config, nested dicts as W&B stores them):
CONFIG_TABLE = "cell.table"
CONFIG_ROW = "cell.row"
CONFIG_COLUMN = "cell.column"
CONFIG_SCALE = "scale.name"
CONFIG_KEYS = (CONFIG_TABLE, CONFIG_ROW, CONFIG_COLUMN, CONFIG_SCALE)


def _jsonable(value: Any) -> Any:
    """Non-finite floats become strings ("nan", "inf") so the files stay strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _jsonable(value.item())
    if isinstance(value, Path):
        return str(value)
    return value


def _default_file_mode() -> int:
    """0o666 less the process umask: what open() would give a new file (mkstemp gives 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file, never half of one.

    A temporary file in the same folder is written, fsynced, given the usual permissions and
    renamed over ``path``; the folder is fsynced so the rename survives a crash.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically (see `atomic_write`)."""
    text = json.dumps(_jsonable(data), indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write(path, text)


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class MetricsWriter:
    """Appends one JSON object per line to metrics.jsonl, flushed (and fsynced) per line."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, row: dict[str, Any]) -> None:
        line = json.dumps(_jsonable(row), sort_keys=True, allow_nan=False)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def truncate_after(self, step: int) -> None:
        """Keep only rows with step <= ``step`` (resume from a checkpoint taken at ``step``).

        Rows logged after the checkpoint are repeated by the resumed run; dropping them makes the
        file equal to an uninterrupted run's. A torn last line (killed mid-write) is dropped too.
        """
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if int(row.get("step", 0)) <= step:
                kept.append(json.dumps(row, sort_keys=True, allow_nan=False))
        atomic_write(self.path, "".join(k + "\n" for k in kept))

    def rows(self) -> list[dict[str, Any]]:
        return read_metrics(self.path)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Every record of a metrics.jsonl; [] when the file does not exist yet.

    A cell that is still running may be half-way through writing its last line: an unparsable
    LAST line is ignored, an unparsable line anywhere else is an error naming file and line.
    """
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number == len(lines):
                break
            raise ValueError(f"{path}:{number}: not a JSON line ({err})") from err
    return records


def series(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the records that carry ``key`` (and a ``step``), in step order."""
    points = sorted(
        (float(r["step"]), float(r[key]))
        for r in records
        if r.get(key) is not None and r.get("step") is not None
    )
    return [p[0] for p in points], [p[1] for p in points]


def last_value(records: list[dict[str, Any]], key: str) -> tuple[float, float] | None:
    """(step, value) of the last record that carries ``key``, or None."""
    steps, values = series(records, key)
    return (steps[-1], values[-1]) if steps else None


def cell_dir(results_dir: Path, cell_id: str) -> Path:
    return Path(results_dir) / cell_id


def load_results(results_dir: Path) -> list[dict[str, Any]]:
    """Every result.json under ``results_dir``, sorted by cell id."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results folder {results_dir} does not exist")
    results = [read_json(p) for p in results_dir.rglob(RESULT_FILE)]
    return sorted(results, key=lambda r: str(r.get("cell_id", "")))


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


def make_wandb_logger(cell: Any, scale: str, results_dir: Path, config: dict[str, Any]):
    """Lightning's WandbLogger for a cell, writing under ``<cell dir>/wandb``."""
    from lightning.pytorch.loggers import WandbLogger

    settings = wandb_settings(cell, scale, results_dir)
    save_dir = cell_dir(results_dir, cell.cell_id)
    save_dir.mkdir(parents=True, exist_ok=True)
    return WandbLogger(
        save_dir=str(save_dir),
        mode=wandb_mode(),
        resume="allow",
        config=_jsonable(config),
        **settings,
    )


def summary_keys(result: dict[str, Any]) -> dict[str, Any]:
    """The result.json values mirrored into ``wandb.summary`` (scalars and strings only)."""
    return {k: v for k, v in _jsonable(result).items() if isinstance(v, str | int | float | bool)
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
