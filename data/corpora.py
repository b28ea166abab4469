"""Parallel corpora: the embedded synthetic corpus, Multi30k, local folders, WMT14 via `datasets`.

Every loader returns a `ParallelCorpus` whose splits use canonical names ("train", "valid", "test");
the English side is always `source` and the German side `target`. Text is normalised the same way
for every corpus: line ends stripped and runs of whitespace collapsed to one space.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

CORPUS_NAMES = ("embedded", "multi30k", "local", "wmt14")

# File stems that stand for a canonical split in a folder, in order of preference.
_FOLDER_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "local": {"valid": ("valid", "dev", "val"), "test": ("test",)},
    "multi30k": {"valid": ("valid", "val"), "test": ("test2016", "test_2016_flickr", "test")},
    "wmt14": {"valid": ("newstest2013", "valid"), "test": ("newstest2014", "test")},
}

MULTI30K_HUB_ID = "bentrevett/multi30k"
WMT14_HUB_ID = ("wmt14", "de-en")

_WHITESPACE = re.compile(r"\s+")


class CorpusError(ValueError):
    """A corpus cannot be loaded as asked; the message names the file (and line) at fault."""


def normalize_line(line: str) -> str:
    """Strip the ends and collapse every whitespace run (spaces, tabs, NBSP, ...) to one space."""
    return _WHITESPACE.sub(" ", line).strip()


@dataclass(frozen=True)
class ParallelText:
    """Aligned sentence pairs: `source[i]` (English) translates to `target[i]` (German)."""

    source: list[str]
    target: list[str]
    origin: str = "<memory>"

    def __post_init__(self) -> None:
        if len(self.source) != len(self.target):
            raise CorpusError(
                f"{self.origin}: {len(self.source)} source lines but "
                f"{len(self.target)} target lines"
            )

    def __len__(self) -> int:
        return len(self.source)


@dataclass(frozen=True)
class ParallelCorpus:
    """A named corpus: canonical split name -> ParallelText (extra splits such as "test2017")."""

    name: str
    splits: dict[str, ParallelText]
    # what each canonical split would be read from, used to name missing files in errors
    expected: dict[str, str] = field(default_factory=dict)

    def split(self, name: str) -> ParallelText:
        if name in self.splits:
            return self.splits[name]
        where = f" (expected {self.expected[name]})" if name in self.expected else ""
        raise CorpusError(
            f"corpus {self.name!r} has no split {name!r}{where}; "
            f"available splits: {sorted(self.splits)}"
        )


# ----------------------------------------------------------------------------- reading files


def read_text_lines(path: Path) -> list[str]:
    """Read one sentence per line (UTF-8), normalised; empty files and empty lines are errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing corpus file: {path}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line_no = raw[: err.start].count(b"\n") + 1
        raise CorpusError(f"{path}:{line_no}: not valid UTF-8 ({err.reason})") from err
    # Split on "\n" only: str.splitlines() would also split on U+2028, U+0085, ... inside a sentence
    # and silently misalign the two sides.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise CorpusError(f"{path}: empty file (expected one sentence per line)")
    out = []
    for number, line in enumerate(lines, start=1):
        clean = normalize_line(line)
        if not clean:
            raise CorpusError(f"{path}:{number}: empty line (every line must hold a sentence)")
        out.append(clean)
    return out


def read_parallel_files(source_path: Path, target_path: Path) -> ParallelText:
    """Read two aligned files; a mismatched line count names both files and their counts."""
    missing = [str(p) for p in (source_path, target_path) if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"missing corpus file(s): {', '.join(missing)}")
    source = read_text_lines(source_path)
    target = read_text_lines(target_path)
    if len(source) != len(target):
        raise CorpusError(
            f"mismatched line counts: {source_path} has {len(source)} lines, "
            f"{target_path} has {len(target)} lines"
        )
    return ParallelText(source, target, origin=f"{source_path} + {target_path}")


def load_folder(
    path: str | Path, *, name: str = "local", src_lang: str = "en", tgt_lang: str = "de"
) -> ParallelCorpus:
    """Load every `<stem>.<src_lang>` / `<stem>.<tgt_lang>` pair in a folder as a split.

    Stems in the alias table map to canonical names (e.g. multi30k's "test2016" -> "test", the
    wmt14 layout's "newstest2013" -> "valid"); other stems keep their own name ("test2017").
    A file without its partner is an error that names the missing file.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"corpus folder not found: {folder}")
    src_stems = {p.name[: -len(src_lang) - 1] for p in folder.glob(f"*.{src_lang}") if p.is_file()}
    tgt_stems = {p.name[: -len(tgt_lang) - 1] for p in folder.glob(f"*.{tgt_lang}") if p.is_file()}
    for stem in sorted(src_stems ^ tgt_stems):
        lang = tgt_lang if stem in src_stems else src_lang
        present = src_lang if stem in src_stems else tgt_lang
        raise FileNotFoundError(
            f"missing corpus file: {folder / f'{stem}.{lang}'} "
            f"(its partner {folder / f'{stem}.{present}'} exists)"
        )
    stems = sorted(src_stems)
    aliases = {"train": ("train",), **_FOLDER_ALIASES.get(name, _FOLDER_ALIASES["local"])}
    expected = {
        split: " or ".join(f"{folder / s}.{{{src_lang},{tgt_lang}}}" for s in options)
        for split, options in aliases.items()
    }
    if not stems:
        raise CorpusError(
            f"no parallel files in {folder}: expected pairs named <split>.{src_lang} and "
            f"<split>.{tgt_lang}, e.g. {expected['train']}"
        )
    splits: dict[str, ParallelText] = {}
    used: set[str] = set()
    for split, options in aliases.items():
        stem = next((s for s in options if s in stems), None)
        if stem is not None:
            splits[split] = read_parallel_files(
                folder / f"{stem}.{src_lang}", folder / f"{stem}.{tgt_lang}"
            )
            used.add(stem)
    for stem in stems:
        if stem not in used and stem not in splits:
            splits[stem] = read_parallel_files(
                folder / f"{stem}.{src_lang}", folder / f"{stem}.{tgt_lang}"
            )
    return ParallelCorpus(name=name, splits=splits, expected=expected)


# ----------------------------------------------------------------------------- the hub


def parallel_text_from_records(
    records: Iterable[dict], origin: str, *, en_key: str, de_key: str, drop_empty: bool
) -> ParallelText:
    """Build a ParallelText from hub records (dicts with English and German fields).

    `drop_empty`: skip pairs with an empty side (WMT training data has a few) and log how many;
    otherwise an empty side is an error naming the record index.
    """
    source: list[str] = []
    target: list[str] = []
    dropped = 0
    for index, record in enumerate(records):
        en, de = normalize_line(record[en_key] or ""), normalize_line(record[de_key] or "")
        if not en or not de:
            if drop_empty:
                dropped += 1
                continue
            side = en_key if not en else de_key
            raise CorpusError(f"{origin}: record {index} has an empty {side!r} side")
        source.append(en)
        target.append(de)
    if dropped:
        log.warning("%s: dropped %d pairs with an empty side", origin, dropped)
    if not source:
        raise CorpusError(f"{origin}: no sentence pairs")
    return ParallelText(source, target, origin=origin)


def wmt14_split_from_dataset(dataset, origin: str, *, drop_empty: bool) -> ParallelText:
    """Convert a `datasets.Dataset` with a `translation` {"en", "de"} column (the hub's wmt14)."""
    flat = dataset.flatten()
    missing = {"translation.en", "translation.de"} - set(flat.column_names)
    if missing:
        raise CorpusError(f"{origin}: expected fields {sorted(missing)}, got {flat.column_names}")
    records = (
        {"en": en, "de": de}
        for en, de in zip(flat["translation.en"], flat["translation.de"], strict=True)
    )
    return parallel_text_from_records(
        records, origin, en_key="en", de_key="de", drop_empty=drop_empty
    )


def _load_hub(hub_id: Sequence[str], what: str):
    import datasets

    try:
        return datasets.load_dataset(*hub_id)
    except Exception as err:  # the hub raises many types: connection, not found, offline
        offline = (
            os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"
        )
        hint = (
            "HF_DATASETS_OFFLINE/HF_HUB_OFFLINE is set and the dataset is not in the local cache"
            if offline
            else "check the network connection and the dataset id"
        )
        raise CorpusError(
            f"could not load {what} from the Hugging Face hub (datasets.load_dataset"
            f"{tuple(hub_id)!r}): {hint}. Pass a local folder instead (path=...). "
            f"Cause: {type(err).__name__}: {err}"
        ) from err


def load_hub_dataset(name: str):
    """The `datasets.DatasetDict` of corpus `name` ("wmt14" or "multi30k") from the hub/cache."""
    if name == "wmt14":
        return _load_hub(WMT14_HUB_ID, "wmt14 de-en")
    if name == "multi30k":
        return _load_hub((MULTI30K_HUB_ID,), MULTI30K_HUB_ID)
    raise CorpusError(f"corpus {name!r} has no hub copy (only wmt14 and multi30k)")


def is_saved_dataset(folder: str | Path) -> bool:
    """Whether `folder` is a `DatasetDict.save_to_disk` folder (it holds dataset_dict.json)."""
    return (Path(folder) / "dataset_dict.json").is_file()


def load_saved_dataset(folder: str | Path):
    """A `DatasetDict.save_to_disk` copy of a hub dataset, loaded with `datasets.load_from_disk`."""
    import datasets

    try:
        return datasets.load_from_disk(str(folder))
    except Exception as err:  # corrupt or foreign folder: name it
        raise CorpusError(f"{folder}: not a loadable save_to_disk dataset "
                          f"({type(err).__name__}: {err})") from err


_HUB_SPLITS = {"train": "train", "valid": "validation", "test": "test"}


def wmt14_corpus(dataset, origin: str = "hub wmt14 de-en") -> ParallelCorpus:
    """WMT14 En-De in the hub's schema: train; valid = newstest2013 ("validation");
    test = newstest2014. Each split has a `translation` column of {"de", "en"} dicts."""
    splits = {
        canonical: wmt14_split_from_dataset(
            dataset[hub], f"{origin}/{hub}", drop_empty=canonical == "train"
        )
        for canonical, hub in _HUB_SPLITS.items()
        if hub in dataset
    }
    return ParallelCorpus(
        name="wmt14",
        splits=splits,
        expected={k: f"{origin} split {v!r}" for k, v in _HUB_SPLITS.items()},
    )


def multi30k_corpus(dataset, origin: str = f"hub {MULTI30K_HUB_ID}") -> ParallelCorpus:
    """Multi30k (task 1, test2016) in the schema of the hub copy `bentrevett/multi30k`:
    train/validation/test splits with flat "en" and "de" string columns."""
    splits = {}
    for canonical, hub in _HUB_SPLITS.items():
        if hub not in dataset:
            continue
        part = dataset[hub]
        missing = {"en", "de"} - set(part.column_names)
        if missing:
            raise CorpusError(f"{origin}/{hub}: expected fields {sorted(missing)}, "
                              f"got {part.column_names}")
        records = ({"en": en, "de": de} for en, de in zip(part["en"], part["de"], strict=True))
        splits[canonical] = parallel_text_from_records(
            records, f"{origin}/{hub}", en_key="en", de_key="de", drop_empty=False
        )
    return ParallelCorpus(
        name="multi30k", splits=splits,
        expected={k: f"{origin} split {v!r}" for k, v in _HUB_SPLITS.items()},
    )


def load_wmt14_hub() -> ParallelCorpus:
    """WMT14 En-De from the hub (`datasets.load_dataset("wmt14", "de-en")`)."""
    return wmt14_corpus(load_hub_dataset("wmt14"))


def load_multi30k_hub() -> ParallelCorpus:
    """Multi30k from the hub copy `bentrevett/multi30k` (fields "en", "de")."""
    return multi30k_corpus(load_hub_dataset("multi30k"))


def load_hub_copy(name: str, folder: str | Path) -> ParallelCorpus:
    """A save_to_disk copy of the hub dataset of `name`, converted exactly as the hub's."""
    dataset = load_saved_dataset(folder)
    if name == "wmt14":
        return wmt14_corpus(dataset, origin=f"{folder} (wmt14 de-en)")
    if name == "multi30k":
        return multi30k_corpus(dataset, origin=f"{folder} ({MULTI30K_HUB_ID})")
    raise CorpusError(f"{folder}: a save_to_disk dataset is read only for wmt14 or multi30k, "
                      f"not {name!r}")


# ----------------------------------------------------------------------------- entry point


def load_embedded() -> ParallelCorpus:
    """The synthetic embedded corpus (data.embedded) as a ParallelCorpus."""
    # imported here: a cell that maps a binarized cache never generates the corpus
    from data.embedded import embedded_splits

    splits = {
        name: ParallelText([en for en, _ in pairs], [de for _, de in pairs],
                           origin=f"embedded/{name}")
        for name, pairs in embedded_splits().items()
    }
    return ParallelCorpus(name="embedded", splits=splits)


def load_corpus(name: str, path: str | Path | None = None) -> ParallelCorpus:
    """Load a corpus by name.

    - "embedded": the synthetic corpus shipped in the package (no download; `path` must be None).
    - "multi30k": a local folder of train/valid/test2016[/test2017].{en,de} when `path` is given,
      else the hub copy (needs the network or a warm `datasets` cache). A path holding a
      `save_to_disk` copy of the hub dataset (dataset_dict.json) is read like the hub.
    - "local": any folder of `<split>.en` / `<split>.de` files (`path` required).
    - "wmt14": the hub's `wmt14` de-en when `path` is None; with `path`, a local folder laid out as
      `train.*`, `newstest2013.*` (valid) and `newstest2014.*` (test), any of them optional.
    """
    if name not in CORPUS_NAMES:
        raise CorpusError(f"unknown corpus {name!r}; valid names: {', '.join(CORPUS_NAMES)}")
    if name == "embedded":
        if path is not None:
            raise CorpusError("the embedded corpus ships in the package; do not pass a path")
        return load_embedded()
    if name == "local":
        if path is None:
            raise CorpusError(
                "corpus 'local' needs a path to a folder of <split>.en/<split>.de files"
            )
        return load_folder(path, name="local")
    if path is not None:
        if is_saved_dataset(path):
            return load_hub_copy(name, path)
        return load_folder(path, name=name)
    return load_multi30k_hub() if name == "multi30k" else load_wmt14_hub()
