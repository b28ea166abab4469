"""Corpus loaders: real Multi30k and newstest2014 from ../shared/data, local folders, errors."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest

from data.corpora import (
    CorpusError,
    load_corpus,
    read_text_lines,
    wmt14_split_from_dataset,
)


def write_pair(folder: Path, stem: str, en: str, de: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.en").write_text(en, encoding="utf-8")
    (folder / f"{stem}.de").write_text(de, encoding="utf-8")


def test_multi30k_local_folder_splits_and_normalisation(multi30k_dir: Path) -> None:
    corpus = load_corpus("multi30k", multi30k_dir)
    sizes = {name: len(text) for name, text in corpus.splits.items()}
    assert sizes == {"train": 29000, "valid": 1014, "test": 1000, "test2017": 1000}
    train = corpus.split("train")
    # Upstream train.de has 44 lines with double spaces and 40 with a trailing space.
    assert not any("  " in s or s != s.strip() for s in train.target + train.source)
    assert train.source[0].startswith("Two young, White males are outside")
    assert train.target[0].startswith("Zwei junge weiße Männer sind im Freien")
    # test = test2016: the first line of test2016.en
    first_test = (multi30k_dir / "test2016.en").read_text(encoding="utf-8").split("\n")[0]
    assert corpus.split("test").source[0] == " ".join(first_test.split())


def test_wmt14_layout_folder_gives_newstest2014_as_test(newstest2014_dir: Path) -> None:
    corpus = load_corpus("wmt14", newstest2014_dir)
    test = corpus.split("test")
    assert len(test) == 3003
    assert test.source[0].startswith("Gutach: Increased safety for pedestrians")
    with pytest.raises(CorpusError, match=r"no split 'train'.*train\.\{en,de\}"):
        corpus.split("train")
    with pytest.raises(CorpusError, match=r"no split 'valid'.*newstest2013"):
        corpus.split("valid")


def test_wmt14_records_from_a_real_dataset(newstest2014_dir: Path) -> None:
    en = (newstest2014_dir / "newstest2014.en").read_text(encoding="utf-8").rstrip("\n").split("\n")
    de = (newstest2014_dir / "newstest2014.de").read_text(encoding="utf-8").rstrip("\n").split("\n")
    features = datasets.Features({"translation": datasets.Translation(languages=["de", "en"])})
    dataset = datasets.Dataset.from_dict(
        {"translation": [{"de": d, "en": e} for d, e in zip(de, en, strict=True)]},
        features=features,
    )
    text = wmt14_split_from_dataset(dataset, "newstest2014", drop_empty=False)
    assert len(text) == 3003
    assert text.source[5] == " ".join(en[5].split())
    assert text.target[-1] == " ".join(de[-1].split())


def test_empty_hub_record_is_dropped_in_train_and_an_error_in_eval() -> None:
    features = datasets.Features({"translation": datasets.Translation(languages=["de", "en"])})
    rows = [{"de": "Ein Hund.", "en": "A dog."}, {"de": "", "en": "Nothing."}]
    dataset = datasets.Dataset.from_dict({"translation": rows}, features=features)
    assert len(wmt14_split_from_dataset(dataset, "train", drop_empty=True)) == 1
    with pytest.raises(CorpusError, match=r"validation: record 1 has an empty 'de' side"):
        wmt14_split_from_dataset(dataset, "validation", drop_empty=False)


def test_hub_corpus_offline_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CorpusError, match=r"wmt14 de-en.*not in the local cache.*path="):
        load_corpus("wmt14")


def test_local_folder_canonical_aliases_and_extra_splits(tmp_path: Path) -> None:
    write_pair(tmp_path, "train", "a b\nc\td\n", "x\ny  z \n")
    write_pair(tmp_path, "dev", "e\n", "f\n")
    write_pair(tmp_path, "newstest2014", "g\n", "h\n")
    corpus = load_corpus("local", tmp_path)
    assert sorted(corpus.splits) == ["newstest2014", "train", "valid"]
    assert corpus.split("train").source == ["a b", "c d"]
    assert corpus.split("train").target == ["x", "y z"]
    assert corpus.split("valid").target == ["f"]


def test_unicode_line_separator_inside_a_sentence_does_not_split_it(tmp_path: Path) -> None:
    write_pair(tmp_path, "train", "one\u2028two\nthree\n", "eins\nzwei\n")
    assert load_corpus("local", tmp_path).split("train").source == ["one two", "three"]


def test_mismatched_line_counts_name_both_files(tmp_path: Path) -> None:
    write_pair(tmp_path, "train", "a\nb\nc\n", "x\ny\n")
    with pytest.raises(CorpusError, match=r"train\.en has 3 lines, .*train\.de has 2 lines"):
        load_corpus("local", tmp_path)


def test_empty_file_is_named(tmp_path: Path) -> None:
    write_pair(tmp_path, "train", "a\n", "")
    with pytest.raises(CorpusError, match=r"train\.de: empty file"):
        load_corpus("local", tmp_path)


def test_empty_line_names_file_and_line(tmp_path: Path) -> None:
    write_pair(tmp_path, "train", "a\n   \nc\n", "x\ny\nz\n")
    with pytest.raises(CorpusError, match=r"train\.en:2: empty line"):
        load_corpus("local", tmp_path)


def test_invalid_utf8_names_file_and_line(tmp_path: Path) -> None:
    tmp_path.joinpath("t.en").write_bytes(b"ok\nbad \xff\n")
    with pytest.raises(CorpusError, match=r"t\.en:2: not valid UTF-8"):
        read_text_lines(tmp_path / "t.en")


def test_missing_partner_file_is_named(tmp_path: Path) -> None:
    write_pair(tmp_path, "train", "a\n", "x\n")
    (tmp_path / "valid.en").write_text("b\n", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match=r"valid\.de"):
        load_corpus("local", tmp_path)


def test_missing_split_names_expected_files(tmp_path: Path) -> None:
    write_pair(tmp_path, "train", "a\n", "x\n")
    corpus = load_corpus("local", tmp_path)
    with pytest.raises(CorpusError, match=r"no split 'test'.*test\.\{en,de\}.*available splits"):
        corpus.split("test")


def test_folder_without_parallel_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(CorpusError, match=r"no parallel files in .*train\.\{en,de\}"):
        load_corpus("local", tmp_path)
    with pytest.raises(FileNotFoundError, match="corpus folder not found"):
        load_corpus("local", tmp_path / "nope")


def test_unknown_corpus_lists_valid_names() -> None:
    with pytest.raises(
        CorpusError, match=r"unknown corpus 'wmt16'.*embedded, multi30k, local, wmt14"
    ):
        load_corpus("wmt16")
    with pytest.raises(CorpusError, match="needs a path"):
        load_corpus("local")
