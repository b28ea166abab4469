"""Build a cell's torch optimizer and its step-size schedule from the grid's data.

The schedule is a function ``step_size(t)`` of the 1-based optimizer step t. The Lightning module
(models.lightning_module) applies it through ``torch.optim.lr_scheduler.LambdaLR`` with base
lr 1, so ``param_group["lr"]`` holds exactly alpha_t (absolute rows, Adam, SGD) or rho_t
(relative rows O/P, where Adafactor multiplies it by max(eps2, RMS(X_{t-1}))).

Time rescaling (experiments.scales): ``step_size(t) = c * paper(time_factor * t)`` with
``c = relative_lr_scale`` for rho_t and ``c = lr_scale`` for the absolute kinds (alpha_t, SGD's
k s_t, Vaswani's). The ``peak`` kind (the frontier grid of baseline optimizers) is the paper's
warmup shape scaled to a swept peak, ``peak * s(time_factor * t) / 1e-2``, with neither scale.

Optimizer names: ``adafactor`` (this repository's Adafactor), ``sgd`` (plain SGD, Table 2's Q rows)
and the baselines of ``experiments.baselines.registry`` (``adam`` is torch.optim.Adam, row B).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from adafactor import Adafactor
from adafactor.schedules import paper_step_size_at
from experiments.baselines.registry import BASELINES, build_baseline
from experiments.scales import PAPER_PLATEAU

SCHEDULE_KINDS = ("absolute", "relative", "sgd", "vaswani", "peak")
OPTIMIZER_NAMES = ("adafactor", "sgd", *BASELINES)
_ADAFACTOR_KEYS = {
    "factored",
    "beta1",
    "beta2",
    "decay_exponent",
    "clip_threshold",
    "scale_parameter",
    "warmup_init",
    "eps",
    "weight_decay",
    "min_dim_size_to_factor",
    "decay_scale",
}


def step_size_schedule(
    schedule: dict[str, Any], *, time_factor: float = 1.0, lr_scale: float = 1.0,
    relative_lr_scale: float = 1.0, d_model: int | None = None,
) -> Callable[[int], float]:
    """The function t -> alpha_t / rho_t / SGD lr for 1-based step t (see module docstring)."""
    kind = schedule.get("kind")
    if kind not in SCHEDULE_KINDS:
        raise ValueError(
            f"unknown schedule kind {kind!r}; valid kinds: {', '.join(SCHEDULE_KINDS)}"
        )
    if min(time_factor, lr_scale, relative_lr_scale) <= 0:
        raise ValueError(
            f"time_factor, lr_scale and relative_lr_scale must be > 0, got {time_factor}, "
            f"{lr_scale}, {relative_lr_scale}"
        )

    def paper_time(t: int) -> float:
        if t < 1:
            raise ValueError(f"optimizer steps count from 1, got t={t}")
        return max(1.0, time_factor * t)

    if kind == "vaswani":
        if d_model is None:
            raise ValueError("the 'vaswani' schedule needs d_model")
        warmup_steps = float(schedule.get("warmup_steps", 4000))

        def vaswani(t: int) -> float:
            tp = paper_time(t)
            return lr_scale * d_model**-0.5 * min(tp**-0.5, tp * warmup_steps**-1.5)

        return vaswani

    if kind == "peak":
        return _peak_schedule(schedule, paper_time)
    if "warmup" not in schedule:
        raise ValueError(f"schedule {schedule!r} needs a 'warmup' flag")
    multiplier = float(schedule.get("multiplier", 1.0))
    multiplier *= relative_lr_scale if kind == "relative" else lr_scale
    warmup = bool(schedule["warmup"])

    def scaled(t: int) -> float:
        return multiplier * paper_step_size_at(paper_time(t), warmup)

    return scaled


def _peak_schedule(schedule: dict[str, Any], paper_time: Callable[[int], float]
                   ) -> Callable[[int], float]:
    """The paper's warmup shape scaled to a chosen peak: ``peak * s(t') / 1e-2`` (linear warmup
    over the first 10^4 paper steps, then 1/sqrt decay). Neither lr scale applies: the peak is
    the value an lr sweep picks (the frontier grid)."""
    peak = schedule.get("peak")
    if isinstance(peak, bool) or not isinstance(peak, int | float) or not (
        0 < peak < float("inf")
    ):
        raise ValueError(f"the 'peak' schedule needs a positive 'peak' step size, got {peak!r}")
    if schedule.get("warmup", True) is not True:
        raise ValueError("the 'peak' schedule always warms up; drop 'warmup' or set it true")

    def peaked(t: int) -> float:
        # = peak * min(1e-6 t', 1/sqrt t') / 1e-2, written so that t' = 10^4 gives exactly peak.
        t_paper = paper_time(t)
        return peak * min(t_paper * 1e-6 / PAPER_PLATEAU,
                          1.0 / (PAPER_PLATEAU * math.sqrt(t_paper)))

    return peaked


def rescaled_beta(beta: float, factor: float) -> float:
    """A constant decay over ``factor`` steps per step, to first order: max(0, 1 - F (1 - beta))
    (0.999 -> 0.99 and 0.9 -> 0 at F = 10)."""
    return max(0.0, (1.0 - factor) + factor * beta)  # exact 0 for 0.9 at F = 10 (1 - F 0.1 is not)


def rescaled_decay(optimizer: dict[str, Any], factor: float) -> dict[str, Any]:
    """The optimizer spec with its second-moment decay on a clock of ``factor`` paper steps per
    step (design D1'): constant beta2 -> `rescaled_beta`; 1 - t^-c -> max(0, 1 - F^(1-c) t^-c),
    the paper's decay over the F steps ending at paper time F t. beta1 is kept; SGD has no decay.
    """
    spec = dict(optimizer)
    name = spec.get("name")
    if name == "adafactor":
        if spec.get("beta2") is None:
            spec["decay_scale"] = factor ** (1.0 - spec.get("decay_exponent", 0.8))
        else:
            spec["beta2"] = rescaled_beta(spec["beta2"], factor)
    elif name == "adam":
        beta1, beta2 = spec.get("betas", (0.9, 0.999))
        spec["betas"] = (beta1, rescaled_beta(beta2, factor))
    elif name != "sgd":
        raise ValueError(f"decay_time_rescale applies to adafactor, adam and sgd cells, not to "
                         f"{name!r}")
    return spec


def _split_names(params: Iterable[Any]) -> list[tuple[str, torch.nn.Parameter]]:
    """Parameters or (name, parameter) pairs -> (name, parameter) pairs (unnamed: "param<i>")."""
    named = []
    for i, item in enumerate(params):
        if isinstance(item, tuple):
            named.append(item)
        else:
            named.append((f"param{i}", item))
    return named


def build_optimizer(
    params: Iterable[torch.nn.Parameter] | Iterable[tuple[str, torch.nn.Parameter]],
    optimizer: dict[str, Any], schedule: dict[str, Any], *, track_stats: bool = True,
    model_cfg: Any = None,
) -> torch.optim.Optimizer:
    """The torch optimizer of a grid cell (its lr is set per step by the schedule).

    ``params`` are parameters or ``model.named_parameters()`` pairs (Adam-mini needs the names);
    ``model_cfg`` (a models.config.ModelConfig) gives Adam-mini its head layout.
    """
    spec = dict(optimizer)
    name = spec.pop("name", None)
    kind = schedule.get("kind")
    named = _split_names(params)
    params = [p for _, p in named]
    if name in BASELINES:
        return build_baseline(name, named, spec, model_cfg)
    if name == "adafactor":
        unknown = set(spec) - _ADAFACTOR_KEYS
        if unknown:
            raise ValueError(f"unknown Adafactor setting(s) {sorted(unknown)} in {optimizer!r}")
        if kind not in ("absolute", "relative", "peak"):
            raise ValueError(
                f"Adafactor needs an 'absolute', 'relative' or 'peak' schedule, got {kind!r}"
            )
        scale = spec.pop("scale_parameter", kind == "relative")
        if kind != "peak" and scale != (kind == "relative"):
            raise ValueError(
                f"scale_parameter={scale} contradicts the {kind!r} schedule "
                "(relative step <=> parameter scaling)"
            )
        if "eps" in spec:
            spec["eps"] = tuple(spec["eps"])
        return Adafactor(params, lr=1.0, scale_parameter=scale, track_stats=track_stats, **spec)
    if name == "sgd":
        if spec:
            raise ValueError(f"unknown SGD setting(s) {sorted(spec)} in {optimizer!r}")
        return torch.optim.SGD(params, lr=1.0)
    raise ValueError(f"unknown optimizer {name!r}; valid optimizers: {', '.join(OPTIMIZER_NAMES)}")

