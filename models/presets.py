"""Named model presets: ``base`` and ``big`` as in T2T/the paper; ``small``, ``tiny`` scaled down.

``model_config("base", vocab_size=32768)`` is T2T ``transformer_base_v2``: pre-norm, 6+6 layers,
512/2048/8 heads, dropout 0.1 everywhere, label smoothing 0.1, one shared embedding/softmax matrix
(about 60.9M parameters). ``big`` is ``transformer_big`` (1024/4096/16, dropout 0.3).
``small`` fits Multi30k on one GPU; ``tiny`` (no dropout) trains on one CPU thread in about a
minute.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from models.config import ModelConfig

__all__ = ["PRESETS", "ModelConfig", "model_config"]

PRESETS: dict[str, dict[str, Any]] = {
    "base": dict(d_model=512, d_ff=2048, n_heads=8, n_encoder_layers=6, n_decoder_layers=6,
                 dropout=0.1, attention_dropout=0.1, relu_dropout=0.1),
    "big": dict(d_model=1024, d_ff=4096, n_heads=16, n_encoder_layers=6, n_decoder_layers=6,
                dropout=0.3, attention_dropout=0.1, relu_dropout=0.1),
    "small": dict(d_model=256, d_ff=1024, n_heads=4, n_encoder_layers=3, n_decoder_layers=3,
                  dropout=0.1, attention_dropout=0.1, relu_dropout=0.1),
    # No dropout at tiny scale: on one CPU thread dropout's random masks cost ~45% of a training
    # step, and a few hundred steps on the embedded corpus underfit rather than overfit.
    "tiny": dict(d_model=64, d_ff=256, n_heads=4, n_encoder_layers=2, n_decoder_layers=2,
                 dropout=0.0, attention_dropout=0.0, relu_dropout=0.0, max_positions=512),
}


def model_config(name: str, vocab_size: int, **overrides: Any) -> ModelConfig:
    """The preset ``name`` ("tiny", "small", "base", "big") with ``overrides`` applied.

    An unknown preset or override key is a ValueError naming it; bad values are rejected by
    ``ModelConfig`` itself.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; valid presets: {sorted(PRESETS)}")
    known = {f.name for f in dataclasses.fields(ModelConfig)} - {"vocab_size"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(
            f"unknown model_config override(s) {unknown} for preset {name!r}; "
            f"valid keys: {sorted(known)}"
        )
    return ModelConfig(vocab_size=vocab_size, **{**PRESETS[name], **overrides})
