"""Shared test fixtures: offline hub and W&B, and paths to the real text in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tests never reach the network: the hub and W&B cloud are unreachable here, and users' runs
# must not be touched by the test suite.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Triton reads TRITON_INTERPRET when it is first imported (torch.compile imports it too), and
# kernels of an interpreter-less import cannot run on CPU tensors: set it before anything does.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# One intra-op thread: tests that start several processes (DDP, launchers) must not oversubscribe
# the cores, and small-tensor math is faster single-threaded anyway. Tests that want more set it.
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ADAFACTOR_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """../shared/data (real English-German text); tests needing it skip with a reason if absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real text not found at {SHARED_DATA} (set ADAFACTOR_SHARED_DATA to it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def multi30k_dir(shared_data_dir: Path) -> Path:
    path = shared_data_dir / "multi30k"
    if not (path / "train.en").is_file():
        pytest.skip(f"Multi30k not found at {path}")
    return path


@pytest.fixture(scope="session")
def newstest2014_dir(shared_data_dir: Path) -> Path:
    path = shared_data_dir / "wmt14"
    if not (path / "newstest2014.en").is_file():
        pytest.skip(f"newstest2014 not found at {path}")
    return path
