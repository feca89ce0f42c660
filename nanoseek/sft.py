"""Supervised fine-tuning helpers: pretraining token streams, chat replies, and held-out chat metrics. (Chapter 3.)

The metrics of chapter 3, measured on held-out instruction rows (`nanoseek.data.load_instructions("test")`):

- **template share**: replies that are non-empty text closed by `<|end|>` with no other special token;
- **end-of-turn (EOT) share**: replies that produce `<|end|>` within `max_new_tokens`;
- **answer accuracy** on the rows whose answer can be checked: the reply follows the template *and* is right,
  scored exactly by `answer_exact`: a question's reply must be one of the reply sentences minids writes for
  its task (`ANSWER_FRAMES`), with the slot that answers the question equal to the row's `answer` (so
  "Maya's friend is Tom." is wrong when the friend is Kate, although it contains "Maya"); a rewrite's reply
  must equal the rewritten sentence (surrounding spaces ignored). `contains` is the lenient substring test
  (`reply_correct`), which ignores the template and the slot.
- **intervals**: every share comes with a 95% Wilson score interval (`wilson_interval`), per task too, so a
  reader can see how much a number of 50 rows can move.

Reading model output never evaluates it: replies are compared as strings, and generation is bounded by
`max_new_tokens`.
"""
from __future__ import annotations

import math
import re
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
    """Lenient check: whether `reply` contains `row`'s answer (case-insensitive; a rewrite must equal it);
    None when the row has no checkable answer. `answer_exact` is the strict score the chapter reports."""
    answer = row.get("answer")
    if answer is None:
        return None
    if not isinstance(answer, str) or not isinstance(reply, str):
        raise TypeError(f"row {row.get('id')!r}: answer and reply must be str, got "
                        f"{type(answer).__name__} and {type(reply).__name__}")
    if row.get("task") == "rewrite":
        return reply.strip() == answer.strip()
    return answer.lower() in reply.lower()


def _frames() -> dict[tuple[str, str], tuple[re.Pattern, ...]]:
    """The reply sentences minids writes (`minids/instructions.py`), as patterns with the answer's slot `a`."""
    from minids.stories import ZH_KINDS

    art = r"an? [a-z]+(?: [a-z]+)?"
    kinds = "|".join(re.escape(k) for k, _ in ZH_KINDS)
    pron = r"(?:his|her|its|their)"
    en = {
        "hero": (rf"The story is about (?P<a>[^.,]+)\.", rf"The main character is (?P<a>[^.,]+), {art}\.",
                 rf"It is about {art} named (?P<a>[^.,]+)\."),
        "friend": (r"(?P<a>[^.,']+) is [^.,']+'s friend\.", r"[^.,']+'s friend is (?P<a>[^.,']+)\."),
        "place": (r"The story happens (?:in|at|on|by) (?P<a>the [^.,]+)\.",
                  r"[^.,]+ is (?:in|at|on|by) (?P<a>the [^.,]+)\."),
        "object": (rf"[^.,]+ lost {pron} (?P<a>[^.,]+)\.", r"[^.,']+'s (?P<a>[^.,]+) got stuck\.",
                   rf"[^.,]+ did not want to share {pron} (?P<a>[^.,]+)\."),
    }
    zh = {
        "hero": (r"这个故事讲的是(?P<a>[^。，]+)。", rf"主人公是(?:{kinds})(?P<a>[^。，]+)。", r"主角叫(?P<a>[^。，]+)。"),
        "friend": (r"[^。，]+的好朋友是(?P<a>[^。，]+)。", r"是(?P<a>[^。，的]+)。"),
        "place": (r"故事发生在(?P<a>[^。，]+?)里?。", r"[^。，在]+在(?P<a>[^。，]+?)里?。"),
        "object": (r"[^。，]+丢了[^。，]+?的(?P<a>[^。，]+)。", r"是[^。，]+?的(?P<a>[^。，]+)。",
                   r"[^。，]+一开始不想分享[^。，]+?的(?P<a>[^。，]+)。"),
    }
    return {(lang, task): tuple(re.compile(p) for p in pats)
            for lang, table in (("en", en), ("zh", zh)) for task, pats in table.items()}


ANSWER_FRAMES: dict[tuple[str, str], tuple[re.Pattern, ...]] = {}


def answer_exact(row: dict, reply: str) -> bool | None:
    """Strict score of `reply` for `row`: None when the row has no checkable answer; for a rewrite, the reply
    equals the rewritten sentence (surrounding spaces ignored); for a question (hero, friend, place, object),
    the whole reply is one of its task's reply sentences (`ANSWER_FRAMES`) and the slot that answers the
    question is exactly `row["answer"]`."""
    answer = row.get("answer")
    if answer is None:
        return None
    if not isinstance(answer, str) or not isinstance(reply, str):
        raise TypeError(f"row {row.get('id')!r}: answer and reply must be str, got "
                        f"{type(answer).__name__} and {type(reply).__name__}")
    task = row.get("task")
    if task == "rewrite":
        return reply.strip() == answer.strip()
    if not ANSWER_FRAMES:
        ANSWER_FRAMES.update(_frames())
    lang = row.get("lang") or ("zh" if re.search(r"[\u4e00-\u9fff]", answer) else "en")
    frames = ANSWER_FRAMES.get((lang, task))
    if frames is None:
        raise ValueError(f"row {row.get('id')!r}: no answer frames for lang={lang!r}, task={task!r}")
    text = reply.strip()
    return any((m := f.fullmatch(text)) is not None and m["a"] == answer for f in frames)


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a share k/n (95% for z=1.96): unlike p ± z·sqrt(p(1-p)/n) it stays inside
    [0, 1] and is not zero-width at 0/n or n/n."""
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"wilson_interval needs 0 <= k <= n and n >= 1, got k={k}, n={n}")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


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
    prompt plus new tokens fill the context; finished rows leave the batch, so short replies are cheap.
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
            live = rows[~done]                                                         # (A,) unfinished rows
            width = int(lens[live].max())                                              # longest unfinished row
            logits, _ = model(buf[live, :width])                                       # (A, width, V): finished
            nxt = logits[torch.arange(len(live), device=dev), lens[live] - 1].argmax(-1)  # rows cost nothing
            buf[live, lens[live]] = nxt
            lens[live] += 1
            done[live] = (nxt == eos_id) | (lens[live] >= limit[live])
        return [buf[b, len(p): int(lens[b])].tolist() for b, p in enumerate(prompts)]
    finally:
        model.train(was_training)


def evaluate_chat(model: nn.Module, tokenizer: ChatTokenizer, rows: Sequence[dict], max_new_tokens: int = 48,
                  progress: bool = False, batch_size: int = 64) -> dict:
    """Template share, EOT share and answer accuracy of greedy replies to `rows` (the conversation up to its
    last user turn → reply; earlier turns stay in the prompt), generated `batch_size` rows at a time with
    `greedy_batch`.

    Returns {"template": float, "eot": float, "accuracy": float, "contains": float, "n": int, "n_checkable": int,
    "by_task": {task: accuracy}, "intervals": {name: {"k", "n", "share", "ci95"}} (names: template, eot,
    accuracy, task:<task>), "replies": [per-row dicts]}. Accuracy is `answer_exact` and the template.
    """
    from tqdm.auto import tqdm

    if isinstance(rows, (str, bytes, dict)) or not rows:
        raise ValueError(f"evaluate_chat needs a list of at least one row, got {rows!r:.80}")
    prompts = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or "messages" not in row:
            raise ValueError(f"row {i}: must be a dict with 'messages', got {row!r:.80}")
        validate_messages(row["messages"], f"row {row.get('id', i)!r}", for_training=False)
        # the conversation up to its last user turn: earlier turns (multi-turn rows) stay in the prompt
        messages = row["messages"]
        prompt = messages[:-1] if messages[-1]["role"] == "assistant" and len(messages) > 1 else messages
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
        exact = answer_exact(row, rep["text"])
        records.append({"id": row.get("id"), "task": row.get("task"), "reply": rep["text"],
                        "ended": rep["ended"], "follows_template": rep["follows_template"], "contains": contains,
                        "correct": None if exact is None else bool(exact and rep["follows_template"])})
    checkable = [r for r in records if r["correct"] is not None]
    by_task: dict[str, list[bool]] = {}
    for r in checkable:
        by_task.setdefault(r["task"], []).append(r["correct"])
    def share(flags: list[bool]) -> dict:
        k, n = sum(flags), len(flags)
        return {"k": k, "n": n, "share": k / n, "ci95": wilson_interval(k, n)}

    return {
        "template": sum(r["follows_template"] for r in records) / len(records),
        "eot": sum(r["ended"] for r in records) / len(records),
        "accuracy": sum(r["correct"] for r in checkable) / len(checkable) if checkable else float("nan"),
        "contains": sum(r["contains"] for r in checkable) / len(checkable) if checkable else float("nan"),
        "n": len(records), "n_checkable": len(checkable),
        "by_task": {t: sum(v) / len(v) for t, v in sorted(by_task.items())},
        "intervals": {"template": share([r["follows_template"] for r in records]),
                      "eot": share([r["ended"] for r in records]),
                      **({"accuracy": share([r["correct"] for r in checkable])} if checkable else {}),
                      **{f"task:{t}": share(v) for t, v in sorted(by_task.items())}},
        "replies": records,
    }


__all__ = ["story_tokens", "reply_correct", "answer_exact", "ANSWER_FRAMES", "wilson_interval", "chat_reply", "greedy_batch", "evaluate_chat"]
