"""TranslationData: batch layout, filtering, eval sharding, mid-epoch resume through Lightning."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lightning.pytorch.callbacks import ModelCheckpoint

from data.corpora import load_corpus
from data.datamodule import PadCollator, TranslationData


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vocab-cache")


def embedded_data(cache_dir: Path, **kwargs) -> TranslationData:
    kwargs.setdefault("max_tokens", 4096)
    return TranslationData("embedded", vocab_size=1000, cache_dir=cache_dir, **kwargs)


@pytest.mark.slow  # trains the module's shared vocab first (~10-20 s)
def test_batches_have_the_contract_layout(cache_dir: Path) -> None:
    dm = embedded_data(cache_dir, max_tokens=600)
    dm.prepare_data()
    dm.setup("fit")
    vocab = dm.vocab
    train = load_corpus("embedded").split("train")
    batch = next(iter(dm.train_dataloader()))
    src, tgt_in, tgt_out = batch["src"], batch["tgt_in"], batch["tgt_out"]
    assert src.dtype == tgt_in.dtype == tgt_out.dtype == torch.long
    assert src.numel() <= 600 and tgt_in.numel() <= 600
    assert len(batch["references"]) == len(batch["indices"]) == src.shape[0]
    assert tgt_in.shape == tgt_out.shape
    for row, index in enumerate(batch["indices"]):
        ids = vocab.encode(train.source[index])
        assert src[row, : len(ids) + 1].tolist() == [*ids, vocab.eos_id]
        assert (src[row, len(ids) + 1 :] == vocab.pad_id).all()
        tgt = vocab.encode(train.target[index])
        assert tgt_in[row, : len(tgt) + 1].tolist() == [vocab.bos_id, *tgt]
        assert tgt_out[row, : len(tgt) + 1].tolist() == [*tgt, vocab.eos_id]
        assert batch["references"][row] == train.target[index]


def test_long_training_pairs_are_filtered(cache_dir: Path) -> None:
    dm = embedded_data(cache_dir, max_len=12)
    dm.setup("fit")
    kept = dm._datasets["train"]
    assert 0 < len(kept) < len(load_corpus("embedded").split("train"))
    src_len, tgt_len = kept.lengths()
    assert int(src_len.max()) <= 12 and int(tgt_len.max()) <= 12
    indices = [i for batch in dm.train_dataloader() for i in batch["indices"]]
    assert sorted(indices) == list(range(len(kept)))


def test_validation_is_sorted_capped_and_complete(cache_dir: Path) -> None:
    dm = embedded_data(cache_dir, eval_max_sentences=120, max_tokens=500)
    dm.setup("validate")
    batches = list(dm.val_dataloader())
    refs = [r for b in batches for r in b["references"]]
    assert sorted(refs) == sorted(load_corpus("embedded").split("valid").target[:120])
    widths = [b["src"].shape[1] for b in batches]
    assert widths == sorted(widths)
    assert [b["indices"] for b in dm.val_dataloader()] == [b["indices"] for b in batches]
    assert len(dm.test_dataloader().dataset) == 120


def test_bad_settings_are_named(cache_dir: Path) -> None:
    with pytest.raises(ValueError, match="max_tokens=100 cannot hold one sentence of max_len=256"):
        embedded_data(cache_dir, max_tokens=100)
    dm = embedded_data(cache_dir, eval_split="test2017")
    with pytest.raises(ValueError, match="no split 'test2017'"):
        dm.setup("fit")


def test_loader_state_counts_batches_handed_out_not_prefetched(cache_dir: Path) -> None:
    straight = embedded_data(cache_dir, max_tokens=8192, seed=2)
    order = [b["indices"] for b in straight.train_dataloader()]

    dm = embedded_data(cache_dir, max_tokens=8192, seed=2, num_workers=2)
    loader = dm.train_dataloader()
    iterator = iter(loader)
    taken = [next(iterator)["indices"] for _ in range(3)]
    state = loader.state_dict()
    assert loader.batch_sampler.state_dict()["position"] > 3  # workers ran ahead
    assert state["position"] == 3 and taken == order[:3]
    del iterator

    resumed = embedded_data(cache_dir, max_tokens=8192, seed=2, num_workers=2)
    loader = resumed.train_dataloader()
    loader.load_state_dict(state)
    assert [b["indices"] for b in loader] == order[3:]


class IndexRecorder(L.LightningModule):
    """A minimal real model that records which examples each training step saw."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab_size, 8)
        self.seen: list[tuple[int, ...]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(tuple(batch["indices"]))
        return self.embedding(batch["src"]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit(dm: TranslationData, root: Path, max_steps: int, ckpt_path=None, every=None) -> list:
    dm.prepare_data()
    dm.setup("fit")
    model = IndexRecorder(dm.vocab.size)
    callbacks = []
    if every:
        callbacks.append(
            ModelCheckpoint(
                dirpath=root, filename="{step}", every_n_train_steps=every, save_top_k=-1
            )
        )
    trainer = L.Trainer(
        max_steps=max_steps,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=bool(every),
        callbacks=callbacks,
        default_root_dir=root,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return model.seen


@pytest.mark.slow
def test_resume_mid_epoch_through_a_lightning_checkpoint(cache_dir: Path, tmp_path: Path) -> None:
    dm = embedded_data(cache_dir, max_tokens=16384, seed=5)
    dm.setup("fit")
    per_epoch = len(dm.train_dataloader())
    total = per_epoch + per_epoch // 2 + 3  # into the second epoch
    cut_first, cut_second = per_epoch // 2, per_epoch + 4
    straight = fit(
        embedded_data(cache_dir, max_tokens=16384, seed=5), tmp_path / "a", total, every=1
    )
    assert len(straight) == total
    assert straight[:per_epoch] != straight[per_epoch : 2 * per_epoch]  # reshuffled per epoch
    for cut in (cut_first, cut_second):
        resumed = fit(
            embedded_data(cache_dir, max_tokens=16384, seed=5),
            tmp_path / f"r{cut}",
            total,
            ckpt_path=tmp_path / "a" / f"step={cut}.ckpt",
        )
        assert resumed == straight[cut:], f"resume from step {cut}"


def _collate_row_by_row(items: list, pad: int, bos: int, eos: int) -> dict:
    """The batch layout written one sentence at a time (the collator's reference)."""
    n = len(items)
    src = torch.full((n, max(len(s) for _, s, _, _ in items) + 1), pad, dtype=torch.long)
    tgt_in = torch.full((n, max(len(t) for _, _, t, _ in items) + 1), pad, dtype=torch.long)
    tgt_out = tgt_in.clone()
    for row, (_, s, t, _) in enumerate(items):
        src[row, : len(s)] = torch.as_tensor(s.astype(np.int64))
        src[row, len(s)] = eos
        tgt_in[row, 0] = bos
        tgt_in[row, 1 : len(t) + 1] = torch.as_tensor(t.astype(np.int64))
        tgt_out[row, : len(t)] = torch.as_tensor(t.astype(np.int64))
        tgt_out[row, len(t)] = eos
    return {"src": src, "tgt_in": tgt_in, "tgt_out": tgt_out}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.lists(st.integers(3, 30000), max_size=12),
                          st.lists(st.integers(3, 30000), max_size=12)),
                min_size=1, max_size=9))
def test_the_collator_equals_row_by_row_padding(pairs: list) -> None:
    items = [(i, np.asarray(s, dtype=np.int32), np.asarray(t, dtype=np.int32), f"ref {i}")
             for i, (s, t) in enumerate(pairs)]
    batch = PadCollator(0, 1, 2)(items)
    expected = _collate_row_by_row(items, 0, 1, 2)
    for key, tensor in expected.items():
        assert batch[key].dtype == torch.long and torch.equal(batch[key], tensor), key
    assert batch["indices"] == list(range(len(items)))
    assert batch["references"] == [f"ref {i}" for i in range(len(items))]
