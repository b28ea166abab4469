"""The Transformer's hyperparameters as one validated dataclass (presets live in models.presets)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

# Storage layouts of dense kernels: T2T/TF's [in, out] and torch nn.Linear's [out, in].
KERNEL_LAYOUTS = ("in_out", "out_in")


# The weight matrix whose RMS(U_t) the training module logs as ``update_rms_matrix`` (Figure 1
# plots one matrix; the paper does not say which): the first encoder layer's feed-forward input
# projection, as named by models.lightning_module.TranslationModule.named_parameters().
UPDATE_RMS_MATRIX = "model.encoder_layers.0.ffn.linear_in.weight"


@dataclass(frozen=True)
class ModelConfig:
    """Encoder-decoder Transformer hyperparameters (T2T ``transformer_base_v2`` semantics).

    ``tie_embeddings=True``: one matrix is the source embedding, the target embedding and the
    softmax weight (the paper's Table 2 model). ``False``: three separate matrices (Table 3).
    ``emb_init_std`` / ``emb_multiplier``: embeddings are drawn from N(0, emb_init_std**2) and
    multiplied by ``emb_multiplier`` in the forward pass; ``None`` means 1/sqrt(d_model) and
    sqrt(d_model) (T2T's ``multiply_embedding_mode="sqrt_depth"``).

    ``kernel_layout``: how every dense (``Dense``) kernel is stored. ``"in_out"`` (default) is
    T2T/TensorFlow's [in_features, out_features], the layout the paper's Adafactor results were
    obtained with; ``"out_in"`` is torch ``nn.Linear``'s [out_features, in_features]. The model
    computes the same function either way (same init distribution, U(-sqrt(3/in), sqrt(3/in)));
    only the storage is transposed. It exists for optimizers that partition a weight matrix by
    its rows: Adam-mini keeps one second-moment value per output neuron, i.e. per row of a torch
    [out, in] weight, and one per attention head, i.e. per contiguous block of rows of the Q/K
    projections, so it needs ``"out_in"`` to get the partition its authors meant (with
    ``"in_out"`` its "rows" would be input units). Element-wise optimizers (Adam, SGD) do not
    care, nor does Adafactor's factored second-moment estimator, whose row and column
    statistics merely swap roles under transposition. Embedding matrices ([vocab, d_model]) are
    not dense kernels and keep their layout in both settings.
    """

    vocab_size: int
    d_model: int = 512
    d_ff: int = 2048
    n_heads: int = 8
    n_encoder_layers: int = 6
    n_decoder_layers: int = 6
    dropout: float = 0.1  # T2T layer_prepostprocess_dropout (residual branches and embeddings)
    attention_dropout: float = 0.1
    relu_dropout: float = 0.1
    label_smoothing: float = 0.1
    tie_embeddings: bool = True
    emb_init_std: float | None = None
    emb_multiplier: float | None = None
    max_positions: int = 1024
    layer_norm_eps: float = 1e-6  # T2T's layer_norm epsilon
    kernel_layout: str = "in_out"  # "in_out" (T2T/TF) or "out_in" (torch nn.Linear)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "d_ff", "n_heads", "max_positions"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"ModelConfig.{name} must be a positive int, got {value!r}")
        for name in ("n_encoder_layers", "n_decoder_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be an int >= 1, got {value!r}")
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"ModelConfig.d_model ({self.d_model}) must be divisible by "
                f"n_heads ({self.n_heads})"
            )
        if self.d_model % 2 != 0:
            raise ValueError(f"ModelConfig.d_model must be even (sinusoids), got {self.d_model}")
        for name in ("dropout", "attention_dropout", "relu_dropout", "label_smoothing"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                0.0 <= value < 1.0
            ):
                raise ValueError(f"ModelConfig.{name} must be a float in [0, 1), got {value!r}")
        if not isinstance(self.tie_embeddings, bool):
            raise ValueError(
                f"ModelConfig.tie_embeddings must be a bool, got {self.tie_embeddings!r}"
            )
        for name in ("emb_init_std", "emb_multiplier", "layer_norm_eps"):
            value = getattr(self, name)
            if value is None and name != "layer_norm_eps":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                value > 0 and math.isfinite(value)
            ):
                raise ValueError(f"ModelConfig.{name} must be a positive float, got {value!r}")
        if self.kernel_layout not in KERNEL_LAYOUTS:
            raise ValueError(
                f"ModelConfig.kernel_layout must be one of {list(KERNEL_LAYOUTS)}, "
                f"got {self.kernel_layout!r}"
            )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def resolved_emb_init_std(self) -> float:
        """Standard deviation of the embedding init (default 1/sqrt(d_model))."""
        return self.d_model**-0.5 if self.emb_init_std is None else float(self.emb_init_std)

    @property
    def resolved_emb_multiplier(self) -> float:
        """Factor applied to looked-up embeddings (default sqrt(d_model))."""
        return self.d_model**0.5 if self.emb_multiplier is None else float(self.emb_multiplier)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Inverse of ``to_dict``; an unknown key is a ValueError naming it."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig key(s) {unknown}; valid keys: {sorted(known)}")
        return cls(**values)

    def num_parameters(self) -> int:
        """Parameter count from the architecture formula (a test checks it against the module).

        Attention projections have no biases; FFN layers have biases; every LayerNorm has a scale
        and a bias; encoder and decoder each end with a LayerNorm.
        """
        d, f, v = self.d_model, self.d_ff, self.vocab_size
        attention = 4 * d * d
        ffn = d * f + f + f * d + d
        norm = 2 * d
        encoder_layer = attention + ffn + 2 * norm
        decoder_layer = 2 * attention + ffn + 3 * norm
        embeddings = v * d if self.tie_embeddings else 3 * v * d
        return (
            embeddings
            + self.n_encoder_layers * encoder_layer
            + self.n_decoder_layers * decoder_layer
            + 2 * norm
        )
