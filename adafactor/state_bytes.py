"""Exact byte accounting of an optimizer's state, for any torch.optim.Optimizer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch.distributed.tensor import DTensor

_SCOPES = ("local", "global")


def _tensor_bytes(value: Any, seen: set[int], scope: str = "local") -> int:
    if isinstance(value, DTensor):
        # "local": this rank's shard; "global": the logical tensor (each element once).
        if scope == "global":
            return value.numel() * value.element_size()
        return _tensor_bytes(value.to_local(), seen)
    if isinstance(value, torch.Tensor):
        # Count each storage once (two state entries may view the same memory).
        if value.is_sparse:
            return value.values().nbytes + value.indices().nbytes
        try:
            storage = value.untyped_storage()
        except (RuntimeError, NotImplementedError):  # e.g. tensor subclasses without storage
            return value.numel() * value.element_size()
        key = storage.data_ptr() if value.numel() else id(value)
        if key in seen:
            return 0
        seen.add(key)
        return storage.nbytes()
    if isinstance(value, Mapping):
        return sum(_tensor_bytes(v, seen, scope) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v, seen, scope) for v in value)
    return 0


def optimizer_state_bytes(optimizer: torch.optim.Optimizer, scope: str = "local") -> int:
    """Bytes held by the tensors in `optimizer.state` (all parameters, all entries, including step
    counters stored as tensors; Python numbers count 0). Shared storages are counted once.

    For DTensor state (FSDP2, tensor parallelism), scope="local" counts this rank's shards and
    scope="global" the logical tensors (a replicated statistic once, not once per rank).
    """
    if scope not in _SCOPES:
        raise ValueError(
            f"optimizer_state_bytes: invalid scope={scope!r}; expected one of {_SCOPES}"
        )
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer_state_bytes expects a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    seen: set[int] = set()
    states: Iterable[Any] = optimizer.state.values()
    return sum(_tensor_bytes(state, seen, scope) for state in states)
