"""DTensor parameters (FSDP2 `fully_shard`, tensor parallelism): state placement, and a driver
that runs the one update math (`adafactor.reference.TensorUpdate`) on each rank's shard with the
partial sums it asks for all-reduced.

Adafactor factors by the *global* shape, but each rank holds only a shard; no full tensor is ever
gathered:

* R (row means of G^2 + eps1) is local when the rows are sharded; a Shard on the last dim needs
  one all-reduce of the local rows' sums;
* C (column means) is one all-reduce of m floats when the rows are sharded;
* the scalars, sum X^2 (parameter scale), sum R (mean(R) of V_hat = R C / mean(R)) and sum U^2
  (clipping RMS), are all-reduced with the vectors.

`dtensor_update` runs each stage of the update on every tensor, then puts everything that stage
asks for over one mesh dimension into a single flat float64 all-reduce. On a 1-D mesh (FSDP2) that
is at most two all-reduces per step for the whole model: (C sums, sum X^2), then (sum R, sum U^2).

The state is kept as DTensors with the placements the statistics have: a row statistic is sharded
like the rows, a column statistic is replicated over the mesh dims that shard the rows, and
nothing is ever Partial, so `torch.distributed.checkpoint` saves and reshards it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch.distributed.tensor import DeviceMesh, DTensor, Placement, Replicate, Shard

from ._common import FactorMode, GroupHyper, StepScalars, TensorStats
from .reference import Layout, Partial, TensorUpdate, compute_dtype


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
    dtype: torch.dtype = torch.float32,
) -> DTensor:
    """A zero DTensor statistic of `global_shape` with `placements` (uneven shards allowed)."""
    local = torch.zeros(_local_shape(global_shape, mesh, placements), dtype=dtype, device=device)
    return DTensor.from_local(
        local, mesh, placements, run_check=False, shape=torch.Size(global_shape),
        stride=_contiguous_stride(global_shape),
    )


def init_dtensor_state(p: DTensor, mode: FactorMode, beta1: float | None) -> dict:
    """Fresh state of a DTensor parameter: R sharded like the rows, C like the columns."""
    shape, ndim, pl = tuple(p.shape), p.ndim, p.placements
    local = p.to_local()
    mesh, device, dtype = p.device_mesh, local.device, compute_dtype(local)
    state: dict = {"step": torch.zeros((), dtype=torch.float32)}
    if mode in ("both", "row"):
        state["exp_avg_sq_row"] = new_state_tensor(
            shape[:-1], mesh, _stat_placements(pl, ndim, ndim - 1), device, dtype
        )
    if mode in ("both", "col"):
        state["exp_avg_sq_col"] = new_state_tensor(
            shape[:-2] + shape[-1:], mesh, _stat_placements(pl, ndim, ndim - 2), device, dtype
        )
    if mode == "none":
        state["exp_avg_sq"] = new_state_tensor(shape, mesh, pl, device, dtype)
    if beta1:
        state["exp_avg"] = new_state_tensor(shape, mesh, pl, device, dtype)
    return state


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


def _layout(p: DTensor) -> Layout:
    """The global shape and the mesh dims that shard rows, columns and leading dims."""
    ndim = p.ndim
    shards = _sharding_dims(p.placements, ndim)
    return Layout(
        shape=tuple(p.shape),
        rows_by=shards.get(ndim - 2, ()) if ndim >= 2 else (),
        cols_by=shards.get(ndim - 1, ()) if ndim >= 1 else (),
        lead_by=tuple(sorted({m for d, dims in shards.items() if d < ndim - 2 for m in dims})),
    )


def _tensor_update(
    p: DTensor, grad: DTensor, state: dict, mode: FactorMode, sc: StepScalars, hp: GroupHyper,
    need_rms: bool,
) -> TensorUpdate:
    """The one update math (`adafactor.reference.TensorUpdate`) on this rank's shard."""
    if grad.placements != p.placements:
        grad = grad.redistribute(p.device_mesh, p.placements)
    local_state = {k: _local(v) for k, v in state.items()}

    def shard_index() -> torch.Tensor:
        return _global_index(tuple(p.shape), p.device_mesh, p.placements, p.to_local().device)

    return TensorUpdate(
        p.to_local(), grad.to_local(), local_state, mode, sc, hp, need_rms,
        layout=_layout(p), shard_index=shard_index,
    )


def _all_reduce_phase(requests: list[tuple[DeviceMesh, Partial]]) -> None:
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
    """One step of every DTensor parameter of a group: each stage of the update runs on every
    tensor, then everything that stage asks for over one mesh dim is one flat all-reduce.

    `need_rms` (track_stats without clipping) makes the unclipped RMS(U) available too.
    """
    updates = [
        _tensor_update(p, g, s, m, sc, hp, need_rms)
        for p, g, s, m, sc in zip(params, grads, states, modes, scalars, strict=True)
    ]
    for stage in ("sums", "moments", "clip_sums"):
        requests = [
            (p.device_mesh, part)
            for p, update in zip(params, updates, strict=True)
            for part in getattr(update, stage)()
            if part.mesh_dims
        ]
        if requests:
            _all_reduce_phase(requests)
    return [update.apply() for update in updates]
