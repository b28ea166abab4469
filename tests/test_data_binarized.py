"""data.binarized: the corpus is encoded once into a cache that every cell and rank reads by
position (mapping none of it); batches, lengths and the sampler's resume state equal those of
direct encoding."""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path

import numpy as np
import pytest

from data import binarized as binarized_module
from data.batching import TokenBudgetBatchSampler
from data.binarized import MANIFEST, binarize, encode_flat
from data.corpora import load_corpus
from data.datamodule import TranslationData
from data.vocab import SharedVocab

PAIRS = 3000


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small local folder corpus made from the embedded text (train, valid, test)."""
    folder = tmp_path_factory.mktemp("corpus")
    embedded = load_corpus("embedded")
    for split, count in (("train", PAIRS), ("valid", 200), ("test", 200)):
        text = embedded.split(split)
        (folder / f"{split}.en").write_text("".join(s + "\n" for s in text.source[:count]))
        (folder / f"{split}.de").write_text("".join(s + "\n" for s in text.target[:count]))
    return folder


def make_data(corpus_dir: Path, cache: Path, **kwargs) -> TranslationData:
    kwargs.setdefault("max_tokens", 1024)
    kwargs.setdefault("max_len", 64)
    return TranslationData("local", corpus_path=corpus_dir, vocab_size=300, cache_dir=cache,
                           **kwargs)


class EncodeCounter:
    """Counts the sentences SharedVocab.encode_batch encodes (the real method still runs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sentences = 0
        real = SharedVocab.encode_batch

        def counting(vocab: SharedVocab, texts: list[str]) -> list[list[int]]:
            self.sentences += len(texts)
            return real(vocab, texts)

        monkeypatch.setattr(SharedVocab, "encode_batch", counting)


def test_setup_encodes_each_sentence_once_even_when_pairs_are_dropped(
        corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = EncodeCounter(monkeypatch)
    dm = make_data(corpus_dir, tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    assert 0 < len(dm._datasets["train"]) < PAIRS  # max_len=64 drops some pairs
    # every split, both sides, once (main encoded the kept training pairs a second time)
    assert counter.sentences == 2 * (PAIRS + 200 + 200)


def _mapped_files_under(folder: Path) -> list[str]:
    """Files under `folder` that this process has memory-mapped (from /proc/self/maps)."""
    fields = (line.split(maxsplit=5) for line in Path("/proc/self/maps").read_text().splitlines())
    return sorted({f[5] for f in fields if len(f) == 6 and f[5].startswith(str(folder))})


def test_a_second_cell_reads_the_cache_without_reading_the_corpus(
        corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = make_data(corpus_dir, tmp_path)
    first.setup("fit")
    assert first.binarized.built_here
    counter = EncodeCounter(monkeypatch)

    def no_corpus(*args, **kwargs):
        raise AssertionError("a cell with a built cache must not read the corpus")

    monkeypatch.setattr(binarized_module, "load_corpus", no_corpus)
    second = make_data(corpus_dir, tmp_path)
    second.setup("fit")
    assert not second.binarized.built_here and counter.sentences == 0
    first_batch = next(iter(first.train_dataloader()))
    second_batch = next(iter(second.train_dataloader()))
    assert first_batch["indices"] == second_batch["indices"]
    assert first_batch["references"] == second_batch["references"]
    # Read by position: a mapped corpus file would count its page-cache folios in this
    # process's RSS (167 MB after one batch on the 899k-pair stand-in with np.memmap).
    assert Path("/proc/self/maps").is_file()
    assert _mapped_files_under(second.binarized.folder) == []


def test_mapped_pairs_and_sampler_state_equal_direct_encoding(
        corpus_dir: Path, tmp_path: Path) -> None:
    dm = make_data(corpus_dir, tmp_path, max_len=64, seed=3)
    dm.setup("fit")
    train = load_corpus("local", corpus_dir).split("train")
    src_ids, src_off = encode_flat(dm.vocab, train.source)
    tgt_ids, tgt_off = encode_flat(dm.vocab, train.target)
    src_len, tgt_len = np.diff(src_off), np.diff(tgt_off)
    keep = np.flatnonzero((src_len <= 64) & (tgt_len <= 64))
    dataset = dm._datasets["train"]
    assert dataset.rows.tolist() == keep.tolist()
    for i in (0, 7, len(keep) - 1):
        index, src, tgt, ref = dataset[i]
        row = keep[i]
        assert index == i and ref == train.target[row]
        assert src.tolist() == src_ids[src_off[row]:src_off[row + 1]].tolist()
        assert tgt.tolist() == tgt_ids[tgt_off[row]:tgt_off[row + 1]].tolist()
    direct = TokenBudgetBatchSampler(src_len[keep] + 1, tgt_len[keep] + 1, 1024, shuffle=True,
                                     seed=3)
    loader = dm.train_dataloader()
    mapped = loader.batch_sampler
    assert mapped.state_dict() == direct.state_dict()
    assert mapped.epoch_batches(1) == direct.epoch_batches(1)
    iterator = iter(loader)
    for _ in range(4):
        next(iterator)
    direct.load_state_dict(loader.state_dict())  # a state saved on mapped data resumes direct
    assert list(direct) == mapped.epoch_batches(0)[4:]


def test_dataset_pickles_as_a_reference_to_the_files(corpus_dir: Path, tmp_path: Path) -> None:
    dm = make_data(corpus_dir, tmp_path)
    dm.setup("fit")
    dataset = dm._datasets["train"]
    split_bytes = len(pickle.dumps(dataset.split))
    assert split_bytes < 1000  # the folder and split name, not the arrays
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy[5][3] == dataset[5][3] and copy[5][1].tolist() == dataset[5][1].tolist()


def _build_in_child(args: tuple[str, str]) -> tuple[bool, str]:
    corpus, cache = args
    result = binarize("local", corpus, vocab_size=300, cache_dir=cache, max_lens=(64,))
    return result.built_here, str(result.folder)


@pytest.mark.slow  # two spawned processes import numpy/sentencepiece (~5-10 s)
def test_concurrent_builders_build_once(corpus_dir: Path, tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        outcomes = pool.map(_build_in_child, [(str(corpus_dir), str(tmp_path))] * 2)
    assert sorted(built for built, _ in outcomes) == [False, True]
    assert len({folder for _, folder in outcomes}) == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".bin-")] == []


def test_changed_corpus_gets_a_new_cache_and_a_torn_build_is_redone(
        corpus_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "corpus"
    copy.mkdir()
    for path in corpus_dir.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    first = binarize("local", copy, vocab_size=300, cache_dir=tmp_path / "c")
    with (copy / "valid.en").open("a") as f, (copy / "valid.de").open("a") as g:
        f.write("One more line.\n")
        g.write("Noch eine Zeile.\n")
    second = binarize("local", copy, vocab_size=300, cache_dir=tmp_path / "c")
    assert second.folder != first.folder and second.manifest["splits"]["valid"] == 201
    (second.folder / MANIFEST).unlink()  # a build killed before its manifest was written
    again = binarize("local", copy, vocab_size=300, cache_dir=tmp_path / "c")
    assert again.built_here and again.folder == second.folder
    assert again.split("valid").references[200] == "Noch eine Zeile."


def test_missing_split_is_named_and_a_corrupt_manifest_is_named_and_rebuilt(
        corpus_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    built = binarize("local", corpus_dir, vocab_size=300, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="no split 'test2017'"):
        built.split("test2017")
    (built.folder / MANIFEST).write_text("{")
    again = binarize("local", corpus_dir, vocab_size=300, cache_dir=tmp_path)
    assert again.built_here and again.manifest["splits"] == built.manifest["splits"]
    assert f"{built.folder / MANIFEST}: not valid JSON" in caplog.text
    assert "rebuilding the cache" in caplog.text
