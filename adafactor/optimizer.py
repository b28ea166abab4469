"""Adafactor (Shazeer & Stern, ICML 2018) as a torch.optim.Optimizer.

Every switch is one of the paper's ablation axes, so each Table 2 row is this one class with other
arguments:

* ``factored``: True (Algorithm 4: row and column statistics over the last two dims), False
  (Algorithm 5 applied to every tensor: the full second moment), "row" (Table 2 row D: V_hat_ij =
  r_i, the EMA of the row means of G^2 + eps1 broadcast over columns) or "col" (row E: V_hat_ij =
  c_j, the EMA of the column means broadcast over rows). Vectors and scalars are never factored;
  rank > 2 tensors are factored over their last two dims with the leading dims kept (one
  factorisation per matrix). ``min_dim_size_to_factor`` keeps the full second moment for tensors
  whose last two dims are not both at least that large.
* ``beta2``: None gives beta2hat_t = 1 - t^(-decay_exponent) (Section 7.2), or with
  ``decay_scale`` k > 1, max(0, 1 - k t^(-decay_exponent)) (a rescaled clock: k = F^(1-c) is the
  paper's decay over F steps per step). A float in [0, 1) gives a constant beta2 with Adam's
  decay correction beta2hat_t = beta2 (1 - beta2^(t-1)) / (1 - beta2^t) (Algorithm 3; beta2 = 0
  keeps no memory, V_t = G_t^2), so with factored=False, clip_threshold=None,
  scale_parameter=False and eps1=0 this is Adam with beta1=0 and eps=0.
* ``clip_threshold`` d: U_hat = U / max(1, RMS(U)/d) per tensor, on the unscaled update
  (Section 6); None disables it.
* ``lr``: None gives the relative step rho_t = min(1e-2, 1/sqrt t) (with ``warmup_init``:
  min(1e-6 t, 1/sqrt t)); a float is used as given each step (an LR scheduler may change
  param_group["lr"]; the optimizer never writes it). ``scale_parameter`` multiplies the step by
  max(eps2, RMS(X_{t-1})) (Section 8); without it the step is absolute: alpha_t = lr.
* ``beta1``: momentum on the scaled, clipped update, m = beta1 m + (1 - beta1) alpha_t U_hat,
  X -= m, without bias correction, as in the paper's reference code. None (or 0) keeps no first
  moment.
* ``eps = (eps1, eps2)``: eps1 is added to G^2 before averaging (not a clamp); eps2 floors the
  parameter scale.
* ``weight_decay`` (decoupled, AdamW-style): X <- X (1 - rho weight_decay) before the update, with
  rho = lr or rho_t (the step size before the parameter scale); the decay is not adapted.
* bf16/fp16 parameters: the state and all arithmetic are fp32; results are written back to bf16
  with stochastic rounding (``stochastic_rounding=True``, the default) or round-to-nearest; fp16
  always rounds to nearest. float64 parameters keep float64 state and arithmetic.
* ``track_stats``: keep per-tensor statistics of the last step for `step_stats()`.

``implementation``: every path computes the one update math of `adafactor.reference`.
``"auto"`` (default) steps CPU tensors with the fused kernel (`adafactor.fused_cpu`: one
C++/OpenMP call per group, two passes over each tensor, bitwise the same for any thread count) and
every other tensor with the reference math; a CPU tensor the kernel cannot take (a view, a
channels_last weight, an empty or float64 tensor) takes the reference math alone, with one warning
that names it. ``"fused_cpu"`` is the same, and also warns for tensors on other devices.
``"triton"`` steps each tensor with the Triton kernels of `adafactor.triton_step` (CUDA
tensors, or any tensor under TRITON_INTERPRET=1), the rest with the reference math and one
warning; ``"auto"`` uses them for CUDA tensors when triton imports.
``"reference"`` uses the reference math for every tensor; under torch.compile every path traces
it. bf16 stochastic rounding draws its noise from a counter hash of (the parameter's
``rounding_key`` in the state, the step, the element index): the same bits on every path and
device, independent of threads, and different for every parameter, step and optimizer
(`adafactor.rounding`).

DTensor parameters (FSDP2, tensor parallelism) are stepped by `adafactor.distributed` on their
local shards, factored by the global shape, with a few bucketed all-reduces.

Every parameter is checked (`_validate_step`) before any state or parameter changes, so a step
that raises leaves the optimizer as it was; `load_state_dict` keeps the statistics fp32.

Non-finite policy (every path): G^2 saturates at the dtype's maximum and statistics are summed
in float64, so gradients up to the fp32 range give finite updates. NaN/inf
gradients are not skipped (the update becomes non-finite); skip such steps with a loss scaler
(torch.amp.GradScaler does not call step() for them).

step() never synchronises with a device: the step count is a 0-dim float32 CPU tensor in the state
(as in torch.optim), read on the host by the eager paths and a graph input under torch.compile;
lr may be a float or a tensor.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from ._common import (
    FactorMode,
    GroupHyper,
    StepScalars,
    TensorStats,
    check_dense_float_parameter,
    check_hyperparameter,
    factor_mode,
    is_real,
    state_shapes,
)
from .distributed import (
    check_dtensor_parameter,
    dtensor_update,
    init_dtensor_state,
    is_dtensor,
    shared_key_base,
)
from .fused_cpu import fused_update, why_not_fused
from .reference import compute_dtype, reference_update
from .rounding import new_key_base
from .schedules import relative_step_size, second_moment_decay, step_scalars_in_graph
from .triton_step import triton_update, why_not_triton

IMPLEMENTATIONS = ("auto", "fused_cpu", "reference", "triton")
# Parameter dtypes whose values fp32 arithmetic represents (float8 has no arithmetic to write back).
_SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
_STATISTICS = ("exp_avg_sq_row", "exp_avg_sq_col", "exp_avg_sq", "exp_avg")


def _check(name: str, value: Any, ok: bool, expected: str) -> None:
    check_hyperparameter("Adafactor", name, value, ok, expected)


def validate_group(group: Mapping[str, Any]) -> None:
    """Raise ValueError naming the first invalid hyperparameter of a parameter group."""
    lr = group["lr"]
    if isinstance(lr, torch.Tensor):  # as in torch.optim: a tensor lr never recompiles
        ok = lr.numel() == 1 and lr.is_floating_point() and bool(torch.isfinite(lr) & (lr >= 0))
        _check("lr", lr, ok, "a one-element float tensor >= 0")
    else:
        _check("lr", lr, lr is None or (is_real(lr) and lr >= 0), "None (relative step) or >= 0")
    b1 = group["beta1"]
    _check("beta1", b1, b1 is None or (is_real(b1) and 0 <= b1 < 1), "None or 0 <= beta1 < 1")
    b2 = group["beta2"]
    _check("beta2", b2, b2 is None or (is_real(b2) and 0 <= b2 < 1), "None or 0 <= beta2 < 1")
    k = group["decay_scale"]
    _check("decay_scale", k, is_real(k) and k >= 1,
           "a finite number >= 1 (beta2hat_t = max(0, 1 - k t^-c), 0 at t = 1)")
    if k != 1 and b2 is not None:
        raise ValueError(f"Adafactor: invalid decay_scale={k!r}: it scales 1 - t^-c, which "
                         f"applies only with beta2=None, got beta2={b2!r}")
    c = group["decay_exponent"]
    _check(
        "decay_exponent",
        c,
        is_real(c) and 0 < c <= 1,
        "0 < c <= 1 (beta2hat_t = 1 - t^-c; past gradients fade out only for c <= 1)",
    )
    d = group["clip_threshold"]
    _check("clip_threshold", d, d is None or (is_real(d) and d > 0), "None or > 0")
    f = group["factored"]
    ok = f is True or f is False or f in ("row", "col")
    _check("factored", f, ok, 'True, False, "row" or "col"')
    for flag in ("scale_parameter", "warmup_init", "stochastic_rounding", "track_stats"):
        _check(flag, group[flag], isinstance(group[flag], bool), "a bool")
    if group["warmup_init"] and lr is not None:
        raise ValueError(
            "Adafactor: invalid warmup_init=True: it applies only to the relative step "
            f"(lr=None), got lr={lr!r}"
        )
    eps = group["eps"]
    _check(
        "eps",
        eps,
        isinstance(eps, (tuple, list))
        and len(eps) == 2
        and all(is_real(e) and e >= 0 for e in eps),
        "a pair (eps1, eps2) of finite numbers >= 0",
    )
    wd = group["weight_decay"]
    _check("weight_decay", wd, is_real(wd) and wd >= 0, "a finite number >= 0")
    md = group["min_dim_size_to_factor"]
    _check(
        "min_dim_size_to_factor",
        md,
        md is None or (isinstance(md, int) and not isinstance(md, bool) and md >= 1),
        "None or an int >= 1",
    )
    impl = group["implementation"]
    _check("implementation", impl, impl in IMPLEMENTATIONS, f"one of {IMPLEMENTATIONS}")


class Adafactor(torch.optim.Optimizer):
    """Adafactor with the paper's ablation switches; see the module docstring for every option."""

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float | None = None,
        *,
        beta1: float | None = None,
        beta2: float | None = None,
        decay_exponent: float = 0.8,
        decay_scale: float = 1.0,
        clip_threshold: float | None = 1.0,
        factored: bool | str = True,
        scale_parameter: bool = True,
        warmup_init: bool = False,
        eps: tuple[float, float] = (1e-30, 1e-3),
        weight_decay: float = 0.0,
        min_dim_size_to_factor: int | None = None,
        track_stats: bool = False,
        stochastic_rounding: bool = True,
        implementation: str = "auto",
    ) -> None:
        defaults = dict(
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            decay_exponent=decay_exponent,
            decay_scale=decay_scale,
            clip_threshold=clip_threshold,
            factored=factored,
            scale_parameter=scale_parameter,
            warmup_init=warmup_init,
            eps=tuple(eps) if isinstance(eps, list) else eps,
            weight_decay=weight_decay,
            min_dim_size_to_factor=min_dim_size_to_factor,
            stochastic_rounding=stochastic_rounding,
            implementation=implementation,
            track_stats=track_stats,
        )
        validate_group(defaults)
        self._rounding_key_base = new_key_base()
        self._key_base_shared = False  # DTensor keys: rank 0's base, broadcast at the first step
        self._reset_last_step()
        super().__init__(params, defaults)

    def _reset_last_step(self) -> None:
        self._last_stats: list[TensorStats] = []
        self._last_scalars: list[StepScalars] = []
        self._last_params: list[torch.Tensor] = []  # the tensors of _last_stats, in order
        self._warned: set[int] = set()  # tensors already named by the fallback warning
        self._thresholds: tuple[tuple[int, ...], torch.Tensor] | None = None  # last_update_rms

    def __getstate__(self) -> dict[str, Any]:
        """torch's state plus the rounding keys' base: a deepcopy or an unpickled optimizer
        steps on, drawing the noise the original would (the last step's stats are not kept)."""
        return {**super().__getstate__(), "_rounding_key_base": self._rounding_key_base,
                "_key_base_shared": self._key_base_shared}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._reset_last_step()

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        validate_group(self.param_groups[-1])

    # ----------------------------------------------------------------------------------------
    def _mode(self, p: torch.Tensor, group: Mapping[str, Any]) -> FactorMode:
        return factor_mode(p.shape, group["factored"], group["min_dim_size_to_factor"])

    def _init_state(self, p: torch.Tensor, group: Mapping[str, Any], state: dict) -> None:
        if is_dtensor(p):
            if not self._key_base_shared:
                self._rounding_key_base = shared_key_base(self._rounding_key_base,
                                                          p.to_local().device)
                self._key_base_shared = True
            state.update(init_dtensor_state(p, self._mode(p, group), group["beta1"] or None))
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["rounding_key"] = self._rounding_key_base + len(self.state)
            return
        # A 0-dim float32 CPU tensor, as in torch.optim: under torch.compile it is a graph input,
        # so the step count never recompiles; the eager paths read it on the host (no device sync).
        state["step"] = torch.zeros((), dtype=torch.float32)
        # Keys the counter-based bf16 rounding noise (adafactor.rounding): distinct per parameter
        # and optimizer, kept in the state so that a resumed run draws the same noise.
        state["rounding_key"] = self._rounding_key_base + len(self.state)
        dtype = compute_dtype(p)
        for key, shape in state_shapes(p.shape, self._mode(p, group)).items():
            state[key] = torch.zeros(shape, dtype=dtype, device=p.device)
        if group["beta1"]:
            state["exp_avg"] = torch.zeros(p.shape, dtype=dtype, device=p.device)

    def _group_scalars(self, states: list[dict], group: Mapping[str, Any]) -> list[StepScalars]:
        """Each tensor's scalars, computed once per distinct step count of the group."""
        if torch.compiler.is_compiling():
            return [self._scalars(s["step"], group) for s in states]
        cache: dict[float, StepScalars] = {}
        out = []
        for s in states:
            t = s["step"].item()  # a CPU tensor: no device sync
            if t not in cache:
                cache[t] = self._scalars(s["step"], group)
            out.append(cache[t])
        return out

    @staticmethod
    def _scalars(step: torch.Tensor, group: Mapping[str, Any]) -> StepScalars:
        lr = group["lr"]
        if torch.compiler.is_compiling():  # tensors: no guard on t or lr, so no recompiles
            rho_t, b_t = step_scalars_in_graph(
                step, lr, group["warmup_init"], group["beta2"], group["decay_exponent"],
                group.get("decay_scale", 1.0),
            )
            return StepScalars(rho=rho_t, beta2hat=b_t)
        t = int(step.item())  # a CPU tensor: no device sync
        rho = relative_step_size(t, group["warmup_init"]) if lr is None else float(lr)
        beta2hat = second_moment_decay(t, group["beta2"], group["decay_exponent"],
                                       group.get("decay_scale", 1.0))
        return StepScalars(rho=rho, beta2hat=beta2hat)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        all_stats: list[TensorStats] = []
        all_scalars: list[StepScalars] = []
        self._validate_step()  # every parameter first: a bad one leaves all state untouched
        all_params: list[torch.Tensor] = []
        stepped = False
        for group in self.param_groups:
            eps1, eps2 = group["eps"]
            hp = GroupHyper(
                beta1=group["beta1"] or None,
                eps1=float(eps1),
                eps2=float(eps2),
                clip_threshold=group["clip_threshold"],
                scale_parameter=group["scale_parameter"],
                weight_decay=float(group["weight_decay"]),
                stochastic_rounding=group["stochastic_rounding"],
            )
            params, grads, states, modes, scalars = [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    self._init_state(p, group, state)
                if not isinstance(state["step"], torch.Tensor):  # a state_dict with an int step
                    state["step"] = torch.tensor(float(state["step"]), dtype=torch.float32)
                params.append(p)
                grads.append(p.grad)
                states.append(state)
                modes.append(self._mode(p, group))
            if not params:
                continue
            stepped = True
            torch._foreach_add_([s["step"] for s in states], 1.0)  # one op for all counters
            scalars = self._group_scalars(states, group)
            stats = self._update_group(group, params, grads, states, modes, scalars, hp)
            if group["track_stats"]:
                all_stats.extend(stats)
                all_scalars.extend(scalars)
                all_params.extend(params)
        if stepped:  # a step without gradients (e.g. a skipped batch) keeps the last stats
            self._last_stats, self._last_scalars = all_stats, all_scalars
            self._last_params = all_params
        return loss

    def _update_group(
        self,
        group: Mapping[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        states: list[dict],
        modes: list[FactorMode],
        scalars: list[StepScalars],
        hp: GroupHyper,
    ) -> list[TensorStats]:
        """Dispatch one group's tensors: DTensors to `adafactor.distributed`, the rest to the
        plain-tensor paths (stats come back in the order of `params`)."""
        dist_idx = [i for i, p in enumerate(params) if is_dtensor(p)]
        local_idx = [i for i, p in enumerate(params) if not is_dtensor(p)]
        out: list[TensorStats | None] = [None] * len(params)
        if dist_idx:
            pick = [[seq[i] for i in dist_idx] for seq in (params, grads, states, modes, scalars)]
            for i, st in zip(
                dist_idx, dtensor_update(*pick, hp, need_rms=group["track_stats"]), strict=True
            ):
                out[i] = st
        if local_idx:
            pl, gl, sl, ml, cl = [[seq[i] for i in local_idx]
                                  for seq in (params, grads, states, modes, scalars)]
            stats = self._update_local(group, pl, gl, sl, ml, cl, hp)
            for i, st in zip(local_idx, stats, strict=True):
                out[i] = st
        return [st for st in out if st is not None]

    def _update_local(
        self,
        group: Mapping[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        states: list[dict],
        modes: list[FactorMode],
        scalars: list[StepScalars],
        hp: GroupHyper,
    ) -> list[TensorStats | None]:
        """Plain tensors: the fused CPU kernel for those it takes ("auto", "fused_cpu"), the
        reference math for the rest (and for all under "reference" or torch.compile). Stats come
        back in the order of `params` (None for fused tensors unless track_stats asks)."""
        impl = group["implementation"]
        need_rms = group["track_stats"] or hp.clip_threshold is not None
        fused: list[int] = []
        if impl in ("auto", "fused_cpu") and not torch.compiler.is_compiling():
            for i, (p, g, s) in enumerate(zip(params, grads, states, strict=True)):
                reason = why_not_fused(p, g, s)
                if reason is None:
                    fused.append(i)
                elif (p.device.type == "cpu" or impl == "fused_cpu") and id(p) not in self._warned:
                    self._warned.add(id(p))
                    warnings.warn(
                        f"Adafactor: {self._name(p)} (shape {tuple(p.shape)}) takes the "
                        f"reference path, not the fused CPU step: {reason}",
                        RuntimeWarning,
                        stacklevel=4,
                    )
        out: list[TensorStats | None] = [None] * len(params)
        fused = self._step_triton(impl, params, grads, states, modes, scalars, hp, fused, out)
        if fused:
            pick = [[seq[i] for i in fused] for seq in (params, grads, states, modes, scalars)]
            stats = fused_update(
                *pick, hp,
                steps=[int(states[i]["step"].item()) for i in fused],
                threads=torch.get_num_threads(),
                want_stats=group["track_stats"],  # else [] (nothing reads them)
            )
            if stats is None:  # the extension could not be built (warned once)
                fused = []
            for i, st in zip(fused, stats or [], strict=False):
                out[i] = st
        taken = set(fused) | {i for i, st in enumerate(out) if st is not None}
        for i, (p, g, s, m, sc) in enumerate(zip(params, grads, states, modes, scalars,
                                                 strict=True)):
            if i not in taken:
                out[i] = reference_update(p, g, s, m, sc, hp, need_rms)
        return out

    def _step_triton(
        self, impl: str, params: list[torch.Tensor], grads: list[torch.Tensor],
        states: list[dict], modes: list[FactorMode], scalars: list[StepScalars],
        hp: GroupHyper, fused: list[int], out: list[TensorStats | None],
    ) -> list[int]:
        """Step with the Triton kernels the tensors they take: under "triton" every one
        `why_not_triton` accepts (warning once for the rest), under "auto" CUDA tensors when
        triton is importable. Fills `out`; returns `fused` without the tensors it stepped."""
        if impl not in ("auto", "triton") or torch.compiler.is_compiling():
            return fused
        taken = set()
        for i, (p, g, s) in enumerate(zip(params, grads, states, strict=True)):
            if impl == "auto" and p.device.type != "cuda":
                continue
            reason = why_not_triton(p, g, s)
            if reason is None:
                out[i] = triton_update(p, g, s, modes[i], scalars[i], hp,
                                       int(s["step"].item()))
                taken.add(i)
            elif impl == "triton" and id(p) not in self._warned:
                self._warned.add(id(p))
                warnings.warn(
                    f"Adafactor: {self._name(p)} (shape {tuple(p.shape)}) takes the "
                    f"reference path, not the Triton step: {reason}",
                    RuntimeWarning,
                    stacklevel=5,
                )
        return [i for i in fused if i not in taken]

    def _name(self, p: torch.Tensor) -> str:
        for gi, group in enumerate(self.param_groups):
            for pi, q in enumerate(group["params"]):
                if q is p:
                    return f"param_groups[{gi}].params[{pi}]"
        return "a parameter"

    def _validate_step(self) -> None:
        """Check every parameter with a gradient before the step changes anything.

        Raises RuntimeError (sparse gradient, unsupported dtype) or ValueError (a gradient of
        another shape, an invalid lr, or a state kept under other settings: `factored`,
        `min_dim_size_to_factor` or `beta1` changed on a live optimizer), naming the parameter.
        """
        for gi, group in enumerate(self.param_groups):
            lr = group["lr"]
            if isinstance(lr, torch.Tensor) or torch.compiler.is_compiling():
                pass  # a tensor lr (or a traced float) is checked when the group is added
            elif lr is not None and (not is_real(lr) or lr < 0):  # an LR scheduler may set it
                raise ValueError(
                    f"Adafactor: invalid lr={lr!r} in param_groups[{gi}]; expected >= 0"
                )
            for pi, p in enumerate(group["params"]):
                if p.grad is not None:
                    self._validate_param(f"param_groups[{gi}].params[{pi}]", p, group)

    def _validate_param(self, name: str, p: torch.Tensor, group: Mapping[str, Any]) -> None:
        where = f"{name} (shape {tuple(p.shape)})"
        grad = p.grad
        if grad.is_sparse:
            raise RuntimeError(
                f"Adafactor does not support sparse gradients (got one for {where}); "
                "use a dense embedding (sparse=False)"
            )
        check_dense_float_parameter("Adafactor", p)
        if p.dtype not in _SUPPORTED_DTYPES:
            raise RuntimeError(
                f"Adafactor: {where} has dtype {p.dtype}; supported: "
                f"{', '.join(str(d) for d in _SUPPORTED_DTYPES)}"
            )
        if grad.is_complex() or not grad.is_floating_point():
            raise RuntimeError(f"Adafactor: the gradient of {where} has dtype {grad.dtype}")
        if grad.shape != p.shape:
            raise ValueError(
                f"Adafactor: the gradient of {where} has shape {tuple(grad.shape)}"
            )
        if is_dtensor(p):
            check_dtensor_parameter("Adafactor", where, p, grad)
        state = self.state.get(p)
        if not state:
            return
        expected = set(state_shapes(p.shape, self._mode(p, group)))
        kept = {k for k in ("exp_avg_sq_row", "exp_avg_sq_col", "exp_avg_sq") if k in state}
        if kept != expected:
            raise ValueError(
                f"Adafactor: {where} has second-moment state {sorted(kept)} but its settings "
                f"factored={group['factored']!r}, min_dim_size_to_factor="
                f"{group['min_dim_size_to_factor']!r} need {sorted(expected)}; `factored` and "
                "`min_dim_size_to_factor` cannot change on a live optimizer (start a new one)"
            )
        if bool(group["beta1"]) != ("exp_avg" in state):
            raise ValueError(
                f"Adafactor: {where} was stepped with "
                f"{'beta1' if 'exp_avg' in state else 'no beta1'} but its group now has "
                f"beta1={group['beta1']!r}; beta1 cannot be switched on or off on a live "
                "optimizer (start a new one)"
            )

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """torch's load_state_dict, except that the statistics stay fp32 copies whatever the
        parameter dtype (float64 for float64 parameters; torch would cast them to it: bf16
        statistics change the steps, fp16 ones overflow)."""
        saved_state = state_dict["state"]
        saved_ids = [pid for g in state_dict["param_groups"] for pid in g["params"]]
        super().load_state_dict(state_dict)
        params = [p for g in self.param_groups for p in g["params"]]
        for pid, p in zip(saved_ids, params, strict=True):
            saved = saved_state.get(pid)
            if not saved:
                continue
            for key in _STATISTICS:
                value = saved.get(key)
                if isinstance(value, torch.Tensor):
                    self.state[p][key] = value.to(
                        device=p.device, dtype=compute_dtype(p), copy=True
                    )

    # ----------------------------------------------------------------------------------------
    def step_stats(self) -> dict[str, float]:
        """Statistics of the last step over the tensors of groups with track_stats=True.

        Keys: step_size (mean alpha_t over tensors), rho (mean lr or rho_t), beta2hat (mean),
        update_rms (mean over tensors of RMS(U_t), the unscaled, unclipped update) and
        clipped_fraction (fraction of tensors with RMS(U_t) > d). Reads tensors back to the host.
        """
        if not any(g["track_stats"] for g in self.param_groups):
            raise RuntimeError("Adafactor.step_stats() needs track_stats=True")
        if not self._last_stats:
            raise RuntimeError("Adafactor.step_stats(): no step with gradients has been taken yet")
        stats, scalars = self._last_stats, self._last_scalars
        k = len(stats)
        step_size = torch.stack([s.step_size.float() for s in stats]).mean()
        update_rms = torch.stack([s.update_rms.float() for s in stats]).mean()
        clipped = torch.stack([s.clipped.float() for s in stats]).mean()
        return {
            "step_size": float(step_size),
            "rho": sum(float(s.rho) for s in scalars) / k,  # tensors after a compiled step
            "beta2hat": sum(float(s.beta2hat) for s in scalars) / k,
            "update_rms": float(update_rms),
            "clipped_fraction": float(clipped),
        }

    def last_update_rms(self) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """(parameters, RMS(U_t) of each, its clip threshold d or inf) for the last step's tensors
        in groups with track_stats=True, as float32 tensors on the device: no read-back, so a
        caller may average them over every step without a device sync."""
        if not self._last_stats:
            raise RuntimeError("Adafactor.last_update_rms(): no step with gradients and "
                               "track_stats=True has been taken yet")
        values = torch.stack([s.update_rms.float() for s in self._last_stats])
        key = tuple(id(p) for p in self._last_params)
        cached = self._thresholds
        if cached is None or cached[0] != key or cached[1].device != values.device:
            d = {id(p): g["clip_threshold"] for g in self.param_groups for p in g["params"]}
            limits = [math.inf if d[i] is None else float(d[i]) for i in key]
            self._thresholds = (key, torch.tensor(limits, device=values.device))
        return list(self._last_params), values, self._thresholds[1]

    def update_rms_by_tensor(self) -> list[tuple[torch.Tensor, float]]:
        """(parameter, RMS(U_t) of its unscaled, unclipped update) for each tensor of the last
        step in groups with track_stats=True (Figure 1 plots one weight matrix's). Reads the
        values back to the host."""
        if not self._last_stats:
            raise RuntimeError("Adafactor.update_rms_by_tensor(): no step with gradients and "
                               "track_stats=True has been taken yet")
        values = torch.stack([s.update_rms.float() for s in self._last_stats]).tolist()
        return list(zip(self._last_params, values, strict=True))

    def factoring_report(
        self, names: Mapping[torch.Tensor, str] | None = None
    ) -> list[dict[str, Any]]:
        """One row per parameter: name, shape, how its second moment is kept (mode "both" =
        factored, "row"/"col" = one factor, "none" = full), factored (bool) and the number of
        fp32 state floats it keeps (second moment plus momentum). `names` maps parameters to
        names, e.g. {p: n for n, p in model.named_parameters()}."""
        lookup = {id(p): n for p, n in names.items()} if names is not None else {}
        report = []
        for gi, group in enumerate(self.param_groups):
            for pi, p in enumerate(group["params"]):
                mode = self._mode(p, group)
                floats = sum(math.prod(s) for s in state_shapes(p.shape, mode).values())
                if group["beta1"]:
                    floats += p.numel()
                report.append(
                    {
                        "name": lookup.get(id(p), f"group{gi}.param{pi}"),
                        "shape": tuple(p.shape),
                        "mode": mode,
                        "factored": mode != "none",
                        "state_floats": floats,
                    }
                )
        return report
