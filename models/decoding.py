"""Greedy decoding and batched beam search over ``Transformer`` with cached keys/values.

Both encode the source once, compute the cross-attention keys/values once, and feed one target
token per step (the self-attention cache grows by one position a step).

Length limit: sentence i may produce at most ``int(max_len_a * src_len_i + max_len_b)`` tokens
before its end-of-sentence token, where ``src_len_i`` counts the non-pad source tokens (its
trailing eos included); the limit is also capped so that positions stay below max_positions.
A greedy hypothesis that reaches the limit stops there; in beam search eos is forced at that step.
Padding and bos (when it differs from eos) are never generated: their probabilities are set to 0.

Beam search (GNMT length penalty lp(n) = ((5 + n) / 6) ** alpha, n = generated tokens including
eos; hypotheses are ranked by log-probability / lp): each step takes the best 2k continuations
of the k alive hypotheses of a sentence; a continuation ending in eos is finished only when it
ranks among the best k (so that beam 1 is greedy decoding), and the best k continuations that
do not end in eos stay alive. A sentence is done when it has k finished hypotheses (fairseq's
rule; T2T instead stops when no alive hypothesis can still beat the finished ones) or reaches
its length limit. The best finished hypothesis by normalised score is returned.

A sentence that is done leaves the batch at once (its rows are dropped from every cache), so a
batch costs what its still-running sentences cost.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from models.transformer import Transformer


def gnmt_length_penalty(length: int | Tensor, alpha: float) -> float | Tensor:
    """((5 + length) / 6) ** alpha (Wu et al. 2016), the length penalty used by T2T."""
    return ((5.0 + length) / 6.0) ** alpha


def _max_lengths(model: Transformer, src: Tensor, pad_id: int, a: float, b: float) -> Tensor:
    src_lengths = (src != pad_id).sum(dim=1)
    limits = (a * src_lengths.double() + b).floor().long()
    # Position 0 holds bos; a hypothesis of L tokens then eos feeds positions 0 .. L.
    return limits.clamp(min=0, max=model.cfg.max_positions - 1)


def _forbidden_tokens(vocab_size: int, bos_id: int, eos_id: int, pad_id: int, device) -> Tensor:
    """Boolean [V]: tokens a hypothesis may never contain (padding, and bos unless it is eos)."""
    forbidden = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    forbidden[[t for t in (pad_id, bos_id) if t != eos_id]] = True
    return forbidden


def _check_args(model: Transformer, src: Tensor, ids: dict[str, int]) -> None:
    if src.dim() != 2:
        raise ValueError(f"src must be [batch, length], got shape {tuple(src.shape)}")
    for name, value in ids.items():
        if not 0 <= value < model.cfg.vocab_size:
            raise ValueError(
                f"{name}={value} is outside the vocabulary [0, {model.cfg.vocab_size})"
            )


@torch.no_grad()
def greedy_decode(
    model: Transformer,
    src: Tensor,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_len_a: float = 1.2,
    max_len_b: float = 10,
) -> list[list[int]]:
    """Most probable token at every step; token ids without bos/eos/pad, one list per row."""
    _check_args(model, src, {"bos_id": bos_id, "eos_id": eos_id, "pad_id": pad_id})
    was_training = model.training
    model.eval()
    try:
        return _greedy(model, src, bos_id, eos_id, pad_id, max_len_a, max_len_b)
    finally:
        model.train(was_training)


def _greedy(
    model: Transformer,
    src: Tensor,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_len_a: float,
    max_len_b: float,
) -> list[list[int]]:
    device = src.device
    hypotheses: list[list[int]] = [[] for _ in range(src.shape[0])]
    if not hypotheses:
        return hypotheses
    max_lengths = _max_lengths(model, src, pad_id, max_len_a, max_len_b)
    memory, token_mask = model.encode(src)
    state = model.init_decoder_state(memory, token_mask)
    forbidden = _forbidden_tokens(model.cfg.vocab_size, bos_id, eos_id, pad_id, device)
    # Rows still decoding: their sentence ids and the tokens they produced so far.
    active = torch.arange(src.shape[0], device=device)
    produced = torch.empty((src.shape[0], 0), dtype=torch.long, device=device)
    ended = max_lengths == 0
    tokens = torch.full((src.shape[0],), bos_id, dtype=torch.long, device=device)
    step = 0
    while True:
        if bool(ended.any()):  # one host sync a step; finished rows leave the batch
            keep = (~ended).nonzero().squeeze(1)
            for sentence, row in zip(active[ended].tolist(), produced[ended].tolist(),
                                     strict=True):
                hypotheses[sentence] = [t for t in row if t != eos_id]
            if keep.numel() == 0:
                return hypotheses
            active, produced, max_lengths = active[keep], produced[keep], max_lengths[keep]
            tokens = tokens[keep]
            state.select(keep)
        logits = model.decode_step(tokens, state)
        log_probs = F.log_softmax(logits.float(), dim=-1).masked_fill(forbidden, -math.inf)
        tokens = log_probs.argmax(dim=-1)
        produced = torch.cat([produced, tokens[:, None]], dim=1)
        step += 1
        ended = (tokens == eos_id) | (max_lengths <= step)


@torch.no_grad()
def beam_search(
    model: Transformer,
    src: Tensor,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    beam_size: int = 4,
    length_penalty: float = 0.6,
    max_len_a: float = 1.2,
    max_len_b: float = 10,
) -> list[list[int]]:
    """Batched beam search (see the module docstring); best hypothesis per row, without
    bos/eos/pad."""
    return [
        hyps[0][1]
        for hyps in beam_search_nbest(
            model,
            src,
            bos_id=bos_id,
            eos_id=eos_id,
            pad_id=pad_id,
            beam_size=beam_size,
            length_penalty=length_penalty,
            max_len_a=max_len_a,
            max_len_b=max_len_b,
        )
    ]


@torch.no_grad()
def beam_search_nbest(
    model: Transformer,
    src: Tensor,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    beam_size: int = 4,
    length_penalty: float = 0.6,
    max_len_a: float = 1.2,
    max_len_b: float = 10,
) -> list[list[tuple[float, list[int]]]]:
    """Like ``beam_search`` but returns, per row, every finished hypothesis as
    (length-normalised log-probability, token ids), best first."""
    _check_args(model, src, {"bos_id": bos_id, "eos_id": eos_id, "pad_id": pad_id})
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be an int >= 1, got {beam_size!r}")
    if not math.isfinite(length_penalty):
        raise ValueError(f"length_penalty must be finite, got {length_penalty}")
    was_training = model.training
    model.eval()
    try:
        return _beam_search(
            model, src, bos_id, eos_id, pad_id, beam_size, length_penalty, max_len_a, max_len_b
        )
    finally:
        model.train(was_training)


def _beam_search(
    model: Transformer,
    src: Tensor,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    k: int,
    alpha: float,
    max_len_a: float,
    max_len_b: float,
) -> list[list[tuple[float, list[int]]]]:
    device, vocab = src.device, model.cfg.vocab_size
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(src.shape[0])]
    max_lengths = _max_lengths(model, src, pad_id, max_len_a, max_len_b)
    memory, token_mask = model.encode(src)
    state = model.init_decoder_state(memory, token_mask).repeat_interleave(k)
    forbidden = _forbidden_tokens(vocab, bos_id, eos_id, pad_id, device)
    non_eos = torch.ones(vocab, dtype=torch.bool, device=device)
    non_eos[eos_id] = False

    # Sentences still searching (ids into the input batch); row b * k + j of every per-row
    # tensor is beam j of active sentence b. Only beam 0 starts alive, so the first step does
    # not pick k copies of the same continuation.
    active = list(range(src.shape[0]))
    alive_scores = torch.full((len(active), k), -math.inf, device=device)
    alive_scores[:, 0] = 0.0
    alive_tokens = torch.empty((len(active) * k, 0), dtype=torch.long, device=device)
    last_tokens = torch.full((len(active) * k,), bos_id, dtype=torch.long, device=device)
    step = 0
    while active:
        batch = len(active)
        log_probs = F.log_softmax(model.decode_step(last_tokens, state).float(), dim=-1)
        log_probs = log_probs.masked_fill(forbidden, -math.inf).view(batch, k, vocab)
        # At its length limit a sentence may only end: every other token is ruled out.
        at_limit = (max_lengths == step)[:, None, None]
        log_probs = log_probs.masked_fill(at_limit & non_eos, -math.inf)
        candidates = (alive_scores[:, :, None] + log_probs).view(batch, k * vocab)
        top_scores, top_indices = candidates.topk(min(2 * k, k * vocab), dim=1)
        top_beams = torch.div(top_indices, vocab, rounding_mode="floor")
        top_tokens = top_indices % vocab
        is_eos = (top_tokens == eos_id) & torch.isfinite(top_scores)

        # Finish the eos continuations ranked among the best k (one host sync a step).
        ended = is_eos[:, :k].nonzero().tolist()
        if ended:
            penalty = gnmt_length_penalty(step + 1, alpha)
            scores_host, beams_host = top_scores[:, :k].tolist(), top_beams[:, :k].tolist()
            rows = [b * k + beams_host[b][j] for b, j in ended]
            prefixes = alive_tokens[rows].tolist()
            for (b, j), prefix in zip(ended, prefixes, strict=True):
                finished[active[b]].append((scores_host[b][j] / penalty, prefix))
        at_limit_host = (max_lengths <= step).tolist()
        keep = [b for b in range(batch)
                if len(finished[active[b]]) < k and not at_limit_host[b]]
        if len(keep) < batch:  # done sentences leave the batch
            if not keep:
                break
            keep_t = torch.tensor(keep, device=device)
            keep_rows = (keep_t[:, None] * k + torch.arange(k, device=device)).view(-1)
            active = [active[b] for b in keep]
            top_scores, top_beams = top_scores[keep_t], top_beams[keep_t]
            top_tokens, is_eos = top_tokens[keep_t], is_eos[keep_t]
            max_lengths = max_lengths[keep_t]
            alive_tokens = alive_tokens[keep_rows]
            state.select(keep_rows)
            batch = len(active)

        # The best k continuations that do not end in eos stay alive.
        alive_scores, chosen = top_scores.masked_fill(is_eos, -math.inf).topk(k, dim=1)
        rows = (torch.arange(batch, device=device)[:, None] * k
                + top_beams.gather(1, chosen)).view(-1)
        last_tokens = top_tokens.gather(1, chosen).view(-1)
        state.reorder_beams(rows)
        alive_tokens = torch.cat([alive_tokens[rows], last_tokens[:, None]], dim=1)
        step += 1

    # A sentence can only lack a finished hypothesis if every continuation had probability 0.
    return [sorted(hyps, key=lambda item: item[0], reverse=True) or [(-math.inf, [])]
            for hyps in finished]
