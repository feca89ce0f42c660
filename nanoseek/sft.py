"""Supervised fine-tuning helpers: pretraining token streams, chat replies, and held-out chat metrics. (Chapter 3.)

The metrics of chapter 3, measured on held-out instruction rows (`nanoseek.data.load_instructions("test")`):

- **template share**: replies that are non-empty text closed by `<|end|>` with no other special token;
- **end-of-turn (EOT) share**: replies that produce `<|end|>` within `max_new_tokens`;
- **answer accuracy** on the rows whose answer can be checked: the reply follows the template *and* is right:
  a question's reply contains the fact (a name, a place, a thing; compared case-insensitively), a rewrite's
  reply equals the rewritten sentence (surrounding spaces ignored). `contains` is the lenient version that
  ignores the template (a pretrained model that just continues the story often names the hero by chance).

Reading model output never evaluates it: replies are compared as strings, and generation is bounded by
`max_new_tokens`.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nanoseek.data.chat import BOS, ChatTokenizer, encode_prompt, parse_reply, validate_messages


def story_tokens(tokenizer: ChatTokenizer, stories: Sequence[str]) -> torch.Tensor:
    """One long (N,) stream for pretraining: `<|endoftext|>` before every story, then its tokens."""
    bos = tokenizer.special_id(BOS)
    out: list[int] = []
    for story in stories:
        out.append(bos)
        out += tokenizer.encode(story)
    return torch.tensor(out, dtype=torch.long)


def reply_correct(row: dict, reply: str) -> bool | None:
    """Whether `reply` answers `row` correctly; None when the row has no checkable answer."""
    answer = row.get("answer")
    if answer is None:
        return None
    if not isinstance(answer, str) or not isinstance(reply, str):
        raise TypeError(f"row {row.get('id')!r}: answer and reply must be str, got "
                        f"{type(answer).__name__} and {type(reply).__name__}")
    if row.get("task") == "rewrite":
        return reply.strip() == answer.strip()
    return answer.lower() in reply.lower()


@torch.no_grad()
def chat_reply(model: nn.Module, tokenizer: ChatTokenizer, messages: list[dict], max_new_tokens: int = 48) -> dict:
    """Greedy reply of `model` to the conversation `messages` (ending with a user turn).

    Returns `parse_reply`'s dict (text, ended, follows_template) plus the generated ids `new_ids`.
    """
    from nanoseek.generate import context_length, generate

    prompt = encode_prompt(tokenizer, messages)
    ctx = context_length(model)
    if ctx is not None and len(prompt) + max_new_tokens > ctx:
        max_new_tokens = max(0, ctx - len(prompt))
    dev = next(model.parameters()).device
    idx = torch.tensor([prompt], dtype=torch.long, device=dev)
    end = tokenizer.special_id("<|end|>")
    out = generate(model, idx, max_new_tokens, temperature=0.0, eos_id=end)[0, len(prompt):].tolist()
    return {**parse_reply(tokenizer, out), "new_ids": out, "prompt_len": len(prompt)}


@torch.no_grad()
def greedy_batch(model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int, eos_id: int) -> list[list[int]]:
    """Greedy continuations of prompts of different lengths, in one batch; returns each row's new ids.

    Rows are right-padded in one (B, T) buffer. A causal model's logits at position t depend only on tokens
    <= t, so the padding to the right of a row never changes its next token: each step runs the whole buffer
    and reads row b's logits at its own last position. Same tokens as `nanoseek.generate.generate` one row at a
    time (up to float rounding of batched matmuls). A row stops at `eos_id` (kept in its ids) or when its
    prompt plus new tokens fill the context.
    """
    from nanoseek.generate import context_length

    from nanoseek import validate as V
    from nanoseek.generate import vocab_size

    if not prompts or any(len(p) < 1 for p in prompts):
        raise ValueError("greedy_batch needs at least one prompt, each of at least one token")
    n_vocab = vocab_size(model)
    prompts = [V.token_ids(p, n_vocab, f"prompt {b}") for b, p in enumerate(prompts)]
    V.integer(eos_id, "eos_id", minimum=0, maximum=None if n_vocab is None else n_vocab - 1)
    V.integer(max_new_tokens, "max_new_tokens", minimum=0)
    ctx = context_length(model) or max(len(p) for p in prompts) + max_new_tokens
    if max(len(p) for p in prompts) >= ctx:
        raise ValueError(f"a prompt of {max(len(p) for p in prompts)} tokens leaves no room in the context {ctx}")
    was_training = model.training
    model.eval()
    try:
        dev = next(model.parameters()).device
        B = len(prompts)
        lens = torch.tensor([len(p) for p in prompts], device=dev)                     # (B,)
        T = min(ctx, int(lens.max()) + max_new_tokens)
        buf = torch.full((B, T), eos_id, dtype=torch.long, device=dev)                 # (B, T)
        for b, p in enumerate(prompts):
            buf[b, : len(p)] = torch.tensor(list(p), dtype=torch.long)
        limit = torch.clamp(lens + max_new_tokens, max=T)                              # (B,) end of each row
        done = lens >= limit
        rows = torch.arange(B, device=dev)
        while not bool(done.all()):
            width = int(lens[~done].max())                                             # longest unfinished row
            logits, _ = model(buf[:, :width])                                          # (B, width, V)
            nxt = logits[rows, (lens - 1).clamp(max=width - 1)].argmax(-1)             # (B,)
            active = ~done
            buf[rows[active], lens[active]] = nxt[active]
            lens = torch.where(active, lens + 1, lens)
            done = done | (active & (nxt == eos_id)) | (lens >= limit)
        return [buf[b, len(p): int(lens[b])].tolist() for b, p in enumerate(prompts)]
    finally:
        model.train(was_training)


def evaluate_chat(model: nn.Module, tokenizer: ChatTokenizer, rows: Sequence[dict], max_new_tokens: int = 48,
                  progress: bool = False, batch_size: int = 64) -> dict:
    """Template share, EOT share and answer accuracy of greedy replies to `rows` (user turn → reply), generated
    `batch_size` rows at a time with `greedy_batch`.

    Returns {"template": float, "eot": float, "accuracy": float, "contains": float, "n": int, "n_checkable": int,
    "by_task": {task: accuracy}, "replies": [per-row dicts]}.
    """
    from tqdm.auto import tqdm

    if isinstance(rows, (str, bytes, dict)) or not rows:
        raise ValueError(f"evaluate_chat needs a list of at least one row, got {rows!r:.80}")
    prompts = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or "messages" not in row:
            raise ValueError(f"row {i}: must be a dict with 'messages', got {row!r:.80}")
        validate_messages(row["messages"], f"row {row.get('id', i)!r}", for_training=False)
        prompt = [m for m in row["messages"] if m["role"] != "assistant"] or row["messages"][:1]
        if prompt[-1]["role"] != "user":
            raise ValueError(f"row {row.get('id')!r}: the prompt must end with a user message")
        prompts.append(encode_prompt(tokenizer, prompt, where=f"row {row.get('id')!r}"))
    end = tokenizer.special_id("<|end|>")
    replies: list[list[int]] = []
    for i in tqdm(range(0, len(prompts), batch_size), desc="chat eval", disable=not progress):
        replies += greedy_batch(model, prompts[i: i + batch_size], max_new_tokens, end)
    records = []
    for row, new_ids in zip(rows, replies):
        rep = parse_reply(tokenizer, new_ids)
        contains = reply_correct(row, rep["text"])
        records.append({"id": row.get("id"), "task": row.get("task"), "reply": rep["text"],
                        "ended": rep["ended"], "follows_template": rep["follows_template"], "contains": contains,
                        "correct": None if contains is None else bool(contains and rep["follows_template"])})
    checkable = [r for r in records if r["correct"] is not None]
    by_task: dict[str, list[bool]] = {}
    for r in checkable:
        by_task.setdefault(r["task"], []).append(r["correct"])
    return {
        "template": sum(r["follows_template"] for r in records) / len(records),
        "eot": sum(r["ended"] for r in records) / len(records),
        "accuracy": sum(r["correct"] for r in checkable) / len(checkable) if checkable else float("nan"),
        "contains": sum(r["contains"] for r in checkable) / len(checkable) if checkable else float("nan"),
        "n": len(records), "n_checkable": len(checkable),
        "by_task": {t: sum(v) / len(v) for t, v in sorted(by_task.items())},
        "replies": records,
    }


__all__ = ["story_tokens", "reply_correct", "chat_reply", "greedy_batch", "evaluate_chat"]
