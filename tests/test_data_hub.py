"""The hub path for real, offline: datasets in the hub's schemas, made from ../shared/data text,
loaded by `datasets` itself (no mock) through the code that loads the hub.

- wmt14 de-en: splits train/validation/test, one `translation` column of {"de", "en"} dicts
  (`datasets.Translation`), as `datasets.load_dataset("wmt14", "de-en")` returns it.
- bentrevett/multi30k: splits train/validation/test, string columns "en" and "de".

Each is written two ways: into the `datasets` cache folder that `load_dataset` falls back to when
the hub is unreachable (HF_DATASETS_OFFLINE=1), so `load_corpus("wmt14")` runs the real
`datasets.load_dataset("wmt14", "de-en")`; and with `DatasetDict.save_to_disk`, read by
`load_corpus("wmt14", folder)` through `datasets.load_from_disk` and the same conversion.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import datasets
import datasets.config
import pytest

from data.corpora import (
    MULTI30K_HUB_ID,
    CorpusError,
    load_corpus,
    normalize_line,
    read_parallel_files,
)
from data.datamodule import TranslationData
from data.fingerprint import corpus_content_fingerprint, corpus_stat_key
from experiments.identity import data_fingerprints
from experiments.scales import scale_preset

TRAIN_PAIRS = 2000


def _lines(folder: Path, stem: str, count: int | None = None) -> tuple[list[str], list[str]]:
    text = read_parallel_files(folder / f"{stem}.en", folder / f"{stem}.de")
    return text.source[:count], text.target[:count]


def _hub_cache_builder(config: str, features: datasets.Features, splits: dict,
                       make_row) -> type:
    """A builder whose download_and_prepare writes the cache layout of hub dataset `name`."""

    class HubCopy(datasets.GeneratorBasedBuilder):
        BUILDER_CONFIGS: ClassVar = [
            datasets.BuilderConfig(name=config, version=datasets.Version("1.0.0"))]

        def _info(self) -> datasets.DatasetInfo:
            return datasets.DatasetInfo(features=features)

        def _split_generators(self, dl_manager):
            return [datasets.SplitGenerator(name=s, gen_kwargs={"split": s}) for s in splits]

        def _generate_examples(self, split):
            for i, (en, de) in enumerate(zip(*splits[split], strict=True)):
                yield i, make_row(en, de)

    return HubCopy


def _write_to_cache(cache: Path, name: str, config: str, features: datasets.Features,
                    splits: dict, make_row, repo_id: str | None = None) -> None:
    builder_class = _hub_cache_builder(config, features, splits, make_row)
    kwargs = {"repo_id": repo_id} if repo_id else {}
    builder = builder_class(cache_dir=str(cache), config_name=config,
                            dataset_name=name, hash="0123456789abcdef", **kwargs)
    builder.download_and_prepare()


def _dataset_dict(features: datasets.Features, splits: dict, make_row) -> datasets.DatasetDict:
    return datasets.DatasetDict({
        split: datasets.Dataset.from_list([make_row(en, de) for en, de in zip(*pair, strict=True)],
                                          features=features)
        for split, pair in splits.items()
    })


WMT14_FEATURES = datasets.Features({"translation": datasets.Translation(languages=["de", "en"])})
MULTI30K_FEATURES = datasets.Features({"en": datasets.Value("string"),
                                       "de": datasets.Value("string")})


def _wmt14_row(en: str, de: str) -> dict:
    return {"translation": {"de": de, "en": en}}


def _multi30k_row(en: str, de: str) -> dict:
    return {"en": en, "de": de}


@pytest.fixture(scope="module")
def wmt14_splits(shared_data_dir: Path, multi30k_dir: Path, newstest2014_dir: Path) -> dict:
    """Hub split name -> (en, de): Multi30k train (plus a pair with an empty side, as real WMT
    training data has), Multi30k test2016 standing in for newstest2013, real newstest2014."""
    en, de = _lines(multi30k_dir, "train", TRAIN_PAIRS)
    return {
        "train": ([*en[:10], "", *en[10:]], [*de[:10], "Leer.", *de[10:]]),
        "validation": _lines(multi30k_dir, "test2016"),
        "test": _lines(newstest2014_dir, "newstest2014"),
    }


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty `datasets` cache for this test (where load_dataset looks when offline)."""
    assert os.environ.get("HF_DATASETS_OFFLINE") == "1", "these tests must run offline"
    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    return cache


def _check_wmt14(corpus, splits: dict) -> None:
    assert corpus.name == "wmt14" and sorted(corpus.splits) == ["test", "train", "valid"]
    train = corpus.split("train")
    assert len(train) == TRAIN_PAIRS  # the pair with an empty English side is dropped
    assert train.source[10] == normalize_line(splits["train"][0][11])
    assert corpus.split("valid").target == [normalize_line(s) for s in splits["validation"][1]]
    assert corpus.split("test").source == [normalize_line(s) for s in splits["test"][0]]


def test_wmt14_from_the_datasets_cache_through_load_dataset(
        hub_cache: Path, wmt14_splits: dict, tmp_path: Path) -> None:
    _write_to_cache(hub_cache, "wmt14", "de-en", WMT14_FEATURES, wmt14_splits, _wmt14_row)
    # what the hub path calls, unchanged: datasets.load_dataset("wmt14", "de-en")
    corpus = load_corpus("wmt14")
    _check_wmt14(corpus, wmt14_splits)
    dm = TranslationData("wmt14", vocab_size=500, max_tokens=2048, cache_dir=tmp_path / "bin",
                         eval_max_sentences=50)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.binarized.manifest["fingerprint"]["hub"].keys() == {"train", "validation", "test"}
    batch = next(iter(dm.train_dataloader()))
    assert set(batch["references"]) <= set(corpus.split("train").target)
    assert len(dm.eval_references("test")) == 50


def test_a_hub_corpus_has_a_real_fingerprint_in_a_cells_identity(
        hub_cache: Path, wmt14_splits: dict, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """wmt14 from the hub (no path): the identity holds the hub id and, per split, the `datasets`
    fingerprint and the cached Arrow files, so other hub data is another corpus."""
    _write_to_cache(hub_cache, "wmt14", "de-en", WMT14_FEATURES, wmt14_splits, _wmt14_row)
    preset = scale_preset("base")
    assert preset.corpus == "wmt14" and preset.corpus_path is None
    first = data_fingerprints(preset, None)["corpus"]
    assert first["kind"] == "hub" and first["hub_id"] == ["wmt14", "de-en"]
    assert first["splits"].keys() == {"train", "validation", "test"}
    for split, part in datasets.load_dataset("wmt14", "de-en").items():
        assert first["splits"][split]["fingerprint"] == part._fingerprint
        assert sum(first["splits"][split]["files"].values()) > 0
    assert corpus_content_fingerprint("wmt14", None) == first  # the same cache: the same corpus

    # Other hub data (fewer training pairs) in another cache: another corpus.
    other = tmp_path / "hf-cache-2"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", other)
    fewer = {**wmt14_splits, "train": tuple(side[:-100] for side in wmt14_splits["train"])}
    _write_to_cache(other, "wmt14", "de-en", WMT14_FEATURES, fewer, _wmt14_row)
    second = data_fingerprints(preset, None)["corpus"]
    assert second["splits"]["train"] != first["splits"]["train"]
    assert second["splits"]["test"] == first["splits"]["test"]


def test_a_save_to_disk_copy_is_fingerprinted_by_its_data_files(wmt14_splits: dict,
                                                                tmp_path: Path) -> None:
    folder = tmp_path / "wmt14-de-en"
    _dataset_dict(WMT14_FEATURES, wmt14_splits, _wmt14_row).save_to_disk(str(folder))
    content = corpus_content_fingerprint("wmt14", folder)
    assert content["kind"] == "saved_dataset"
    assert content["splits"].keys() == {"train", "validation", "test"}
    train = content["splits"]["train"]
    assert train["files"] and all(len(f["sha256"]) == 64 for f in train["files"].values())
    copy = tmp_path / "elsewhere"
    copy.mkdir()
    (copy / folder.name).mkdir()
    for path in folder.rglob("*"):
        if path.is_file():
            target = copy / folder.name / path.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    # the same files elsewhere: the same corpus for the identity, another folder for the cache
    assert corpus_content_fingerprint("wmt14", copy / folder.name) == content
    assert corpus_stat_key("wmt14", copy / folder.name) != corpus_stat_key("wmt14", folder)


def test_wmt14_save_to_disk_copy_loads_like_the_hub(wmt14_splits: dict, tmp_path: Path) -> None:
    folder = tmp_path / "wmt14-de-en"
    _dataset_dict(WMT14_FEATURES, wmt14_splits, _wmt14_row).save_to_disk(str(folder))
    corpus = load_corpus("wmt14", folder)
    _check_wmt14(corpus, wmt14_splits)
    dm = TranslationData("wmt14", corpus_path=folder, vocab_size=500, max_tokens=2048,
                         cache_dir=tmp_path / "bin")
    dm.setup("fit")
    assert "saved_dataset" in dm.binarized.manifest["fingerprint"]
    assert len(dm._datasets["train"]) > 0


@pytest.fixture(scope="module")
def multi30k_splits(multi30k_dir: Path) -> dict:
    return {"train": _lines(multi30k_dir, "train", TRAIN_PAIRS),
            "validation": _lines(multi30k_dir, "test2017"),
            "test": _lines(multi30k_dir, "test2016")}


def _check_multi30k(corpus, splits: dict) -> None:
    assert corpus.name == "multi30k" and sorted(corpus.splits) == ["test", "train", "valid"]
    assert corpus.split("train").source == [normalize_line(s) for s in splits["train"][0]]
    assert corpus.split("test").target == [normalize_line(s) for s in splits["test"][1]]


def test_multi30k_from_the_datasets_cache_through_load_dataset(
        hub_cache: Path, multi30k_splits: dict) -> None:
    _write_to_cache(hub_cache, "multi30k", "default", MULTI30K_FEATURES, multi30k_splits,
                    _multi30k_row, repo_id=MULTI30K_HUB_ID)
    assert (hub_cache / "bentrevett___multi30k").is_dir()  # the hub copy's cache folder
    _check_multi30k(load_corpus("multi30k"), multi30k_splits)


def test_multi30k_save_to_disk_copy_loads_like_the_hub(multi30k_splits: dict,
                                                        tmp_path: Path) -> None:
    folder = tmp_path / "multi30k"
    _dataset_dict(MULTI30K_FEATURES, multi30k_splits, _multi30k_row).save_to_disk(str(folder))
    _check_multi30k(load_corpus("multi30k", folder), multi30k_splits)


def test_offline_without_a_cache_and_a_wrong_schema_are_named(
        hub_cache: Path, multi30k_splits: dict, tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="HF_DATASETS_OFFLINE/HF_HUB_OFFLINE is set"):
        load_corpus("wmt14")
    folder = tmp_path / "wrong"
    _dataset_dict(MULTI30K_FEATURES, multi30k_splits, _multi30k_row).save_to_disk(str(folder))
    with pytest.raises(CorpusError, match=r"expected fields \['translation.de'"):
        load_corpus("wmt14", folder)
