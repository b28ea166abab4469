"""BLEU from summable sufficient statistics agrees exactly with sacreBLEU."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import sacrebleu
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models.bleu import (
    NUM_STATISTICS,
    BleuScore,
    bleu_from_statistics,
    bleu_statistics,
    corpus_bleu,
)

HYPS = [
    "The cat sat on the mat.",
    "Ein Mann fährt mit dem Fahrrad, über die Straße!",
    "Two dogs play in the snow",
    "A woman—in a red coat—waits (patiently) for the bus.",
]
REFS = [
    "The cat is sitting on the mat.",
    "Ein Mann fährt Fahrrad über die Straße.",
    "Two dogs are playing in the snow.",
    "A woman in a red coat waits for the bus.",
]


def _degrade(line: str, i: int) -> str:
    """A deterministic imperfect 'translation' of a reference line."""
    words = line.split()
    if i % 3 == 0:
        words = words[:-2]
    elif i % 3 == 1 and len(words) > 3:
        words[1], words[2] = words[2], words[1]
    return " ".join(words)


def test_text_against_itself_is_100() -> None:
    score = corpus_bleu(REFS, REFS)
    assert score.score == pytest.approx(100.0)
    assert score.tokenized_score == pytest.approx(100.0)
    assert score.brevity_penalty == pytest.approx(1.0)


def test_known_example_matches_sacrebleu_directly() -> None:
    score = corpus_bleu(HYPS, REFS)
    expected = sacrebleu.corpus_bleu(HYPS, [REFS])
    expected_intl = sacrebleu.corpus_bleu(HYPS, [REFS], tokenize="intl")
    assert score.score == expected.score
    assert score.tokenized_score == expected_intl.score
    assert 0 < score.score < 100
    assert score.hyp_len == expected.sys_len and score.ref_len == expected.ref_len
    assert list(score.precisions) == pytest.approx(expected.precisions)


def test_signatures_name_the_tokenizer_and_version() -> None:
    score = corpus_bleu(HYPS, REFS)
    assert "tok:13a" in score.signature and "nrefs:1" in score.signature
    assert f"version:{sacrebleu.__version__}" in score.signature
    assert "tok:intl" in score.tokenized_signature
    for tokenize, signature in (("13a", score.signature), ("intl", score.tokenized_signature)):
        metric = sacrebleu.BLEU(tokenize=tokenize)
        metric.corpus_score(HYPS, [REFS])
        assert signature == str(metric.get_signature())
    as_dict = score.as_dict()
    assert as_dict["score"] == score.score and as_dict["tokenized_signature"].count("tok:intl") == 1
    assert "tokenized BLEU (intl tokenizer)" in str(score)


def test_statistics_of_two_halves_sum_to_the_whole_corpus_score(newstest2014_dir: Path) -> None:
    refs = (newstest2014_dir / "newstest2014.de").read_text(encoding="utf-8").splitlines()[:300]
    hyps = [_degrade(line, i) for i, line in enumerate(refs)]
    first = bleu_statistics(hyps[:137], refs[:137])
    second = bleu_statistics(hyps[137:], refs[137:])
    assert first.dtype == torch.float64 and first.shape == (NUM_STATISTICS,)
    summed = bleu_from_statistics(first + second)
    assert summed.score == sacrebleu.corpus_bleu(hyps, [refs]).score
    assert summed.tokenized_score == sacrebleu.corpus_bleu(hyps, [refs], tokenize="intl").score
    # Averaging the halves' scores is not the corpus score (why statistics are summed).
    halves = [bleu_from_statistics(s).score for s in (first, second)]
    assert summed.score != pytest.approx(sum(halves) / 2, abs=1e-9)


def test_tokenized_bleu_differs_from_13a_when_punctuation_is_attached() -> None:
    hyps = ["Preis: 3.000€ (netto)—sofort!"]
    refs = ["Preis: 3.000 € (netto) — sofort !"]
    score = corpus_bleu(hyps, refs)
    assert score.tokenized_score != score.score
    assert score.tokenized_score == sacrebleu.corpus_bleu(hyps, [refs], tokenize="intl").score


def test_empty_shard_contributes_nothing() -> None:
    assert torch.equal(bleu_statistics([], []), torch.zeros(NUM_STATISTICS, dtype=torch.float64))
    whole = bleu_statistics(HYPS, REFS)
    assert bleu_from_statistics(whole + bleu_statistics([], [])) == bleu_from_statistics(whole)
    assert isinstance(bleu_from_statistics(whole), BleuScore)


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        bleu_statistics(["a", "b"], ["a"])
    with pytest.raises(TypeError, match=r"hypotheses\[1\]"):
        bleu_statistics(["a", 3], ["a", "b"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="list of strings"):
        bleu_statistics("a b", "a b")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected a vector of 20"):
        bleu_from_statistics(torch.zeros(10))
    with pytest.raises(ValueError, match="integer counts"):
        bleu_from_statistics(torch.full((NUM_STATISTICS,), 0.5, dtype=torch.float64))


_WORDS = ["der", "Hund", "läuft", ",", "über", "die", "Wiese", ".", "ein", "Mann", "(", ")", "3,5"]
_sentence = st.lists(st.sampled_from(_WORDS), min_size=0, max_size=12).map(" ".join)


@settings(max_examples=30, deadline=None)
@given(
    pairs=st.lists(st.tuples(_sentence, _sentence), min_size=1, max_size=12),
    cuts=st.lists(st.integers(0, 12), max_size=3),
)
def test_statistics_of_any_partition_sum_to_sacrebleu_corpus_score(
    pairs: list[tuple[str, str]], cuts: list[int]
) -> None:
    hyps, refs = [h for h, _ in pairs], [r for _, r in pairs]
    bounds = sorted({0, len(pairs), *(min(c, len(pairs)) for c in cuts)})
    total = sum(bleu_statistics(hyps[a:b], refs[a:b]) for a, b in itertools.pairwise(bounds))
    score = bleu_from_statistics(total)
    assert score.score == sacrebleu.corpus_bleu(hyps, [refs]).score
    assert score.tokenized_score == sacrebleu.corpus_bleu(hyps, [refs], tokenize="intl").score


def _all_reduce_worker(rank: int, world_size: int, init_file: str, result_file: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world_size)
    try:
        stats = bleu_statistics(HYPS[rank::world_size], REFS[rank::world_size])
        dist.all_reduce(stats)
        if rank == 0:
            torch.save(stats, result_file)
    finally:
        dist.destroy_process_group()


def test_statistics_all_reduced_across_two_ranks_give_the_corpus_score(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    result = tmp_path / "stats.pt"
    # fork: the children inherit the imported modules (spawn would re-import torch in each).
    mp.start_processes(_all_reduce_worker, args=(2, str(tmp_path / "init"), str(result)),
                       nprocs=2, start_method="fork")
    score = bleu_from_statistics(torch.load(result))
    assert score.score == sacrebleu.corpus_bleu(HYPS, [REFS]).score
    assert score.tokenized_score == sacrebleu.corpus_bleu(HYPS, [REFS], tokenize="intl").score
