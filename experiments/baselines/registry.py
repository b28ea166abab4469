"""Baseline optimizers by name: where each comes from, what state it keeps, how it is built.

Every optimizer is taken from a maintained package where one ships it (torch.optim; the
official ``adam-mini``; ``lion-pytorch``; ``pytorch-optimizer`` for Tiger, LAMB and CAME). AdaX
has no maintained package (PyPI's ``adax`` is a heater-control library), so it lives in
``experiments.baselines.adax`` and is tested against its paper's rule.

Settings are the package's (or paper's) defaults, with weight decay 0 everywhere (the paper's
Transformer uses none) except AdamW, which keeps torch's default 0.01 because decoupled decay is
what makes it AdamW. The lr passed here is a placeholder: the cell's schedule sets every group's
lr before each step. A spec may override any keyword of the constructor, e.g.
``{"name": "lion", "betas": [0.95, 0.98]}``; an unknown keyword is an error naming the valid ones.
"""

from __future__ import annotations

import importlib.metadata
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

NamedParameters = Sequence[tuple[str, nn.Parameter]]


@dataclass(frozen=True)
class Baseline:
    """One optimizer of the frontier grid."""

    name: str  # the grid's name, e.g. "adam-mini"
    label: str  # for tables and plots, e.g. "Adam-mini"
    package: str  # PyPI distribution that ships it ("torch" for torch.optim, "" for ours)
    constructor: str  # dotted path of the class
    state: str  # what it keeps per parameter
    defaults: dict[str, Any] = field(default_factory=dict)
    needs_names: bool = False  # constructor takes (name, parameter) pairs

    def source(self) -> str:
        """E.g. ``lion_pytorch.Lion (lion-pytorch 0.2.5)``."""
        if not self.package:
            return f"{self.constructor} (this repository)"
        try:
            version = importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            version = "not installed"
        return f"{self.constructor} ({self.package} {version})"

    def optimizer_class(self) -> type[torch.optim.Optimizer]:
        module_name, _, class_name = self.constructor.rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise ImportError(
                f"optimizer {self.name!r} needs the package {self.package!r} "
                f"(pip install {self.package}): {err}"
            ) from err
        return getattr(module, class_name)


BASELINES: dict[str, Baseline] = {
    b.name: b
    for b in (
        Baseline("sgd-momentum", "SGD + momentum", "torch", "torch.optim.SGD",
                 "momentum buffer: 1 float per parameter", {"momentum": 0.9}),
        Baseline("adagrad", "Adagrad", "torch", "torch.optim.Adagrad",
                 "sum of squared gradients: 1 float per parameter"),
        Baseline("rmsprop", "RMSProp", "torch", "torch.optim.RMSprop",
                 "mean squared gradient: 1 float per parameter"),
        Baseline("adam", "Adam", "torch", "torch.optim.Adam",
                 "first and second moments: 2 floats per parameter"),
        Baseline("adamw", "AdamW", "torch", "torch.optim.AdamW",
                 "first and second moments: 2 floats per parameter", {"weight_decay": 0.01}),
        Baseline("adam-mini", "Adam-mini", "adam-mini", "adam_mini.Adam_mini",
                 "first moment: 1 float per parameter; second moment: 1 float per head (Q, K), "
                 "per output neuron (V, attention output, FFN), per token (embeddings), per "
                 "tensor (layer-norm gains); biases keep Adam's full second moment",
                 {"weight_decay": 0.0, "verbose": False}, needs_names=True),
        Baseline("lion", "Lion", "lion-pytorch", "lion_pytorch.Lion",
                 "momentum: 1 float per parameter", {"weight_decay": 0.0}),
        Baseline("tiger", "Tiger", "pytorch-optimizer", "pytorch_optimizer.Tiger",
                 "momentum: 1 float per parameter (Lion with beta1 = beta2)",
                 {"weight_decay": 0.0}),
        Baseline("lamb", "LAMB", "pytorch-optimizer", "pytorch_optimizer.Lamb",
                 "first and second moments: 2 floats per parameter (and 3 scalars per tensor: "
                 "weight norm, update norm, trust ratio)", {"weight_decay": 0.0}),
        Baseline("came", "CAME", "pytorch-optimizer", "pytorch_optimizer.CAME",
                 "first moment: 1 float per parameter; factored second moment and factored "
                 "confidence: rows + cols floats each per matrix (vectors: full second moment)",
                 {"weight_decay": 0.0}),
        Baseline("adax", "AdaX", "", "experiments.baselines.adax.AdaX",
                 "first moment and long-term second moment: 2 floats per parameter"),
    )
}


def _settings(baseline: Baseline, cls: type, spec: dict[str, Any]) -> dict[str, Any]:
    """Defaults updated with ``spec``, each key checked against ``cls``'s keywords."""
    accepted = [
        name for name, p in inspect.signature(cls.__init__).parameters.items()
        if name not in ("self", "params", "named_parameters", "lr")
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    unknown = sorted(set(spec) - set(accepted))
    if unknown:
        raise ValueError(
            f"unknown {baseline.label} setting(s) {unknown}; valid settings of "
            f"{baseline.constructor}: {', '.join(accepted)}"
        )
    settings = {**baseline.defaults, **spec}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}


def _adam_mini(cls: type, named: NamedParameters, settings: dict[str, Any],
               model_cfg: Any) -> torch.optim.Optimizer:
    if model_cfg is None:
        raise ValueError("adam-mini needs the model config (d_model and n_heads) for its "
                         "per-head blocks")
    if getattr(model_cfg, "kernel_layout", "in_out") != "out_in":
        raise ValueError(
            "adam-mini gives one second-moment value per row of a weight (an output neuron in "
            "torch's [out, in] layout) and per block of rows of Q/K (a head): build the model "
            "with kernel_layout='out_in' (the frontier cells do)"
        )
    settings = {"dim": model_cfg.d_model, "n_heads": model_cfg.n_heads, **settings}
    optimizer = cls(named, lr=1.0, **settings)
    # The package's name list knows "o_proj"/"wo" for the attention output; ours is "out_proj".
    # Adding names is the package's documented way to describe a model.
    optimizer.attn_proj_names.add("out_proj")
    if optimizer.world_size > 1 and not torch.distributed.is_initialized():
        # It reads the number of visible GPUs as the number of processes; a one-process run on a
        # multi-GPU node would call all_gather without a process group.
        optimizer.world_size = 1
    return optimizer


def build_baseline(
    name: str, named_parameters: NamedParameters, spec: dict[str, Any], model_cfg: Any = None
) -> torch.optim.Optimizer:
    """The optimizer ``name`` over ``named_parameters`` with ``spec``'s settings (lr 1.0)."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline optimizer {name!r}; valid: {', '.join(BASELINES)}")
    baseline = BASELINES[name]
    cls = baseline.optimizer_class()
    settings = _settings(baseline, cls, spec)
    named = list(named_parameters)
    if name == "adam-mini":
        return _adam_mini(cls, named, settings, model_cfg)
    return cls([p for _, p in named], lr=1.0, **settings)
