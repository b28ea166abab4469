"""Model presets and ModelConfig validation."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from models.config import ModelConfig
from models.presets import PRESETS, model_config
from models.transformer import Transformer


def _count(cfg: ModelConfig) -> int:
    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = Transformer(cfg, pad_id=0)
    return sum(p.numel() for p in model.parameters())


def test_base_preset_is_t2t_transformer_base_v2() -> None:
    cfg = model_config("base", vocab_size=32768)
    assert (cfg.d_model, cfg.d_ff, cfg.n_heads) == (512, 2048, 8)
    assert (cfg.n_encoder_layers, cfg.n_decoder_layers) == (6, 6)
    assert (cfg.dropout, cfg.attention_dropout, cfg.relu_dropout) == (0.1, 0.1, 0.1)
    assert cfg.label_smoothing == 0.1
    assert cfg.tie_embeddings is True
    assert cfg.resolved_emb_init_std == pytest.approx(512**-0.5)
    assert cfg.resolved_emb_multiplier == pytest.approx(512**0.5)


def test_base_parameter_count_is_60_9m_by_formula_and_module() -> None:
    cfg = model_config("base", vocab_size=32768)
    # The paper's setup (docs/paper.md): about 60.9M parameters with a 32,768-token shared
    # vocabulary.
    assert cfg.num_parameters() == 60_880_896
    assert _count(cfg) == cfg.num_parameters()


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("tie", [True, False])
def test_formula_matches_module_for_every_preset(name: str, tie: bool) -> None:
    cfg = model_config(name, vocab_size=1000, tie_embeddings=tie)
    assert _count(cfg) == cfg.num_parameters()


def test_untied_adds_two_embedding_matrices() -> None:
    tied = model_config("tiny", vocab_size=500)
    untied = model_config("tiny", vocab_size=500, tie_embeddings=False)
    assert untied.num_parameters() - tied.num_parameters() == 2 * 500 * tied.d_model


def test_big_and_small_and_tiny_dimensions() -> None:
    big = model_config("big", vocab_size=100)
    assert (big.d_model, big.d_ff, big.n_heads, big.dropout) == (1024, 4096, 16, 0.3)
    small = model_config("small", vocab_size=100)
    assert small.d_model < 512 and small.n_encoder_layers < 6
    tiny = model_config("tiny", vocab_size=100)
    assert tiny.d_model <= 128 and tiny.n_encoder_layers == tiny.n_decoder_layers == 2


def test_overrides_apply() -> None:
    cfg = model_config("tiny", vocab_size=64, emb_init_std=1.0, emb_multiplier=1.0, dropout=0.2)
    assert (cfg.resolved_emb_init_std, cfg.resolved_emb_multiplier, cfg.dropout) == (1.0, 1.0, 0.2)


def test_unknown_preset_and_override_are_named() -> None:
    with pytest.raises(ValueError, match="'huge'"):
        model_config("huge", vocab_size=100)
    with pytest.raises(ValueError, match="d_modle"):
        model_config("tiny", vocab_size=100, d_modle=32)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"n_heads": 5}, "n_heads"),
        ({"dropout": 1.5}, "dropout"),
        ({"d_model": "64"}, "d_model"),
        ({"emb_init_std": -1.0}, "emb_init_std"),
        ({"tie_embeddings": "yes"}, "tie_embeddings"),
        ({"n_encoder_layers": 0}, "n_encoder_layers"),
    ],
)
def test_bad_values_are_rejected_with_the_field_name(overrides: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        model_config("tiny", vocab_size=100, **overrides)


def test_config_round_trips_through_dict_and_rejects_unknown_keys() -> None:
    cfg = model_config("small", vocab_size=123, tie_embeddings=False)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="bogus"):
        ModelConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    assert {f.name for f in dataclasses.fields(ModelConfig)} >= {
        "vocab_size", "d_model", "d_ff", "n_heads", "n_encoder_layers", "n_decoder_layers",
        "dropout", "attention_dropout", "relu_dropout", "label_smoothing", "tie_embeddings",
        "emb_init_std", "emb_multiplier", "max_positions",
    }
