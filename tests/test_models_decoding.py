"""Greedy decoding and batched beam search with cached keys/values."""

from __future__ import annotations

import itertools

import pytest
import torch

from models.decoding import beam_search, beam_search_nbest, gnmt_length_penalty, greedy_decode
from models.loss import label_smoothed_cross_entropy
from models.presets import model_config
from models.transformer import Transformer

PAD, BOS, EOS = 0, 1, 2
IDS = {"bos_id": BOS, "eos_id": EOS, "pad_id": PAD}


def _random_model(seed: int, vocab: int, eos_bias: float = 0.0) -> Transformer:
    """An untrained tiny model; the final LayerNorm bias shifts the eos logit by ``eos_bias``."""
    torch.manual_seed(seed)
    model = Transformer(model_config("tiny", vocab_size=vocab, dropout=0.0), pad_id=PAD).eval()
    with torch.no_grad():
        eos_row = model.softmax_weight[EOS]
        model.decoder_norm.bias.copy_(eos_bias * eos_row / eos_row.norm() ** 2)
    return model


REVERSE_VOCAB = 24


def _reverse_batch(g: torch.Generator, size: int) -> tuple[torch.Tensor, ...]:
    """Random sequences (3..vocab-1, length 1-10) + eos; targets are the reversed sequences."""
    src, tgt_in, tgt_out = (torch.full((size, 11), PAD) for _ in range(3))
    for i, length in enumerate(torch.randint(1, 11, (size,), generator=g).tolist()):
        seq = torch.randint(3, REVERSE_VOCAB, (length,), generator=g)
        src[i, :length], src[i, length] = seq, EOS
        tgt_in[i, 0], tgt_in[i, 1 : length + 1] = BOS, seq.flip(0)
        tgt_out[i, :length], tgt_out[i, length] = seq.flip(0), EOS
    return src, tgt_in, tgt_out


@pytest.fixture(scope="module")
def half_trained() -> Transformer:
    """A tiny model trained briefly to reverse sequences: it emits eos at varied, plausible
    lengths and is far from certain, so search choices matter (random models are degenerate)."""
    torch.manual_seed(0)
    model = Transformer(model_config("tiny", vocab_size=REVERSE_VOCAB), pad_id=PAD)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        src, tgt_in, tgt_out = _reverse_batch(g, 32)
        loss, _, tokens = label_smoothed_cross_entropy(model(src, tgt_in), tgt_out, 0.1, PAD)
        optimizer.zero_grad()
        (loss / tokens).backward()
        optimizer.step()
    return model.eval()


def _sources(seed: int, lengths: list[int], vocab: int = REVERSE_VOCAB) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    rows = [[*torch.randint(3, vocab, (n,), generator=g).tolist(), EOS] for n in lengths]
    width = max(map(len, rows))
    return torch.tensor([r + [PAD] * (width - len(r)) for r in rows])


def _sequence_log_prob(model: Transformer, src: torch.Tensor, tokens: list[int]) -> float:
    tgt_in = torch.tensor([[BOS, *tokens]])
    gold = torch.tensor([[*tokens, EOS]])
    with torch.no_grad():
        log_probs = model(src[None], tgt_in).log_softmax(-1)
    return log_probs.gather(-1, gold[..., None]).sum().item()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
def test_beam_of_one_equals_greedy(half_trained: Transformer, seed: int, alpha: float) -> None:
    src = _sources(seed, [3, 9, 1, 6, 10, 4, 7, 2, 8, 5])
    limits = dict(max_len_a=1.0, max_len_b=-1)  # about the true length: both endings occur
    greedy = greedy_decode(half_trained, src, **IDS, **limits)
    beam = beam_search(half_trained, src, **IDS, beam_size=1, length_penalty=alpha, **limits)
    assert beam == greedy
    caps = [int(1.0 * n - 1) for n in (src != PAD).sum(1).tolist()]
    lengths = [len(h) for h in greedy]
    # The comparison covers both ways a hypothesis ends: eos before the limit and the limit.
    assert any(n < cap for n, cap in zip(lengths, caps, strict=True))
    assert any(n == cap for n, cap in zip(lengths, caps, strict=True))


def test_wider_beams_find_hypotheses_at_least_as_good_on_average(
    half_trained: Transformer,
) -> None:
    src = _sources(9, [3, 9, 1, 6, 10, 4, 7, 2, 8, 5, 9, 10])
    totals = []
    for k in (1, 4):
        hyps = beam_search_nbest(half_trained, src, **IDS, beam_size=k, length_penalty=0.6)
        totals.append(sum(h[0][0] for h in hyps))
    # Beam 4 strictly improves on greedy here (-40.96 vs -42.96): the search does something.
    assert totals[1] > totals[0], totals


def test_greedy_picks_the_argmax_of_the_full_forward(half_trained: Transformer) -> None:
    model = half_trained
    src = _sources(3, [7])
    hyp = greedy_decode(model, src, **IDS, max_len_a=0.0, max_len_b=12)[0]
    prefix = [BOS, *hyp]
    with torch.no_grad():
        logits = model(src, torch.tensor([prefix]))[0]
    expected = logits.argmax(-1).tolist()
    assert hyp == expected[: len(hyp)]
    assert len(hyp) < 12 and expected[len(hyp)] == EOS


def test_beam_scores_are_length_normalised_model_log_probabilities(
    half_trained: Transformer,
) -> None:
    model = half_trained
    src = _sources(4, [4, 8, 2])
    alpha = 0.6
    nbest = beam_search_nbest(model, src, **IDS, beam_size=4, length_penalty=alpha)
    for row, hyps in zip(src, nbest, strict=True):
        assert len(hyps) >= 4
        scores = [score for score, _ in hyps]
        assert scores == sorted(scores, reverse=True)
        for score, tokens in hyps:
            expected = _sequence_log_prob(model, row, tokens)
            assert score == pytest.approx(expected / gnmt_length_penalty(len(tokens) + 1, alpha),
                                          abs=1e-4)


def test_wide_beam_equals_exhaustive_search() -> None:
    """With a beam wider than the search space, the result is the best of all hypotheses."""
    vocab, limit, alpha = 7, 3, 0.6  # 4 word tokens besides pad, bos and eos
    model = _random_model(5, vocab=vocab, eos_bias=1.0)
    src = _sources(5, [3], vocab=vocab)
    nbest = beam_search_nbest(model, src, **IDS, beam_size=200, length_penalty=alpha,
                              max_len_a=0.0, max_len_b=limit)[0]
    words = [t for t in range(vocab) if t not in (PAD, BOS, EOS)]
    exhaustive = []
    for length in range(limit + 1):
        for tokens in itertools.product(words, repeat=length):
            log_prob = _sequence_log_prob(model, src[0], list(tokens))
            exhaustive.append((log_prob / gnmt_length_penalty(length + 1, alpha), list(tokens)))
    exhaustive.sort(key=lambda item: item[0], reverse=True)
    assert len(nbest) == len(exhaustive) == 1 + 4 + 16 + 64
    torch.testing.assert_close(torch.tensor([s for s, _ in nbest]),
                               torch.tensor([s for s, _ in exhaustive]), rtol=0, atol=1e-4)
    assert [tokens for _, tokens in nbest[:3]] == [tokens for _, tokens in exhaustive[:3]]
    assert beam_search(model, src, **IDS, beam_size=200, length_penalty=alpha, max_len_a=0.0,
                       max_len_b=limit) == [exhaustive[0][1]]


def test_padded_batch_gives_the_same_hypotheses_as_each_sentence_alone(
    half_trained: Transformer,
) -> None:
    model = half_trained
    lengths = [2, 10, 6, 1]
    src = _sources(6, lengths)
    batched = beam_search(model, src, **IDS, beam_size=4)
    greedy_batched = greedy_decode(model, src, **IDS)
    for i, n in enumerate(lengths):
        alone = src[i : i + 1, : n + 1]
        assert beam_search(model, alone, **IDS, beam_size=4) == [batched[i]]
        assert greedy_decode(model, alone, **IDS) == [greedy_batched[i]]


def test_length_limit_is_a_times_source_length_plus_b() -> None:
    model = _random_model(7, vocab=40, eos_bias=-5.0)  # eos unlikely: hypotheses hit the limit
    src = _sources(7, [3, 8], vocab=40)
    limits = [int(0.5 * n + 2) for n in (src != PAD).sum(1).tolist()]
    for decode in (greedy_decode, beam_search):
        hyps = decode(model, src, **IDS, max_len_a=0.5, max_len_b=2)
        assert [len(h) for h in hyps] == limits
        assert all(t not in (PAD, BOS, EOS) for h in hyps for t in h)


def test_gnmt_length_penalty() -> None:
    assert gnmt_length_penalty(1, 0.6) == pytest.approx(1.0)
    assert gnmt_length_penalty(7, 0.6) == pytest.approx(2.0**0.6)
    assert gnmt_length_penalty(10, 0.0) == 1.0


def test_empty_batch_decodes_to_nothing() -> None:
    model = _random_model(9, vocab=20)
    empty = torch.zeros((0, 4), dtype=torch.long)
    assert greedy_decode(model, empty, **IDS) == []
    assert beam_search(model, empty, **IDS) == []


def test_decoding_restores_training_mode_and_rejects_bad_arguments() -> None:
    model = _random_model(8, vocab=20).train()
    src = _sources(8, [3], vocab=20)
    beam_search(model, src, **IDS, max_len_b=2)
    assert model.training
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(model, src, **IDS, beam_size=0)
    with pytest.raises(ValueError, match="eos_id=99"):
        greedy_decode(model, src, bos_id=BOS, eos_id=99, pad_id=PAD)
