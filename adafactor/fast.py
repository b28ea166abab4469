"""The fast Adafactor update: the arithmetic of `adafactor.reference` with fewer memory passes.

Where the time goes on a CPU is memory traffic over the big matrices, so this path is organised to
read each gradient twice and each parameter twice per step, in row chunks small enough to stay in
cache, and never allocates a temporary larger than one chunk:

* RMS(X_{t-1}) from per-chunk norms (one read of the parameters);
* pass A over a matrix's row chunks (one read of G): G^2 goes into a cache-resident scratch chunk,
  from which the row means, the column sums and, with one BLAS call, sum_i G_ij^2 / R_i are taken.
  Because V_hat = R C / mean(R) is an outer product, RMS(U)^2 = mean(R) / (n m) * sum_j
  (sum_i G_ij^2 / R_i) / C_j, so the clipping factor is known before any update is formed;
* pass B over the row chunks (one more read of G, one read and one write of X): X += G * a_i * b_j
  with a = -alpha clip sqrt(mean R) / sqrt(R) and b = 1 / sqrt(C), two fused in-place ops.

Vectors, scalars and other small unfactored tensors are updated together with `torch._foreach_*`
ops. On CPU, big tensors are shared between worker threads whose ops run single-threaded (see
`fast_update`). All statistics and arithmetic are fp32; nothing here reads a value back to the
host.
"""

from __future__ import annotations

import ctypes
import math
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from ._common import FactorMode, GroupHyper, StepScalars, TensorStats
from .reference import reference_update
from .rounding import step_seeds, write_back_

# Floats per chunk (512 KiB): a chunk of G and the scratch chunk stay in L2 between passes.
DEFAULT_CHUNK_NUMEL = 1 << 17
_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOL_LOCK = threading.Lock()


@dataclass
class _Item:
    param: torch.Tensor
    grad: torch.Tensor
    state: dict
    mode: FactorMode
    scalars: StepScalars
    alpha: torch.Tensor | None = None
    generator: torch.Generator | None = None  # stochastic rounding noise of this tensor


def _fp32(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype == torch.float32 else t.float()


def _as_matrices(t: torch.Tensor) -> list[torch.Tensor]:
    """The (n, m) matrices of a rank >= 2 tensor (leading dims kept as a batch); views."""
    return list(t.reshape(-1, t.shape[-2], t.shape[-1]).unbind(0))


def _batch_rows(t: torch.Tensor) -> list[torch.Tensor]:
    """Per-matrix slices of a row or column statistic of shape lead + (k,); views."""
    return list(t.reshape(-1, t.shape[-1]).unbind(0))


class _Scratch:
    """One reusable fp32 buffer, handed out as views of the requested shape."""

    def __init__(self, numel: int, device: torch.device) -> None:
        self.buffer = torch.empty(numel, dtype=torch.float32, device=device)

    def view(self, *shape: int) -> torch.Tensor:
        numel = 1
        for s in shape:
            numel *= s
        if numel > self.buffer.numel():
            self.buffer = torch.empty(numel, dtype=torch.float32, device=self.buffer.device)
        return self.buffer[:numel].view(*shape)


def _clip_and_coef(
    sum_u2: torch.Tensor, numel: int, alpha: torch.Tensor, hp: GroupHyper
) -> tuple[torch.Tensor, torch.Tensor]:
    """RMS(U) from sum(U^2), and the signed coefficient -alpha / max(1, RMS(U)/d)."""
    update_rms = torch.sqrt(sum_u2 / numel)
    if hp.clip_threshold is None:
        return update_rms, -alpha
    return update_rms, -alpha / torch.clamp(update_rms / hp.clip_threshold, min=1.0)


def _apply_to_chunk(
    x_chunk: torch.Tensor,
    step_chunk: torch.Tensor,
    momentum_chunk: torch.Tensor | None,
    hp: GroupHyper,
    decay: float,
    generator: torch.Generator | None,
) -> None:
    """x_chunk += step_chunk (which is -alpha U_hat), through momentum if enabled, in fp32."""
    x32 = _fp32(x_chunk)
    if decay != 1.0:
        x32.mul_(decay)
    if momentum_chunk is None:
        x32.add_(step_chunk)
    else:
        # m = beta1 m + (1 - beta1) alpha U_hat;  X -= m.
        momentum_chunk.mul_(hp.beta1).sub_(step_chunk, alpha=1 - hp.beta1)
        x32.sub_(momentum_chunk)
    write_back_(x_chunk, x32, hp.stochastic_rounding, generator)


def _chunked_step_size(item: _Item, hp: GroupHyper, chunk_numel: int) -> None:
    """alpha_t = rho_t max(eps2, RMS(X_{t-1})) from per-chunk norms (each op stays small, so it
    runs on the calling thread without an OpenMP fork)."""
    x = item.param.detach().view(-1)
    if not hp.scale_parameter:
        item.alpha = torch.full((), item.scalars.rho, dtype=torch.float32, device=x.device)
        return
    norms = [
        torch.linalg.vector_norm(x[i : i + chunk_numel], dtype=torch.float32)
        for i in range(0, x.numel(), chunk_numel)
    ]
    param_rms = torch.linalg.vector_norm(torch.stack(norms)) / math.sqrt(x.numel())
    item.alpha = torch.clamp(param_rms, min=hp.eps2) * item.scalars.rho


def _factored_update(
    item: _Item, hp: GroupHyper, scratch: _Scratch, chunk_numel: int, need_rms: bool
) -> TensorStats:
    x, g, state, mode = item.param.detach(), item.grad.detach(), item.state, item.mode
    b = item.scalars.beta2hat
    n, m = x.shape[-2], x.shape[-1]
    rows_per_chunk = max(1, chunk_numel // m)
    xs, gs = _as_matrices(x), _as_matrices(g)
    rows = _batch_rows(state["exp_avg_sq_row"]) if mode in ("both", "row") else [None] * len(xs)
    cols = _batch_rows(state["exp_avg_sq_col"]) if mode in ("both", "col") else [None] * len(xs)
    momenta = _as_matrices(state["exp_avg"]) if hp.beta1 else [None] * len(xs)
    f32 = {"dtype": torch.float32, "device": x.device}
    sum_u2 = torch.zeros((), **f32)
    inv_m = torch.full((m,), 1.0 / m, **f32)
    row_target = torch.empty((n,), **f32)  # mean_j(G_ij^2 + eps1) of the current matrix
    col_acc = torch.empty((m, 2), **f32)  # [sum_i G_ij^2, sum_i G_ij^2 / R_i]
    weights = torch.empty((2, rows_per_chunk), **f32)  # [1, 1 / R_i] for one chunk
    weights[0].fill_(1.0)
    row_scales: list[torch.Tensor] = []

    # Pass A: statistics (one read of G).
    for g_mat, r, c in zip(gs, rows, cols, strict=True):
        col_acc.zero_()
        row_target.fill_(hp.eps1)
        for i in range(0, n, rows_per_chunk):
            j = min(n, i + rows_per_chunk)
            g_chunk = _fp32(g_mat[i:j])
            sq = torch.mul(g_chunk, g_chunk, out=scratch.view(j - i, m))
            if r is None:  # "col": column sums only
                col_acc[:, 0].add_(sq.sum(dim=0))
                continue
            target = row_target[i:j].addmv_(sq, inv_m)
            # Alg. 4 line 5, as means: R = b R + (1 - b) mean_j(G^2 + eps1)
            r_chunk = r[i:j].lerp_(target, 1 - b)
            if mode == "both":
                w = weights[:, : j - i]
                torch.reciprocal(r_chunk, out=w[1])
                col_acc.addmm_(sq.t(), w.t())  # one BLAS call for both column statistics
            elif need_rms:  # "row": sum_ij G_ij^2 / R_i
                sum_u2 = sum_u2 + m * torch.dot(target - hp.eps1, r_chunk.reciprocal())
        if c is not None:
            # Alg. 4 line 6, as means: C = b C + (1 - b) mean_i(G^2 + eps1)
            c.lerp_(col_acc[:, 0] / n + hp.eps1, 1 - b)
        if mode == "both":
            # RMS(U)^2 numel = sum_ij G_ij^2 mean(R) / (R_i C_j)
            mean_r = r.mean()
            row_scales.append(mean_r.sqrt())
            if need_rms:
                sum_u2 = sum_u2 + mean_r * torch.dot(col_acc[:, 1], c.reciprocal())
        elif mode == "col" and need_rms:
            sum_u2 = sum_u2 + torch.dot(col_acc[:, 0], c.reciprocal())

    update_rms, coef = _clip_and_coef(sum_u2, x.numel(), item.alpha, hp)
    decay = 1.0 - item.scalars.rho * hp.weight_decay
    plain = hp.beta1 is None and decay == 1.0 and x.dtype == torch.float32

    # Pass B: X += G * row_coef_i * col_coef_j (one more read of G, one read/write of X), with
    # row_coef = -alpha clip sqrt(mean R) / sqrt(R) and col_coef = 1 / sqrt(C).
    for k, (x_mat, g_mat, r, c, mom) in enumerate(zip(xs, gs, rows, cols, momenta, strict=True)):
        if mode == "both":
            row_coef, col_coef = (coef * row_scales[k]) * r.rsqrt(), c.rsqrt()
        elif mode == "row":
            row_coef, col_coef = coef * r.rsqrt(), None
        else:
            row_coef, col_coef = None, coef * c.rsqrt()
        if row_coef is not None:
            row_coef = row_coef.unsqueeze(1)
        for i in range(0, n, rows_per_chunk):
            j = min(n, i + rows_per_chunk)
            g_chunk = _fp32(g_mat[i:j])
            out = scratch.view(j - i, m)
            if plain and mode == "both":
                x_mat[i:j].addcmul_(torch.mul(g_chunk, row_coef[i:j], out=out), col_coef)
                continue
            if plain:
                x_mat[i:j].addcmul_(g_chunk, row_coef[i:j] if col_coef is None else col_coef)
                continue
            if row_coef is not None and col_coef is not None:
                step = torch.mul(g_chunk, row_coef[i:j], out=out).mul_(col_coef)
            elif row_coef is not None:
                step = torch.mul(g_chunk, row_coef[i:j], out=out)
            else:
                step = torch.mul(g_chunk, col_coef, out=out)
            momentum = None if mom is None else mom[i:j]
            _apply_to_chunk(x_mat[i:j], step, momentum, hp, decay, item.generator)

    return _stats(item.alpha, update_rms, hp)


def _stats(alpha: torch.Tensor, update_rms: torch.Tensor, hp: GroupHyper) -> TensorStats:
    if hp.clip_threshold is None:
        clipped = torch.zeros((), dtype=torch.bool, device=alpha.device)
    else:
        clipped = update_rms > hp.clip_threshold
    return TensorStats(step_size=alpha, update_rms=update_rms, clipped=clipped)


def _unfactored_chunked_update(
    item: _Item, hp: GroupHyper, scratch: _Scratch, chunk_numel: int, need_rms: bool
) -> TensorStats:
    """A large tensor with a full second moment (Alg. 5 applied elementwise), in flat chunks."""
    x, g = item.param.detach().view(-1), item.grad.detach().view(-1)
    v = item.state["exp_avg_sq"].view(-1)
    mom = item.state["exp_avg"].view(-1) if hp.beta1 else None
    b = item.scalars.beta2hat
    sum_u2 = x.new_zeros((), dtype=torch.float32)
    bounds = [(i, min(x.numel(), i + chunk_numel)) for i in range(0, x.numel(), chunk_numel)]
    for i, j in bounds:
        g_chunk = _fp32(g[i:j])
        # V = b V + (1 - b)(G^2 + eps1)   (Alg. 5 line 5)
        v_chunk = v[i:j].mul_(b).addcmul_(g_chunk, g_chunk, value=1 - b).add_((1 - b) * hp.eps1)
        if need_rms:
            u = torch.div(g_chunk, v_chunk.sqrt(), out=scratch.view(j - i))
            sum_u2 = sum_u2 + torch.dot(u, u)
    update_rms, coef = _clip_and_coef(sum_u2, x.numel(), item.alpha, hp)
    decay = 1.0 - item.scalars.rho * hp.weight_decay
    for i, j in bounds:
        u = torch.sqrt(v[i:j], out=scratch.view(j - i))
        torch.div(_fp32(g[i:j]), u, out=u).mul_(coef)
        momentum = None if mom is None else mom[i:j]
        _apply_to_chunk(x[i:j], u, momentum, hp, decay, item.generator)
    return _stats(item.alpha, update_rms, hp)


def _unfactored_foreach_update(items: list[_Item], hp: GroupHyper) -> list[TensorStats]:
    """Many small tensors with a full second moment (Alg. 5), with multi-tensor ops."""
    xs = [it.param.detach() for it in items]
    xs32 = [_fp32(x) for x in xs]
    gs = [_fp32(it.grad.detach()) for it in items]
    vs = [it.state["exp_avg_sq"] for it in items]
    bs = [it.scalars.beta2hat for it in items]
    torch._foreach_mul_(vs, bs)
    torch._foreach_addcmul_(vs, gs, gs, [1 - b for b in bs])
    torch._foreach_add_(vs, [(1 - b) * hp.eps1 for b in bs])
    us = torch._foreach_div(gs, torch._foreach_sqrt(vs))
    inv_sqrt_numel = [x.numel() ** -0.5 for x in xs]
    update_rms = torch.stack(torch._foreach_mul(torch._foreach_norm(us), inv_sqrt_numel))
    alpha = torch.stack([it.alpha for it in items])
    coef = -alpha
    if hp.clip_threshold is not None:
        coef = coef / torch.clamp(update_rms / hp.clip_threshold, min=1.0)
    torch._foreach_mul_(us, list(coef.unbind(0)))
    if hp.weight_decay:
        torch._foreach_mul_(xs32, [1 - it.scalars.rho * hp.weight_decay for it in items])
    if hp.beta1:
        ms = [it.state["exp_avg"] for it in items]
        torch._foreach_mul_(ms, hp.beta1)
        torch._foreach_add_(ms, us, alpha=-(1 - hp.beta1))
        torch._foreach_sub_(xs32, ms)
    else:
        torch._foreach_add_(xs32, us)
    for it, x, x32 in zip(items, xs, xs32, strict=True):
        write_back_(x, x32, hp.stochastic_rounding, it.generator)
    return [_stats(a, r, hp) for a, r in zip(alpha.unbind(0), update_rms.unbind(0), strict=True)]


def _step_sizes(items: Sequence[_Item], hp: GroupHyper) -> None:
    """alpha_t for every tensor: rho_t, times max(eps2, RMS(X_{t-1})) with parameter scale.
    Host scalars enter as kernel arguments (no host-to-device copies)."""
    if not hp.scale_parameter:
        for it in items:
            it.alpha = torch.full((), it.scalars.rho, dtype=torch.float32, device=it.param.device)
        return
    norms = torch._foreach_norm([it.param.detach() for it in items], 2, dtype=torch.float32)
    param_rms = torch._foreach_mul(norms, [it.param.numel() ** -0.5 for it in items])
    torch._foreach_clamp_min_(param_rms, hp.eps2)
    torch._foreach_mul_(param_rms, [it.scalars.rho for it in items])
    for it, alpha in zip(items, param_rms, strict=True):
        it.alpha = alpha


def _limit_openmp_to_one_thread() -> None:
    """Worker initializer: make ATen ops on this thread run single-threaded.

    OpenMP's thread count is a per-thread setting; torch.set_num_threads would also change the
    process-wide count (and MKL's), so the libgomp that torch loaded is called directly. After
    torch's lazy per-thread initialisation (get_num_threads) so that it does not undo this.
    Without libgomp (other platforms) this does nothing: results are the same, ops may fork.
    """
    torch.get_num_threads()
    try:
        with open("/proc/self/maps") as maps:
            paths = [line.split()[-1] for line in maps if "libgomp" in line]
        if paths:
            ctypes.CDLL(paths[0]).omp_set_num_threads(1)
    except OSError:
        pass


def _worker_pool(workers: int) -> ThreadPoolExecutor:
    with _POOL_LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            pool = ThreadPoolExecutor(
                max_workers=workers,
                thread_name_prefix="adafactor",
                initializer=_limit_openmp_to_one_thread,
            )
            _POOLS[workers] = pool
        return pool


def _update_small(
    small: list[tuple[int, _Item]], hp: GroupHyper, results: list[TensorStats | None]
) -> None:
    items = [it for _, it in small]
    _step_sizes(items, hp)
    for (k, _), st in zip(small, _unfactored_foreach_update(items, hp), strict=True):
        results[k] = st


def _partition(items: list[tuple[int, _Item]], bins: int) -> list[list]:
    """Greedy split of the big tensors into `bins` lists of similar total size (largest first)."""
    loads = [0] * bins
    out: list[list[tuple[int, _Item]]] = [[] for _ in range(bins)]
    for k, it in sorted(items, key=lambda kv: -kv[1].param.numel()):
        b = loads.index(min(loads))
        out[b].append((k, it))
        loads[b] += it.param.numel()
    return out


def _update_big(
    work: list[tuple[int, _Item]], hp: GroupHyper, chunk_numel: int, need_rms: bool
) -> list[tuple[int, TensorStats]]:
    if not work:
        return []
    scratch = _Scratch(chunk_numel, work[0][1].param.device)
    done = []
    for k, it in work:
        _chunked_step_size(it, hp, chunk_numel)
        if it.mode != "none":
            done.append((k, _factored_update(it, hp, scratch, chunk_numel, need_rms)))
        else:
            done.append((k, _unfactored_chunked_update(it, hp, scratch, chunk_numel, need_rms)))
    return done


def _rounding_generator(p: torch.Tensor, state: dict, hp: GroupHyper):
    """A CPU bf16 tensor's rounding noise comes from its own generator, seeded from its rounding
    key and the step (adafactor.rounding.step_seeds), so results do not depend on thread
    scheduling and differ between parameters, steps and optimizers."""
    if not (hp.stochastic_rounding and p.dtype == torch.bfloat16 and p.device.type == "cpu"):
        return None
    s0, s1 = step_seeds(state["rounding_key"], int(state["step"].item()))
    return torch.Generator(device="cpu").manual_seed((s1 << 32) | s0)


def fast_update(
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    states: Sequence[dict],
    modes: Sequence[FactorMode],
    scalars: Sequence[StepScalars],
    hp: GroupHyper,
    *,
    need_rms: bool,
    chunk_numel: int = DEFAULT_CHUNK_NUMEL,
    threads: int = 1,
) -> list[TensorStats]:
    """Update every tensor of one parameter group; returns stats in the order given.

    On CPU with threads > 1 the big tensors are split (whole tensors, balanced by size) between
    `threads` worker threads whose ATen ops run single-threaded, while the calling thread does the
    small tensors. Each worker streams its own chunks without OpenMP fork/join barriers (which
    stall badly when other processes share the cores); torch releases the GIL inside ops, so the
    workers overlap.
    """
    results: list[TensorStats | None] = [None] * len(params)
    by_device: dict[torch.device, list[tuple[int, _Item]]] = {}
    for k, (p, g, s, mode, sc) in enumerate(
        zip(params, grads, states, modes, scalars, strict=True)
    ):
        if p.numel() == 0 or not (p.is_contiguous() and g.is_contiguous()):
            results[k] = reference_update(p, g, s, mode, sc, hp)
            continue
        item = _Item(p, g, s, mode, sc, generator=_rounding_generator(p, s, hp))
        by_device.setdefault(p.device, []).append((k, item))

    for device, indexed in by_device.items():
        is_small = [it.mode == "none" and it.param.numel() <= chunk_numel for _, it in indexed]
        small = [kv for kv, s in zip(indexed, is_small, strict=True) if s]
        big = [kv for kv, s in zip(indexed, is_small, strict=True) if not s]
        workers = min(threads, len(big)) if device.type == "cpu" else 1
        # Accelerators: the cache-sized chunks only add kernel launches there.
        chunk = chunk_numel if device.type == "cpu" else max(chunk_numel, 1 << 24)
        if workers <= 1:
            if small:
                _update_small(small, hp, results)
            for k, st in _update_big(big, hp, chunk, need_rms):
                results[k] = st
            continue
        pool = _worker_pool(workers)
        futures = [
            pool.submit(_update_big, b, hp, chunk, need_rms)
            for b in _partition(big, workers)
        ]
        try:
            if small:
                _update_small(small, hp, results)
        finally:
            for future in futures:
                for k, st in future.result():
                    results[k] = st
    return [r for r in results if r is not None]
