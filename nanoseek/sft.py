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

from nanoseek.data.chat import BOS, ChatTokenizer, encode_prompt, parse_reply


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


def evaluate_chat(model: nn.Module, tokenizer: ChatTokenizer, rows: Sequence[dict], max_new_tokens: int = 48,
                  progress: bool = False) -> dict:
    """Template share, EOT share and answer accuracy of greedy replies to `rows` (user turn → reply).

    Returns {"template": float, "eot": float, "accuracy": float, "contains": float, "n": int, "n_checkable": int,
    "by_task": {task: accuracy}, "replies": [per-row dicts]}.
    """
    from tqdm.auto import tqdm

    if not rows:
        raise ValueError("evaluate_chat needs at least one row")
    records = []
    for row in tqdm(rows, desc="chat eval", disable=not progress):
        prompt = [m for m in row["messages"] if m["role"] != "assistant"] or row["messages"][:1]
        if prompt[-1]["role"] != "user":
            raise ValueError(f"row {row.get('id')!r}: the prompt must end with a user message")
        rep = chat_reply(model, tokenizer, prompt, max_new_tokens)
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


__all__ = ["story_tokens", "reply_correct", "chat_reply", "evaluate_chat"]
