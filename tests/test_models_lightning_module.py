"""TranslationModule: loss normalisation over accumulated batches, divergence, RNG in checkpoints,
evaluation BLEU from summed statistics."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from data.corpora import load_embedded
from data.datamodule import PadCollator
from data.vocab import build_vocab
from models.bleu import corpus_bleu
from models.lightning_module import TranslationModule
from models.loss import label_smoothed_cross_entropy
from models.presets import model_config


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    train = load_embedded().split("train")
    texts = [*train.source[:2000], *train.target[:2000]]
    return build_vocab(texts, 300, tmp_path_factory.mktemp("spm"))


def _batch(vocab, start: int, n: int) -> dict:
    text = load_embedded().split("valid")
    items = [(i, torch.tensor(vocab.encode(text.source[i])).numpy(),
              torch.tensor(vocab.encode(text.target[i])).numpy(), text.target[i])
             for i in range(start, start + n)]
    return PadCollator(vocab.pad_id, vocab.bos_id, vocab.eos_id)(items)


def _module(vocab, **overrides) -> TranslationModule:
    torch.manual_seed(0)
    cfg = model_config("tiny", vocab.size, d_model=32, d_ff=64, n_heads=2, **overrides)
    return TranslationModule(cfg, vocab, optimizer_factory=lambda p: torch.optim.SGD(p, lr=0.1),
                             decode="greedy")


def _attach(module: TranslationModule, accumulate: int) -> pl.Trainer:
    trainer = pl.Trainer(accelerator="cpu", devices=1, accumulate_grad_batches=accumulate,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    module.trainer = trainer
    return trainer


def test_accumulated_gradient_is_that_of_summed_loss_over_summed_tokens(vocab) -> None:
    no_dropout = {"dropout": 0.0, "attention_dropout": 0.0, "relu_dropout": 0.0}
    module = _module(vocab, **no_dropout)
    _attach(module, accumulate=2)
    a, b = _batch(vocab, 0, 3), _batch(vocab, 3, 5)
    for batch in (a, b):  # what Lightning does: loss / accumulate_grad_batches, backward
        (module.training_step(batch, 0) / 2).backward()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    module.on_before_optimizer_step(optimizer)
    got = [p.grad.clone() for p in module.parameters()]

    reference = _module(vocab, **no_dropout)
    reference.load_state_dict(module.state_dict())
    total_loss, total_tokens = 0.0, 0
    for batch in (a, b):
        logits = reference.model(batch["src"], batch["tgt_in"])
        loss, _, n = label_smoothed_cross_entropy(logits, batch["tgt_out"], 0.1, vocab.pad_id)
        total_loss, total_tokens = total_loss + loss, total_tokens + int(n)
    assert total_tokens != int((a["tgt_out"] != 0).sum())  # the two batches differ in size
    (total_loss / total_tokens).backward()
    for g, p in zip(got, reference.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-7)
    expected = float(total_loss) / total_tokens
    assert module.interval_row()["train_loss"] == pytest.approx(expected, rel=1e-6)


def test_non_finite_loss_marks_divergence_and_skips_the_step(vocab) -> None:
    module = _module(vocab)
    trainer = _attach(module, accumulate=1)
    with torch.no_grad():
        next(module.parameters()).fill_(float("nan"))
    assert module.training_step(_batch(vocab, 0, 2), 0) is None
    assert module.diverged and module.diverged_step == 1 and trainer.should_stop
    assert module.diverged_reason == "non-finite training loss"


def test_a_loss_past_blowup_factor_times_the_first_stops_the_run(vocab) -> None:
    for factor, stops in ((None, False), (2.0, True)):
        module = _module(vocab)
        module.blowup_factor = factor
        trainer = _attach(module, accumulate=1)
        assert module.training_step(_batch(vocab, 0, 2), 0) is not None
        first = module.first_loss
        with torch.no_grad():
            module.model.shared_embedding.mul_(100.0)  # tied softmax: confident and wrong
        result = module.training_step(_batch(vocab, 0, 2), 1)
        assert (result is None) == stops and module.diverged == stops
        assert trainer.should_stop == stops and module.first_loss == first
    assert module.diverged_reason.startswith("training loss ")
    assert module.diverged_reason.endswith(f"> 2 x the first batch's {first:.3f}")
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    restored = _module(vocab)
    restored.on_load_checkpoint(checkpoint)
    assert restored.first_loss == first and restored.diverged
    assert restored.diverged_reason == module.diverged_reason


def test_checkpoint_restores_the_rng_for_the_next_batch(vocab) -> None:
    module = _module(vocab)
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    expected = torch.rand(5)
    torch.rand(100)  # e.g. a new DataLoader iterator drawing its base seed
    restored = _module(vocab)
    restored.on_load_checkpoint(checkpoint)
    torch.rand(3)  # consumed before training restarts: must not matter
    restored.on_train_batch_start(_batch(vocab, 0, 1), 0)
    assert torch.equal(torch.rand(5), expected)


@pytest.mark.slow
def test_evaluate_bleu_equals_corpus_bleu_of_the_translations(vocab) -> None:
    module = _module(vocab)
    # Make the translations non-trivial: train briefly on the evaluation sentences themselves.
    batches = [_batch(vocab, 0, 8), _batch(vocab, 8, 8)]
    optimizer = torch.optim.Adam(module.parameters(), lr=3e-3)
    for _ in range(60):
        for batch in batches:
            loss, _, n = label_smoothed_cross_entropy(
                module.model(batch["src"], batch["tgt_in"]), batch["tgt_out"], 0.1, vocab.pad_id)
            optimizer.zero_grad()
            (loss / n).backward()
            optimizer.step()
    out = module.evaluate(batches, bleu=True)
    hyps = [h for b in batches for h in module.translate(b["src"])]
    refs = [r for b in batches for r in b["references"]]
    direct = corpus_bleu(hyps, refs)
    assert out["bleu"] == pytest.approx(direct.score)
    assert out["tokenized_bleu"] == pytest.approx(direct.tokenized_score)
    assert out["bleu"] > 0.0 and out["eval_sentences"] == 16
    assert out["bleu_signature"] == direct.signature


def test_bad_decode_mode(vocab, tmp_path: Path) -> None:
    cfg = model_config("tiny", vocab.size)
    with pytest.raises(ValueError, match="decode must be one of"):
        TranslationModule(cfg, vocab, optimizer_factory=torch.optim.SGD, decode="sample")
