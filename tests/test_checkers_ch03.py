"""Chapter 3's exercise checkers: every plausible wrong solution fails, the right one passes."""
from __future__ import annotations

import contextlib
import io

import pytest
import torch

from nanoseek.data.chat import encode_chat as ref_encode_chat, packed_attention_mask, render_chat, to_xy
from nanoseek.exercises import ch03


def run(checker, fn) -> bool:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ok = checker(fn)
    text = out.getvalue()
    assert ("✅" in text) == ok and ("❌" in text) != ok, text  # prints its verdict, never raises
    return ok


# ---- render_chat -----------------------------------------------------------------------------------------

def render_right(messages, add_generation_prompt=False):
    return render_chat(messages, add_generation_prompt=add_generation_prompt)


RENDER_WRONG = {
    "no BOS": lambda m, g=False: render_right(m, g).removeprefix("<|endoftext|>"),
    "no generation prompt": lambda m, g=False: render_right(m, False),
    "always a generation prompt": lambda m, g=False: render_right(m, True),
    "no end of turn": lambda m, g=False: render_right(m, g).replace("<|end|>", ""),
    "newline between turns": lambda m, g=False: render_right(m, g).replace("<|end|>", "<|end|>\n"),
    "end only after the assistant": lambda m, g=False: "<|endoftext|>" + "".join(
        f"<|{x['role']}|>{x['content']}" + ("<|end|>" if x["role"] == "assistant" else "") for x in m)
        + ("<|assistant|>" if g else ""),
    "system dropped": lambda m, g=False: render_right([x for x in m if x["role"] != "system"], g),
}


@pytest.mark.parametrize("name", RENDER_WRONG)
def test_render_wrong(name):
    assert not run(ch03.check_render_chat, RENDER_WRONG[name])


def test_render_right():
    assert run(ch03.check_render_chat, render_right)


# ---- shift_targets ---------------------------------------------------------------------------------------

def shift_right(ids, mask):
    return to_xy(ids, mask, len(ids) - 1, pad_id=0)


def _no_shift_mask(ids, mask):
    t = torch.tensor(ids)
    y = t[1:].clone()
    y[~torch.tensor(mask[:-1])] = -100  # mask of the input token, not of the target
    return t[:-1], y


def _pad_zero(ids, mask):
    x, y = shift_right(ids, mask)
    return x, torch.where(y == -100, torch.zeros_like(y), y)


SHIFT_WRONG = {
    "no shift": lambda ids, mask: (torch.tensor(ids[:-1]), torch.tensor(ids[:-1])),
    "mask of the input position": _no_shift_mask,
    "masked targets 0": _pad_zero,
    "no mask": lambda ids, mask: (torch.tensor(ids[:-1]), torch.tensor(ids[1:])),
    "x is all ids": lambda ids, mask: (torch.tensor(ids), shift_right(ids, mask)[1]),
}


@pytest.mark.parametrize("name", SHIFT_WRONG)
def test_shift_wrong(name):
    assert not run(ch03.check_shift_targets, SHIFT_WRONG[name])


def test_shift_right():
    assert run(ch03.check_shift_targets, shift_right)


# ---- loss mask -------------------------------------------------------------------------------------------

def _variant(train_end=True, train_tag=False, train_user=False, bos=True):
    def encode_chat(tok, messages):
        ids, mask = ([tok.special_id("<|endoftext|>")], [False]) if bos else ([], [])
        for m in messages:
            body = tok.encode(m["content"])
            a = m["role"] == "assistant"
            ids += [tok.special_id(f"<|{m['role']}|>")] + body + [tok.special_id("<|end|>")]
            mask += [a and train_tag] + [a or train_user] * len(body) + [a and train_end]
        return ids, mask
    return encode_chat


def _last_assistant_only(tok, messages):
    ids, mask = ref_encode_chat(tok, messages)
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    # untrain every assistant span but the last: find spans by re-encoding
    out, pos = list(mask), 1
    for i, m in enumerate(messages):
        n = len(tok.encode(m["content"])) + 2
        if m["role"] == "assistant" and i != last:
            out[pos:pos + n] = [False] * n
        pos += n
    return ids, out


MASK_WRONG = {
    "end of turn not trained": _variant(train_end=False),
    "role tag trained": _variant(train_tag=True),
    "user trained too": _variant(train_user=True),
    "no BOS": _variant(bos=False),
    "only the last assistant turn": _last_assistant_only,
}


@pytest.mark.parametrize("name", MASK_WRONG)
def test_loss_mask_wrong(name):
    assert not run(ch03.check_loss_mask, MASK_WRONG[name])


def test_loss_mask_right():
    assert run(ch03.check_loss_mask, lambda tok, msgs: ref_encode_chat(tok, msgs))


# ---- packing with masks ----------------------------------------------------------------------------------

def pack_right(samples, block_size, pad_id):
    return ch03._pack_reference(samples, block_size, pad_id)


def _mutate(fn):
    def pack(samples, block_size, pad_id):
        return fn(*pack_right(samples, block_size, pad_id))
    return pack


def _causal_only(X, Y, S, M):
    T = X.shape[1]
    return X, Y, S, torch.ones(T, T, dtype=torch.bool).tril().expand(len(X), T, T).clone()


def _no_causal(X, Y, S, M):
    return X, Y, S, S[:, :, None] == S[:, None, :]


def _global_segments(X, Y, S, M):
    offset = torch.cumsum(S.max(1).values, 0) - S.max(1).values
    S2 = torch.where(S > 0, S + offset[:, None], S)
    return X, Y, S2, packed_attention_mask(S2)


def _pad_targets_with_pad(X, Y, S, M):
    return X, torch.where(S == 0, X, Y), S, M


def _padding_segment_one(X, Y, S, M):
    S2 = torch.where(S == 0, torch.ones_like(S), S)
    return X, Y, S2, packed_attention_mask(S2)


def _concat_then_shift(samples, block_size, pad_id):
    """Shifts the concatenation: the last target of a sample becomes the next sample's first input."""
    X, Y, S, M = pack_right(samples, block_size, pad_id)
    Y2 = Y.clone()
    Y2[:, :-1] = torch.where((S[:, :-1] > 0) & (S[:, 1:] > 0) & (S[:, :-1] != S[:, 1:]), X[:, 1:], Y[:, :-1])
    return X, Y2, S, M


def _first_fit(samples, block_size, pad_id):
    """Puts a sample into an earlier row with room (not the rule asked for)."""
    rows, room = [], []
    for x, y in samples:
        j = next((j for j, r in enumerate(room) if r >= len(x)), None)
        if j is None:
            rows.append([])
            room.append(block_size)
            j = len(rows) - 1
        rows[j].append((x, y))
        room[j] -= len(x)
    flat = [s for row in rows for s in row]
    # re-pack row by row with next fit inside each row
    X, Y, S, _ = ch03._pack_reference(flat, block_size, pad_id)
    return X, Y, S, packed_attention_mask(S)


def _float_mask(X, Y, S, M):
    return X, Y, S, M.float() * 0  # all masked


PACK_WRONG = {
    "causal mask only (samples see each other)": _mutate(_causal_only),
    "same-segment mask without causality": _mutate(_no_causal),
    "segment ids count across rows": _mutate(_global_segments),
    "padding targets are the pad id": _mutate(_pad_targets_with_pad),
    "padding gets segment 1": _mutate(_padding_segment_one),
    "targets shifted across samples": _concat_then_shift,
    "first fit instead of next fit": _first_fit,
    "everything masked": _mutate(_float_mask),
}


@pytest.mark.parametrize("name", PACK_WRONG)
def test_pack_wrong(name):
    assert not run(ch03.check_pack_with_mask, PACK_WRONG[name])


def test_pack_right():
    assert run(ch03.check_pack_with_mask, pack_right)


def test_unimplemented_fails():
    def stub(*args):
        raise NotImplementedError
    for checker in (ch03.check_render_chat, ch03.check_shift_targets, ch03.check_loss_mask, ch03.check_pack_with_mask):
        assert not run(checker, stub)
