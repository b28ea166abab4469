"""A cell's identity: its full resolved settings plus fingerprints of its data and code.

Written into config.json when a cell starts and into result.json when it ends; checked before a
finished cell is reused and before a partial one is resumed (`check_cell_folder`). Compared:

- ``settings``: the cell (optimizer, schedule, model overrides, factors), the resolved scale
  preset (less the fields that change how a cell runs, not what it computes), the model config
  and the cell's resolved steps and token budget;
- ``fingerprints``: the corpus (`data.fingerprint.corpus_content_fingerprint`: each file's size
  and SHA-256, a hash of the embedded generator's source, which holds its seed and sizes, or a
  hub copy's `datasets` fingerprints and cached files), the vocabulary (SHA-256 of its pieces,
  scores and normalisation: `data.vocab.vocab_fingerprint`) and the package version.

Recorded, not compared: the git commit, whether the tree was dirty, and the arithmetic it ran on
(`numerics_signature`: torch version, CPU instruction set and model). The same code and seed give
bit-identical results on one machine, but not across CPUs: torch picks its vectorised kernels by
the CPU's instruction set (``AVX2``, ``AVX512``) and MKL its code paths by CPU model, and a cell on
a slow plateau (the tiny table's row A at 400 steps) turns that rounding difference into several
BLEU. The signature says which arithmetic produced a committed number, so a check that wants the
same digits knows when it may ask for them.
"""

from __future__ import annotations

import copy
import functools
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from data.fingerprint import corpus_content_fingerprint
from data.vocab import vocab_fingerprint
from experiments.grid.cells import Cell
from experiments.scales import ScalePreset
from experiments.schema import CONFIG_FILE, RESULT_FILE, resolved_max_tokens, resolved_steps
from experiments.store.files import (
    CellFileError,
    IdentityMismatch,
    discard_cell,
    has_partial_state,
    jsonable,
    mismatch_message,
    read_json,
    read_result,
)
from models.presets import model_config

# Preset fields that change how a cell runs, not what it computes (the corpus is fingerprinted
# by its content, so the same files in another folder are the same corpus).
NOT_IDENTITY_FIELDS = ("num_workers", "torch_threads", "corpus_path")
# Preset fields added after results existed, left out of the identity while at these values
# (what every earlier cell ran with), so that earlier cell folders stay valid.
LATER_FIELD_DEFAULTS = {"decay_time_rescale": False}
# Cell fields that describe it, not what it trains.
CELL_LABEL_FIELDS = ("description", "paper_bleu")
PACKAGE = "adafactor-repro"
REPO = Path(__file__).resolve().parents[1]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


@functools.lru_cache(maxsize=1)
def numerics_signature() -> str:
    """'torch <version>; <capability>; <CPU model>[; <GPU name>]', e.g.
    'torch 2.13.0+cpu; AVX512; Intel(R) Xeon(R) Processor'."""
    import torch

    parts = [f"torch {torch.__version__}", torch.backends.cpu.get_cpu_capability(), _cpu_model()]
    if torch.cuda.is_available():
        parts.append(torch.cuda.get_device_name(0))
    return "; ".join(parts)


def package_version() -> str:
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return "unknown"


@functools.lru_cache(maxsize=1)
def _git_state() -> tuple[str | None, bool | None]:
    state = git_state_uncached()
    return state["git_commit"], state["git_dirty"]


def git_state() -> dict[str, Any]:
    """`git_state_uncached`, asked once per process."""
    commit, dirty = _git_state()
    return {"git_commit": commit, "git_dirty": dirty}


def git_state_uncached() -> dict[str, Any]:
    """The commit of the code that runs and whether its tree had changes (None: not a clone)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True,
                                  text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


def data_fingerprints(preset: ScalePreset, vocab_model: Path | None) -> dict[str, Any]:
    """The fingerprints shared by every cell of a preset (vocab None: not built yet)."""
    return {
        "corpus": corpus_content_fingerprint(preset.corpus, preset.corpus_path),
        "vocab_sha256": None if vocab_model is None else vocab_fingerprint(vocab_model),
        "package": package_version(),
    }


def cell_settings(cell: Cell, preset: ScalePreset) -> dict[str, Any]:
    """The resolved settings a cell computes with (no data needed)."""
    scale = preset.as_dict()
    for key in NOT_IDENTITY_FIELDS:
        scale.pop(key, None)
    for key, default in LATER_FIELD_DEFAULTS.items():
        if scale.get(key) == default:
            scale.pop(key)
    cell_fields = {k: v for k, v in cell.as_dict().items() if k not in CELL_LABEL_FIELDS}
    model = model_config(preset.model, preset.vocab_size,
                         **{**preset.model_overrides, **cell.model_overrides}).to_dict()
    return {
        "scale": scale,
        "cell": cell_fields,
        "model": model,
        "resolved": {"steps": resolved_steps(preset, cell),
                     "max_tokens": resolved_max_tokens(preset, cell)},
    }


def cell_identity(cell: Cell, preset: ScalePreset,
                  fingerprints: dict[str, Any] | None) -> dict[str, Any]:
    """settings + fingerprints (compared) + recorded (not compared); see the module docstring."""
    identity = {"settings": cell_settings(cell, preset),
                "fingerprints": copy.deepcopy(fingerprints) if fingerprints else None,
                "recorded": {**git_state(), "numerics": numerics_signature()}}
    return json.loads(json.dumps(jsonable(identity)))


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value


def _flat(identity: dict[str, Any], part: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    section = identity.get(part)
    if isinstance(section, dict):
        _flatten(section, "", out)
    if part == "settings":  # scale fields by their --set names: "steps", not "scale.steps"
        out = {k[len("scale."):] if k.startswith("scale.") else k: v for k, v in out.items()}
    return out


def identity_differences(found: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """``"field: X there, Y now"`` for each compared field that differs.

    Fingerprints are compared only where both sides have them (a dry run has no vocabulary).
    """
    diffs = []
    for part in ("settings", "fingerprints"):
        a, b = _flat(found, part), _flat(wanted, part)
        if part == "fingerprints" and (not a or not b):
            continue
        for key in sorted(set(a) | set(b)):
            if part == "fingerprints" and (a.get(key) is None or b.get(key) is None):
                continue
            if a.get(key) != b.get(key):
                diffs.append(f"{key}: {a.get(key)!r} there, {b.get(key)!r} now")
    return diffs


def check_cell_folder(out_dir: Path, wanted: dict[str, Any], *, fresh: bool = False,
                      act: bool = True, log: Any = print) -> tuple[str, dict[str, Any] | None]:
    """("done", result) for a finished cell of these settings, ("partial", None) for one to
    resume, ("new", None) for one to start; IdentityMismatch / CellFileError otherwise.

    A damaged result.json is named and set aside (``act``), so its cell runs again. ``fresh``
    discards a cell of other settings (or with damaged state) instead of refusing it.
    """
    out_dir = Path(out_dir)

    def refuse_or_discard(error: CellFileError) -> tuple[str, None]:
        if not fresh:
            raise error
        if act:
            discard_cell(out_dir)
            log(f"--fresh: discarded {out_dir}")
        return "new", None

    result_file = out_dir / RESULT_FILE
    try:
        result = read_result(result_file)
    except CellFileError as err:
        log(f"{err}: its cell runs again")
        if act:
            result_file.replace(result_file.with_name(RESULT_FILE + ".damaged"))
        result = None
    config_file = out_dir / CONFIG_FILE
    config = None
    if config_file.is_file():
        try:
            config = read_json(config_file)
        except CellFileError as err:
            if result is None and has_partial_state(out_dir):
                return refuse_or_discard(CellFileError(
                    f"{err}: cannot tell which settings the partial state in {out_dir} has; "
                    "pass --fresh to discard it"))
    identity = None
    for source in (result, config):
        if isinstance(source, dict) and isinstance(source.get("identity"), dict):
            identity = source["identity"]
            break
    if result is None and not has_partial_state(out_dir):
        return "new", None
    if identity is not None:
        diffs = identity_differences(identity, wanted)
    elif result is None and config is None:
        return refuse_or_discard(CellFileError(
            f"{out_dir} holds partial state (metrics or checkpoints) but no {CONFIG_FILE}: "
            "its settings cannot be checked; pass --fresh to discard it"))
    else:
        return refuse_or_discard(CellFileError(
            f"{out_dir} holds a cell with no identity in its {RESULT_FILE} or {CONFIG_FILE}: "
            "its settings cannot be checked; pass --fresh to discard it"))
    if diffs:
        return refuse_or_discard(IdentityMismatch(mismatch_message(out_dir, diffs)))
    return ("done", result) if result is not None else ("partial", None)
