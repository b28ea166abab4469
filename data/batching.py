"""Token-budget batching: length bucketing, deterministic by seed, resumable mid-epoch, DDP-sharded.

How batches are formed (the same on every rank, with no communication):

1. Examples are sorted by (source length, target length). Ties are broken by a permutation drawn
   from (seed, epoch) when shuffling, by index otherwise.
2. The sorted sequence is cut greedily into batches whose padded cost stays within the budget:
   `max(src_len) * n <= max_tokens` and `max(tgt_len) * n <= max_tokens` (lengths as padded, i.e.
   including bos/eos). Examples with equal (source, target) lengths are interchangeable for this
   cut, so the batch boundaries - and hence the number of batches - are the same every epoch,
   while the sentences inside a batch change from epoch to epoch.
3. Shuffling: the batch order is permuted with (seed, epoch).
4. Ranks: with `pad_to_equal=True` (training) the batch list is padded by repeating its first
   batches to a multiple of world_size and rank r takes batches r, r + W, ...; every rank gets the
   same number of batches, so collective ops never wait on a rank that ran out.
   With `pad_to_equal=False` (evaluation) each example goes to exactly one rank (examples are
   dealt out round-robin in sorted order), each rank batches its share, and a rank with fewer
   batches splits its largest ones so all ranks have the same count whenever it has enough
   sentences for that; summed statistics over ranks are then exact.

Resume: `state_dict()` holds the epoch and the number of batches of that epoch already consumed
on this rank; after `load_state_dict`, the next iteration yields exactly the remaining batches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

_STATE_VERSION = 1


def _rng(seed: int, epoch: int, stream: int) -> np.random.Generator:
    # SeedSequence of explicit integers: identical streams on every machine and Python version.
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, stream]))


def _lengths_fingerprint(src: np.ndarray, tgt: np.ndarray) -> str:
    """SHA-256 of the int64 length bytes, source | target (hashed in place: no copy of either)."""
    digest = hashlib.sha256(np.ascontiguousarray(src, dtype=np.int64).data)
    digest.update(b"|")
    digest.update(np.ascontiguousarray(tgt, dtype=np.int64).data)
    return digest.hexdigest()[:16]


def cut_batches(src_sorted: np.ndarray, tgt_sorted: np.ndarray, max_tokens: int) -> list[int]:
    """Greedy boundaries over length-sorted examples: returns the start index of each batch.

    A batch from `a` takes examples while `running max length * count <= max_tokens` on both
    sides. The running max times the count only grows, so the batch ends at the first example
    that breaks it; each batch is found with array ops over a window of at most
    `max_tokens // length of its first example` examples (the first example's lengths bound
    the running max from below), not one Python step per example.
    """
    src = np.asarray(src_sorted, dtype=np.int64)
    tgt = np.asarray(tgt_sorted, dtype=np.int64)
    n, starts, a = len(src), [], 0
    while a < n:
        starts.append(a)
        width = min(n - a, max(1, max_tokens // max(int(src[a]), int(tgt[a]), 1)))
        count = np.arange(1, width + 1, dtype=np.int64)
        fits = ((np.maximum.accumulate(src[a:a + width]) * count <= max_tokens)
                & (np.maximum.accumulate(tgt[a:a + width]) * count <= max_tokens))
        fits[0] = True  # a batch always takes its first example
        a += width if fits.all() else int(np.argmin(fits))
    return starts or [0]


def length_order(src: np.ndarray, tgt: np.ndarray, tie: np.ndarray | None = None) -> np.ndarray:
    """`np.lexsort((tie, tgt, src))` for a permutation `tie` of 0..n-1 (None: ties by index),
    computed faster: with ties by index and lengths that fit 16 bits (any real corpus) by two
    radix sorts, else by one int64 key where the three fit 63 bits, else by lexsort itself.

    A permuted tie goes to the int64 key: the radix path would first gather every index in tie
    order, which at 4.5M examples raised a rank's peak RSS by 40 MB to save 0.4 s."""
    if len(src) == 0:
        return np.arange(0, dtype=np.int64)
    if tie is None and min(int(src.min()), int(tgt.min())) >= 0 and max(
            int(src.max()), int(tgt.max())) < 2**16:
        return radix_length_order(src, tgt)
    return key_length_order(src, tgt, tie)


def radix_length_order(src: np.ndarray, tgt: np.ndarray) -> np.ndarray:
    """`length_order` with ties by index, for 16-bit lengths: stable sorts by target and then
    by source length, which NumPy does as radix sorts on 16-bit keys (a stable sort keeps the
    earlier order among equal keys: lexsort's). The order is int32 while n fits."""
    index = np.int32 if len(src) < 2**31 else np.int64
    order = np.argsort(tgt.astype(np.uint16), kind="stable").astype(index)
    return order[np.argsort(src.astype(np.uint16)[order], kind="stable")]


def key_length_order(src: np.ndarray, tgt: np.ndarray, tie: np.ndarray | None) -> np.ndarray:
    """`length_order` as one argsort of an int64 key (src | tgt | tie), or lexsort past 63 bits."""
    n = len(src)
    tie = np.arange(n, dtype=np.int64) if tie is None else tie
    tie_bits = max(1, int(n - 1).bit_length())
    tgt_bits = max(1, int(tgt.max()).bit_length())
    src_bits = max(1, int(src.max()).bit_length())
    if tie_bits + tgt_bits + src_bits > 63:
        return np.lexsort((tie, tgt, src))
    key = (src.astype(np.int64) << (tgt_bits + tie_bits)) | (tgt.astype(np.int64) << tie_bits)
    key |= tie.astype(np.int64)
    return np.argsort(key)  # keys are distinct (tie is a permutation): any sort gives this order


class TokenBudgetBatchSampler(Sampler[list[int]]):
    """Yields lists of example indices whose padded source and target each fit in `max_tokens`."""

    def __init__(
        self,
        src_lengths: Sequence[int],
        tgt_lengths: Sequence[int],
        max_tokens: int,
        *,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        pad_to_equal: bool = True,
    ) -> None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive int, got {max_tokens!r}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}"
            )
        src = np.asarray(src_lengths, dtype=np.int64)
        tgt = np.asarray(tgt_lengths, dtype=np.int64)
        if src.ndim != 1 or src.shape != tgt.shape:
            raise ValueError(
                f"src_lengths and tgt_lengths must be 1-D of equal size, "
                f"got {src.shape} and {tgt.shape}"
            )
        if len(src) == 0:
            raise ValueError("cannot batch an empty dataset")
        if (src < 1).any() or (tgt < 1).any():
            bad = int(np.flatnonzero((src < 1) | (tgt < 1))[0])
            raise ValueError(f"example {bad} has a non-positive length ({src[bad]}, {tgt[bad]})")
        too_long = np.flatnonzero(np.maximum(src, tgt) > max_tokens)
        if len(too_long):
            i = int(too_long[0])
            raise ValueError(
                f"example {i} (source {src[i]} tokens, target {tgt[i]} tokens) does not fit in "
                f"max_tokens={max_tokens}; {len(too_long)} examples are too long - "
                "filter them first"
            )
        self.src_lengths, self.tgt_lengths = src, tgt
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = int(seed)
        self.rank, self.world_size = rank, world_size
        self.pad_to_equal = pad_to_equal
        self.epoch = 0
        self._start = 0  # batches of self.epoch to skip at the next iteration (resume)
        self._position = 0  # batches of self.epoch yielded so far on this rank
        self._fingerprint = _lengths_fingerprint(src, tgt)

        # Boundaries depend only on the (src, tgt) length sequence, fixed for every epoch.
        order = length_order(src, tgt)
        if pad_to_equal:
            self._starts = np.asarray(cut_batches(src[order], tgt[order], max_tokens))
            n_batches = len(self._starts)
            self._per_rank = -(-n_batches // world_size)
        else:
            self._shards = [self._eval_shard(order, r) for r in range(world_size)]
            self._per_rank = max(len(b) for b in self._shards)
            self._shards = [self._split_to(b, self._per_rank) for b in self._shards]

    # ------------------------------------------------------------------ epoch batches

    def _sorted_order(self, epoch: int) -> np.ndarray:
        n = len(self.src_lengths)
        tie = _rng(self.seed, epoch, 0).permutation(n) if self.shuffle else None
        return length_order(self.src_lengths, self.tgt_lengths, tie)

    def _eval_shard(self, order: np.ndarray, rank: int) -> list[np.ndarray]:
        mine = order[rank :: self.world_size]
        if len(mine) == 0:
            return []
        starts = cut_batches(self.src_lengths[mine], self.tgt_lengths[mine], self.max_tokens)
        return np.split(mine, starts[1:])

    @staticmethod
    def _split_to(batches: list[np.ndarray], count: int) -> list[np.ndarray]:
        """Split the largest batches until there are `count` (when enough sentences allow it)."""
        batches = list(batches)
        while len(batches) < count:
            largest = max(range(len(batches)), key=lambda i: (len(batches[i]), -i), default=None)
            if largest is None or len(batches[largest]) < 2:
                break
            b = batches[largest]
            batches[largest : largest + 1] = [b[: len(b) // 2], b[len(b) // 2 :]]
        return batches

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """All batches of `epoch` for this rank, in order (does not touch the resume position)."""
        return [b.tolist() for b in self._epoch_arrays(epoch)]

    def _epoch_arrays(self, epoch: int) -> list[np.ndarray]:
        """`epoch_batches` as index arrays (iteration converts one batch at a time)."""
        if not self.pad_to_equal:
            batches = self._shards[self.rank]
            if self.shuffle:
                perm = _rng(self.seed, epoch, 1).permutation(len(batches))
                batches = [batches[i] for i in perm]
            return list(batches)
        order = self._sorted_order(epoch)
        batches = np.split(order, self._starts[1:])
        if self.shuffle:
            perm = _rng(self.seed, epoch, 1).permutation(len(batches))
            batches = [batches[i] for i in perm]
        total = self._per_rank * self.world_size
        batches = [batches[i % len(batches)] for i in range(total)]  # cycle: fewer than W batches
        return batches[self.rank :: self.world_size]

    # ------------------------------------------------------------------ Sampler protocol

    def __len__(self) -> int:
        """Batches per epoch on this rank (a resumed epoch yields fewer: the remaining ones)."""
        return len(self._epoch_arrays(0)) if not self.pad_to_equal else self._per_rank

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._epoch_arrays(self.epoch)
        start, self._start = self._start, 0
        self._position = start
        for batch in batches[start:]:
            self._position += 1
            yield batch.tolist()

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; a pending resume position is kept only when the epoch is unchanged."""
        if epoch != self.epoch:
            self.epoch = int(epoch)
            self._start = 0
            self._position = 0

    # ------------------------------------------------------------------ resume

    def state_dict(self, consumed: int | None = None) -> dict:
        """Epoch and batches consumed on this rank; `consumed` overrides the sampler's own count
        (a DataLoader that prefetches draws batches from the sampler before training sees them)."""
        return {
            "version": _STATE_VERSION,
            "epoch": self.epoch,
            "position": self._position if consumed is None else int(consumed),
            "seed": self.seed,
            "max_tokens": self.max_tokens,
            "world_size": self.world_size,
            "rank": self.rank,
            "num_examples": len(self.src_lengths),
            "lengths_fingerprint": self._fingerprint,
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume: the next iteration yields the batches of `state["epoch"]` after `position`."""
        expected = {
            "seed": self.seed,
            "max_tokens": self.max_tokens,
            "world_size": self.world_size,
            "num_examples": len(self.src_lengths),
            "lengths_fingerprint": self._fingerprint,
        }
        for key, value in expected.items():
            if key not in state:
                raise ValueError(f"sampler state lacks {key!r}: {sorted(state)}")
            if state[key] != value:
                raise ValueError(
                    f"sampler state does not match this data: {key} = {state[key]!r} in the state, "
                    f"{value!r} here (a resume needs the same data, seed, budget and world size)"
                )
        position = int(state["position"])
        if not 0 <= position <= len(self):
            raise ValueError(f"sampler state position {position} outside 0..{len(self)}")
        self.epoch = int(state["epoch"])
        self._start = position
        self._position = position
