"""Smoke tests of the two Multi30k benchmark scripts: a few real steps each, output fields checked.

No timing is asserted; the tests check that both loops of the throughput benchmark do the same
work and that the CPU Multi30k run writes BLEU figures consistent with its hypotheses file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from experiments.benchmarks import cpu_multi30k, training_throughput
from models.bleu import corpus_bleu

VOCAB_SIZE = 500
MAX_TOKENS = 300  # TranslationData needs max_tokens > max_len (256)


@pytest.fixture(scope="module")
def vocab_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vocab")


@pytest.mark.slow
def test_throughput_loops_do_the_same_work(multi30k_dir: Path, vocab_cache: Path) -> None:
    setup = training_throughput.build_setup(
        preset="tiny", max_tokens=MAX_TOKENS, steps=3, vocab_size=VOCAB_SIZE,
        corpus_path=multi30k_dir, cache_dir=vocab_cache,
    )
    assert len(setup.batches) == 3
    assert all(n > 0 for n in setup.target_tokens + setup.source_tokens)

    # Same initial weights, batches and optimizer: both loops end at (nearly) the same weights
    # (the bare loop divides the loss by the token count, the module divides the gradients).
    _, bare_details, bare_model = training_throughput.run_bare(setup, 1)
    _, light_details, light_model = training_throughput.run_lightning(setup, 1)
    initial = setup.initial_state
    bare_state, light_state = bare_model.state_dict(), light_model.state_dict()
    assert bare_state.keys() == light_state.keys() == initial.keys()
    moved = 0
    for key, value in bare_state.items():
        torch.testing.assert_close(light_state[key], value, rtol=1e-4, atol=1e-5)
        moved += int(not torch.equal(value, initial[key]))
    assert moved > len(initial) // 2  # training changed the weights
    assert bare_details["cpu_seconds"] > 0 and light_details["fit_overhead_s"] >= 0


@pytest.mark.slow
def test_throughput_main_reports_both_loops(
    multi30k_dir: Path, vocab_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "throughput.json"
    result = training_throughput.main([
        "--preset", "tiny", "--steps", "3", "--warmup-steps", "1", "--repeats", "2",
        "--threads", "1", "--max-tokens", str(MAX_TOKENS), "--vocab-size", str(VOCAB_SIZE),
        "--corpus-path", str(multi30k_dir), "--cache-dir", str(vocab_cache), "--json", str(out),
    ])
    assert json.loads(out.read_text(encoding="utf-8")) == json.loads(json.dumps(result))
    assert result["overrides"] == cpu_multi30k.CPU_OVERRIDES  # the CPU run's model by default
    assert result["model"]["dropout"] == 0.0 and result["steps"] == 3
    assert result["timed_tokens"] > result["timed_target_tokens"] > 0
    for name in training_throughput.LOOPS:
        loop = result["loops"][name]
        assert len(loop["runs"]) == 2
        for run in loop["runs"]:
            assert run["tokens_per_s"] == pytest.approx(result["timed_tokens"] / run["seconds"])
            assert run["threads"] == 1
    bare, light = result["loops"]["bare"], result["loops"]["lightning"]
    assert result["ratio_lightning_over_bare"] == pytest.approx(
        light["median_tokens_per_s"] / bare["median_tokens_per_s"]
    )
    printed = capsys.readouterr().out
    assert "bare" in printed and "lightning" in printed and "ratio lightning/bare" in printed


def test_throughput_rejects_bad_settings(multi30k_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="steps must be >= 1"):
        training_throughput.build_setup(steps=0, corpus_path=multi30k_dir, cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"train\.en"):
        training_throughput.build_setup(corpus_path=tmp_path, cache_dir=tmp_path)


@pytest.mark.slow
def test_cpu_multi30k_writes_consistent_figures(
    multi30k_dir: Path, vocab_cache: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = cpu_multi30k.main([
        "--minutes", "5", "--max-steps", "3", "--preset", "tiny", "--override", "dropout=0.0",
        "--max-tokens", str(MAX_TOKENS), "--vocab-size", str(VOCAB_SIZE), "--threads", "1",
        "--out", str(out), "--corpus-path", str(multi30k_dir), "--cache-dir", str(vocab_cache),
        "--beam", "2", "--eval-max-sentences", "8", "--log-every", "1",
    ])
    written = json.loads((out / cpu_multi30k.RESULT_FILE).read_text(encoding="utf-8"))
    assert written == json.loads(json.dumps(result))
    assert result["steps"] == 3 and [p["step"] for p in result["train_curve"]] == [1, 2, 3]
    assert result["optimizer"]["warmup_init"] is False
    assert result["overrides"] == {"dropout": 0.0} and result["preset"] == "tiny"
    assert result["bleu_recipe"] == {"split": "test2016", "sentences": 8, "beam": 2,
                                     "length_penalty": 0.6, "max_len": "1.2 * |src| + 10"}
    assert "tok:13a" in result["bleu_signature"] and "intl" in result["tokenized_bleu_signature"]
    assert result["tokens_per_s"] > result["target_tokens_per_s"] > 0

    hypotheses = (out / cpu_multi30k.HYPOTHESES_FILE).read_text(encoding="utf-8").splitlines()
    references = (multi30k_dir / "test2016.de").read_text(encoding="utf-8").splitlines()[:8]
    assert len(hypotheses) == 8
    rescored = corpus_bleu(hypotheses, [" ".join(r.split()) for r in references])
    assert result["bleu"] == pytest.approx(rescored.score)
    assert result["tokenized_bleu"] == pytest.approx(rescored.tokenized_score)


def test_cpu_multi30k_rejects_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="minutes must be > 0"):
        cpu_multi30k.run(minutes=0, out=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"test2016\.en"):
        cpu_multi30k.run(minutes=1, corpus_path=tmp_path, out=tmp_path / "out")


def test_optimizer_step_shape_lists_and_floors():
    """The optimizer-step benchmark's two shape lists (Vaswani et al.'s Transformer base and this
    repo's base preset, built on the meta device) and a floor for every optimizer it runs."""
    from experiments.benchmarks import optimizer_step as bench

    vaswani, preset = bench.transformer_base_shapes(), bench.preset_shapes()
    assert len(vaswani) == 253 and len(preset) == 185
    assert sum(torch.Size(s).numel() for _, s in vaswani) == 60_522_496
    assert abs(sum(torch.Size(s).numel() for _, s in preset) - 60.9e6) < 0.1e6
    assert set(bench.BYTES_PER_PARAM) == set(bench.OPTIMIZERS)
    params = bench.make_params(torch.device("cpu"), shapes="vaswani")[:3]
    for name in bench.OPTIMIZERS:
        if name != "hf-adafactor":
            assert isinstance(bench.build_optimizer(name, params), torch.optim.Optimizer)
