"""Transformer: shapes, padding invariance, cached decoding, embeddings and initialisation."""

from __future__ import annotations

import math

import pytest
import torch

from models.presets import model_config
from models.transformer import Transformer, sinusoidal_positions

PAD, BOS, EOS = 0, 1, 2
VOCAB = 50


def _model(seed: int = 0, **overrides) -> Transformer:
    torch.manual_seed(seed)
    cfg = model_config("tiny", vocab_size=VOCAB, **overrides)
    return Transformer(cfg, pad_id=PAD).eval()


def _pad(rows: list[list[int]]) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [PAD] * (width - len(r)) for r in rows])


def _sentences(seed: int, lengths: list[int]) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, VOCAB, (n,), generator=g).tolist() for n in lengths]


def test_forward_shapes_and_dtype() -> None:
    model = _model()
    src = torch.randint(3, VOCAB, (3, 7))
    tgt_in = torch.randint(3, VOCAB, (3, 5))
    logits = model(src, tgt_in)
    assert logits.shape == (3, 5, VOCAB) and logits.dtype == torch.float32
    memory, mask = model.encode(src)
    assert memory.shape == (3, 7, model.cfg.d_model) and mask.shape == (3, 7)


def test_padded_batch_equals_each_sentence_alone() -> None:
    model = _model(seed=1)
    sources = [[*s, EOS] for s in _sentences(1, [9, 3, 6])]
    targets = [[BOS, *t] for t in _sentences(2, [4, 8, 1])]
    batched = model(_pad(sources), _pad(targets))
    for i, (src, tgt) in enumerate(zip(sources, targets, strict=True)):
        alone = model(torch.tensor([src]), torch.tensor([tgt]))
        torch.testing.assert_close(batched[i, : len(tgt)], alone[0], rtol=1e-5, atol=1e-5)
    assert torch.isfinite(batched).all()


def test_decoder_is_causal() -> None:
    model = _model(seed=2)
    src = torch.randint(3, VOCAB, (2, 6))
    tgt = torch.randint(3, VOCAB, (2, 7))
    changed = tgt.clone()
    changed[:, 4:] = (changed[:, 4:] + 1 - 3) % (VOCAB - 3) + 3
    torch.testing.assert_close(model(src, tgt)[:, :4], model(src, changed)[:, :4])
    assert not torch.allclose(model(src, tgt)[:, 4:], model(src, changed)[:, 4:])


def test_cached_incremental_logits_equal_full_forward() -> None:
    model = _model(seed=3)
    sources = [[*s, EOS] for s in _sentences(3, [8, 2, 5])]
    src = _pad(sources)
    tgt_in = torch.cat([torch.full((3, 1), BOS), torch.randint(3, VOCAB, (3, 6))], dim=1)
    full = model(src, tgt_in)
    memory, mask = model.encode(src)
    state = model.init_decoder_state(memory, mask)
    steps = [model.decode_step(tgt_in[:, t], state) for t in range(tgt_in.shape[1])]
    torch.testing.assert_close(torch.stack(steps, dim=1), full, rtol=1e-5, atol=1e-5)
    assert state.step == tgt_in.shape[1]
    assert state.self_kv[0][0].shape[2] == tgt_in.shape[1]  # cache grew one position a step


def test_beam_reordering_of_the_cache_follows_the_rows() -> None:
    model = _model(seed=4)
    src = torch.randint(3, VOCAB, (1, 5))
    prefixes = torch.tensor([[BOS, 5, 6], [BOS, 7, 8]])
    memory, mask = model.encode(src)
    state = model.init_decoder_state(memory, mask).repeat_interleave(2)
    for t in range(3):
        model.decode_step(prefixes[:, t], state)
    state.reorder_beams(torch.tensor([1, 1]))
    logits = model.decode_step(torch.tensor([9, 9]), state)
    expected = model(src, torch.tensor([[BOS, 7, 8, 9]]))[0, -1]
    torch.testing.assert_close(logits[0], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits[1], expected, rtol=1e-5, atol=1e-5)


def test_all_padding_source_row_stays_finite() -> None:
    model = _model(seed=5)
    src = torch.tensor([[5, 6, EOS], [PAD, PAD, PAD]])
    logits = model(src, torch.tensor([[BOS, 4], [BOS, 4]]))
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(
        logits[0], model(src[:1], torch.tensor([[BOS, 4]]))[0], rtol=1e-5, atol=1e-5
    )


def test_tied_embedding_is_one_matrix_for_source_target_and_softmax() -> None:
    model = _model()
    assert model.source_embedding_weight is model.target_embedding_weight
    assert model.target_embedding_weight is model.softmax_weight
    embedding_like = [p for p in model.parameters() if p.shape == (VOCAB, model.cfg.d_model)]
    assert len(embedding_like) == 1


def test_untied_embeddings_are_three_matrices() -> None:
    model = _model(tie_embeddings=False)
    weights = {
        id(model.source_embedding_weight), id(model.target_embedding_weight),
        id(model.softmax_weight),
    }
    assert len(weights) == 3
    model.zero_grad()
    model.train()
    src, tgt = torch.randint(3, VOCAB, (2, 4)), torch.randint(3, VOCAB, (2, 3))
    model(src, tgt).sum().backward()
    for weight in (model.source_embedding, model.target_embedding, model.output_projection):
        assert weight.grad is not None and weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("std", "multiplier"),
    [(None, None), (1.0, 1.0), (None, 1.0)],  # the three rows of the paper's Table 3
)
def test_embedding_init_scale_and_multiplier(std: float | None, multiplier: float | None) -> None:
    torch.manual_seed(0)
    cfg = model_config("small", vocab_size=4000, tie_embeddings=False,
                       emb_init_std=std, emb_multiplier=multiplier)
    model = Transformer(cfg, pad_id=PAD).eval()
    d = cfg.d_model
    expected_std = d**-0.5 if std is None else std
    expected_mult = math.sqrt(d) if multiplier is None else multiplier
    for weight in (model.source_embedding, model.target_embedding):
        assert weight.std().item() == pytest.approx(expected_std, rel=0.02)
        assert weight.mean().abs().item() < 0.02 * expected_std
    # The output projection keeps T2T's softmax init whatever the embedding scheme.
    assert model.output_projection.std().item() == pytest.approx(d**-0.5, rel=0.02)
    ids = torch.tensor([[7, 9, 11]])
    embedded = model._embed(ids, model.source_embedding)
    expected = model.source_embedding[ids] * expected_mult + sinusoidal_positions(3, d)
    torch.testing.assert_close(embedded, expected)


def test_dense_kernels_are_t2t_layout_with_uniform_unit_scaling_and_no_attention_bias() -> None:
    torch.manual_seed(0)
    cfg = model_config("small", vocab_size=100)
    model = Transformer(cfg, pad_id=PAD)
    layer = model.encoder_layers[0]
    for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj,
                 layer.self_attn.out_proj):
        assert proj.bias is None
    # [in, out] like TF kernels, so Adafactor's rows are input units as in T2T.
    assert layer.ffn.linear_in.weight.shape == (cfg.d_model, cfg.d_ff)
    assert layer.ffn.linear_out.weight.shape == (cfg.d_ff, cfg.d_model)
    for dense in (layer.self_attn.q_proj, layer.ffn.linear_in, layer.ffn.linear_out):
        bound = math.sqrt(3.0 / dense.weight.shape[0])  # fan_in
        assert dense.weight.abs().max().item() <= bound
        assert dense.weight.abs().max().item() > 0.99 * bound
        assert dense.weight.std().item() == pytest.approx(bound / math.sqrt(3.0), rel=0.03)
    assert layer.ffn.linear_in.bias is not None and torch.all(layer.ffn.linear_in.bias == 0)
    x = torch.randn(3, cfg.d_model)
    dense = layer.ffn.linear_in
    torch.nn.init.normal_(dense.bias)
    torch.testing.assert_close(dense(x), x @ dense.weight + dense.bias)


def test_pre_norm_structure_with_final_layer_norms() -> None:
    model = _model()
    names = {name for name, _ in model.named_modules()}
    assert {"encoder_norm", "decoder_norm", "encoder_layers.0.self_attn_norm",
            "decoder_layers.0.cross_attn_norm", "decoder_layers.0.ffn_norm"} <= names
    # Pre-norm: a zero residual branch passes the input straight through the block.
    layer = model.encoder_layers[0]
    for module in (layer.self_attn.out_proj, layer.ffn.linear_out):
        torch.nn.init.zeros_(module.weight)
    torch.nn.init.zeros_(layer.ffn.linear_out.bias)
    x = torch.randn(2, 4, model.cfg.d_model)
    mask = torch.ones(2, 1, 1, 4, dtype=torch.bool)
    torch.testing.assert_close(layer(x, mask), x)


def test_sinusoids_match_t2t_timing_signal() -> None:
    signal = sinusoidal_positions(5, 8)
    inv = torch.exp(torch.arange(4, dtype=torch.float64) * -(math.log(1e4) / 3))
    pos = torch.arange(5, dtype=torch.float64)[:, None] * inv
    torch.testing.assert_close(signal, torch.cat([pos.sin(), pos.cos()], 1).float())


def test_dropout_acts_in_training_only() -> None:
    model = _model(dropout=0.1, attention_dropout=0.1, relu_dropout=0.1)
    src, tgt = torch.randint(3, VOCAB, (2, 6)), torch.randint(3, VOCAB, (2, 5))
    torch.testing.assert_close(model(src, tgt), model(src, tgt))
    model.train()
    assert not torch.allclose(model(src, tgt), model(src, tgt))


def test_bad_inputs_are_rejected() -> None:
    model = _model()
    with pytest.raises(ValueError, match="max_positions"):
        model(torch.randint(3, VOCAB, (1, model.cfg.max_positions + 1)), torch.tensor([[BOS]]))
    with pytest.raises(ValueError, match="batch sizes differ"):
        model(torch.randint(3, VOCAB, (2, 4)), torch.randint(3, VOCAB, (3, 4)))
    with pytest.raises(ValueError, match="src must be an integer tensor"):
        model(torch.randn(2, 4), torch.randint(3, VOCAB, (2, 4)))
    with pytest.raises(ValueError, match="pad_id"):
        Transformer(model.cfg, pad_id=VOCAB)
