"""The baseline optimizers by name: each builds, steps, keeps the state its paper describes."""

from __future__ import annotations

import pytest
import torch

from adafactor import optimizer_state_bytes
from experiments.baselines.registry import BASELINES, build_baseline
from experiments.optimizers import build_optimizer
from models.loss import label_smoothed_cross_entropy
from models.presets import model_config
from models.transformer import Transformer

VOCAB = 200


def _model(layout: str = "out_in", **overrides) -> tuple[Transformer, object]:
    cfg = model_config("tiny", VOCAB, kernel_layout=layout, **overrides)
    torch.manual_seed(0)
    return Transformer(cfg, pad_id=0), cfg


def _step(model: Transformer, optimizer: torch.optim.Optimizer, lr: float = 1e-3) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
    src = torch.randint(4, VOCAB, (3, 7))
    tgt = torch.randint(4, VOCAB, (3, 8))
    loss, _, n = label_smoothed_cross_entropy(model(src, tgt[:, :-1]), tgt[:, 1:], 0.1, 0)
    optimizer.zero_grad()
    (loss / n).backward()
    optimizer.step()



def _adam_mini_second_moment_floats(model: Transformer, cfg) -> int:
    """Adam-mini's blocks as its paper describes them, counted from the torch [out, in] shapes."""
    total = 0
    for name, p in model.named_parameters():
        if "bias" in name:
            total += p.numel()  # Adam's full second moment
        elif "q_proj" in name or "k_proj" in name:
            total += cfg.n_heads  # one per head
        elif p.dim() == 2:
            total += p.shape[0]  # one per output neuron / token
        else:
            total += 1  # layer-norm gains: one per tensor
    return total


def _came_second_moment_floats(model: Transformer) -> int:
    total = 0
    for _, p in model.named_parameters():
        if p.dim() >= 2:
            total += 2 * (p.shape[0] + p.shape[1])  # factored v and factored confidence
        else:
            total += p.numel()
    return total


def _expected_floats(name: str, model: Transformer, cfg) -> int:
    n = sum(p.numel() for p in model.parameters())
    if name in ("sgd-momentum", "adagrad", "rmsprop", "lion", "tiger"):
        return n
    if name in ("adam", "adamw", "lamb", "adax"):
        return 2 * n
    if name == "adam-mini":
        return n + _adam_mini_second_moment_floats(model, cfg)
    if name == "came":
        return n + _came_second_moment_floats(model)
    raise AssertionError(f"no expectation for {name}")


@pytest.mark.parametrize("name", list(BASELINES))
def test_baseline_builds_steps_and_keeps_its_papers_state(name: str) -> None:
    model, cfg = _model()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = build_optimizer(model.named_parameters(), {"name": name},
                                {"kind": "peak", "peak": 1e-3}, model_cfg=cfg)
    _step(model, optimizer)
    moved = sum(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    assert moved == len(before), f"{name} left {len(before) - moved} tensors unchanged"
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # Per parameter tensor at most 16 bytes of scalars: step counters, LAMB's three norms.
    expected = 4 * _expected_floats(name, model, cfg)
    n_tensors = len(before)
    measured = optimizer_state_bytes(optimizer)
    assert expected <= measured <= expected + 16 * n_tensors, (name, measured, expected)


def test_adam_mini_blocks_are_heads_and_output_neurons() -> None:
    model, cfg = _model()
    optimizer = build_optimizer(model.named_parameters(), {"name": "adam-mini"},
                                {"kind": "peak", "peak": 1e-3}, model_cfg=cfg)
    _step(model, optimizer)
    params = dict(model.named_parameters())
    q = optimizer.state[params["encoder_layers.0.self_attn.q_proj.weight"]]
    assert q["vmean"].shape == (cfg.n_heads, 1)
    ffn = optimizer.state[params["encoder_layers.0.ffn.linear_in.weight"]]
    assert ffn["vmean"].shape == (cfg.d_ff, 1)  # one per output neuron of [d_ff, d_model]
    out = optimizer.state[params["encoder_layers.0.self_attn.out_proj.weight"]]
    assert out["vmean"].shape == (cfg.d_model, 1), "out_proj must be per neuron, not one value"
    emb = optimizer.state[params["shared_embedding"]]
    assert emb["vmean"].shape == (VOCAB, 1)  # one per token


def test_adam_mini_refuses_the_t2t_kernel_layout() -> None:
    model, cfg = _model(layout="in_out")
    with pytest.raises(ValueError, match="kernel_layout='out_in'"):
        build_optimizer(model.named_parameters(), {"name": "adam-mini"},
                        {"kind": "peak", "peak": 1e-3}, model_cfg=cfg)
    with pytest.raises(ValueError, match="needs the model config"):
        build_baseline("adam-mini", list(model.named_parameters()), {})


def test_tiger_equals_lion_with_equal_betas() -> None:
    """Two packages, one rule: Tiger (pytorch-optimizer) is Lion (lion-pytorch) with b1 = b2."""
    torch.manual_seed(1)
    start = torch.randn(6, 5)
    a, b = start.clone().requires_grad_(), start.clone().requires_grad_()
    tiger = build_baseline("tiger", [("w", a)], {"beta": 0.9})
    lion = build_baseline("lion", [("w", b)], {"betas": [0.9, 0.9]})
    for opt in (tiger, lion):
        opt.param_groups[0]["lr"] = 1e-2
    for _ in range(12):
        grad = torch.randn(6, 5)
        a.grad, b.grad = grad.clone(), grad.clone()
        tiger.step()
        lion.step()
    assert not torch.equal(a, start)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_lion_follows_its_papers_rule() -> None:
    """Lion (Chen et al. 2023, Algorithm 2): c = b1 m + (1-b1) g; x -= lr sign(c);
    m = b2 m + (1-b2) g, in float64 beside the package."""
    torch.manual_seed(2)
    x = torch.randn(4, 3, dtype=torch.float64)
    p = x.clone().float().requires_grad_()
    lion = build_baseline("lion", [("w", p)], {"betas": (0.9, 0.99)})
    lion.param_groups[0]["lr"] = 1e-2
    m = torch.zeros_like(x)
    for _ in range(10):
        g = torch.randn(4, 3, dtype=torch.float64)
        p.grad = g.float()
        lion.step()
        x -= 1e-2 * torch.sign(0.9 * m + 0.1 * g)
        m = 0.99 * m + 0.01 * g
    torch.testing.assert_close(p.double(), x, rtol=0, atol=1e-6)


def test_defaults_weight_decay_zero_except_adamw() -> None:
    model, cfg = _model()
    for name in BASELINES:
        optimizer = build_baseline(name, list(model.named_parameters()), {}, cfg)
        decays = {g.get("weight_decay", 0.0) for g in optimizer.param_groups}
        assert decays == ({0.01} if name == "adamw" else {0.0}), name


def test_spec_overrides_reach_the_optimizer_and_bad_keys_name_the_valid_ones() -> None:
    model, cfg = _model()
    lion = build_baseline("lion", list(model.named_parameters()), {"betas": [0.95, 0.98]}, cfg)
    assert lion.param_groups[0]["betas"] == (0.95, 0.98)
    with pytest.raises(ValueError, match=r"unknown CAME setting\(s\) \['beta'\].*betas"):
        build_baseline("came", list(model.named_parameters()), {"beta": 0.9}, cfg)
    with pytest.raises(ValueError, match="unknown baseline optimizer 'adamax'"):
        build_baseline("adamax", list(model.named_parameters()), {}, cfg)


def test_every_baseline_names_its_source_and_state() -> None:
    for name, baseline in BASELINES.items():
        source = baseline.source()
        assert "not installed" not in source, f"{name}: {source}"
        assert baseline.constructor.split(".")[-1] in source
        assert baseline.state


@pytest.mark.parametrize("name", list(BASELINES))
def test_checkpoint_round_trip_continues_identically(name: str, tmp_path) -> None:
    """A requeued run restores the optimizer from a weights-only checkpoint and must go on exactly
    as an uninterrupted run."""

    def fresh():
        model, cfg = _model()
        return model, build_optimizer(model.named_parameters(), {"name": name},
                                      {"kind": "peak", "peak": 1e-3}, model_cfg=cfg)

    torch.manual_seed(5)
    batches = [(torch.randint(4, VOCAB, (3, 7)), torch.randint(4, VOCAB, (3, 8)))
               for _ in range(4)]

    def step(model, optimizer, batch) -> None:
        for group in optimizer.param_groups:
            group["lr"] = 1e-3
        src, tgt = batch
        loss, _, n = label_smoothed_cross_entropy(model(src, tgt[:, :-1]), tgt[:, 1:], 0.1, 0)
        optimizer.zero_grad()
        (loss / n).backward()
        optimizer.step()

    straight, straight_opt = fresh()
    for batch in batches:
        step(straight, straight_opt, batch)

    first, first_opt = fresh()
    for batch in batches[:2]:
        step(first, first_opt, batch)
    torch.save({"model": first.state_dict(), "optimizer": first_opt.state_dict()},
               tmp_path / "ckpt.pt")
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    resumed, resumed_opt = fresh()
    resumed.load_state_dict(ckpt["model"])
    resumed_opt.load_state_dict(ckpt["optimizer"])
    for batch in batches[2:]:
        step(resumed, resumed_opt, batch)
    for (key, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(),
                           strict=True):
        assert torch.equal(a, b), f"{name}: {key} differs after resume"
