"""FSDP2 (`torch.distributed.fsdp.fully_shard`) for the Transformer: shard, and gather a replica.

Every encoder and decoder layer is its own FSDP2 unit (its parameters are all-gathered just for
its forward and backward), and the root unit holds the embeddings (shared or not) and the final
norms. Parameters become DTensors sharded on dim 0 over the data-parallel mesh; Adafactor steps
them on the local shards (`adafactor.distributed`).

Decoding calls the model's pieces step by step, with a different number of steps on every rank,
which FSDP2's per-forward all-gathers cannot follow; `plain_replica` gathers the parameters once
into an ordinary Transformer for evaluation.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.tensor import DeviceMesh, DTensor

from .transformer import Transformer


def shard_transformer(model: Transformer, mesh: DeviceMesh) -> Transformer:
    """Apply FSDP2 to `model` in place over the 1-D `mesh` (one unit per layer, then the root)."""
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    if mesh.ndim != 1:
        raise ValueError(f"shard_transformer needs a 1-D data-parallel mesh, got {mesh.ndim}-D")
    for layer in model.decoder_layers:
        # The decoder computes the cross-attention keys and values of the memory before calling
        # the layer, and the layer calls `attend`, not forward: cross-attention is its own unit,
        # unsharded for those two methods like for a forward.
        fully_shard(layer.cross_attn, mesh=mesh)
        for method in ("keys_values", "attend"):
            register_fsdp_forward_method(layer.cross_attn, method)
    for layer in (*model.encoder_layers, *model.decoder_layers):
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def is_sharded(model: nn.Module) -> bool:
    """True when any parameter of `model` is a DTensor (FSDP2 or tensor parallel)."""
    return any(isinstance(p, DTensor) for p in model.parameters())


@torch.no_grad()
def plain_replica(model: Transformer) -> Transformer:
    """An ordinary Transformer with `model`'s full parameters and buffers (a collective: every
    rank must call it); `model` itself unchanged. Its training flag follows `model`'s."""
    state = {
        k: v.full_tensor() if isinstance(v, DTensor) else v for k, v in model.state_dict().items()
    }
    replica = Transformer(model.cfg, pad_id=model.pad_id)
    replica.load_state_dict(state)
    device = next(iter(state.values())).device if state else torch.device("cpu")
    return replica.to(device).train(model.training)
