"""Building the fused CPU step (`adafactor/csrc/fused_cpu.cpp`) safely on shared and mixed machines.

torch.utils.cpp_extension guards a build with a lock file that a killed build (SIGTERM, a Slurm
time limit, OOM) leaves behind, after which every later process waits on it forever; and a build
made with -march=native on one CPU crashes another CPU with fewer instructions when the cache is
shared. So each build has a directory of its own, keyed by the source, the flags, torch and the
CPU (its model and instruction-set flags, recorded in `cpu.txt` there), and is taken under an OS
file lock that dies with its holder: whoever holds it may clear a stale torch lock file.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import platform
import sys
import threading
import warnings
from pathlib import Path
from types import ModuleType

import torch

SOURCE = Path(__file__).with_name("csrc") / "fused_cpu.cpp"
CFLAGS = ("-O3", "-march=native", "-fopenmp", "-ffp-contract=off")
LDFLAGS = ("-fopenmp",)
_LOCK = threading.Lock()
_LOADED: dict[str, ModuleType | None] = {}


def cpu_description() -> str:
    """The CPU a -march=native build is specific to: model name and instruction-set flags."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())  # the first processor's
    except OSError:
        pass
    model = fields.get("model name") or platform.processor() or "unknown"
    flags = " ".join(sorted((fields.get("flags") or fields.get("Features") or "").split()))
    return f"model: {model}\nmachine: {platform.machine()}\nflags: {flags}\n"


def build_key(cpu: str | None = None) -> str:
    """12 hex digits naming one build: source, flags, torch, Python and the CPU."""
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(CFLAGS + LDFLAGS).encode(),
                 torch.__version__.encode(), sys.version.encode(),
                 (cpu if cpu is not None else cpu_description()).encode()):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:12]


def extensions_root() -> Path:
    """TORCH_EXTENSIONS_DIR, or torch's default root for extension builds."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if root:
        return Path(root)
    from torch.utils.cpp_extension import get_default_build_root

    return Path(get_default_build_root())


def build_directory(cpu: str | None = None) -> Path:
    """Where this source, these flags, this torch and this CPU are built."""
    return extensions_root() / f"adafactor_fused_cpu_{build_key(cpu)}"


def _build(directory: Path, cpu: str) -> ModuleType:
    from torch.utils.cpp_extension import load

    directory.mkdir(parents=True, exist_ok=True)
    with open(directory.with_name(directory.name + ".lock"), "a+") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)  # released by the kernel if this process dies
        try:
            # Only a holder of the lock above builds here, so torch's own lock file, if any, was
            # left by a build that was killed: clear it instead of waiting on it forever.
            (directory / "lock").unlink(missing_ok=True)
            record = directory / "cpu.txt"
            if record.exists() and record.read_text() != cpu:
                for stale in directory.iterdir():  # another CPU's objects: never load them
                    if stale.is_file():
                        stale.unlink()
            module = load(
                name=directory.name,
                sources=[str(SOURCE)],
                extra_cflags=list(CFLAGS),
                extra_ldflags=list(LDFLAGS),
                build_directory=str(directory),
                verbose=os.environ.get("ADAFACTOR_FUSED_VERBOSE") == "1",
            )
            if not record.exists():
                tmp = record.with_suffix(".tmp")
                tmp.write_text(cpu)
                tmp.replace(record)
            return module
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def load_extension() -> ModuleType | None:
    """The compiled fused step for this CPU, built on first use; None (with one warning) where it
    cannot be built (no compiler, no ninja, a build error)."""
    cpu = cpu_description()
    directory = build_directory(cpu)
    with _LOCK:
        if str(directory) not in _LOADED:
            try:
                _LOADED[str(directory)] = _build(directory, cpu)
            except Exception as exc:
                text = str(exc).strip()
                warnings.warn(
                    f"Adafactor: the fused CPU step could not be built in {directory} "
                    f"({type(exc).__name__}: {text.splitlines()[-1] if text else exc!r}); "
                    "using the reference path",
                    RuntimeWarning,
                    stacklevel=3,
                )
                _LOADED[str(directory)] = None
        return _LOADED[str(directory)]
