"""A cell's files, in one place: their names, atomic writes, readers, the identity check, locks.

``<results_dir>/<cell_id>/`` holds

- ``config.json``   the cell's settings and its identity (experiments.identity), written at start;
- ``metrics.jsonl`` one JSON line per logged step / validation, appended and fsynced line by line;
- ``checkpoints/``  ``last.ckpt`` and the newest ``step<N>.ckpt`` (Lightning's ModelCheckpoint);
- ``result.json``   final metrics, BLEU and the identity, written atomically when the cell ends;
- ``run.log``       the worker's console output (local launcher);
- ``.lock``         held by the process training the cell (``<results_dir>/.lock``: the table run).

JSON files are written atomically (temp file, fsync, ``os.replace``), so a killed process leaves
the old file or the new one. Every reader that meets a damaged file raises ``CellFileError``
naming the path and what is wrong; the CLI prints it without a traceback.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULT_FILE = "result.json"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "run.log"
LOCK_FILE = ".lock"
CHECKPOINT_SUBDIR = "checkpoints"

# A cell id -> its metrics records (read_metrics, or the W&B history for --from wandb).
MetricsLoader = Callable[[str], list[dict[str, Any]]]


class CellFileError(ValueError):
    """A cell file that cannot be read or does not fit: the message names the path."""


class IdentityMismatch(CellFileError):
    """A cell folder holds results or partial state of other settings or data."""


class LockHeld(RuntimeError):
    """Another live process holds a results folder's (or cell's) lock."""


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


def _fsync_dir(folder: Path) -> None:
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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
    _fsync_dir(path.parent)


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
    step = row.get("step")
    return None if step is None else (step, bool(row.get("final")))


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
                if int(row.get("step", 0)) <= step and not row.get("final")]
        atomic_write(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))

    def rows(self) -> list[dict[str, Any]]:
        return read_metrics(self.path)


def load_results(results_dir: Path) -> list[dict[str, Any]]:
    """Every result.json under ``results_dir``, sorted by cell id (damaged: CellFileError)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results folder {results_dir} does not exist")
    results = [read_result(p) for p in results_dir.rglob(RESULT_FILE)]
    return sorted((r for r in results if r is not None), key=lambda r: str(r.get("cell_id", "")))


# --- checkpoints ------------------------------------------------------------------------------


def checkpoint_step(path: Path) -> int:
    """The global step stored in a Lightning checkpoint; damaged: CellFileError naming it."""
    import torch

    try:
        if path.is_dir():  # an FSDP2 (DCP) checkpoint folder: Lightning keeps counters in meta.pt
            meta = torch.load(path / "meta.pt", map_location="cpu", weights_only=False)
            return int(meta["global_step"])
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(ckpt["global_step"])
    except Exception as err:  # torch raises RuntimeError, pickle/zip errors, KeyError ...
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CellFileError(f"checkpoint {path} is damaged ({text[:160]})") from None


def find_resume_checkpoint(out_dir: Path, log: Callable[[str], None] | None = None,
                           ) -> tuple[Path | None, int]:
    """The newest valid checkpoint of a cell and its global step ((None, 0): none).

    Candidates are ``checkpoints/last.ckpt``, ``checkpoints/step*.ckpt`` and Slurm requeue's
    ``hpc_ckpt_*.ckpt``. A damaged one is named (through ``log``) and the next newest is used.
    """
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    out_dir = Path(out_dir)
    folder = out_dir / CHECKPOINT_SUBDIR
    candidates = [folder / "last.ckpt", *sorted(folder.glob("step*.ckpt")),
                  *sorted(out_dir.glob("hpc_ckpt_*.ckpt"))]
    found: list[tuple[int, float, Path]] = []
    damaged: list[str] = []
    for path in candidates:
        if not (path.is_file() or (path / "meta.pt").is_file()):
            continue
        try:
            found.append((checkpoint_step(path), path.stat().st_mtime, path))
        except CellFileError as err:
            damaged.append(str(err))
    if not found:
        for text in damaged:
            log(f"{text}; no valid checkpoint left: the cell starts from step 0")
        return None, 0
    step, _, path = max(found, key=lambda item: (item[0], item[1]))
    for text in damaged:
        log(f"{text}; resuming from {path} (step {step}) instead")
    return path, step


# --- identity ---------------------------------------------------------------------------------


def stored_identity(out_dir: Path) -> tuple[dict[str, Any] | None, Path | None]:
    """The identity a cell folder was run with (result.json's, else config.json's) and its file.

    Damaged files raise CellFileError. (None, None): nothing records an identity.
    """
    for name in (RESULT_FILE, CONFIG_FILE):
        path = Path(out_dir) / name
        if path.is_file():
            data = read_json(path)
            if isinstance(data, dict) and isinstance(data.get("identity"), dict):
                return data["identity"], path
    return None, None


def has_partial_state(out_dir: Path) -> bool:
    """Whether a cell without result.json has started: a config, metrics or a checkpoint."""
    out_dir = Path(out_dir)
    return any((out_dir / n).exists() for n in (CONFIG_FILE, METRICS_FILE)) or any(
        (out_dir / CHECKPOINT_SUBDIR).glob("*.ckpt")) or any(out_dir.glob("hpc_ckpt_*.ckpt"))


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


# --- locks ------------------------------------------------------------------------------------


def process_start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (/proc), None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[19])  # field 22 of stat; fields[0] is field 3


def _owner_record() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "start_time": process_start_time(os.getpid()),
            "command": shlex.join(sys.argv) if sys.argv else "",
            "since": time.strftime("%Y-%m-%d %H:%M:%S")}


def lock_is_stale(owner: dict[str, Any]) -> bool:
    """A lock of this host whose process is gone, or whose pid now belongs to another process."""
    if owner.get("host") != socket.gethostname():
        return False  # cannot tell: another machine's process may be alive
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return True
    started = process_start_time(pid)
    return started is None or (owner.get("start_time") is not None
                               and started != owner.get("start_time"))


def describe_owner(owner: dict[str, Any]) -> str:
    return (f"pid {owner.get('pid')} on {owner.get('host')} since {owner.get('since')}: "
            f"{owner.get('command', '?')}")


class FileLock:
    """An exclusive lock file holding its owner's pid, host, process start time and command.

    Created with a hard link (atomic, fails if the file exists). A lock whose owner is gone,
    or whose pid was reused by another process, is stale and taken over.
    """

    def __init__(self, path: Path, what: str) -> None:
        self.path = Path(path)
        self.what = what
        self.held = False

    def _try_create(self) -> dict[str, Any] | None:
        """None when created; otherwise the current owner's record."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = _owner_record()
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".lock.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
            try:
                os.link(tmp, self.path)
                return None
            except FileExistsError:
                pass
        finally:
            Path(tmp).unlink(missing_ok=True)
        try:
            owner = json.loads(self.path.read_text())
            return owner if isinstance(owner, dict) else {}
        except (OSError, ValueError):
            return {}  # half-written by a process killed between mkstemp and link: stale

    def acquire(self, *, wait: bool = False, poll_s: float = 1.0,
                log: Callable[[str], None] | None = None) -> None:
        """Take the lock; LockHeld naming the owner when a live process has it (unless ``wait``)."""
        said = False
        while True:
            owner = self._try_create()
            if owner is None:
                self.held = True
                return
            if not owner or lock_is_stale(owner):
                if log and owner:
                    log(f"taking over the stale lock {self.path} ({describe_owner(owner)})")
                self._remove_if(owner)
                continue
            if not wait:
                raise LockHeld(f"{self.what} is in use by {describe_owner(owner)} (lock "
                               f"{self.path}); wait for it, or pass --wait-lock to wait")
            if log and not said:
                log(f"waiting for {self.what}: in use by {describe_owner(owner)}")
                said = True
            time.sleep(poll_s)

    def _remove_if(self, owner: dict[str, Any]) -> None:
        try:
            current = json.loads(self.path.read_text()) if self.path.exists() else None
        except (OSError, ValueError):
            current = {}
        if current == owner or not current:
            self.path.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            try:
                current = json.loads(self.path.read_text())
            except (OSError, ValueError):
                current = {}
            if current.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> FileLock:
        if not self.held:
            self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def results_lock(results_dir: Path) -> FileLock:
    """The lock of a whole results folder (held by a table run)."""
    return FileLock(Path(results_dir) / LOCK_FILE, f"results folder {results_dir}")


def cell_lock(results_dir: Path, cell_id: str) -> FileLock:
    """The lock of one cell folder (held by the process training it)."""
    return FileLock(cell_dir(results_dir, cell_id) / LOCK_FILE, f"cell {cell_id}")
