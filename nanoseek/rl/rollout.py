"""Rollouts: sample G responses per prompt with the KV cache, keep their log-probs and a mask. (Chapter 10.)

A policy is any model with the package's calling convention ``logits, loss = model(idx)`` (idx (B, T) token
ids, logits (B, T, V)). When it also has ``new_cache(batch_size, max_len)`` and accepts
``model(idx, cache=cache)`` (the decoder of chapter 4), decoding feeds one token a step through the cache;
otherwise it re-runs the whole prefix each step (same tokens, more compute).

All prompts in one sampled batch have the same length (prompts are bucketed by length), so responses are
generated in lockstep with no attention mask: a finished response keeps emitting `pad_id`, which the mask
hides and which, coming after the end, never influences an earlier token.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from nanoseek.generate import draw, filter_logits


@dataclass
class Rollout:
    """One batch of sampled responses to prompts of one length; groups of `group_size` are contiguous.

    prompt: (B, P) token ids; response: (B, T) ids (`pad_id` after the end); mask: (B, T) float, 1 on
    response tokens up to and including the end token; logp: (B, T) log-probs of the sampled tokens under
    the sampling distribution; texts: the decoded responses; rows: the task rows (one per response).
    """

    prompt: torch.Tensor
    response: torch.Tensor
    mask: torch.Tensor
    logp: torch.Tensor
    texts: list[str]
    rows: list[dict]
    group_size: int
    rewards: torch.Tensor | None = None
    extras: dict = field(default_factory=dict)

    @property
    def tokens(self) -> torch.Tensor:  # (B, P + T)
        return torch.cat([self.prompt, self.response], dim=1)

    @property
    def lengths(self) -> torch.Tensor:  # (B,) response lengths in tokens
        return self.mask.sum(1)


def _supports_cache(model: torch.nn.Module) -> bool:
    return callable(getattr(model, "new_cache", None))


def _logits(model: torch.nn.Module, idx: torch.Tensor, cache=None) -> torch.Tensor:
    out = model(idx) if cache is None else model(idx, cache=cache)
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def sample(model: torch.nn.Module, prompt: torch.Tensor, max_new_tokens: int, eos_id: int, pad_id: int,
           temperature: float = 1.0, top_k: int | None = None, generator: torch.Generator | None = None,
           use_cache: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample up to `max_new_tokens` after each row of `prompt` (B, P).

    Returns response (B, T) (pad after the end), mask (B, T) float, logp (B, T) log-probs of the sampled
    tokens under softmax(logits / temperature) (top-k, when set, renormalised over the kept tokens).
    temperature 0 is greedy (logp then under temperature 1).
    """
    if prompt.dim() != 2 or prompt.shape[1] < 1:
        raise ValueError(f"prompt must be (B, P) with P >= 1, got shape {tuple(prompt.shape)}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens!r} must be >= 1")
    if temperature < 0:
        raise ValueError(f"temperature={temperature!r} must be >= 0")
    was_training = model.training
    model.eval()
    B, P = prompt.shape
    dev = prompt.device
    # the last sampled token is never fed back, so the cache needs P + max_new_tokens - 1 positions
    cache = model.new_cache(B, P + max_new_tokens - 1) if (use_cache and _supports_cache(model)) else None
    tokens, logps, masks = [], [], []
    alive = torch.ones(B, dtype=torch.bool, device=dev)  # (B,) still generating
    seq = prompt
    step_input = prompt
    for _ in range(max_new_tokens):
        logits = _logits(model, step_input if cache is not None else seq, cache)[:, -1, :].float()  # (B, V)
        # the same sampling rule as nanoseek.generate, whose log-probs the policy gradient needs
        scaled = filter_logits(logits, temperature if temperature > 0 else 1.0, top_k)
        logprobs = F.log_softmax(scaled, dim=-1)  # (B, V)
        if temperature > 0:
            nxt = draw(logprobs.exp(), generator).squeeze(1)  # (B,)
        else:
            nxt = logprobs.argmax(-1)
        lp = logprobs.gather(1, nxt[:, None]).squeeze(1)
        nxt = torch.where(alive, nxt, torch.full_like(nxt, pad_id))
        tokens.append(nxt)
        logps.append(torch.where(alive, lp, torch.zeros_like(lp)))
        masks.append(alive.clone())
        alive = alive & (nxt != eos_id)
        step_input = nxt[:, None]
        seq = torch.cat([seq, step_input], dim=1)
        if not alive.any():
            break
    model.train(was_training)
    return torch.stack(tokens, 1), torch.stack(masks, 1).float(), torch.stack(logps, 1)


def sequence_logprobs(model: torch.nn.Module, prompt: torch.Tensor, response: torch.Tensor,
                      temperature: float = 1.0) -> torch.Tensor:
    """Teacher-forced log-probs (B, T) of `response` after `prompt` under softmax(logits / temperature),
    in one forward pass (with grad when grad is enabled). This is log pi(o_t | q, o_<t) of the GRPO ratio."""
    P = prompt.shape[1]
    idx = torch.cat([prompt, response], dim=1)[:, :-1]  # the last token is never an input
    logits = _logits(model, idx)[:, P - 1:, :].float()  # (B, T, V): predictions for response tokens
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    return torch.gather(F.log_softmax(logits, dim=-1), 2, response[:, :, None]).squeeze(2)


def rollout(model: torch.nn.Module, rows: Sequence[dict], prompt_fn: Callable[[dict], str],
            encode: Callable[[str], list[int]], decode: Callable[[list[int]], str], group_size: int,
            max_new_tokens: int, eos_id: int, pad_id: int, reward_fn: Callable[[str, dict], float] | None = None,
            temperature: float = 1.0, top_k: int | None = None, generator: torch.Generator | None = None,
            device: torch.device | str | None = None, use_cache: bool = True) -> list[Rollout]:
    """Sample `group_size` responses to each row's prompt, bucketed by prompt length (one `Rollout` per
    length, each prompt's group contiguous), and score them with `reward_fn(text, row)` when given."""
    if group_size < 1:
        raise ValueError(f"group_size={group_size!r} must be >= 1")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    buckets: dict[int, list[tuple[list[int], dict]]] = {}
    for row in rows:
        ids = encode(prompt_fn(row))
        buckets.setdefault(len(ids), []).append((ids, row))
    out = []
    for _, items in sorted(buckets.items()):
        prompt = torch.tensor([ids for ids, _ in items for _ in range(group_size)], dtype=torch.long, device=dev)
        group_rows = [row for _, row in items for _ in range(group_size)]
        response, mask, logp = sample(model, prompt, max_new_tokens, eos_id, pad_id, temperature, top_k,
                                      generator, use_cache)
        texts = [decode(_until_end(r, eos_id, pad_id)) for r in response.tolist()]
        ro = Rollout(prompt, response, mask, logp, texts, group_rows, group_size)
        if reward_fn is not None:
            ro.rewards = torch.tensor([float(reward_fn(t, row)) for t, row in zip(texts, group_rows)])
        out.append(ro)
    return out


def _until_end(ids: list[int], eos_id: int, pad_id: int) -> list[int]:
    """Response ids up to (not including) the end token."""
    out = []
    for t in ids:
        if t == eos_id or t == pad_id:
            break
        out.append(t)
    return out
