"""``python -m reproduce prepare``: binarizes a scale's corpus once into the cache the cells of
that results folder map; a second call finds it; a bad corpus is one clear line, exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from data.corpora import load_corpus
from experiments.measure.corpus import default_cache_dir

REPO = Path(__file__).resolve().parents[1]


def _prepare(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reproduce", "prepare", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_prepare_builds_once_then_finds(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    embedded = load_corpus("embedded")
    for split in ("train", "valid"):
        text = embedded.split(split)
        (corpus / f"{split}.en").write_text("".join(s + "\n" for s in text.source[:500]))
        (corpus / f"{split}.de").write_text("".join(s + "\n" for s in text.target[:500]))
    args = ["--scale", "tiny", "--results-dir", str(tmp_path / "r"), "--set", "corpus=local",
            "--set", f"corpus_path={corpus}", "--set", "vocab_size=200"]
    first = _prepare(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("built ") and "train 500, valid 500 pairs" in first.stdout
    folders = list(default_cache_dir(tmp_path / "r").glob("bin-*/manifest.json"))
    assert len(folders) == 1
    second = _prepare(*args)
    assert second.returncode == 0 and second.stdout.startswith("found "), second.stderr


def test_a_missing_corpus_is_one_line(tmp_path: Path) -> None:
    done = _prepare("--scale", "tiny", "--results-dir", str(tmp_path), "--set", "corpus=local",
                    "--set", f"corpus_path={tmp_path / 'nowhere'}")
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: corpus folder not found: {tmp_path / 'nowhere'}"
