"""TranslationModule: Transformer, label-smoothed loss, decoding and BLEU as a LightningModule.

Loss normalisation (DDP and gradient accumulation): every micro-batch all-reduces (loss sum,
nll sum, target tokens, source tokens) over the ranks. Each rank back-propagates the *summed*
loss times ``world_size * accumulate_grad_batches`` (undoing DDP's gradient averaging and
Lightning's division by the accumulation count), and ``on_before_optimizer_step`` divides the
gradients by the global number of target tokens of all accumulated micro-batches. The applied
gradient is therefore that of ``sum(loss) / sum(target tokens)`` over the global batch: two ranks
with batches (a, b) give what one process accumulating a then b gives.

A non-finite global loss marks the module ``diverged``, skips that optimizer step (all ranks
agree because the loss is reduced first) and asks the Trainer to stop. With ``blowup_factor`` a
finite loss above that factor times the first batch's loss does the same (a blown-up run stops
early instead of running its budget out; the sensitivity grid uses it).

Evaluation (``evaluate``): each rank sums loss and BLEU sufficient statistics over its share of
the evaluation split, and the sums are all-reduced, so corpus BLEU is computed from the whole
split's counts (never an average of per-batch BLEU).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable
from typing import Any

import lightning.pytorch as pl
import torch
import torch.distributed as dist

from models.bleu import bleu_from_statistics, bleu_statistics
from models.config import UPDATE_RMS_MATRIX, ModelConfig
from models.decoding import beam_search, greedy_decode
from models.fsdp import is_sharded, plain_replica, shard_transformer
from models.loss import label_smoothed_cross_entropy
from models.transformer import Transformer

DECODE_MODES = ("beam", "greedy")


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np

        kind, keys, pos, has_gauss, cached = np.random.get_state()
        # tensors and plain numbers only, so checkpoints load with torch.load(weights_only=True)
        state["numpy"] = (kind, torch.from_numpy(keys.astype(np.int64)), int(pos),
                          int(has_gauss), float(cached))
    except ImportError:  # pragma: no cover - numpy ships with torch's usual installs
        pass
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        import numpy as np

        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


class TranslationModule(pl.LightningModule):
    """Encoder-decoder Transformer trained with label-smoothed cross-entropy per target token.

    ``optimizer_factory(named_parameters) -> Optimizer`` builds the optimizer from
    ``(name, parameter)`` pairs (torch optimizers accept them; Adam-mini needs the names).
    ``lr_lambda(t)`` (t = 1, 2, ..., the optimizer step about to be taken) gives the lr of step
    t, applied with LambdaLR on base lr 1 (so ``param_group["lr"]`` is exactly ``lr_lambda(t)``).
    Without ``lr_lambda`` the optimizer's own lr is used.
    """

    def __init__(
        self,
        model_cfg: ModelConfig,
        vocab: Any,
        *,
        optimizer_factory: Callable[[Iterable[tuple[str, torch.nn.Parameter]]],
                                    torch.optim.Optimizer],
        lr_lambda: Callable[[int], float] | None = None,
        beam_size: int = 4,
        length_penalty: float = 0.6,
        decode: str = "beam",
        max_len_a: float = 1.2,
        max_len_b: int = 10,
        blowup_factor: float | None = None,
    ) -> None:
        super().__init__()
        if decode not in DECODE_MODES:
            raise ValueError(f"decode must be one of {DECODE_MODES}, got {decode!r}")
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        self.cfg = model_cfg
        self.vocab = vocab
        self.model = Transformer(model_cfg, pad_id=vocab.pad_id)
        self.optimizer_factory = optimizer_factory
        self.lr_lambda = lr_lambda
        self.beam_size = beam_size
        self.length_penalty = length_penalty
        self.decode_mode = decode
        self.max_len_a = max_len_a
        self.max_len_b = max_len_b
        self.diverged = False
        self.diverged_step: int | None = None
        self.diverged_reason: str | None = None  # what stopped it: non-finite or past blowup_factor
        self.blowup_factor = blowup_factor
        self.first_loss: float | None = None  # the first batch's mean loss (for blowup_factor)
        self.train_time_s = 0.0  # summed over resumed segments (saved in checkpoints)
        self.total_tokens = 0.0  # source + target tokens trained on, all ranks
        self._accumulated_tokens = 0.0
        self._pending_rng: dict[str, Any] | None = None
        self._step_started: float | None = None
        self.reset_interval()

    # --- parallelism ---------------------------------------------------------------------------

    def configure_model(self) -> None:
        """Lightning's ModelParallelStrategy hook: FSDP2 over the data-parallel mesh dim (tensor
        parallelism is not used: its size must be 1). Other strategies leave the model alone."""
        mesh = self.device_mesh
        if mesh is None or is_sharded(self.model):
            return
        if "tensor_parallel" in (mesh.mesh_dim_names or ()) and mesh["tensor_parallel"].size() > 1:
            raise ValueError(
                "TranslationModule supports FSDP2 only: tensor_parallel_size must be 1"
            )
        dp = mesh["data_parallel"] if mesh.mesh_dim_names else mesh
        shard_transformer(self.model, dp)

    def _eval_model(self) -> Transformer:
        """The model to evaluate and decode with: under FSDP2, a gathered plain replica."""
        return plain_replica(self.model) if is_sharded(self.model) else self.model

    # --- optimisation -------------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.named_parameters())
        if self.lr_lambda is None:
            return optimizer
        for group in optimizer.param_groups:
            group["lr"] = 1.0
            group["initial_lr"] = 1.0
        lr_lambda = self.lr_lambda
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: lr_lambda(i + 1))
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def reset_interval(self) -> None:
        """Zero the sums behind the next logged training row."""
        self.interval_sums = torch.zeros(4, dtype=torch.float64)  # loss, nll, tgt, src tokens
        self.interval_steps = 0
        self.interval_time_s = 0.0
        # Per-tensor sums over the interval's optimizer steps of RMS(U_t) and of the applied
        # min(RMS(U_t), d), on the device (no read-back per step); their tensors' ids.
        self._rms_sums: tuple[torch.Tensor, torch.Tensor] | None = None
        self._rms_steps = 0
        self._rms_params: list[torch.Tensor] = []

    def on_train_batch_start(self, batch: dict[str, Any], batch_idx: int) -> None:
        if self._pending_rng is not None:
            # Restored here, after the dataloader iterator was created (it draws from the global
            # RNG), so dropout masks continue exactly where the checkpointed run left off.
            _set_rng_state(self._pending_rng)
            self._pending_rng = None
        self._step_started = time.perf_counter()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        logits = self.model(batch["src"], batch["tgt_in"])
        loss_sum, nll_sum, n_tokens = label_smoothed_cross_entropy(
            logits, batch["tgt_out"], self.cfg.label_smoothing, self.vocab.pad_id
        )
        n_src = (batch["src"] != self.vocab.pad_id).sum()
        sums = torch.stack(
            [loss_sum.detach().double(), nll_sum.detach().double(),
             torch.as_tensor(n_tokens, device=loss_sum.device).double(), n_src.double()]
        )
        sums = _all_reduce_sum(sums).cpu()
        mean_loss = float(sums[0] / sums[2].clamp(min=1))
        if not math.isfinite(mean_loss) or self._blew_up(mean_loss):
            self.diverged = True
            self.diverged_step = self.trainer.global_step + 1
            self.diverged_reason = (
                "non-finite training loss" if not math.isfinite(mean_loss) else
                f"training loss {mean_loss:.3f} > {self.blowup_factor:g} x the first batch's "
                f"{self.first_loss:.3f}")
            self.trainer.should_stop = True
            return None  # skip backward and the optimizer step
        self.interval_sums += sums
        self.interval_steps += 1
        self.total_tokens += float(sums[2] + sums[3])
        self._accumulated_tokens += float(sums[2])
        world = dist.get_world_size() if _distributed() else 1
        return loss_sum * float(world * self.trainer.accumulate_grad_batches)

    def _blew_up(self, mean_loss: float) -> bool:
        """Whether ``mean_loss`` exceeds blowup_factor x the first batch's loss (never without
        a factor); the first call records that first loss."""
        if self.first_loss is None:
            self.first_loss = mean_loss
            return False
        return self.blowup_factor is not None and mean_loss > self.blowup_factor * self.first_loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        scale = 1.0 / max(self._accumulated_tokens, 1.0)
        self._accumulated_tokens = 0.0
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.mul_(scale)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self._add_update_rms()

    def _add_update_rms(self) -> None:
        """Add this step's RMS(U_t) per tensor to the interval's sums, so a logged row holds the
        mean over every step of its interval, not the last step's value."""
        optimizer = self.trainer.optimizers[0] if self.trainer.optimizers else None
        if optimizer is None or not hasattr(optimizer, "last_update_rms") or not any(
                g.get("track_stats", False) for g in optimizer.param_groups):
            return
        try:
            params, values, limits = optimizer.last_update_rms()
        except RuntimeError:  # no step with gradients yet
            return
        if self._rms_sums is None or [id(p) for p in params] != [id(p) for p in self._rms_params]:
            self._rms_sums = (torch.zeros_like(values), torch.zeros_like(values))
            self._rms_steps, self._rms_params = 0, params
        self._rms_sums[0].add_(values)
        self._rms_sums[1].add_(torch.minimum(values, limits))
        self._rms_steps += 1

    def on_train_batch_end(self, outputs: Any, batch: dict[str, Any], batch_idx: int) -> None:
        self.stop_clock()

    def stop_clock(self) -> None:
        """Add the time since the batch started to the timers (idempotent within a batch; callbacks
        that log or checkpoint in on_train_batch_end call it first, as they run before this
        hook)."""
        if self._step_started is not None:
            elapsed = time.perf_counter() - self._step_started
            self.interval_time_s += elapsed
            self.train_time_s += elapsed
            self._step_started = None

    def interval_row(self) -> dict[str, float]:
        """Training metrics averaged since the last row (global over ranks)."""
        loss, nll, tgt, src = self.interval_sums.tolist()
        row: dict[str, float] = {}
        if self.interval_steps and tgt > 0:
            row["train_loss"] = loss / tgt
            row["train_nll"] = nll / tgt
            row["train_ppl"] = math.exp(min(nll / tgt, 50.0))
            row["tokens_per_s"] = (tgt + src) / max(self.interval_time_s, 1e-9)
            row["target_tokens"] = tgt
        optimizer = self.trainer.optimizers[0] if self.trainer.optimizers else None
        if optimizer is not None:
            lr = optimizer.param_groups[0]["lr"]
            if lr is not None:  # Adafactor(lr=None) computes its own relative step (see "rho")
                row["lr"] = float(lr)
            tracked = any(g.get("track_stats", False) for g in optimizer.param_groups)
            if tracked and hasattr(optimizer, "step_stats") and self.trainer.global_step > 0:
                for key, value in optimizer.step_stats().items():
                    row[key] = float(value)
                row.update(self._interval_update_rms())
        return row

    def _interval_update_rms(self) -> dict[str, float]:
        """The interval's means over its steps: ``update_rms`` (over tensors of RMS(U_t), the
        unscaled, unclipped update), ``update_rms_matrices`` (over weight matrices, tensors of two
        or more dims), ``update_rms_matrix`` (UPDATE_RMS_MATRIX's, Figure 1) and
        ``update_rms_applied_matrices`` (over matrices of the applied min(RMS(U_t), d))."""
        if self._rms_sums is None or not self._rms_steps:
            return {}
        means = (self._rms_sums[0] / self._rms_steps).tolist()
        applied = (self._rms_sums[1] / self._rms_steps).tolist()
        names = {id(p): n for n, p in self.named_parameters()}
        out: dict[str, float] = {"update_rms": sum(means) / len(means)}
        matrices = [i for i, p in enumerate(self._rms_params) if p.dim() >= 2]
        if matrices:
            out["update_rms_matrices"] = sum(means[i] for i in matrices) / len(matrices)
            out["update_rms_applied_matrices"] = sum(applied[i] for i in matrices) / len(matrices)
        for i in matrices:
            if names.get(id(self._rms_params[i])) == UPDATE_RMS_MATRIX:
                out["update_rms_matrix"] = means[i]
        return out

    # --- checkpoints --------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["translation_module"] = {
            "rng": _rng_state(),
            "train_time_s": self.train_time_s,
            "total_tokens": self.total_tokens,
            "diverged": self.diverged,
            "diverged_step": self.diverged_step,
            "diverged_reason": self.diverged_reason,
            "first_loss": self.first_loss,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("translation_module")
        if state is None:
            return
        self._pending_rng = state["rng"]
        self.train_time_s = float(state["train_time_s"])
        self.total_tokens = float(state["total_tokens"])
        self.diverged = bool(state["diverged"])
        self.diverged_step = state["diverged_step"]
        self.diverged_reason = state.get("diverged_reason")
        self.first_loss = state.get("first_loss")

    # --- evaluation ---------------------------------------------------------------------------

    def translate(self, src: torch.Tensor, model: Transformer | None = None) -> list[str]:
        """Decode a source batch to detokenized target strings (beam or greedy per settings)."""
        model = self.model if model is None else model
        common = dict(bos_id=self.vocab.bos_id, eos_id=self.vocab.eos_id, pad_id=self.vocab.pad_id,
                      max_len_a=self.max_len_a, max_len_b=self.max_len_b)
        if self.decode_mode == "beam" and self.beam_size > 1:
            ids = beam_search(model, src, beam_size=self.beam_size,
                              length_penalty=self.length_penalty, **common)
        else:
            ids = greedy_decode(model, src, **common)
        return [self.vocab.decode(list(seq)) for seq in ids]

    @torch.no_grad()
    def evaluate(
        self, loader: Iterable[dict[str, Any]], *, bleu: bool, shard_batches: bool = False
    ) -> dict[str, Any]:
        """Teacher-forced loss (and BLEU when ``bleu``) on the loader, summed over ranks.

        Every rank must call this. A loader that already yields only this rank's share (as
        ``data.datamodule.TranslationData.val_dataloader`` does) is used whole; with
        ``shard_batches=True`` rank r takes batches r, r + W, ... of a loader shared by all ranks.
        """
        rank = dist.get_rank() if _distributed() and shard_batches else 0
        world = dist.get_world_size() if _distributed() and shard_batches else 1
        was_training = self.training
        self.eval()
        model = self._eval_model()  # a collective under FSDP2: every rank calls evaluate
        model.eval()
        sums = torch.zeros(3, dtype=torch.float64)  # loss, nll, tokens
        stats: torch.Tensor | None = None
        n_sentences = 0
        try:
            for k, batch in enumerate(loader):
                if k % world != rank:
                    continue
                src = batch["src"].to(self.device)
                logits = model(src, batch["tgt_in"].to(self.device))
                loss_sum, nll_sum, n_tokens = label_smoothed_cross_entropy(
                    logits, batch["tgt_out"].to(self.device), self.cfg.label_smoothing,
                    self.vocab.pad_id,
                )
                sums += torch.tensor([float(loss_sum), float(nll_sum), float(n_tokens)],
                                     dtype=torch.float64)
                if bleu:
                    hyps = self.translate(src, model)
                    batch_stats = bleu_statistics(hyps, list(batch["references"]))
                    stats = batch_stats.clone() if stats is None else stats + batch_stats
                    n_sentences += len(hyps)
        finally:
            self.train(was_training)
        sums = _all_reduce_sum(sums.to(self.device)).cpu()
        out: dict[str, Any] = {
            "valid_loss": float(sums[0] / sums[2]) if sums[2] > 0 else float("nan"),
            "valid_nll": float(sums[1] / sums[2]) if sums[2] > 0 else float("nan"),
        }
        if bleu:
            if stats is None:  # this rank had no batch: contribute zeros of the right shape
                stats = torch.zeros_like(bleu_statistics(["x"], ["x"]))
            count = torch.tensor([n_sentences], dtype=torch.float64)
            stats = _all_reduce_sum(stats.to(self.device)).cpu()
            count = _all_reduce_sum(count.to(self.device)).cpu()
            score = bleu_from_statistics(stats)
            out.update(
                bleu=float(score.score),
                bleu_signature=score.signature,
                tokenized_bleu=float(score.tokenized_score),
                tokenized_bleu_signature=score.tokenized_signature,
                eval_sentences=int(count.item()),
            )
        return out
