"""Encoder-decoder Transformer as in T2T ``transformer_base_v2`` (the paper's model).

Pre-norm residual blocks: ``x + dropout(sublayer(layer_norm(x)))``, with a final LayerNorm on the
encoder and on the decoder output. Sinusoidal positions (T2T's ``get_timing_signal_1d``: sines of
all timescales, then cosines). Attention projections q, k, v and output are four separate d x d
matrices without biases (their shapes matter to Adafactor's factoring); the FFN is
Linear(bias) -> ReLU -> dropout -> Linear(bias). Attention is
``torch.nn.functional.scaled_dot_product_attention`` with boolean masks.

By default every weight matrix has T2T's layout, so that Adafactor's row and column statistics
(and the paper's row-mean / col-mean ablations, Table 2 rows D and E) mean what they meant there:
dense kernels are [in, out] (``Dense``, not torch's [out, in] ``nn.Linear``) and embeddings
[vocab, d]. ``ModelConfig.kernel_layout="out_in"`` stores every dense kernel as torch's
[out, in] instead (for row-partitioning optimizers such as Adam-mini; see ``ModelConfig``); the
function, the initial distribution and the parameter names are the same in both layouts.

Initialisation (T2T): every dense kernel is "uniform unit scaling" with gain 1, i.e.
U(-sqrt(3/fan_in), sqrt(3/fan_in)); biases 0; LayerNorm scale 1, bias 0. Embeddings are
N(0, emb_init_std^2) and are multiplied by emb_multiplier when looked up; the embedding rows of
``pad_id`` are zeroed in the forward pass (T2T does this for its padding id 0). With
``tie_embeddings`` the same matrix is the source embedding, the target embedding and the softmax
weight; untied, the softmax weight is its own N(0, 1/d_model) matrix (T2T's softmax initializer),
and source and target embeddings are separate matrices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.config import KERNEL_LAYOUTS, ModelConfig


def sinusoidal_positions(length: int, channels: int) -> Tensor:
    """T2T timing signal [length, channels]: sin of every timescale, then cos (1 .. 1e4)."""
    num_timescales = channels // 2
    log_increment = math.log(1.0e4) / max(num_timescales - 1, 1)
    inv_timescales = torch.exp(
        torch.arange(num_timescales, dtype=torch.float64) * -log_increment
    )
    scaled_time = torch.arange(length, dtype=torch.float64)[:, None] * inv_timescales[None, :]
    return torch.cat([scaled_time.sin(), scaled_time.cos()], dim=1).float()


class Dense(nn.Module):
    """``x @ W + bias``: an affine map from ``in_features`` to ``out_features``.

    ``layout="in_out"`` (default) stores the kernel [in, out] as in T2T/TensorFlow and computes
    ``x @ weight``; ``layout="out_in"`` stores it [out, in] as torch's ``nn.Linear`` does and
    computes ``x @ weight.T``. Either way it is initialised like TF's
    ``uniform_unit_scaling_initializer`` (gain 1): U(-sqrt(3 / in), sqrt(3 / in)), the bound
    using ``in_features`` whichever dimension of ``weight`` that is; the bias (if any) starts
    at 0.
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool, layout: str = "in_out"
    ) -> None:
        super().__init__()
        if layout not in KERNEL_LAYOUTS:
            raise ValueError(
                f"Dense layout (ModelConfig.kernel_layout) must be one of {list(KERNEL_LAYOUTS)}, "
                f"got {layout!r}"
            )
        self.in_features = in_features
        self.out_features = out_features
        self.layout = layout
        shape = (in_features, out_features) if layout == "in_out" else (out_features, in_features)
        self.weight = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = math.sqrt(3.0 / self.in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight.t() if self.layout == "in_out" else self.weight
        return F.linear(x, weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in={self.in_features}, out={self.out_features}, bias={self.bias is not None}, "
            f"layout={self.layout}"
        )


def _key_mask(token_mask: Tensor) -> Tensor:
    """[B, S] True-for-tokens -> SDPA boolean mask [B, 1, 1, S] (True = may be attended).

    A row with no token at all would make softmax produce NaN; such rows attend everywhere
    instead, so their (meaningless) outputs stay finite and cannot poison a batch.
    """
    empty = ~token_mask.any(dim=1, keepdim=True)
    return (token_mask | empty)[:, None, None, :]


class MultiHeadAttention(nn.Module):
    def __init__(
        self, d_model: int, n_heads: int, attention_dropout: float, layout: str = "in_out"
    ) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.d_model = d_model
        self.attention_dropout = attention_dropout
        self.q_proj = Dense(d_model, d_model, bias=False, layout=layout)
        self.k_proj = Dense(d_model, d_model, bias=False, layout=layout)
        self.v_proj = Dense(d_model, d_model, bias=False, layout=layout)
        self.out_proj = Dense(d_model, d_model, bias=False, layout=layout)

    def _split_heads(self, x: Tensor) -> Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.n_heads, self.d_model // self.n_heads).transpose(1, 2)

    def keys_values(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Projected keys and values [B, H, S, head_dim] of ``x`` [B, S, D]."""
        return self._split_heads(self.k_proj(x)), self._split_heads(self.v_proj(x))

    def attend(
        self, x: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None, is_causal: bool
    ) -> Tensor:
        """Queries from ``x`` [B, T, D] attend to ``keys``/``values`` [B, H, S, head_dim]."""
        queries = self._split_heads(self.q_proj(x))
        out = F.scaled_dot_product_attention(
            queries,
            keys,
            values,
            attn_mask=mask,
            dropout_p=self.attention_dropout if self.training else 0.0,
            is_causal=is_causal,
        )
        batch, _, length, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, self.d_model))


class FeedForward(nn.Module):
    def __init__(
        self, d_model: int, d_ff: int, relu_dropout: float, layout: str = "in_out"
    ) -> None:
        super().__init__()
        self.linear_in = Dense(d_model, d_ff, bias=True, layout=layout)
        self.linear_out = Dense(d_ff, d_model, bias=True, layout=layout)
        self.dropout = nn.Dropout(relu_dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_out(self.dropout(F.relu(self.linear_in(x))))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.self_attn_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.self_attn = MultiHeadAttention(
            cfg.d_model, cfg.n_heads, cfg.attention_dropout, cfg.kernel_layout
        )
        self.ffn_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.ffn = FeedForward(cfg.d_model, cfg.d_ff, cfg.relu_dropout, cfg.kernel_layout)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, key_mask: Tensor) -> Tensor:
        h = self.self_attn_norm(x)
        keys, values = self.self_attn.keys_values(h)
        x = x + self.dropout(self.self_attn.attend(h, keys, values, key_mask, is_causal=False))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.self_attn_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.self_attn = MultiHeadAttention(
            cfg.d_model, cfg.n_heads, cfg.attention_dropout, cfg.kernel_layout
        )
        self.cross_attn_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.cross_attn = MultiHeadAttention(
            cfg.d_model, cfg.n_heads, cfg.attention_dropout, cfg.kernel_layout
        )
        self.ffn_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.ffn = FeedForward(cfg.d_model, cfg.d_ff, cfg.relu_dropout, cfg.kernel_layout)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: Tensor,
        memory_kv: tuple[Tensor, Tensor],
        memory_mask: Tensor,
        self_cache: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """One block. Without ``self_cache``: ``x`` is the whole target prefix (causal mask).
        With it: ``x`` holds only new positions, appended to the cached keys/values (which
        already cover every earlier position, so no mask is needed). Returns the output and the
        self-attention keys/values up to and including ``x``."""
        h = self.self_attn_norm(x)
        keys, values = self.self_attn.keys_values(h)
        if self_cache is not None:
            keys = torch.cat([self_cache[0], keys], dim=2)
            values = torch.cat([self_cache[1], values], dim=2)
        causal = self_cache is None and x.shape[1] > 1
        x = x + self.dropout(self.self_attn.attend(h, keys, values, None, is_causal=causal))
        h = self.cross_attn_norm(x)
        x = x + self.dropout(self.cross_attn.attend(h, *memory_kv, memory_mask, is_causal=False))
        x = x + self.dropout(self.ffn(self.ffn_norm(x)))
        return x, (keys, values)


@dataclass
class DecoderState:
    """What incremental decoding carries between steps, for N target rows.

    ``cross_kv[i]``: layer i's cross-attention keys/values of the source (computed once);
    ``self_kv[i]``: layer i's self-attention keys/values of every target position so far
    (grows by one position a step); ``step``: number of target positions already fed.
    """

    memory_mask: Tensor  # [N, 1, 1, S] boolean SDPA mask over source positions
    cross_kv: list[tuple[Tensor, Tensor]]
    self_kv: list[tuple[Tensor, Tensor] | None]
    step: int = 0

    def repeat_interleave(self, repeats: int) -> DecoderState:
        """Each row repeated ``repeats`` times in place (row i -> rows i*r .. i*r+r-1)."""

        def rep(t: Tensor) -> Tensor:
            return t.repeat_interleave(repeats, dim=0)

        return DecoderState(
            memory_mask=rep(self.memory_mask),
            cross_kv=[(rep(k), rep(v)) for k, v in self.cross_kv],
            self_kv=[None if kv is None else (rep(kv[0]), rep(kv[1])) for kv in self.self_kv],
            step=self.step,
        )

    def select(self, index: Tensor) -> None:
        """Keep rows ``index`` (any rows, any order) of every cached tensor."""
        self.memory_mask = self.memory_mask.index_select(0, index)
        self.cross_kv = [(k.index_select(0, index), v.index_select(0, index))
                         for k, v in self.cross_kv]
        self.reorder_beams(index)

    def reorder_beams(self, index: Tensor) -> None:
        """Reorder only the self-attention caches: for beam search, where ``index`` maps every
        row to a row of the same sentence, whose source (and cross-attention cache) is the same."""
        self.self_kv = [None if kv is None else (kv[0].index_select(0, index),
                                                 kv[1].index_select(0, index))
                        for kv in self.self_kv]


class Transformer(nn.Module):
    """Encoder-decoder Transformer. ``forward(src [B,S], tgt_in [B,T]) -> logits [B,T,V]``.

    Padding (``pad_id``) in ``src`` is masked out of attention; targets must be right-padded
    (pad positions come after every token), which the causal mask alone then handles.
    """

    def __init__(self, cfg: ModelConfig, pad_id: int) -> None:
        super().__init__()
        if not isinstance(cfg, ModelConfig):
            raise TypeError(f"cfg must be a ModelConfig, got {type(cfg).__name__}")
        if not 0 <= pad_id < cfg.vocab_size:
            raise ValueError(f"pad_id {pad_id} is outside the vocabulary [0, {cfg.vocab_size})")
        self.cfg = cfg
        self.pad_id = pad_id
        self.emb_multiplier = cfg.resolved_emb_multiplier
        v, d = cfg.vocab_size, cfg.d_model
        if cfg.tie_embeddings:
            self.shared_embedding = nn.Parameter(torch.empty(v, d))
        else:
            self.source_embedding = nn.Parameter(torch.empty(v, d))
            self.target_embedding = nn.Parameter(torch.empty(v, d))
            self.output_projection = nn.Parameter(torch.empty(v, d))
        self.register_buffer(
            "positions", sinusoidal_positions(cfg.max_positions, d), persistent=False
        )
        self.embedding_dropout = nn.Dropout(cfg.dropout)
        self.encoder_layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_encoder_layers))
        self.encoder_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.decoder_layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_decoder_layers))
        self.decoder_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.reset_parameters()

    # ---------------------------------------------------------------- parameters
    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, Dense):
                module.reset_parameters()
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        std = self.cfg.resolved_emb_init_std
        if self.cfg.tie_embeddings:
            nn.init.normal_(self.shared_embedding, 0.0, std)
        else:
            nn.init.normal_(self.source_embedding, 0.0, std)
            nn.init.normal_(self.target_embedding, 0.0, std)
            nn.init.normal_(self.output_projection, 0.0, self.cfg.d_model**-0.5)

    @property
    def source_embedding_weight(self) -> Tensor:
        return self.shared_embedding if self.cfg.tie_embeddings else self.source_embedding

    @property
    def target_embedding_weight(self) -> Tensor:
        return self.shared_embedding if self.cfg.tie_embeddings else self.target_embedding

    @property
    def softmax_weight(self) -> Tensor:
        return self.shared_embedding if self.cfg.tie_embeddings else self.output_projection

    # ---------------------------------------------------------------- building blocks
    def _embed(self, ids: Tensor, weight: Tensor, first_position: int = 0) -> Tensor:
        length = ids.shape[1]
        if first_position + length > self.cfg.max_positions:
            raise ValueError(
                f"sequence of {first_position + length} positions exceeds max_positions="
                f"{self.cfg.max_positions}"
            )
        x = F.embedding(ids, weight) * self.emb_multiplier
        x = x * (ids != self.pad_id).unsqueeze(-1).to(x.dtype)
        x = x + self.positions[first_position : first_position + length].to(x.dtype)
        return self.embedding_dropout(x)

    def _check_ids(self, name: str, ids: Tensor) -> None:
        if ids.dim() != 2 or ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"{name} must be an integer tensor [batch, length], got {tuple(ids.shape)} "
                f"{ids.dtype}"
            )

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """Encoder output [B, S, D] and the source token mask [B, S] (True = not pad)."""
        self._check_ids("src", src)
        token_mask = src != self.pad_id
        key_mask = _key_mask(token_mask)
        x = self._embed(src, self.source_embedding_weight)
        for layer in self.encoder_layers:
            x = layer(x, key_mask)
        return self.encoder_norm(x), token_mask

    def decode(self, tgt_in: Tensor, memory: Tensor, src_token_mask: Tensor) -> Tensor:
        """Teacher-forced decoder: logits [B, T, V] for every prefix of ``tgt_in``."""
        self._check_ids("tgt_in", tgt_in)
        key_mask = _key_mask(src_token_mask)
        x = self._embed(tgt_in, self.target_embedding_weight)
        for layer in self.decoder_layers:
            x, _ = layer(x, layer.cross_attn.keys_values(memory), key_mask)
        return F.linear(self.decoder_norm(x), self.softmax_weight)

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        if src.shape[0] != tgt_in.shape[0]:
            raise ValueError(
                f"src and tgt_in batch sizes differ: {src.shape[0]} vs {tgt_in.shape[0]}"
            )
        memory, token_mask = self.encode(src)
        return self.decode(tgt_in, memory, token_mask)

    # ---------------------------------------------------------------- incremental decoding
    def init_decoder_state(self, memory: Tensor, src_token_mask: Tensor) -> DecoderState:
        """Cross-attention keys/values of ``memory`` (once per source) and empty self caches."""
        return DecoderState(
            memory_mask=_key_mask(src_token_mask),
            cross_kv=[layer.cross_attn.keys_values(memory) for layer in self.decoder_layers],
            self_kv=[None] * len(self.decoder_layers),
        )

    def decode_step(self, tokens: Tensor, state: DecoderState) -> Tensor:
        """Feed one token per row (position ``state.step``); returns next-token logits [N, V].

        Equals the last position of ``decode`` on the whole prefix (tested)."""
        x = self._embed(tokens[:, None], self.target_embedding_weight, first_position=state.step)
        for i, layer in enumerate(self.decoder_layers):
            x, state.self_kv[i] = layer(
                x, state.cross_kv[i], state.memory_mask, self_cache=state.self_kv[i]
            )
        state.step += 1
        return F.linear(self.decoder_norm(x[:, 0]), self.softmax_weight)
