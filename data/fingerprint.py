"""What a corpus is, two ways: by content (a cell's identity) and by stat (the binarized cache key).

- `corpus_content_fingerprint(name, path)`: goes into a cell's identity (experiments.identity),
  compared before a cell is reused or resumed. The same content in another folder is the same
  corpus, so it holds no folder and no mtime:
  - embedded: SHA-256 of the generator's source (it holds the seed and the sizes);
  - a folder of `<split>.en/.de` files: each file's size and SHA-256;
  - a `save_to_disk` copy of a hub dataset: per split, the `datasets` fingerprint and each data
    file's size and SHA-256;
  - the hub (no path): the hub id and config, and per split the `datasets` fingerprint (it hashes
    the cache folder name, which holds the builder's config, version and data-files hash) and the
    name and size of each cached Arrow file (no text read, no hash of the Arrow files).
- `corpus_stat_key(name, path)`: keys the binarized cache (data.binarized). It must be cheap,
  since every process calls it before mapping the cache: file names, sizes and mtimes of a folder
  (any touch rebuilds), the `datasets` fingerprints of a hub copy or of a save_to_disk folder,
  the generator source of the embedded corpus. It reads no corpus text.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from data.corpora import (
    CORPUS_NAMES,
    MULTI30K_HUB_ID,
    WMT14_HUB_ID,
    CorpusError,
    is_saved_dataset,
    load_hub_dataset,
)

_file_hashes: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, cached by (path, size, mtime) for this process."""
    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _file_hashes:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _file_hashes[key] = digest.hexdigest()
    return _file_hashes[key]


def embedded_source_sha256() -> str:
    """The embedded corpus is generated from its package's source: SHA-256 of that source."""
    package = Path(__file__).resolve().parent / "embedded"
    digest = hashlib.sha256()
    for path in sorted(package.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _check_name(name: str, path: str | Path | None) -> None:
    if name not in CORPUS_NAMES:
        raise CorpusError(f"unknown corpus {name!r}; valid names: {', '.join(CORPUS_NAMES)}")
    if name == "local" and path is None:
        raise CorpusError("corpus 'local' needs a path to a folder of <split>.en/.de files")


def _hub_id(name: str) -> list[str]:
    return list(WMT14_HUB_ID) if name == "wmt14" else [MULTI30K_HUB_ID]


# ----------------------------------------------------------------------------- by content


def _hub_content(name: str) -> dict[str, Any]:
    dataset = load_hub_dataset(name)
    splits = {}
    for split, part in dataset.items():
        files = sorted(Path(f["filename"]) for f in part.cache_files)
        splits[split] = {"fingerprint": part._fingerprint,
                         "files": {p.name: p.stat().st_size for p in files}}
    return {"kind": "hub", "name": name, "hub_id": _hub_id(name), "splits": splits}


def _saved_dataset_content(folder: Path) -> dict[str, Any]:
    splits = {}
    for state_file in sorted(folder.glob("*/state.json")):
        state = json.loads(state_file.read_text())
        files = [state_file.parent / f["filename"] for f in state.get("_data_files", [])]
        splits[state_file.parent.name] = {
            "fingerprint": state.get("_fingerprint"),
            "files": {p.name: {"size": p.stat().st_size, "sha256": file_sha256(p)}
                      for p in sorted(files)}}
    return {"kind": "saved_dataset", "splits": splits}


def corpus_content_fingerprint(name: str, path: str | Path | None) -> dict[str, Any]:
    """What the corpus is, by content (a cell's identity; see the module docstring)."""
    if name == "embedded":
        return {"kind": "embedded", "generator_sha256": embedded_source_sha256()}
    _check_name(name, path)
    if path is None:
        return _hub_content(name)
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"corpus folder not found: {folder}")
    if is_saved_dataset(folder):
        return _saved_dataset_content(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".en", ".de"))
    return {"kind": "files", "files": {p.name: {"size": p.stat().st_size,
                                                "sha256": file_sha256(p)} for p in files}}


# ----------------------------------------------------------------------------- by stat


def _folder_stats(folder: Path) -> dict[str, Any]:
    files = sorted(p for p in folder.iterdir() if p.is_file())
    return {
        "folder": str(folder.resolve()),
        "files": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files],
    }


def _saved_dataset_stats(folder: Path) -> dict[str, Any]:
    """The `datasets` fingerprints in a save_to_disk folder's state.json files (no data read)."""
    states = {}
    for state in sorted(folder.glob("*/state.json")):
        states[state.parent.name] = json.loads(state.read_text())["_fingerprint"]
    return {"saved_dataset": str(folder.resolve()), "fingerprints": states}


def corpus_stat_key(name: str, path: str | Path | None) -> dict[str, Any]:
    """What identifies a corpus without reading its text (the binarized cache key; cheap)."""
    _check_name(name, path)
    if name == "embedded":
        return {"corpus": name, "embedded": embedded_source_sha256()}
    if path is None:
        # The hub copy: the datasets cache's own fingerprints (the Arrow files are memory-mapped).
        dataset = load_hub_dataset(name)
        return {"corpus": name, "hub": {k: v._fingerprint for k, v in dataset.items()}}
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"corpus folder not found: {folder}")
    if is_saved_dataset(folder):
        return {"corpus": name, **_saved_dataset_stats(folder)}
    return {"corpus": name, **_folder_stats(folder)}
