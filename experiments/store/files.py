"""A cell's files: their paths, atomic writes, readers, and its partial state.

The names and what each file holds are experiments.schema. JSON files are written atomically
(temp file, fsync, ``os.replace``), so a killed process leaves the old file or the new one.
Every reader that meets a damaged file raises ``CellFileError`` naming the path and what is
wrong; the CLI prints it without a traceback.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from experiments.schema import (
    CHECKPOINT_SUBDIR,
    CONFIG_FILE,
    FINAL,
    LOCK_FILE,
    METRICS_FILE,
    REQUEUE_CHECKPOINT_GLOB,
    RESULT_FILE,
    STEP,
)

# A cell id -> its metrics records (read_metrics, or the W&B history for --from wandb).
MetricsLoader = Callable[[str], list[dict[str, Any]]]


class CellFileError(ValueError):
    """A cell file that cannot be read or does not fit: the message names the path."""


class IdentityMismatch(CellFileError):
    """A cell folder holds results or partial state of other settings or data."""


def cell_dir(results_dir: Path, cell_id: str) -> Path:
    return Path(results_dir) / cell_id


def result_path(results_dir: Path, cell_id: str) -> Path:
    return cell_dir(results_dir, cell_id) / RESULT_FILE


# --- writing ----------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """Non-finite floats become strings ("nan", "inf") so the files stay strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return jsonable(value.item())
    if isinstance(value, Path):
        return str(value)
    return value


def _default_file_mode() -> int:
    """0o666 less the process umask: what open() would give a new file (mkstemp gives 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def fsync_dir(folder: Path) -> None:
    """Make a rename or unlink in ``folder`` durable."""
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_leftover_temp_files(folder: Path) -> list[Path]:
    """Remove what a killed writer left in ``folder``: `atomic_write`'s temporary files and a
    checkpoint's staging file or folder (experiments.run.staged_save), all named ``.*.tmp``.

    Called by the cell lock's holder, the only writer of its folder, so any such file there is
    a dead writer's (the lock's own temporary files, made by processes waiting for it, stay).
    """
    removed = []
    for tmp in sorted(Path(folder).glob(".*.tmp")):
        if not tmp.name.startswith(f"{LOCK_FILE}.") and remove_path(tmp):
            removed.append(tmp)
    return removed


def remove_path(path: Path, *, ignore_errors: bool = True) -> bool:
    """Remove a file, link or folder tree at ``path``; whether there was one. A folder that
    cannot be removed whole raises only with ``ignore_errors=False``."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=ignore_errors)
    elif path.is_file() or path.is_symlink():
        path.unlink(missing_ok=True)
    else:
        return False
    return True


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file, never half of one."""
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
    fsync_dir(path.parent)


def atomic_write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically (see `atomic_write`)."""
    text = json.dumps(jsonable(data), indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write(path, text)


# --- reading ----------------------------------------------------------------------------------


def read_json(path: Path) -> Any:
    """A JSON file's value; a damaged one is a CellFileError naming the path (missing: OSError)."""
    path = Path(path)
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise CellFileError(f"{path} is damaged: not UTF-8 text (byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise CellFileError(f"{path} is damaged: not valid JSON ({err})") from None


def read_result(path: Path) -> dict[str, Any] | None:
    """A result.json as a dict, None when there is none; damaged: CellFileError."""
    path = Path(path)
    if not path.is_file():
        return None
    result = read_json(path)
    if not isinstance(result, dict):
        raise CellFileError(f"{path} is damaged: expected a JSON object, got "
                            f"{type(result).__name__}")
    return result


def _row_key(row: dict[str, Any]) -> tuple[Any, bool] | None:
    step = row.get(STEP)
    return None if step is None else (step, bool(row.get(FINAL)))


def read_metrics(path: Path, *, strict: bool = True) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl, one per (step, final) (the last one written wins).

    [] when the file does not exist yet. A torn last line (a writer killed, or still writing) is
    dropped. Any other unreadable line is a CellFileError naming file and line when ``strict``,
    and skipped otherwise (progress display).
    """
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    rows: list[dict[str, Any]] = []
    where: dict[tuple[Any, bool], int] = {}
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
            if not isinstance(row, dict):
                raise ValueError(f"a JSON {type(row).__name__}, not an object")
        except (UnicodeDecodeError, ValueError) as err:
            if number == len(lines) or not strict:
                continue
            what = "not UTF-8 text" if isinstance(err, UnicodeDecodeError) else \
                f"not a JSON line ({err})"
            raise CellFileError(f"{path}:{number}: {what}") from None
        key = _row_key(row)
        if key is not None and key in where:
            rows[where[key]] = row
        else:
            if key is not None:
                where[key] = len(rows)
            rows.append(row)
    return rows


class MetricsWriter:
    """Appends one JSON object per line to metrics.jsonl, flushed (and fsynced) per line."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, row: dict[str, Any]) -> None:
        line = json.dumps(jsonable(row), sort_keys=True, allow_nan=False)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def truncate_after(self, step: int) -> None:
        """Keep only the training rows with step <= ``step`` (resume from a checkpoint there).

        Rows logged after the checkpoint, and the final rows (written after the last checkpoint),
        are repeated by the resumed run; dropping them makes the file equal to an uninterrupted
        run's. A torn last line is dropped too; a damaged line elsewhere is a CellFileError.
        """
        if not self.path.exists():
            return
        kept = [row for row in read_metrics(self.path)
                if int(row.get(STEP, 0)) <= step and not row.get(FINAL)]
        atomic_write(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))

    def rows(self) -> list[dict[str, Any]]:
        return read_metrics(self.path)


def series(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the records that carry ``key`` (and a ``step``), in step order."""
    points = sorted(
        (float(r[STEP]), float(r[key]))
        for r in records
        if r.get(key) is not None and r.get(STEP) is not None
    )
    return [p[0] for p in points], [p[1] for p in points]


def last_value(records: list[dict[str, Any]], key: str) -> tuple[float, float] | None:
    """(step, value) of the last record that carries ``key``, or None."""
    steps, values = series(records, key)
    return (steps[-1], values[-1]) if steps else None


def load_results(results_dir: Path) -> list[dict[str, Any]]:
    """Every result.json under ``results_dir``, sorted by cell id (damaged: CellFileError)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results folder {results_dir} does not exist")
    results = [read_result(p) for p in results_dir.rglob(RESULT_FILE)]
    return sorted((r for r in results if r is not None), key=lambda r: str(r.get("cell_id", "")))


# --- partial state ----------------------------------------------------------------------------


def has_partial_state(out_dir: Path) -> bool:
    """Whether a cell without result.json has started: a config, metrics or a checkpoint."""
    out_dir = Path(out_dir)
    return any((out_dir / n).exists() for n in (CONFIG_FILE, METRICS_FILE)) or any(
        (out_dir / CHECKPOINT_SUBDIR).glob("*.ckpt")) or any(out_dir.glob(REQUEUE_CHECKPOINT_GLOB))


def mismatch_message(where: Path, differences: list[str]) -> str:
    """The refusal for a cell folder of other settings: each differing field and the ways out."""
    shown = "; ".join(differences[:12]) + ("; ..." if len(differences) > 12 else "")
    return (f"{where} comes from other settings ({shown}): use another --results-dir, the "
            "same --set values and data, or --fresh to discard that cell's results and partial "
            "state")


def discard_cell(out_dir: Path) -> None:
    """Remove a cell's results and partial state (``--fresh``), keeping its lock file."""
    import shutil

    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return
    for entry in out_dir.iterdir():
        if entry.name == LOCK_FILE:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
