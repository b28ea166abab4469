"""`TranslationData`: the LightningDataModule feeding token-budget batches of encoded pairs.

Batches are dicts:
- `src`     LongTensor[B, S]: source ids + eos, right-padded with pad_id
- `tgt_in`  LongTensor[B, T]: bos + target ids (decoder input), padded
- `tgt_out` LongTensor[B, T]: target ids + eos (what the decoder predicts), padded
- `references` list[str]: the raw target sentences (for BLEU), `indices` list[int]: example ids.

Resuming mid-epoch: the train loader is a `ResumableDataLoader`, which has `state_dict()` /
`load_state_dict()`. Lightning saves the state of such "stateful" loaders in every checkpoint
(`loops.fit_loop.state_dict.combined_loader`) and restores it when `Trainer.fit(..., ckpt_path=...)`
restarts, so a resumed run continues with exactly the batches the interrupted run had not trained
on. The Trainer must be built with `use_distributed_sampler=False` under DDP: the batch sampler
already shards by rank, and Lightning could not re-create it with a DistributedSampler anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from data.batching import TokenBudgetBatchSampler
from data.binarized import Binarized, MappedSplit, binarize
from data.vocab import SharedVocab

log = logging.getLogger(__name__)


class EncodedPairs(Dataset):
    """Pairs of a memory-mapped split; items are (index, src ids, tgt ids, reference).

    `rows` selects pairs of the split (the length-filtered training index, the first N
    evaluation sentences); item `i` is pair `rows[i]`. Nothing is copied into Python objects
    until an item is read, so the dataset costs a few pages however large the corpus.
    """

    def __init__(self, split: MappedSplit, rows: np.ndarray | None = None, *,
                 max_len: int | None = None) -> None:
        self.split = split
        self.rows = np.arange(len(split)) if rows is None else np.asarray(rows)
        self.max_len = max_len  # evaluation sentences longer than this are truncated

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray, np.ndarray, str]:
        row = int(self.rows[i])
        src, tgt = self.split.src[row], self.split.tgt[row]
        if self.max_len is not None:
            src, tgt = src[: self.max_len], tgt[: self.max_len]
        return i, src, tgt, self.split.references[row]

    @property
    def references(self) -> list[str]:
        """The reference sentences of the selected pairs (decoded on demand)."""
        return [self.split.references[int(r)] for r in self.rows]

    def lengths(self) -> tuple[np.ndarray, np.ndarray]:
        """Token counts of the selected pairs (source, target), read from the offsets."""
        return self.split.src.lengths()[self.rows], self.split.tgt.lengths()[self.rows]

    def padded_lengths(self) -> tuple[np.ndarray, np.ndarray]:
        """Lengths as they appear in a batch: ids + eos (source) and bos + ids (target)."""
        src, tgt = self.lengths()
        if self.max_len is not None:
            src, tgt = np.minimum(src, self.max_len), np.minimum(tgt, self.max_len)
        return src + 1, tgt + 1


class PadCollator:
    """Builds a batch dict from `EncodedPairs` items (a class: workers pickle it)."""

    def __init__(self, pad_id: int, bos_id: int, eos_id: int) -> None:
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id

    def __call__(self, items: list[tuple[int, np.ndarray, np.ndarray, str]]) -> dict:
        # Array ops over the whole batch (a per-sentence loop of tensor writes cost ~40 us a
        # sentence: 10 ms for a 4096-token batch).
        n = len(items)
        src_ids, src_len = _flat([s for _, s, _, _ in items])
        tgt_ids, tgt_len = _flat([t for _, _, t, _ in items])
        rows = np.arange(n)
        src = np.full((n, int(src_len.max()) + 1), self.pad_id, dtype=np.int64)
        tgt_in = np.full((n, int(tgt_len.max()) + 1), self.pad_id, dtype=np.int64)
        tgt_out = np.full_like(tgt_in, self.pad_id)
        row, col = _positions(src_len)
        src[row, col] = src_ids
        src[rows, src_len] = self.eos_id
        row, col = _positions(tgt_len)
        tgt_in[:, 0] = self.bos_id
        tgt_in[row, col + 1] = tgt_ids
        tgt_out[row, col] = tgt_ids
        tgt_out[rows, tgt_len] = self.eos_id
        return {
            "src": torch.from_numpy(src),
            "tgt_in": torch.from_numpy(tgt_in),
            "tgt_out": torch.from_numpy(tgt_out),
            "references": [ref for _, _, _, ref in items],
            "indices": [i for i, _, _, _ in items],
        }


def _flat(sentences: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The sentences' ids concatenated (int64) and their lengths."""
    lengths = np.fromiter(map(len, sentences), dtype=np.int64, count=len(sentences))
    return np.concatenate(sentences).astype(np.int64, copy=False), lengths


def _positions(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of every token of sentences with these lengths, laid out row by row."""
    row = np.repeat(np.arange(len(lengths)), lengths)
    starts = np.cumsum(lengths) - lengths
    return row, np.arange(len(row)) - starts[row]


class ResumableDataLoader(DataLoader):
    """A DataLoader over a TokenBudgetBatchSampler whose state counts the batches handed out.

    Counting here rather than in the sampler matters with workers: they draw batches from the
    sampler ahead of training. Lightning fetches one batch at a time from sized loaders, so the
    count at checkpoint time equals the batches trained on.
    """

    def __init__(self, dataset: Dataset, batch_sampler: TokenBudgetBatchSampler, **kwargs) -> None:
        super().__init__(dataset, batch_sampler=batch_sampler, **kwargs)
        self._consumed: int | None = None
        self._iter_epoch: int | None = None

    def __iter__(self) -> Iterator[dict]:
        # A generator: the sampler's epoch and resume position are read at the first next(),
        # after Lightning's set_epoch() (Lightning calls iter() before set_epoch()).
        sampler: TokenBudgetBatchSampler = self.batch_sampler
        self._iter_epoch, self._consumed = sampler.epoch, sampler._start
        for batch in super().__iter__():
            self._consumed += 1
            yield batch

    def state_dict(self) -> dict:
        sampler: TokenBudgetBatchSampler = self.batch_sampler
        if self._consumed is None or self._iter_epoch != sampler.epoch:
            return sampler.state_dict(consumed=sampler._start)
        return sampler.state_dict(consumed=self._consumed)

    def load_state_dict(self, state: dict) -> None:
        self.batch_sampler.load_state_dict(state)
        self._consumed = None


class TranslationData(L.LightningDataModule):
    """Binarized corpus (vocab, token ids, memory-mapped) -> token-budget batches."""

    def __init__(
        self,
        corpus: str,
        *,
        corpus_path: str | Path | None = None,
        vocab_size: int,
        max_tokens: int,
        cache_dir: str | Path,
        seed: int = 0,
        max_len: int = 256,
        eval_split: str = "valid",
        eval_max_sentences: int | None = None,
        num_workers: int = 0,
        model_type: str = "unigram",
    ) -> None:
        super().__init__()
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        if max_tokens < max_len + 1:
            raise ValueError(
                f"max_tokens={max_tokens} cannot hold one sentence of max_len={max_len} tokens "
                f"plus eos; use max_tokens >= {max_len + 1}"
            )
        if eval_max_sentences is not None and eval_max_sentences < 1:
            raise ValueError(f"eval_max_sentences must be >= 1 or None, got {eval_max_sentences}")
        self.corpus_name = corpus
        self.corpus_path = corpus_path
        self.vocab_size = vocab_size
        self.max_tokens = max_tokens
        self.cache_dir = Path(cache_dir)
        self.seed = seed
        self.max_len = max_len
        self.eval_split = eval_split
        self.eval_max_sentences = eval_max_sentences
        self.num_workers = num_workers
        self.model_type = model_type
        self.vocab: SharedVocab | None = None
        self.binarized: Binarized | None = None
        self._datasets: dict[str, EncodedPairs] = {}
        self._train_loader: ResumableDataLoader | None = None

    # ------------------------------------------------------------------ setup

    def prepare_data(self) -> None:
        """Builds (once, under a file lock) or finds the binarized corpus (data.binarized) and
        loads its vocabulary (`self.vocab`)."""
        self._load_vocab()

    def _binarized(self) -> Binarized:
        if self.binarized is None:
            self.binarized = binarize(
                self.corpus_name, self.corpus_path, vocab_size=self.vocab_size,
                cache_dir=self.cache_dir, model_type=self.model_type, max_lens=(self.max_len,),
            )
        return self.binarized

    def _load_vocab(self) -> SharedVocab:
        if self.vocab is None:
            self.vocab = self._binarized().vocab()
        return self.vocab

    def setup(self, stage: str | None = None) -> None:
        self._load_vocab()
        binarized = self._binarized()
        if "train" not in self._datasets and stage in (None, "fit"):
            train = binarized.split("train")
            keep = binarized.keep(self.max_len)  # lengths read from the offsets: nothing encoded
            dropped = len(train) - len(keep)
            if dropped:
                log.info("dropped %d of %d training pairs longer than %d tokens",
                         dropped, len(train), self.max_len)
            if len(keep) == 0:
                raise ValueError(
                    f"no training pair of {self.corpus_name!r} fits max_len={self.max_len}"
                )
            self._datasets["train"] = EncodedPairs(train, keep)
        for split in {self.eval_split, "test"} if stage != "fit" else {self.eval_split}:
            if split not in self._datasets and split in binarized.splits:
                self._datasets[split] = self._eval_dataset(split)
        if self.eval_split not in self._datasets:
            binarized.split(self.eval_split)  # raises an error naming the missing split

    def _eval_dataset(self, split: str) -> EncodedPairs:
        mapped = self._binarized().split(split)
        rows = None
        if self.eval_max_sentences is not None and self.eval_max_sentences < len(mapped):
            rows = np.arange(self.eval_max_sentences)  # the first N sentences, in file order
        dataset = EncodedPairs(mapped, rows, max_len=self.max_len)
        src_len, tgt_len = dataset.lengths()
        n_long = int(((src_len > self.max_len) | (tgt_len > self.max_len)).sum())
        if n_long:
            log.warning(
                "%s: %d sentences longer than max_len=%d are truncated for the model "
                "(BLEU still uses the full references)",
                split,
                n_long,
                self.max_len,
            )
        return dataset

    # ------------------------------------------------------------------ loaders

    def _rank_and_world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        world = trainer.world_size
        if world > 1 and getattr(trainer._accelerator_connector, "use_distributed_sampler", False):
            raise ValueError(
                "TranslationData shards batches by rank itself: build the Trainer with "
                "use_distributed_sampler=False"
            )
        return trainer.global_rank, world

    def _collator(self) -> PadCollator:
        vocab = self._load_vocab()
        return PadCollator(vocab.pad_id, vocab.bos_id, vocab.eos_id)

    def _sampler(self, dataset: EncodedPairs, *, training: bool) -> TokenBudgetBatchSampler:
        """Training: shuffled, every rank the same number of batches (no DDP deadlock).
        Evaluation: length order, every sentence on exactly one rank (exact summed BLEU)."""
        rank, world = self._rank_and_world()
        src_len, tgt_len = dataset.padded_lengths()
        return TokenBudgetBatchSampler(
            src_len,
            tgt_len,
            self.max_tokens,
            shuffle=training,
            seed=self.seed,
            rank=rank,
            world_size=world,
            pad_to_equal=training,
        )

    def train_dataloader(self) -> ResumableDataLoader:
        if "train" not in self._datasets:
            self.setup("fit")
        dataset = self._datasets["train"]
        pending = self._train_loader.state_dict() if self._train_loader is not None else None
        sampler = self._sampler(dataset, training=True)
        if pending is not None:  # a reload keeps the position of the loader it replaces
            sampler.load_state_dict(pending)
        self._train_loader = ResumableDataLoader(
            dataset,
            sampler,
            collate_fn=self._collator(),
            num_workers=self.num_workers,
        )
        return self._train_loader

    def _eval_loader(self, split: str) -> DataLoader:
        if split not in self._datasets:
            self.setup("validate" if split == self.eval_split else "test")
        if split not in self._datasets:
            self._binarized().split(split)  # raises an error naming the missing split
        dataset = self._datasets[split]
        sampler = self._sampler(dataset, training=False)
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=self._collator(),
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.eval_split)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def eval_references(self, split: str | None = None) -> list[str]:
        """The reference sentences evaluated for `split` (after the eval_max_sentences cap)."""
        split = split or self.eval_split
        if split not in self._datasets:
            self._datasets[split] = self._eval_dataset(split)
        return list(self._datasets[split].references)
