"""The Adafactor step for DTensor parameters (FSDP2 `fully_shard`, tensor parallelism).

Adafactor factors by the *global* shape, but each rank holds only a shard. This module works on
the local shards with explicit all-reduces, and never gathers a full tensor:

* R (row means of G^2 + eps1) is local when the rows are sharded; a Shard on the last dim needs
  one all-reduce of the local rows' sums;
* C (column means) is one all-reduce of m floats when the rows are sharded;
* the scalars, sum X^2 (parameter scale), sum R (mean(R) of V_hat = R C / mean(R)) and sum U^2
  (clipping RMS), are all-reduced with the vectors.

Each tensor's step is a generator that yields the partial sums it needs reduced; `dtensor_update`
runs all tensors' generators in lock step and puts everything one phase asks for over one mesh
dimension into a single flat fp32 all-reduce. On a 1-D mesh (FSDP2) that is at most two
all-reduces per step for the whole model: (C sums, sum X^2), then (sum R, sum U^2).

The state is kept as DTensors with the placements the statistics have: a row statistic is sharded
like the rows, a column statistic is replicated over the mesh dims that shard the rows, and
nothing is ever Partial, so `torch.distributed.checkpoint` saves and reshards it.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.tensor import DeviceMesh, DTensor, Placement, Replicate, Shard

from ._common import FactorMode, GroupHyper, StepScalars, TensorStats
from .rounding import copy_keyed_rounded_, write_back_


@dataclass
class _Reduce:
    """A request: sum `tensor` (fp32, in place) over the process groups of `mesh_dims`."""

    tensor: torch.Tensor
    mesh_dims: tuple[int, ...]


_Step = Generator[list[_Reduce], None, TensorStats]


def is_dtensor(t: torch.Tensor) -> bool:
    """True for a torch.distributed.tensor.DTensor."""
    return isinstance(t, DTensor)


def check_dtensor_parameter(owner: str, name: str, p: DTensor, grad: torch.Tensor) -> None:
    """Raise ValueError unless p's placements are Shard/Replicate and its gradient matches it."""
    for placement in p.placements:
        if not isinstance(placement, (Shard, Replicate)):
            raise ValueError(
                f"{owner}: {name} has placement {placement}; only Shard and Replicate "
                "parameters are supported (a Partial parameter has no value to update)"
            )
    if not isinstance(grad, DTensor):
        raise ValueError(f"{owner}: {name} is a DTensor but its gradient is a plain tensor")
    if grad.device_mesh != p.device_mesh:
        raise ValueError(f"{owner}: the gradient of {name} lives on another device mesh")


def _sharding_dims(placements: Sequence[Placement], ndim: int) -> dict[int, tuple[int, ...]]:
    """tensor dim -> the mesh dims that shard it."""
    out: dict[int, list[int]] = {}
    for mesh_dim, placement in enumerate(placements):
        if isinstance(placement, Shard):
            out.setdefault(placement.dim % ndim, []).append(mesh_dim)
    return {d: tuple(v) for d, v in out.items()}


def _stat_placements(
    placements: Sequence[Placement], ndim: int, dropped: int
) -> tuple[Placement, ...]:
    """Placements of a statistic that reduces tensor dim `dropped` (ndim-1: rows, ndim-2: cols)."""
    out: list[Placement] = []
    for placement in placements:
        if isinstance(placement, Shard):
            d = placement.dim % ndim
            if d == dropped:
                out.append(Replicate())  # all-reduced over this mesh dim: every rank has it all
            else:
                out.append(Shard(d if d < dropped else d - 1))
        else:
            out.append(Replicate())
    return tuple(out)


def _contiguous_stride(shape: Sequence[int]) -> tuple[int, ...]:
    stride, acc = [], 1
    for s in reversed(shape):
        stride.append(acc)
        acc *= s
    return tuple(reversed(stride))


def _shard_extent(
    shape: Sequence[int], mesh: DeviceMesh, placements: Sequence[Placement]
) -> tuple[list[int], list[int]]:
    """This rank's shard of a global `shape` (torch.chunk split, like DTensor's): its shape and
    its offset in the global tensor."""
    local, offset = list(shape), [0] * len(shape)
    coord = mesh.get_coordinate()
    for mesh_dim, placement in enumerate(placements):
        if isinstance(placement, Shard):
            size, rank = mesh.size(mesh_dim), coord[mesh_dim]
            d = placement.dim
            chunk = math.ceil(local[d] / size) if local[d] else 0
            start = min(chunk * rank, local[d])
            local[d] = max(0, min(local[d], start + chunk) - start)
            offset[d] += start
    return local, offset


def _local_shape(
    shape: Sequence[int], mesh: DeviceMesh, placements: Sequence[Placement]
) -> tuple[int, ...]:
    """This rank's shard shape of a global `shape`."""
    return tuple(_shard_extent(shape, mesh, placements)[0])


def _global_index(
    shape: Sequence[int], mesh: DeviceMesh, placements: Sequence[Placement],
    device: torch.device,
) -> torch.Tensor:
    """Each element of this rank's shard: its flat index in the global (row-major) tensor."""
    local, offset = _shard_extent(shape, mesh, placements)
    index = torch.zeros(local, dtype=torch.int64, device=device)
    for d, (n, stride) in enumerate(zip(local, _contiguous_stride(shape), strict=True)):
        view = [1] * len(shape)
        view[d] = n
        index += (torch.arange(n, dtype=torch.int64, device=device) + offset[d]).view(view) * stride
    return index


def shared_key_base(base: int, device: torch.device) -> int:
    """Rank 0's rounding-key base, on every rank: a parameter's shards and replicas must draw the
    same noise whatever each process was seeded with (one broadcast, at the first step)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return base
    t = torch.tensor([base], dtype=torch.int64, device=device)
    dist.broadcast(t, src=0)
    return int(t.item())


def new_state_tensor(
    global_shape: Sequence[int],
    mesh: DeviceMesh,
    placements: Sequence[Placement],
    device: torch.device,
) -> DTensor:
    """A zero fp32 DTensor statistic of `global_shape` with `placements` (uneven shards allowed)."""
    local = torch.zeros(
        _local_shape(global_shape, mesh, placements), dtype=torch.float32, device=device
    )
    return DTensor.from_local(
        local, mesh, placements, run_check=False, shape=torch.Size(global_shape),
        stride=_contiguous_stride(global_shape),
    )


def init_dtensor_state(p: DTensor, mode: FactorMode, beta1: float | None) -> dict:
    """Fresh state of a DTensor parameter: R sharded like the rows, C like the columns."""
    shape, ndim, pl = tuple(p.shape), p.ndim, p.placements
    mesh, device = p.device_mesh, p.to_local().device
    state: dict = {"step": torch.zeros((), dtype=torch.float32)}
    if mode in ("both", "row"):
        state["exp_avg_sq_row"] = new_state_tensor(
            shape[:-1], mesh, _stat_placements(pl, ndim, ndim - 1), device
        )
    if mode in ("both", "col"):
        state["exp_avg_sq_col"] = new_state_tensor(
            shape[:-2] + shape[-1:], mesh, _stat_placements(pl, ndim, ndim - 2), device
        )
    if mode == "none":
        state["exp_avg_sq"] = new_state_tensor(shape, mesh, pl, device)
    if beta1:
        state["exp_avg"] = new_state_tensor(shape, mesh, pl, device)
    return state


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


def _tensor_step(
    p: DTensor, grad: DTensor, state: dict, mode: FactorMode, sc: StepScalars, hp: GroupHyper
) -> _Step:
    """One tensor's step on its local shard; yields the partial sums it needs all-reduced."""
    ndim, shape = p.ndim, tuple(p.shape)
    shards = _sharding_dims(p.placements, ndim)
    every = tuple(sorted({m for dims in shards.values() for m in dims}))
    rows_by = shards.get(ndim - 2, ()) if ndim >= 2 else ()
    cols_by = shards.get(ndim - 1, ()) if ndim >= 1 else ()
    lead_by = tuple(sorted({m for d, dims in shards.items() if d < ndim - 2 for m in dims}))
    numel = math.prod(shape)

    p_local = p.to_local()
    x = p_local.detach().float()
    if x.data_ptr() == p_local.data_ptr():
        x = x.clone()
    if grad.placements != p.placements:
        grad = grad.redistribute(p.device_mesh, p.placements)
    g = grad.to_local().detach().float()
    b = sc.beta2hat
    g2 = g * g + hp.eps1

    # Phase 1: sum X^2, the row sums over a sharded last dim, the column sums over sharded rows.
    phase: list[_Reduce] = []
    xsq = None
    if hp.scale_parameter:
        xsq = (x * x).sum().reshape(1)
        phase.append(_Reduce(xsq, every))
    rsum = csum = None
    if mode in ("both", "row"):
        rsum = g2.sum(dim=-1)
        phase.append(_Reduce(rsum, cols_by))
    if mode in ("both", "col"):
        csum = g2.sum(dim=-2)
        phase.append(_Reduce(csum, rows_by))
    if phase:
        yield phase

    rho = torch.tensor(sc.rho, dtype=torch.float32, device=x.device)
    if hp.scale_parameter:
        x_rms = (xsq[0] / numel).sqrt() if numel else xsq[0]
        alpha = rho * torch.clamp(x_rms, min=hp.eps2)
    else:
        alpha = rho
    r = c = None
    if rsum is not None:
        r = _local(state["exp_avg_sq_row"]).mul_(b).add_(rsum, alpha=(1 - b) / shape[-1])
    if csum is not None:
        c = _local(state["exp_avg_sq_col"]).mul_(b).add_(csum, alpha=(1 - b) / shape[-2])

    # Phase 2: mean(R) over sharded rows, and sum U^2 for clipping.
    need_rms = hp.clip_threshold is not None
    usq_total = None
    if mode == "both" and rows_by:
        # U^2 = G^2 mean(R) / (R C): sum_ij G^2/(R_i C_j) per matrix, times mean(R) after the sums.
        rsum_k = r.sum(dim=-1)
        phase = [_Reduce(rsum_k, rows_by)]
        t_k = None
        if need_rms:
            t_k = ((g * g) / r.unsqueeze(-1) / c.unsqueeze(-2)).sum(dim=(-2, -1))
            phase.append(_Reduce(t_k, tuple(sorted(set(rows_by) | set(cols_by)))))
        yield phase
        mean_r = rsum_k / shape[-2]
        v_hat = (r / mean_r.unsqueeze(-1)).unsqueeze(-1) * c.unsqueeze(-2)
        u = g / v_hat.sqrt()
        if need_rms:
            usq = (mean_r * t_k).sum().reshape(1)
            if lead_by:
                yield [_Reduce(usq, lead_by)]
            usq_total = usq[0]
    else:
        if mode == "both":
            v_hat = (r / r.mean(dim=-1, keepdim=True)).unsqueeze(-1) * c.unsqueeze(-2)
        elif mode == "row":
            v_hat = r.unsqueeze(-1).expand_as(g)
        elif mode == "col":
            v_hat = c.unsqueeze(-2).expand_as(g)
        else:
            v_hat = _local(state["exp_avg_sq"]).mul_(b).add_(g2, alpha=1 - b)
        u = g / v_hat.sqrt()
        if need_rms:
            usq = (u * u).sum().reshape(1)
            if every:
                yield [_Reduce(usq, every)]
            usq_total = usq[0]

    if usq_total is not None:
        update_rms = (usq_total / numel).sqrt() if numel else usq_total
        clipped = update_rms > hp.clip_threshold
        u = u / torch.clamp(update_rms / hp.clip_threshold, min=1.0)
    else:
        update_rms = torch.full((), float("nan"), device=x.device)
        clipped = torch.zeros((), dtype=torch.bool, device=x.device)

    step = alpha * u
    if hp.beta1:
        step = _local(state["exp_avg"]).mul_(hp.beta1).add_(step, alpha=1 - hp.beta1)
    if hp.weight_decay:
        x.mul_(1 - sc.rho * hp.weight_decay)
    x.sub_(step)
    if p_local.dtype == torch.bfloat16 and hp.stochastic_rounding:
        # The keyed noise of each element's global index: every sharding (and a resume, which
        # restores no generator) rounds exactly as the single-process optimizer does.
        index = _global_index(shape, p.device_mesh, p.placements, x.device)
        copy_keyed_rounded_(p_local.detach(), x, state["rounding_key"], state["step"], index)
    else:
        write_back_(p_local.detach(), x, hp.stochastic_rounding)
    return TensorStats(step_size=alpha, update_rms=update_rms, clipped=clipped)


def _all_reduce_phase(requests: list[tuple[DeviceMesh, _Reduce]]) -> None:
    """Sum every request over its mesh dims: one flat all-reduce per (mesh, mesh dim)."""
    # Keyed by the process group itself: meshes built separately over the same ranks share one.
    buckets: dict[str, tuple[dist.ProcessGroup, list[torch.Tensor]]] = {}
    for mesh, req in requests:
        for mesh_dim in req.mesh_dims:
            group = mesh.get_group(mesh_dim)
            buckets.setdefault(group.group_name, (group, []))[1].append(req.tensor)
    for group, tensors in buckets.values():
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat, group=group)
        offset = 0
        for t in tensors:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()


def dtensor_update(
    params: Sequence[DTensor],
    grads: Sequence[DTensor],
    states: Sequence[dict],
    modes: Sequence[FactorMode],
    scalars: Sequence[StepScalars],
    hp: GroupHyper,
    need_rms: bool,
) -> list[TensorStats]:
    """One step of every DTensor parameter of a group, with the collectives bucketed per phase.

    `need_rms` (track_stats without clipping) makes the unclipped RMS(U) available too.
    """
    if need_rms and hp.clip_threshold is None:
        # RMS(U) for statistics only: clip at +inf (never triggers) so the same path computes it.
        hp = GroupHyper(**{**hp.__dict__, "clip_threshold": float("inf")})
    steps = [
        _tensor_step(p, g, s, m, sc, hp)
        for p, g, s, m, sc in zip(params, grads, states, modes, scalars, strict=True)
    ]
    results: list[TensorStats | None] = [None] * len(steps)
    pending = list(range(len(steps)))
    while pending:
        requests: list[tuple[DeviceMesh, _Reduce]] = []
        still = []
        for i in pending:
            try:
                for req in next(steps[i]):
                    if req.mesh_dims:
                        requests.append((params[i].device_mesh, req))
                still.append(i)
            except StopIteration as done:
                results[i] = done.value
        if requests:
            _all_reduce_phase(requests)
        pending = still
    return [r for r in results if r is not None]
