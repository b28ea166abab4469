"""The Triton step under Triton's interpreter (TRITON_INTERPRET=1 runs the kernels on CPU
tensors): every Table 2 row against the float64 transcription, the keyed bf16 rounding bits of
the CPU paths, and the non-finite policy."""

from __future__ import annotations

import sys
import zlib

import pytest
import torch
from test_adafactor_paper_rows import SHAPES, TABLE2, make_optimizer, paper_run, random_problem

from adafactor import Adafactor, triton_step

pytestmark = pytest.mark.skipif(
    not triton_step.triton_available(),
    reason="triton is not installed (pip install 'adafactor-repro[gpu]' or triton --no-deps)",
)


@pytest.fixture(autouse=True)
def interpreter(monkeypatch):
    """Kernels defined under TRITON_INTERPRET=1 (and defined afresh after the test)."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    sys.modules.pop("adafactor.triton_kernels", None)
    yield
    sys.modules.pop("adafactor.triton_kernels", None)


WORST: dict[str, float] = {}


@pytest.mark.parametrize("row", list(TABLE2))
def test_triton_step_matches_float64_transcription(row: str, capsys):
    s = TABLE2[row]
    worst = 0.0
    for shape_name, shape in SHAPES.items():
        x0, grads = random_problem(shape, seed=zlib.crc32(f"{row}/{shape_name}".encode()))
        expected, alphas = paper_run(x0, grads, s, warmup=False)
        p = x0.clone().requires_grad_()
        opt, sched = make_optimizer(p, s, warmup=False, implementation="triton")
        for t, g in enumerate(grads):
            p.grad = g.clone()
            opt.step()
            if sched is not None:
                sched.step()
            err = (p.detach().double() - expected[t]).abs().max().item() / alphas[t]
            worst = max(worst, err)
            assert err <= 1e-4, (row, shape_name, t + 1, err)
        # the kernels took it (no fallback): the state is what they write
        assert opt.state[p]["step"].item() == len(grads)
    with capsys.disabled():
        print(f"\nrow {row}: worst |X - X_float64| / alpha_t over {','.join(SHAPES)}, "
              f"{len(grads)} steps: {worst:.2e}")


def test_triton_step_is_taken_not_the_reference(monkeypatch):
    """Under the interpreter a CPU tensor is stepped by the kernels, not the reference."""
    import adafactor.optimizer as optimizer_module

    def refuse(*args, **kwargs):
        raise AssertionError("the reference path was called")

    monkeypatch.setattr(optimizer_module, "reference_update", refuse)
    p = torch.randn(5, 7).requires_grad_()
    opt = Adafactor([p], beta1=0.9, implementation="triton")
    p.grad = torch.randn(5, 7)
    opt.step()


def test_triton_step_draws_the_rounding_bits_of_the_cpu_paths():
    """bf16 stochastic rounding: the same bits as the fused CPU step and the reference (keyed by
    parameter, step and element), factored, vector and rank-3 tensors, with momentum."""
    gen = torch.Generator().manual_seed(3)
    shapes = [(300, 200), (77,), (2, 30, 40)]
    x0 = [(torch.randn(s, generator=gen) * 0.02).bfloat16() for s in shapes]
    grads = [[(torch.randn(s, generator=gen) * 1e-3).bfloat16() for s in shapes]
             for _ in range(3)]
    finals = {}
    for impl in ("reference", "fused_cpu", "triton"):
        params = [x.clone().requires_grad_() for x in x0]
        opt = Adafactor(params, beta1=0.9, implementation=impl)
        opt._rounding_key_base = 2024
        for step_grads in grads:
            for p, g in zip(params, step_grads, strict=True):
                p.grad = g.clone()
            opt.step()
        finals[impl] = params
    for impl in ("reference", "fused_cpu"):
        for a, b in zip(finals[impl], finals["triton"], strict=True):
            differ = (a != b).float().mean().item()
            assert differ < 1e-3, (impl, tuple(a.shape), differ)
    # and the noise is not round-to-nearest: a sizeable share of elements differ from it
    params = [x.clone().requires_grad_() for x in x0]
    opt = Adafactor(params, beta1=0.9, implementation="triton", stochastic_rounding=False)
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.clone()
        opt.step()
    assert (params[0] != finals["triton"][0]).float().mean().item() > 0.05


@pytest.mark.parametrize("factored", [True, False])
def test_triton_step_keeps_huge_gradients_finite(factored: bool):
    """G near the fp32 maximum: G^2 saturates and the sums are float64, so the update is finite
    and equals the reference's."""
    g = torch.tensor([[3e38, -1e38, 1.0], [2.0, 3e38, -5.0]])
    out = {}
    for impl in ("reference", "triton"):
        p = torch.zeros(2, 3).requires_grad_()
        opt = Adafactor([p], factored=factored, beta2=0.999, implementation=impl)
        p.grad = g.clone()
        opt.step()
        out[impl] = p.detach().clone()
    assert torch.isfinite(out["triton"]).all()
    torch.testing.assert_close(out["triton"], out["reference"], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("interpreted", [False, True])
@pytest.mark.parametrize("shape", [(1, 10**7), (10**7, 1), (3, 1000), (512, 512), (5, 7)])
def test_thin_matrices_get_long_tiles(shape, interpreted):
    """A fixed 16 x 128 tile made a 10^7 x 1 tensor 625,000 mostly empty programs, which the
    interpreter ran for hours: the tile follows the matrix, powers of two of one tile's size."""
    m, n = shape
    bm, bn = triton_step.tile_shape(m, n, interpreted)
    bm0, bn0 = triton_step.TILE_INTERPRETED if interpreted else triton_step.TILE_GPU
    assert bm & (bm - 1) == 0 and bn & (bn - 1) == 0 and bm * bn <= bm0 * bn0
    tiles = -(-m // bm) * -(-n // bn)
    assert tiles <= 4 * -(-m * n // (bm0 * bn0)), (bm, bn, tiles)
