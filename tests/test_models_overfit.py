"""A tiny Transformer memorises a handful of real Multi30k sentence pairs (BLEU > 90)."""

from __future__ import annotations

from pathlib import Path

import torch

from models.bleu import corpus_bleu
from models.decoding import beam_search, greedy_decode
from models.loss import label_smoothed_cross_entropy
from models.presets import model_config
from models.transformer import Transformer

PAD, BOS, EOS = 0, 1, 2
NUM_PAIRS = 8
MAX_STEPS = 400


def _read_pairs(folder: Path) -> tuple[list[str], list[str]]:
    english = (folder / "train.en").read_text(encoding="utf-8").splitlines()[:NUM_PAIRS]
    german = (folder / "train.de").read_text(encoding="utf-8").splitlines()[:NUM_PAIRS]
    return [" ".join(s.split()) for s in english], [" ".join(s.split()) for s in german]


def _word_ids(sentences: list[str], vocab: dict[str, int]) -> list[list[int]]:
    return [[vocab.setdefault(w, len(vocab)) for w in s.split()] for s in sentences]


def _pad(rows: list[list[int]]) -> torch.Tensor:
    width = max(map(len, rows))
    return torch.tensor([r + [PAD] * (width - len(r)) for r in rows])


def test_tiny_model_overfits_a_handful_of_real_pairs(multi30k_dir: Path) -> None:
    sources, references = _read_pairs(multi30k_dir)
    vocab = {"<pad>": PAD, "<s>": BOS, "</s>": EOS}
    src_ids, tgt_ids = _word_ids(sources, vocab), _word_ids(references, vocab)
    words = {i: w for w, i in vocab.items()}
    src = _pad([[*s, EOS] for s in src_ids])
    tgt_in = _pad([[BOS, *t] for t in tgt_ids])
    tgt_out = _pad([[*t, EOS] for t in tgt_ids])

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = Transformer(model_config("tiny", vocab_size=len(vocab)), pad_id=PAD)
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.98))
        def greedy_bleu() -> float:
            hyps = greedy_decode(model, src, bos_id=BOS, eos_id=EOS, pad_id=PAD)
            return corpus_bleu([" ".join(words[t] for t in h) for h in hyps], references).score

        history = [(0, greedy_bleu())]
        for step in range(1, MAX_STEPS + 1):
            model.train()
            loss, _, tokens = label_smoothed_cross_entropy(model(src, tgt_in), tgt_out, 0.1, PAD)
            optimizer.zero_grad()
            (loss / tokens).backward()
            optimizer.step()
            if step % 25 == 0:
                history.append((step, greedy_bleu()))
                if history[-1][1] > 90:
                    break
        assert history[-1][1] > 90, f"greedy BLEU by step: {history}"
        assert history[0][1] < 5  # untrained
        beams = beam_search(model, src, bos_id=BOS, eos_id=EOS, pad_id=PAD, beam_size=4)
        beam_bleu = corpus_bleu([" ".join(words[t] for t in h) for h in beams], references)
        assert beam_bleu.score > 90, f"beam BLEU {beam_bleu}"
    finally:
        torch.set_num_threads(threads)
