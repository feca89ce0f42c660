"""Chat formatting for supervised fine-tuning: template, role tokens, loss masks, batches. (Chapter 3.)

A conversation is a list of messages `{"role": "system" | "user" | "assistant", "content": str}`.
It is rendered with one special token per role and one end-of-turn token:

    <|endoftext|><|user|>Who is the story about?<|end|><|assistant|>It is about Lily.<|end|>

`<|endoftext|>` opens every conversation (it also separates documents in pretraining), so the model starts
from the same state as at the start of a pretraining document.

The **loss mask**: SFT trains only on what the assistant says. In `encode_chat` the tokens of each assistant
reply *and its closing* `<|end|>` get `True` (the model must learn to stop); the role tokens, the user's and
the system's words get `False`. `to_xy` turns that into targets with -100 where there is no loss, the
convention of every model of the book (`F.cross_entropy(..., ignore_index=-100)`).

Works with any tokenizer that has `encode(text) -> list[int]` (ordinary text: a special token's text inside
content stays plain bytes), `decode(ids) -> str` and `special_id(name) -> int`, such as `nanoseek.tokenizer`.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, Protocol

import torch

BOS = "<|endoftext|>"
END = "<|end|>"
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
ROLES = tuple(ROLE_TOKENS)
# Give these to the tokenizer's trainer: `Tokenizer.train(text, vocab_size, special_tokens=SPECIAL_TOKENS)`.
SPECIAL_TOKENS = (BOS, ROLE_TOKENS["system"], ROLE_TOKENS["user"], ROLE_TOKENS["assistant"], END)
IGNORE = -100

# The same template in Jinja, for `transformers` (`tokenizer.apply_chat_template`); tested to match render_chat.
CHAT_TEMPLATE = (
    "{{ '" + BOS + "' }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '" + END + "' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '" + ROLE_TOKENS["assistant"] + "' }}{% endif %}"
)


class ChatTokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: Sequence[int]) -> str: ...
    def special_id(self, name: str) -> int: ...


def validate_messages(messages: Any, where: str = "conversation", for_training: bool = True) -> list[dict]:
    """Check a conversation; a malformed one raises ValueError naming `where` and what is wrong with it.

    Rules: a non-empty list of dicts with exactly the keys role and content; role in ROLES; content a str that
    holds no special token's text; `system` only first; for training, at least one assistant turn and the
    last turn is the assistant's.
    """
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError(f"{where}: messages must be a non-empty list of {{role, content}} dicts, got {messages!r:.80}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or set(m) != {"role", "content"}:
            raise ValueError(f"{where}: message {i} must be a dict with keys 'role' and 'content', got {m!r:.80}")
        if not isinstance(m["role"], str) or m["role"] not in ROLE_TOKENS:
            raise ValueError(f"{where}: message {i} has role={m['role']!r}, not one of {ROLES}")
        if not isinstance(m["content"], str):
            raise ValueError(f"{where}: message {i} content must be a str, got {type(m['content']).__name__}")
        for tok in SPECIAL_TOKENS:
            if tok in m["content"]:
                raise ValueError(f"{where}: message {i} content contains the special token {tok!r}")
        if m["role"] == "system" and i != 0:
            raise ValueError(f"{where}: message {i} is a system message; only the first message may be one")
    if for_training:
        if not any(m["role"] == "assistant" for m in messages):
            raise ValueError(f"{where}: has no assistant message, so there is nothing to train on")
        if messages[-1]["role"] != "assistant":
            raise ValueError(f"{where}: the last message is {messages[-1]['role']!r}, it must be the assistant's")
    return list(messages)


def render_chat(messages: list[dict], add_generation_prompt: bool = False) -> str:
    """The conversation as text with role tokens; with `add_generation_prompt`, ends with `<|assistant|>`."""
    validate_messages(messages, for_training=False)
    text = BOS + "".join(ROLE_TOKENS[m["role"]] + m["content"] + END for m in messages)
    return text + (ROLE_TOKENS["assistant"] if add_generation_prompt else "")


def encode_chat(tokenizer: ChatTokenizer, messages: list[dict], where: str = "conversation"
                ) -> tuple[list[int], list[bool]]:
    """Token ids of the rendered conversation and, for each id, whether it is trained (assistant reply + end)."""
    validate_messages(messages, where)
    end = tokenizer.special_id(END)
    ids, mask = [tokenizer.special_id(BOS)], [False]
    for m in messages:
        body = tokenizer.encode(m["content"])
        train = m["role"] == "assistant"
        ids += [tokenizer.special_id(ROLE_TOKENS[m["role"]])] + body + [end]
        mask += [False] + [train] * len(body) + [train]
    return ids, mask


def encode_prompt(tokenizer: ChatTokenizer, messages: list[dict], where: str = "prompt") -> list[int]:
    """Ids of the conversation so far followed by `<|assistant|>`: what the model continues at inference."""
    validate_messages(messages, where, for_training=False)
    ids = [tokenizer.special_id(BOS)]
    for m in messages:
        ids += [tokenizer.special_id(ROLE_TOKENS[m["role"]])] + tokenizer.encode(m["content"])
        ids.append(tokenizer.special_id(END))
    return ids + [tokenizer.special_id(ROLE_TOKENS["assistant"])]


def to_xy(ids: Sequence[int], mask: Sequence[bool] | None, block_size: int, pad_id: int
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs x and targets y, each (block_size,): y[t] = ids[t+1] where mask[t+1] (every position when
    mask is None: the unmasked baseline), else -100; padded on the right with pad_id / -100."""
    if len(ids) < 2:
        raise ValueError(f"a training sequence needs at least 2 tokens, got {len(ids)}")
    if len(ids) > block_size + 1:
        raise ValueError(f"sequence of {len(ids)} tokens does not fit block_size={block_size} (+1 for the shift)")
    ids_t = torch.tensor(list(ids), dtype=torch.long)
    x = torch.full((block_size,), pad_id, dtype=torch.long)
    y = torch.full((block_size,), IGNORE, dtype=torch.long)
    x[: len(ids) - 1] = ids_t[:-1]
    target = ids_t[1:].clone()
    if mask is not None:
        if len(mask) != len(ids):
            raise ValueError(f"mask has {len(mask)} entries for {len(ids)} ids")
        target[~torch.tensor(list(mask[1:]), dtype=torch.bool)] = IGNORE
    y[: len(ids) - 1] = target
    return x, y


def sft_batcher(tokenizer: ChatTokenizer, train_rows: list[dict], val_rows: list[dict], block_size: int,
                batch_size: int, masked: bool = True) -> tuple[Callable[[str, torch.Generator], tuple], dict]:
    """get_batch(split, generator) -> (x, y) of (batch_size, T) for `nanoseek.train.train`, where T <= block_size
    is the longest row of the batch (rows are right-padded; targets of padding are -100).

    Rows are dicts with "messages"; rows longer than the context are left out (counted in the returned
    info). `masked=False` trains on every token (the baseline the chapter compares against).
    """
    if block_size < 2 or batch_size < 1:
        raise ValueError(f"block_size must be >= 2 and batch_size >= 1, got {block_size}, {batch_size}")
    pad = tokenizer.special_id(END)
    data, info = {}, {}
    for split, rows in (("train", train_rows), ("val", val_rows)):
        xs, ys, lens, dropped = [], [], [], 0
        for i, row in enumerate(rows):
            if not isinstance(row, dict) or "messages" not in row:
                raise ValueError(f"{split} row {i}: must be a dict with 'messages', got {row!r:.80}")
            ids, mask = encode_chat(tokenizer, row["messages"], where=f"{split} row {row.get('id', i)!r}")
            if len(ids) > block_size + 1:
                dropped += 1
                continue
            x, y = to_xy(ids, mask if masked else None, block_size, pad)
            xs.append(x)
            ys.append(y)
            lens.append(len(ids) - 1)
        if not xs:
            raise ValueError(f"no {split} row fits block_size={block_size}")
        data[split] = (torch.stack(xs), torch.stack(ys), torch.tensor(lens))
        info[split] = {"rows": len(xs), "dropped_too_long": dropped}

    def get_batch(split: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in data:
            raise ValueError(f"split={split!r} is not one of {sorted(data)}")
        x, y, lens = data[split]
        pick = torch.randint(len(x), (batch_size,), generator=generator)
        T = int(lens[pick].max())  # cut the padding every row of this batch has: less compute, same loss
        return x[pick, :T], y[pick, :T]

    return get_batch, info


# ---- packing: several samples per training row, each seeing only itself (DeepSeek-V3 packs its SFT data) ----

def pack_rows(tokenizer: ChatTokenizer, rows: list[dict], block_size: int, masked: bool = True
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """Pack conversations into rows of `block_size` positions: (x, y, segment_ids), each (N, block_size).

    Each conversation is shifted on its own (`to_xy`: its targets never reach into the next one), then placed
    whole into the first of the 16 most recently opened rows with room for it (first fit over a window, in
    the given order: linear time however many rows). `segment_ids` numbers the
    samples of a row 1, 2, ... and is 0 on the padding at its end (inputs `<|end|>`, targets -100). A model
    given `segment_ids` attends only within a segment and restarts positions in each
    (`packed_attention_mask`, `segment_positions`). Returns also {"rows", "samples", "dropped_too_long",
    "fill"} where fill is the share of positions that hold a sample.
    """
    if block_size < 2:
        raise ValueError(f"block_size must be >= 2, got {block_size}")
    pad = tokenizer.special_id(END)
    bins: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
    room: list[int] = []
    dropped = 0
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or "messages" not in row:
            raise ValueError(f"row {i}: must be a dict with 'messages', got {row!r:.80}")
        ids, mask = encode_chat(tokenizer, row["messages"], where=f"row {row.get('id', i)!r}")
        n = len(ids) - 1
        if n > block_size:
            dropped += 1
            continue
        x, y = to_xy(ids, mask if masked else None, n, pad)
        j = next((j for j in range(max(0, len(room) - 16), len(room)) if room[j] >= n), None)
        if j is None:
            bins.append([])
            room.append(block_size)
            j = len(bins) - 1
        bins[j].append((x, y))
        room[j] -= n
    if not bins:
        raise ValueError(f"no row fits block_size={block_size}")
    X = torch.full((len(bins), block_size), pad, dtype=torch.long)
    Y = torch.full((len(bins), block_size), IGNORE, dtype=torch.long)
    S = torch.zeros((len(bins), block_size), dtype=torch.long)
    for b, samples in enumerate(bins):
        t = 0
        for s, (x, y) in enumerate(samples, start=1):
            X[b, t:t + len(x)], Y[b, t:t + len(x)], S[b, t:t + len(x)] = x, y, s
            t += len(x)
    info = {"rows": len(bins), "samples": sum(len(b) for b in bins), "dropped_too_long": dropped,
            "fill": float((S > 0).float().mean())}
    return X, Y, S, info


def segment_positions(segment_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) segment ids -> (B, T) position of each token inside its segment (0 at each segment's start)."""
    B, T = segment_ids.shape
    t = torch.arange(T, device=segment_ids.device).expand(B, T)
    starts = torch.ones_like(segment_ids, dtype=torch.bool)
    starts[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]
    first = torch.where(starts, t, torch.zeros_like(t)).cummax(dim=1).values  # (B, T) start of my segment
    return t - first


def packed_attention_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) segment ids -> (B, T, T) bool, True where query i may attend to key j: j <= i, same segment."""
    T = segment_ids.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=segment_ids.device).tril()
    return (segment_ids[:, :, None] == segment_ids[:, None, :]) & causal


def packed_batcher(tokenizer: ChatTokenizer, train_rows: list[dict], val_rows: list[dict], block_size: int,
                   batch_size: int, masked: bool = True) -> tuple[Callable[[str, torch.Generator], tuple], dict]:
    """Like `sft_batcher`, with packed rows: get_batch(split, generator) -> (x, y, segment_ids), each
    (batch_size, block_size). Train with `loss_fn=packed_loss`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    data, info = {}, {}
    for split, rows in (("train", train_rows), ("val", val_rows)):
        X, Y, S, info[split] = pack_rows(tokenizer, rows, block_size, masked)
        data[split] = (X, Y, S)

    def get_batch(split: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if split not in data:
            raise ValueError(f"split={split!r} is not one of {sorted(data)}")
        X, Y, S = data[split]
        pick = torch.randint(len(X), (batch_size,), generator=generator)
        return X[pick], Y[pick], S[pick]

    return get_batch, info


def packed_loss(model, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """`loss_fn` for `nanoseek.train.train` on packed batches: the model sees the segment ids."""
    x, y, seg = batch
    _, loss = model(x, y, segment_ids=seg)
    return loss


def two_turn_rows(tokenizer: ChatTokenizer, rows: list[dict], block_size: int, seed: int = 0) -> list[dict]:
    """Multi-turn data from single-turn rows: each row becomes the *second* exchange of a conversation whose
    first exchange is another row of the same list (drawn with `seed`), kept when the whole conversation fits
    `block_size` + 1 tokens. The new row scores like its second turn (its task, lang and answer), and
    `encode_chat` trains both assistant replies; `first` and `second` name the rows of the two turns."""
    import random

    if len(rows) < 2:
        raise ValueError(f"two_turn_rows needs at least 2 rows, got {len(rows)}")
    rng = random.Random(seed)
    out = []
    for i, row in enumerate(rows):
        j = rng.randrange(len(rows) - 1)
        first = rows[j + (j >= i)]  # any row but this one
        messages = list(first["messages"]) + list(row["messages"])
        if len(encode_chat(tokenizer, messages, where=f"row {row.get('id', i)!r}")[0]) > block_size + 1:
            continue
        out.append({**{k: row[k] for k in ("lang", "task", "answer") if k in row}, "messages": messages,
                    "id": f"{first.get('id', j)}+{row.get('id', i)}", "first": first.get("id", j),
                    "second": row.get("id", i)})
    return out


def parse_reply(tokenizer: ChatTokenizer, new_ids: Sequence[int]) -> dict:
    """Read what a model generated after `<|assistant|>`: the reply text, whether it ended with `<|end|>`
    (end-of-turn), and whether it followed the template (non-empty text, then `<|end|>`, and no other special
    token before it)."""
    end = tokenizer.special_id(END)
    specials = {tokenizer.special_id(t) for t in SPECIAL_TOKENS}
    new_ids = list(new_ids)
    ended = end in new_ids
    body = new_ids[: new_ids.index(end)] if ended else new_ids
    clean = not any(t in specials for t in body)
    text = tokenizer.decode([t for t in body if t not in specials])
    return {"text": text, "ended": ended, "follows_template": ended and clean and bool(text.strip())}


__all__ = ["BOS", "END", "ROLE_TOKENS", "ROLES", "SPECIAL_TOKENS", "IGNORE", "CHAT_TEMPLATE", "validate_messages",
           "render_chat", "encode_chat", "encode_prompt", "to_xy", "sft_batcher", "parse_reply", "pack_rows",
           "segment_positions", "packed_attention_mask", "packed_batcher", "packed_loss", "two_turn_rows"]
