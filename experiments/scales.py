"""The settings a cell runs with: the scale presets, the calibration rule, a cell's plan, and the
KEY=VALUE values of ``--set``.

Scale presets: the same grid cell at ``tiny`` (CPU, minutes), ``small`` (Multi30k, one GPU) and
``base`` (the paper: WMT14 En-De, 100k steps, ~4096 + 4096 tokens, beam 4, alpha 0.6, newstest2013).

Time-rescaling rule (every schedule: alpha_t, rho_t, SGD's k s_t, Vaswani's)
-----------------------------------------------------------------------------
A preset evaluates the paper's schedule at paper time ``t' = F * t`` and multiplies it by a
constant::

    alpha_t = lr_scale * 0.1 * s(F * t)      rho_t = relative_lr_scale * s(F * t)
    SGD lr  = lr_scale * k * s(F * t)        Vaswani: lr_scale * d^-0.5 min(t'^-0.5, t' w^-1.5)

``F = time_rescale``, or ``100_000 / steps`` when ``time_rescale`` is None (warmup and the 1e-2
plateau then keep the paper's fraction of training, 10%). ``base``: F = 1 and both scales 1, i.e.
exactly the paper. ``small``: F = 100_000 / steps (the fraction rule), scales 1.

Optimizer constants that are themselves time scales (beta2 = 0.999, 0.99, 0.9; 1 - t^-c) are
*not* rescaled (unless ``decay_time_rescale``, design D1' of docs/preregistration.md): they
are the rows' identity, and the paper's no-warmup collapse acts on that absolute time scale
(Figure 1: with beta2 = 0.999 the second-moment estimate lags for ~1000 steps,
RMS(U_t) undershoots to 0.33 then overshoots to 2.2 within the first ~1000 steps, while the paper's
no-warmup step size stays at its 1e-3 plateau for 10,000 steps; warmup keeps the step small while
the estimate is out of date). So the tiny preset must (1) keep the plateau/warmup long compared with
the phase in which gradients change fast and the estimate lags, and (2) make the plateau step large
enough that unclipped overshoots destabilise training while RMS-clipped (d = 1), momentum and
fast-decay updates stay stable.

tiny preset: the calibration rule of docs/calibration.md section 1, written down before any run
was scored: the warmup ramp / no-warmup plateau ends at half the run (F = 10^4 / 200 = 50 for 400
steps, then 1/sqrt decay), and one step-size multiplier m, width-matched (lr_scale = m sqrt(512 /
64) = 8.94, relative_lr_scale = m), with m = 3.16 taken from row B with warmup alone: the grid
point of the sensitivity grid with B's best final validation loss (docs/calibration.md section 3a).
The no-warmup collapse pattern is a prediction of that rule, never a target. The earlier values
(lr_scale 8.5, relative_lr_scale 5) came from a settings search scored against the paper's pattern;
its lab notes are in docs/calibration.md section 4.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data.corpora import CORPUS_NAMES
from experiments.schema import CellPlan, resolved_max_tokens, resolved_steps
from models.presets import PRESETS, model_config

if TYPE_CHECKING:
    from experiments.grid.cells import Cell

PAPER_STEPS = 100_000
PAPER_D_MODEL = 512  # Transformer base, the width the paper's alpha_t = 0.1 s_t was set for
# The paper's s_t: the warmup ramp 1e-6 t (or the no-warmup plateau 1e-2) ends at t = 10^4,
# where both reach PAPER_PLATEAU; 1/sqrt t after.
PAPER_WARMUP_STEPS = 10_000
PAPER_PLATEAU = 1e-2
TINY_STEPS = 400
# m of the calibration rule, read from sensitivity/B/warmup-m<m>/seed0 alone (docs/calibration.md).
TINY_STEP_SIZE_MULTIPLIER = 3.16

SHARED_DATA = Path(os.environ.get("ADAFACTOR_SHARED_DATA", Path(__file__).resolve().parents[2]
                                  / "shared" / "data"))


@dataclass(frozen=True)
class ScalePreset:
    """Everything about a run that is not the grid cell: model size, data, budget, evaluation."""

    name: str
    model: str  # models.presets name
    corpus: str  # data.corpora name
    vocab_size: int
    max_tokens: int  # token budget per batch (max of source and target tokens, per rank)
    steps: int
    val_interval: int  # validation loss every N steps (BLEU only at the end)
    checkpoint_interval: int  # ModelCheckpoint every N steps (last.ckpt kept for resume)
    eval_split: str
    eval_max_sentences: int | None  # cap on sentences decoded for BLEU (None: whole split)
    decode: str  # "beam" or "greedy"
    beam_size: int
    length_penalty: float
    seed: int = 0
    lr_scale: float = 1.0  # multiplies absolute step sizes: alpha_t, SGD's k s_t, Vaswani's
    relative_lr_scale: float = 1.0  # multiplies rho_t (rows O/P, Table 3 Adafactor)
    time_rescale: float | None = None  # None: PAPER_STEPS / steps
    corpus_path: str | None = None
    model_overrides: dict[str, Any] = field(default_factory=dict)
    max_len: int = 256
    precision: str = "32-true"
    num_workers: int = 0
    log_interval: int = 10  # metrics.jsonl / W&B training rows every N steps
    torch_threads: int | None = None  # torch.set_num_threads (tiny: 1, so 2 cells share 2 cores)
    accumulate_grad_batches: int = 1  # micro-batches per optimizer step (per rank)
    # Stop a run (status "diverged") once a batch's loss exceeds this factor times the first
    # batch's loss; None: only a non-finite loss stops it (the sensitivity grid sets 2).
    blowup_factor: float | None = None
    # Design D1' (docs/preregistration.md): the second-moment decays run on the schedule's clock
    # of F paper steps per step (experiments.optimizers.rescaled_decay), not in absolute steps.
    decay_time_rescale: bool = False

    @property
    def paper_time_factor(self) -> float:
        """Paper steps per preset step: the schedule is evaluated at t' = factor * t."""
        if self.time_rescale is not None:
            return float(self.time_rescale)
        return PAPER_STEPS / self.steps

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["paper_time_factor"] = self.paper_time_factor
        return out


# --- the calibration rule (docs/calibration.md section 1) -------------------------------------
# The warmup or plateau ends at half the run, F = 10^4 / (steps / 2); beta2 and 1 - t^-c keep
# their absolute steps; one multiplier m acts on every step size, matched to the width:
# alpha_t = m sqrt(512 / d_model) 0.1 s_t and rho_t = m s_t.


def half_run_time_rescale(steps: int) -> float:
    """F such that the paper's 10^4-step warmup or plateau ends at half of ``steps``."""
    if steps < 2:
        raise ValueError(f"the half-run rule needs at least 2 steps, got {steps}")
    return PAPER_WARMUP_STEPS / (steps / 2)


def width_matched_lr_scale(multiplier: float, d_model: int) -> float:
    """lr_scale = m sqrt(512 / d_model): the same relative update alpha / RMS(W) as at d = 512."""
    return multiplier * math.sqrt(PAPER_D_MODEL / d_model)


def _multi30k_path() -> str | None:
    path = SHARED_DATA / "multi30k"
    return str(path) if (path / "train.en").is_file() else None


def _presets() -> dict[str, ScalePreset]:
    presets = {
        "tiny": ScalePreset(
            name="tiny",
            model="tiny",
            corpus="embedded",
            vocab_size=1000,
            max_tokens=1024,
            steps=TINY_STEPS,
            time_rescale=half_run_time_rescale(TINY_STEPS),
            val_interval=100,
            checkpoint_interval=100,
            eval_split="valid",
            eval_max_sentences=200,
            decode="greedy",
            beam_size=1,
            length_penalty=0.6,
            lr_scale=width_matched_lr_scale(TINY_STEP_SIZE_MULTIPLIER, PRESETS["tiny"]["d_model"]),
            relative_lr_scale=TINY_STEP_SIZE_MULTIPLIER,
            torch_threads=1,
        ),
        "small": ScalePreset(
            name="small",
            model="small",
            corpus="multi30k",
            corpus_path=_multi30k_path(),
            vocab_size=8000,
            max_tokens=4096,
            steps=20_000,
            val_interval=1000,
            checkpoint_interval=1000,
            eval_split="valid",
            eval_max_sentences=None,
            decode="beam",
            beam_size=4,
            length_penalty=0.6,
        ),
        "base": ScalePreset(
            name="base",
            model="base",
            corpus="wmt14",
            vocab_size=32_768,
            max_tokens=4096,
            steps=PAPER_STEPS,
            val_interval=5000,
            checkpoint_interval=5000,
            eval_split="valid",  # newstest2013
            eval_max_sentences=None,
            decode="beam",
            beam_size=4,
            length_penalty=0.6,
            time_rescale=1.0,
        ),
    }
    tiny = presets["tiny"]
    presets[SMOKE] = dataclasses.replace(tiny, name=SMOKE)
    for name, knobs in DESIGNS.items():
        m = DESIGN_MULTIPLIERS[name] or TINY_STEP_SIZE_MULTIPLIER  # placeholder until calibrated
        d_model = model_config(tiny.model, tiny.vocab_size, **knobs.get("model_overrides", {}))
        presets[name] = dataclasses.replace(
            tiny, name=name, **knobs, relative_lr_scale=m,
            lr_scale=width_matched_lr_scale(m, d_model.d_model))
    return presets


# The pre-registered tiny designs (docs/preregistration.md section 1), each the tiny preset with
# its knobs, so that a design is one --scale and each cell's identity names it.
DESIGNS: dict[str, dict[str, Any]] = {
    "tiny-d1": {"steps": 4000, "time_rescale": 5.0, "val_interval": 250,
                "checkpoint_interval": 250},
    "tiny-d1p": {"steps": 2000, "time_rescale": 10.0, "val_interval": 100,
                 "checkpoint_interval": 100, "decay_time_rescale": True},
    "tiny-d2": {"model_overrides": {"n_encoder_layers": 6, "n_decoder_layers": 6},
                "val_interval": 20, "checkpoint_interval": 100},
}
# Each design's m, read by the calibration rule on its own settings (section 2; the readings are
# docs/preregistration.md section 9); None: not calibrated yet, and its grid cells refuse to run
# (the calibration cells, which set their own m, run).
DESIGN_MULTIPLIERS: dict[str, float | None] = {"tiny-d1": 3.16, "tiny-d1p": 3.16,
                                               "tiny-d2": 3.16}
# The smoke preset (docs/preregistration.md section 5.6): design S, the tiny preset's 400 steps,
# under its own name. Its table runs, and a design's, leave out the companion tables: Figure 1's
# two 3000-step cells are the design-independent reference (run at --scale tiny), and a design
# reads its mechanism from its own table2 A and G cells.
SMOKE = "smoke"
SCALES = ("tiny", "small", "base", SMOKE, *DESIGNS)
SCALES_WITHOUT_COMPANIONS = (SMOKE, *DESIGNS)
# Lightning's precision names (Trainer(precision=...)).
PRECISIONS = ("32-true", "32", "64-true", "64", "16-mixed", "16", "bf16-mixed", "bf16",
              "16-true", "bf16-true")


def _check_type(name: str, value: Any, annotation: str) -> None:
    allowed: dict[str, tuple[type, ...]] = {
        "str": (str,),
        "int": (int,),
        "float": (int, float),
        "str | None": (str, type(None)),
        "int | None": (int, type(None)),
        "float | None": (int, float, type(None)),
        "dict[str, Any]": (dict,),
        "bool": (bool,),
    }
    types = allowed[annotation]
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        raise TypeError(
            f"scale override {name!r} must be {annotation}, got {type(value).__name__} {value!r}"
        )


def scale_preset(name: str, /, **overrides: Any) -> ScalePreset:
    """The preset ``name`` with fields replaced by ``overrides``.

    An unknown key is a ValueError and a value of the wrong type a TypeError, both naming the key.
    """
    presets = _presets()
    if name not in presets:
        raise ValueError(f"unknown scale {name!r}; valid scales: {', '.join(SCALES)}")
    fields = {f.name: f.type for f in dataclasses.fields(ScalePreset)}
    if "name" in overrides and overrides["name"] != name:
        raise ValueError(f"scale setting 'name' = {overrides['name']!r}: allowed is {name!r} "
                         "(the scale is chosen with --scale)")
    for key, value in overrides.items():
        if key not in fields:
            raise ValueError(
                f"unknown scale override {key!r}; valid keys: {', '.join(sorted(fields))}"
            )
        _check_type(key, value, str(fields[key]))
    if "corpus_path" in overrides and overrides["corpus_path"] is not None:
        overrides["corpus_path"] = str(overrides["corpus_path"])
    preset = dataclasses.replace(presets[name], **overrides)
    _validate(preset)
    return preset


# Allowed range of every numeric preset field: (lowest, highest, lowest included). None as a
# value is allowed exactly where the field's type allows it.
NUMERIC_RANGES: dict[str, tuple[float, float, bool]] = {
    "vocab_size": (1, math.inf, True), "max_tokens": (1, math.inf, True),
    "steps": (1, math.inf, True), "val_interval": (1, math.inf, True),
    "checkpoint_interval": (1, math.inf, True), "eval_max_sentences": (1, math.inf, True),
    "beam_size": (1, math.inf, True), "length_penalty": (0, math.inf, True),
    "seed": (0, 2**32 - 1, True), "lr_scale": (0, math.inf, False),
    "relative_lr_scale": (0, math.inf, False), "time_rescale": (0, math.inf, False),
    "max_len": (1, math.inf, True), "num_workers": (0, 1024, True),
    "log_interval": (1, math.inf, True), "torch_threads": (1, 4096, True),
    "accumulate_grad_batches": (1, math.inf, True), "blowup_factor": (1, math.inf, False),
}
SPLITS = ("train", "valid", "test")


def _allowed(key: str) -> str:
    low, high, closed = NUMERIC_RANGES[key]
    text = f"a finite number {'>=' if closed else '>'} {low:g}"
    return text + (f" and <= {high:g}" if math.isfinite(high) else "")


def _bad(key: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"scale setting {key!r} = {value!r}: allowed is {allowed}")


def _validate(p: ScalePreset) -> None:
    """Every field's value against what it allows (one line naming the key, value and range)."""
    optional = {f.name for f in dataclasses.fields(ScalePreset) if "None" in str(f.type)}
    for key, (low, high, closed) in NUMERIC_RANGES.items():
        value = getattr(p, key)
        if value is None and key in optional:
            continue
        in_range = math.isfinite(value) and (value >= low if closed else value > low) \
            and value <= high
        if not in_range:
            raise _bad(key, value, _allowed(key) + (" or null" if key in optional else ""))
    if p.checkpoint_interval % p.log_interval:
        raise ValueError(
            f"checkpoint_interval ({p.checkpoint_interval}) must be a multiple of log_interval "
            f"({p.log_interval}): a checkpoint is taken right after a logged row"
        )
    choices = {"corpus": CORPUS_NAMES, "model": tuple(PRESETS), "precision": PRECISIONS,
               "decode": ("beam", "greedy"), "eval_split": SPLITS}
    for key, allowed in choices.items():
        if getattr(p, key) not in allowed:
            raise _bad(key, getattr(p, key), "one of " + ", ".join(allowed))
    if p.corpus_path is not None and not p.corpus_path.strip():
        raise _bad("corpus_path", p.corpus_path, "a path, or null for the corpus's default")
    try:
        model_config(p.model, p.vocab_size, **p.model_overrides)
    except (ValueError, TypeError) as err:
        raise _bad("model_overrides", p.model_overrides, " ".join(str(err).split())) from None


def calibrated(preset: ScalePreset, multiplier: float, *, d_model: int,
               steps: int | None = None) -> ScalePreset:
    """``preset`` under the calibration rule with multiplier m (``steps``: the cell's own)."""
    if not multiplier > 0 or not math.isfinite(multiplier):
        raise ValueError(f"step-size multiplier must be positive and finite, got {multiplier!r}")
    return dataclasses.replace(
        preset, time_rescale=half_run_time_rescale(steps or preset.steps),
        lr_scale=width_matched_lr_scale(multiplier, d_model), relative_lr_scale=float(multiplier),
    )


def resolve_cell_preset(cell: Cell, scale: str, overrides: Mapping[str, Any] | None = None
                        ) -> ScalePreset:
    """The preset ``cell`` trains with: the scale's preset, the cell's own preset_overrides
    (Figure 1), the --set ``overrides`` on top, then the calibration rule if the cell has a
    multiplier (the sensitivity grid)."""
    preset = scale_preset(scale, **{**cell.preset_overrides, **(overrides or {})})
    if cell.lr_multiplier is None:
        return preset
    d_model = model_config(preset.model, preset.vocab_size,
                           **{**preset.model_overrides, **cell.model_overrides}).d_model
    return calibrated(preset, cell.lr_multiplier, d_model=d_model,
                      steps=resolved_steps(preset, cell))


def check_calibrated(cell: Cell, scale: str, overrides: Mapping[str, Any] | None = None) -> None:
    """ValueError when ``cell`` would train a design whose m is not calibrated yet with the
    placeholder m (a cell with its own multiplier, or explicit step-size scales, may run)."""
    given = set(overrides or {})
    if DESIGN_MULTIPLIERS.get(scale, 1.0) is not None or cell.lr_multiplier is not None \
            or {"lr_scale", "relative_lr_scale"} <= given:
        return
    from experiments.grid.sensitivity import CALIBRATION_CELL, MULTIPLIERS, SENSITIVITY

    row, column = CALIBRATION_CELL
    grid = ", ".join(f"{m:g}" for m in MULTIPLIERS)
    raise ValueError(
        f"scale {scale!r}: its step-size multiplier m is not calibrated yet "
        "(docs/preregistration.md section 2). Run the calibration cells first: python -m "
        f"reproduce run {SENSITIVITY}/{row}/{column}-m<m>/seed0 --scale {scale}, for m in "
        f"{grid}; then "
        "record the m with the best final validation loss in "
        "experiments.scales.DESIGN_MULTIPLIERS. Or give --set lr_scale=... --set "
        "relative_lr_scale=...")


def plan_cell(cell: Cell, scale: str, overrides: Mapping[str, Any] | None = None) -> CellPlan:
    """The one resolution of a cell's settings: preset, steps and token budget."""
    check_calibrated(cell, scale, overrides)
    preset = resolve_cell_preset(cell, scale, overrides)
    return CellPlan(cell, preset, resolved_steps(preset, cell), resolved_max_tokens(preset, cell))


# --- KEY=VALUE values (``--set``, the benchmarks' ``--override``) ------------------------------


def parse_value(text: str) -> Any:
    """JSON when it parses (``400`` -> int, ``0.5`` -> float, ``null`` -> None, ``true``,
    ``{"d_model": 64}``), otherwise the text itself (``beam``, ``/data/wmt``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def split_key_value(text: str) -> tuple[str, Any]:
    """``"steps=40"`` -> ``("steps", 40)``; ValueError for anything not ``KEY=VALUE``."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"{text!r}: expected KEY=VALUE, e.g. steps=40")
    return key, parse_value(value.strip())


def parse_key_value(text: str) -> tuple[str, Any]:
    """`split_key_value` as an argparse ``type=`` (bad input is a usage error)."""
    try:
        return split_key_value(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
