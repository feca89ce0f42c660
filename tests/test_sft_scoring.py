"""Chapter 3's exact answer scoring and intervals; packing with per-sample masks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nanoseek.data import load_instructions
from nanoseek.data.chat import (SPECIAL_TOKENS, encode_chat, pack_rows, packed_attention_mask, packed_batcher,
                                packed_loss, segment_positions, to_xy)
from nanoseek.models.gpt import GPT, GPTConfig
from nanoseek.sft import answer_exact, reply_correct, wilson_interval
from nanoseek.tokenizer import Tokenizer


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_reference_reply_scores_right_and_a_swapped_slot_wrong(lang):
    rows = [r for r in load_instructions("test", lang, scale="tiny") if r["answer"] is not None]
    assert rows
    for r in rows:
        ref = r["messages"][1]["content"]
        assert answer_exact(r, ref), (r["id"], ref)
        if r["task"] != "rewrite":
            other = {"en": "Zed", "zh": "某某"}[lang] if r["task"] != "place" else {"en": "the moon", "zh": "月亮"}[lang]
            assert not answer_exact(r, ref.replace(r["answer"], other)), (r["id"], ref)


def test_exact_is_stricter_than_substring():
    friend = {"task": "friend", "lang": "en", "answer": "Maya"}
    assert reply_correct(friend, "Maya's friend is Tom.") and not answer_exact(friend, "Maya's friend is Tom.")
    assert answer_exact(friend, "Kate's friend is Maya.") and answer_exact(friend, " Maya is Kate's friend. ")
    hero = {"task": "hero", "lang": "en", "answer": "Sam"}
    assert not answer_exact(hero, "The story is about Sam and Tom.")
    assert not answer_exact(hero, "the story is about sam.")  # exact: case matters
    assert answer_exact({"task": "rewrite", "answer": "Tom ran."}, " Tom ran. ")
    assert answer_exact({"task": "continue", "answer": None}, "x") is None
    with pytest.raises(TypeError, match="'b'"):
        answer_exact({"id": "b", "task": "hero", "answer": "x"}, None)
    with pytest.raises(ValueError, match="task='poem'"):
        answer_exact({"id": "c", "task": "poem", "lang": "en", "answer": "x"}, "x")


def test_wilson_interval():
    lo, hi = wilson_interval(0, 32)
    assert lo == 0.0 and 0.09 < hi < 0.12
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0 and 0.68 < lo < 0.73
    with pytest.raises(ValueError, match="k=5, n=3"):
        wilson_interval(5, 3)


@pytest.fixture(scope="module")
def tok():
    rows = load_instructions("train", "en", scale="tiny")[:60]
    return Tokenizer.train(" ".join(m["content"] for r in rows for m in r["messages"]), 400,
                           special_tokens=SPECIAL_TOKENS)


def test_segment_positions_and_mask():
    seg = torch.tensor([[1, 1, 2, 2, 2, 0], [1, 1, 1, 1, 1, 1]])
    assert segment_positions(seg).tolist() == [[0, 1, 0, 1, 2, 0], [0, 1, 2, 3, 4, 5]]
    m = packed_attention_mask(seg)
    assert m[0, 3].tolist() == [False, False, True, True, False, False]
    assert torch.equal(m[1], torch.ones(6, 6, dtype=torch.bool).tril())


def test_packed_loss_equals_samples_alone(tok):
    rows = load_instructions("train", "en", scale="tiny")[:30]
    X, Y, S, info = pack_rows(tok, rows, 320)
    assert info["samples"] == 30 and info["rows"] < 30 and (S.max(1).values >= 2).any()
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=320, vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=32, bias=False)).eval()
    with torch.no_grad():
        packed = packed_loss(model, (X, Y, S)).item()
        total, count = 0.0, 0
        for r in rows:
            ids, mask = encode_chat(tok, r["messages"])
            x, y = to_xy(ids, mask, len(ids) - 1, 0)
            logits, _ = model(x[None])
            total += F.cross_entropy(logits[0], y, ignore_index=-100, reduction="sum").item()
            count += int((y != -100).sum())
        assert packed == pytest.approx(total / count, abs=1e-5)
        assert abs(model(X, Y)[1].item() - total / count) > 1e-3  # without the mask it differs
    with pytest.raises(ValueError, match="segment_ids"):
        model(X, Y, segment_ids=S[:, :10])


def test_packed_batcher_and_errors(tok):
    rows = load_instructions("train", "en", scale="tiny")[:20]
    get_batch, info = packed_batcher(tok, rows, rows[:5], 320, 3)
    x, y, seg = get_batch("train", torch.Generator().manual_seed(0))
    assert x.shape == y.shape == seg.shape == (3, 320)
    assert info["train"]["fill"] > 0.5
    with pytest.raises(ValueError, match="'test'"):
        get_batch("test", torch.Generator())
    with pytest.raises(ValueError, match="no row fits"):
        pack_rows(tok, rows[:3], 8)
    X, Y, S, info = pack_rows(tok, rows[:3], 8 + 1000)
    assert info["dropped_too_long"] == 0
