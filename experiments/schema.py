"""What a cell's files hold, named once: its status, the metric and summary keys, the file and
checkpoint names, the BLEU recipe, and the cell plan (what the parent resolves for a worker).

Everything that writes or reads a result (the runner, the W&B mirror and its reader, the
renderers, the dashboard) takes these names from here, so a key is spelled in one place.

``<results_dir>/<cell_id>/`` holds

- ``config.json``   the cell's settings and its identity (experiments.identity), written at start;
- ``metrics.jsonl`` one JSON line per logged step / validation, appended and fsynced line by line;
- ``checkpoints/``  ``last.ckpt`` and the newest ``step<N>.ckpt`` (Lightning's ModelCheckpoint);
- ``result.json``   final metrics, BLEU and the identity, written atomically when the cell ends;
- ``run.log``       the worker's console output (local launcher);
- ``.lock``         held by the process training the cell (``<results_dir>/.lock``: the table run).

Beside the cells, ``<results_dir>/.cache/vocab`` holds the binarized corpus every cell maps, and a
table's prepare step writes ``<results_dir>/<table>/unigram.json`` (grid tables) or
``<results_dir>/frontier/base_state_bytes.json`` (the frontier).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class Status(enum.StrEnum):
    """A finished cell's ``status`` (result.json); a str, so the files hold the bare word."""

    OK = "ok"
    DIVERGED = "diverged"  # a non-finite loss, or a loss past the preset's blowup_factor


# --- files ------------------------------------------------------------------------------------
RESULT_FILE = "result.json"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "run.log"
LOCK_FILE = ".lock"
CHECKPOINT_SUBDIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
STEP_CHECKPOINT = "step{step}"  # ModelCheckpoint's filename: step<N>.ckpt
STEP_CHECKPOINT_GLOB = "step*.ckpt"
REQUEUE_CHECKPOINT_GLOB = "hpc_ckpt_*.ckpt"  # Lightning's Slurm auto-requeue
CACHE_SUBDIR = Path(".cache") / "vocab"  # the vocabulary and binarized corpus of a results folder
UNIGRAM_FILE = "unigram.json"
BASE_STATE_FILE = "base_state_bytes.json"

# --- keys: metrics.jsonl rows = W&B history; result.json scalars = wandb.summary -----------------
STEP = "step"
FINAL = "final"  # the last metrics row, written with result.json
TRAIN_LOSS = "train_loss"
VALID_LOSS = "valid_loss"
UPDATE_RMS = "update_rms"  # mean over tensors of RMS(U_t) (Adafactor.step_stats), Figure 1
# Figure 1's series (models.lightning_module): the mean over weight matrices, and one named matrix
UPDATE_RMS_MATRICES = "update_rms_matrices"
UPDATE_RMS_MATRIX = "update_rms_matrix"
UPDATE_RMS_APPLIED = "update_rms_applied_matrices"  # the mean over matrices of min(RMS(U_t), d)
PLATEAU_MAX = "plateau_max"  # result.json: experiments.measure.plateau.plateau_maxima
DIVERGED_FLAG = "diverged"  # a metrics row's flag: the run stopped on this batch
HISTORY_KEYS = (TRAIN_LOSS, VALID_LOSS, UPDATE_RMS, UPDATE_RMS_MATRICES, UPDATE_RMS_MATRIX,
                UPDATE_RMS_APPLIED)
BLEU = "bleu"
TOKENIZED_BLEU = "tokenized_bleu"
PAPER_BLEU = "paper_bleu"
STATE_BYTES = "optimizer_state_bytes"
STATUS = "status"
CELL_ID = "cell_id"
SUMMARY_KEYS = (BLEU, PAPER_BLEU, STATE_BYTES, VALID_LOSS, STATUS, CELL_ID)
FINAL_ROW_KEYS = (VALID_LOSS, BLEU, TOKENIZED_BLEU, STATUS)  # besides step and final
# Run config (config.json's nested dicts as W&B stores them):
CONFIG_TABLE = "cell.table"
CONFIG_ROW = "cell.row"
CONFIG_COLUMN = "cell.column"
CONFIG_SCALE = "scale.name"
CONFIG_KEYS = (CONFIG_TABLE, CONFIG_ROW, CONFIG_COLUMN, CONFIG_SCALE)


def bleu_recipe(preset: Any) -> dict[str, Any]:
    """result.json's ``bleu_recipe`` (less ``sentences``, the number decoded): how the cell's
    BLEU is computed, from its scale preset (a ScalePreset, or config.json's ``scale`` dict)."""
    get = preset.get if isinstance(preset, Mapping) else lambda key: getattr(preset, key)
    beam = get("decode") == "beam"
    return {
        "split": get("eval_split"),
        "corpus": get("corpus"),
        "max_sentences": get("eval_max_sentences"),
        "decode": get("decode"),
        "beam": get("beam_size") if beam else 1,
        "length_penalty": get("length_penalty") if beam else None,
    }


# --- the cell plan --------------------------------------------------------------------------------


def resolved_steps(preset: Any, cell: Any) -> int:
    """The steps a cell trains: its preset's, times the cell's ``steps_factor`` (Table 3: 0.5)."""
    return max(1, round(preset.steps * cell.steps_factor))


def resolved_max_tokens(preset: Any, cell: Any) -> int:
    """A cell's token budget per batch: its preset's, times the cell's ``max_tokens_factor``."""
    return max(1, round(preset.max_tokens * cell.max_tokens_factor))


@dataclass(frozen=True)
class CellPlan:
    """A cell with everything resolved: the preset it trains with (scale, the cell's own preset
    fields, ``--set``, the calibration rule), its steps and token budget. The parent makes one
    per cell (experiments.scales.plan_cell) and hands it to the worker, which trains it as is."""

    cell: Any  # experiments.grid.cells.Cell
    preset: Any  # experiments.scales.ScalePreset
    steps: int
    max_tokens: int

    @property
    def cell_id(self) -> str:
        return self.cell.cell_id
