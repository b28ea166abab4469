"""``ModelConfig.kernel_layout``: dense kernels stored [in, out] (T2T) or [out, in] (torch)."""

from __future__ import annotations

import math

import pytest
import torch

from models.config import ModelConfig
from models.decoding import greedy_decode
from models.presets import model_config
from models.transformer import Dense, Transformer

PAD, BOS, EOS = 0, 1, 2
VOCAB = 50


def _model(layout: str, seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(model_config("tiny", VOCAB, kernel_layout=layout), pad_id=PAD).eval()


def _dense_modules(model: Transformer) -> dict[str, Dense]:
    return {name: m for name, m in model.named_modules() if isinstance(m, Dense)}


def _copy_into(source: Transformer, target: Transformer) -> None:
    """Load ``source``'s weights into ``target``, transposing every Dense kernel."""
    dense_weights = {f"{name}.weight" for name in _dense_modules(source)}
    state = {
        name: value.t().contiguous() if name in dense_weights else value
        for name, value in source.state_dict().items()
    }
    target.load_state_dict(state)


def _batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(3, VOCAB, (4, 9), generator=g)
    src[1, 6:] = PAD  # some source padding
    src[:, -1] = EOS
    tgt_in = torch.randint(3, VOCAB, (4, 7), generator=g)
    tgt_in[:, 0] = BOS
    return src, tgt_in


def test_config_default_validation_and_round_trip() -> None:
    assert ModelConfig(vocab_size=10).kernel_layout == "in_out"
    for layout in ("in_out", "out_in"):
        cfg = model_config("tiny", 1000, kernel_layout=layout)
        assert cfg.kernel_layout == layout
        assert cfg.to_dict()["kernel_layout"] == layout
        assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    # A dict saved before the option existed still loads, as today's layout.
    old = model_config("tiny", 1000).to_dict()
    del old["kernel_layout"]
    assert ModelConfig.from_dict(old).kernel_layout == "in_out"


@pytest.mark.parametrize("bad", ["bogus", "out-in", "IN_OUT", None, 0])
def test_unknown_layout_is_a_value_error_naming_the_field(bad: object) -> None:
    with pytest.raises(ValueError, match="kernel_layout") as info:
        ModelConfig(vocab_size=10, kernel_layout=bad)
    assert "in_out" in str(info.value) and "out_in" in str(info.value)
    with pytest.raises(ValueError, match="kernel_layout"):
        model_config("tiny", 1000, kernel_layout=bad)
    with pytest.raises(ValueError, match="kernel_layout"):
        Dense(4, 8, bias=False, layout=bad)


def test_shapes_names_and_parameter_counts() -> None:
    in_out, out_in = _model("in_out"), _model("out_in")
    dense_a, dense_b = _dense_modules(in_out), _dense_modules(out_in)
    assert list(dense_a) == list(dense_b)
    # attention q/k/v/out (2 per encoder layer's self-attention, decoder self + cross) + FFN
    cfg = in_out.cfg
    assert len(dense_a) == 6 * cfg.n_encoder_layers + 10 * cfg.n_decoder_layers
    for name, dense in dense_a.items():
        assert dense.layout == "in_out" and dense_b[name].layout == "out_in"
        assert dense.weight.shape == (dense.in_features, dense.out_features), name
        assert dense_b[name].weight.shape == (dense.out_features, dense.in_features), name
        assert (dense_b[name].in_features, dense_b[name].out_features) == (
            dense.in_features, dense.out_features)
        assert f"in={dense.in_features}, out={dense.out_features}" in repr(dense_b[name])
    ffn = out_in.encoder_layers[0].ffn
    assert ffn.linear_in.weight.shape == (cfg.d_ff, cfg.d_model)
    assert ffn.linear_out.weight.shape == (cfg.d_model, cfg.d_ff)
    names_a = [name for name, _ in in_out.named_parameters()]
    assert names_a == [name for name, _ in out_in.named_parameters()]
    # Everything else (embeddings, LayerNorms, biases) keeps its shape.
    params_b = dict(out_in.named_parameters())
    dense_weights = {f"{name}.weight" for name in dense_a}
    for name, param in in_out.named_parameters():
        if name not in dense_weights:
            assert param.shape == params_b[name].shape, name
    count = sum(p.numel() for p in in_out.parameters())
    assert count == sum(p.numel() for p in out_in.parameters()) == cfg.num_parameters()


def test_transposed_weights_give_the_same_function() -> None:
    in_out, out_in = _model("in_out", seed=0), _model("out_in", seed=1)
    _copy_into(in_out, out_in)
    src, tgt_in = _batch(0)
    with torch.no_grad():
        torch.testing.assert_close(out_in(src, tgt_in), in_out(src, tgt_in), atol=1e-5, rtol=0)
    assert not out_in.training and not in_out.training
    for model in (in_out, out_in):  # make eos reachable so that lengths vary
        with torch.no_grad():
            eos_row = model.softmax_weight[EOS]
            model.decoder_norm.bias.copy_(3.0 * eos_row / eos_row.norm() ** 2)
    ids = {"bos_id": BOS, "eos_id": EOS, "pad_id": PAD}
    tokens = greedy_decode(in_out, src, **ids)
    assert greedy_decode(out_in, src, **ids) == tokens
    assert any(tokens)
    # And back: out_in -> in_out reproduces the in_out model exactly.
    again = _model("in_out", seed=2)
    _copy_into(out_in, again)
    for (name, a), b in zip(in_out.state_dict().items(), again.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("layout", ["in_out", "out_in"])
def test_dense_forward_and_init_bound_use_in_features(layout: str) -> None:
    torch.manual_seed(0)
    dense = Dense(16, 1024, bias=True, layout=layout)
    expected_shape = (16, 1024) if layout == "in_out" else (1024, 16)
    assert dense.weight.shape == expected_shape
    bound = math.sqrt(3.0 / 16)
    assert dense.weight.abs().max().item() <= bound
    assert dense.weight.abs().max().item() > 0.9 * bound  # a bound from out=1024 is 8x smaller
    assert dense.weight.std().item() == pytest.approx(bound / math.sqrt(3.0), rel=0.05)
    assert torch.all(dense.bias == 0)
    torch.nn.init.normal_(dense.bias)
    kernel = dense.weight if layout == "in_out" else dense.weight.t()  # as [in, out]
    x = torch.randn(3, 16)
    torch.testing.assert_close(dense(x), x @ kernel + dense.bias)
    assert dense(x).shape == (3, 1024)
