"""Deleting the data cache keeps every finished cell: the vocabulary built again from the same
corpus encodes the same pieces, so each cell's identity (its vocabulary fingerprint) is the same
and a table run re-renders without training (real ``python -m reproduce`` processes, tiny cells).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import REPO, TINY_SET, reproduce_cmd, reproduce_env, set_args, write_local_corpus


def _table(results: Path, tables: Path, settings: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(reproduce_cmd("table2", "--rows", "A", "--results-dir", str(results),
                                        "--tables-dir", str(tables), "--no-wandb", *settings),
                          cwd=REPO, env=reproduce_env(), capture_output=True, text=True,
                          timeout=900)


@pytest.mark.slow
def test_rebuilding_the_cache_re_renders_without_running_a_cell(tmp_path: Path) -> None:
    corpus = write_local_corpus(tmp_path / "corpus")
    settings = set_args({**TINY_SET, "steps": 4, "log_interval": 2, "val_interval": 4,
                         "checkpoint_interval": 4, "corpus": "local",
                         "corpus_path": str(corpus)})
    results, tables = tmp_path / "results", tmp_path / "tables"
    first = _table(results, tables, settings)
    assert first.returncode == 0, first.stdout + first.stderr
    finished = sorted(results.glob("table2/**/result.json"))
    assert finished and "0 already have results" in first.stdout
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in finished}
    vocab_before = {json.loads(p.read_text())["identity"]["fingerprints"]["vocab_sha256"]
                    for p in results.glob("table2/**/config.json")}

    shutil.rmtree(results / ".cache")
    second = _table(results, tables, settings)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Traceback" not in second.stdout + second.stderr
    assert f"{len(finished)} already have results in {results}, 0 to run" in second.stdout
    assert "ran " not in second.stdout
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in finished} == before
    rebuilt = list((results / ".cache" / "vocab").glob("spm-*.model"))
    assert len(rebuilt) == 1 and len(vocab_before) == 1
    from data.vocab import vocab_fingerprint

    assert vocab_fingerprint(rebuilt[0]) == vocab_before.pop()
