"""Chat template, loss mask and SFT batches. (Chapter 3.)"""
from __future__ import annotations

import pytest
import torch

from nanoseek.data import load_instructions
from nanoseek.data.chat import (CHAT_TEMPLATE, END, IGNORE, SPECIAL_TOKENS, encode_chat, encode_prompt,
                                parse_reply, render_chat, sft_batcher, to_xy, validate_messages)
from nanoseek.sft import reply_correct, story_tokens
from nanoseek.tokenizer import Tokenizer

CONV = [{"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Who is the story about?"},
        {"role": "assistant", "content": "It is about Lily."},
        {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "你好！"}]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    text = "\n\n".join(m["content"] for r in load_instructions("train", scale="tiny")[:300] for m in r["messages"])
    return Tokenizer.train(text, 600, special_tokens=SPECIAL_TOKENS)


def test_render_chat_text():
    assert render_chat(CONV[1:3]) == ("<|endoftext|><|user|>Who is the story about?<|end|>"
                                      "<|assistant|>It is about Lily.<|end|>")
    assert render_chat(CONV[1:2], add_generation_prompt=True).endswith("<|end|><|assistant|>")


def test_mask_covers_exactly_the_assistant_replies_and_their_end(tok):
    ids, mask = encode_chat(tok, CONV)
    assert len(ids) == len(mask)
    assert tok.decode(ids) == render_chat(CONV)
    trained = tok.decode([i for i, m in zip(ids, mask) if m])
    assert trained == "It is about Lily.<|end|>你好！<|end|>"
    # every trained position is an assistant token; nothing from system/user is trained
    end = tok.special_id(END)
    assert sum(mask) == len(tok.encode("It is about Lily.")) + len(tok.encode("你好！")) + 2
    assert [i for i, m in zip(ids, mask) if m].count(end) == 2


def test_to_xy_shifts_and_masks(tok):
    ids, mask = encode_chat(tok, CONV[1:3])
    x, y = to_xy(ids, mask, block_size=64, pad_id=tok.special_id(END))
    n = len(ids) - 1
    assert x[:n].tolist() == ids[:-1]
    assert (y[n:] == IGNORE).all()
    for t in range(n):
        assert y[t].item() == (ids[t + 1] if mask[t + 1] else IGNORE)
    _, y_all = to_xy(ids, None, block_size=64, pad_id=0)
    assert y_all[:n].tolist() == ids[1:]
    with pytest.raises(ValueError, match="block_size=4"):
        to_xy(ids, mask, block_size=4, pad_id=0)


def test_prompt_is_a_prefix_of_the_training_sequence(tok):
    ids, mask = encode_chat(tok, CONV[1:3])
    prompt = encode_prompt(tok, CONV[1:2])
    assert ids[: len(prompt)] == prompt and not any(mask[: len(prompt)]) and mask[len(prompt)]


def test_hf_chat_template_gives_the_same_ids(tok, tmp_path):
    from transformers import AutoTokenizer

    tok.save_pretrained(tmp_path, chat_template=CHAT_TEMPLATE, eos_token=END)
    hf = AutoTokenizer.from_pretrained(tmp_path)
    assert hf.apply_chat_template(CONV, tokenize=False) == render_chat(CONV)
    assert hf(render_chat(CONV), add_special_tokens=False)["input_ids"] == encode_chat(tok, CONV)[0]
    got = hf.apply_chat_template(CONV[1:2], tokenize=False, add_generation_prompt=True)
    assert hf(got, add_special_tokens=False)["input_ids"] == encode_prompt(tok, CONV[1:2])


@pytest.mark.parametrize("bad, words", [
    ([], "non-empty"), ("hi", "non-empty"), ([{"role": "user"}], "message 0"),
    ([{"role": "bot", "content": "x"}], "'bot'"), ([{"role": "user", "content": 3}], "int"),
    ([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}, {"role": "assistant", "content": "c"}],
     "message 1 is a system"),
    ([{"role": "user", "content": "a<|end|>"}, {"role": "assistant", "content": "b"}], "'<|end|>'"),
    ([{"role": "user", "content": "a"}], "no assistant"),
    ([{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}], "last message"),
])
def test_malformed_conversations_raise_naming_the_row(bad, words, tok):
    with pytest.raises(ValueError, match="row 'r7'") as err:
        encode_chat(tok, bad, where="row 'r7'")
    assert words in str(err.value)
    with pytest.raises(ValueError, match="train row 'x1'"):
        sft_batcher(tok, [{"id": "x1", "messages": bad}], [], 32, 2)


def test_sft_batcher_masked_vs_unmasked(tok):
    rows = load_instructions("train", "en", "tiny")[:40]
    gb_m, info = sft_batcher(tok, rows, rows[:5], block_size=256, batch_size=4, masked=True)
    gb_u, _ = sft_batcher(tok, rows, rows[:5], block_size=256, batch_size=4, masked=False)
    assert info["train"]["rows"] + info["train"]["dropped_too_long"] == 40
    xm, ym = gb_m("train", torch.Generator().manual_seed(0))
    xu, yu = gb_u("train", torch.Generator().manual_seed(0))
    assert xm.shape == ym.shape and xm.shape[0] == 4 and xm.shape[1] <= 256 and torch.equal(xm, xu)
    assert (ym[:, -1] != IGNORE).any() or (yu[:, -1] != IGNORE).any()  # cut to the longest row of the batch
    assert ((ym != IGNORE).sum(1) < (yu != IGNORE).sum(1)).all()
    assert torch.equal(ym[ym != IGNORE], yu[ym != IGNORE])
    with pytest.raises(ValueError, match="'test'"):
        gb_m("test", torch.Generator())
    with pytest.raises(ValueError, match="no train row fits"):
        sft_batcher(tok, rows[:3], rows[:3], block_size=4, batch_size=2)


def test_parse_reply_and_correctness(tok):
    end = tok.special_id(END)
    assert parse_reply(tok, tok.encode("It is Lily.") + [end, 5]) == {
        "text": "It is Lily.", "ended": True, "follows_template": True}
    no_end = parse_reply(tok, tok.encode("It is Lily"))
    assert not no_end["ended"] and not no_end["follows_template"]
    assert not parse_reply(tok, [tok.special_id("<|user|>")] + tok.encode("x") + [end])["follows_template"]
    assert not parse_reply(tok, [end])["follows_template"]  # empty reply
    row = {"id": "a", "task": "hero", "answer": "Lily"}
    assert reply_correct(row, "the story is about lily.") and not reply_correct(row, "Tom")
    assert reply_correct({"task": "rewrite", "answer": "Tom ran."}, " Tom ran. ")
    assert not reply_correct({"task": "rewrite", "answer": "Tom ran."}, "Tom ran. Then")
    assert reply_correct({"task": "continue", "answer": None}, "anything") is None
    with pytest.raises(TypeError, match="'b'"):
        reply_correct({"id": "b", "answer": "x"}, None)


def test_story_tokens_put_endoftext_before_every_story(tok):
    ids = story_tokens(tok, ["Tom ran.", "小明笑了。"])
    assert ids.dtype == torch.long
    assert tok.decode(ids.tolist()) == "<|endoftext|>Tom ran.<|endoftext|>小明笑了。"


def test_two_turn_rows(tok):
    from nanoseek.data.chat import two_turn_rows

    rows = load_instructions("train", "en", scale="tiny")[:60]
    out = two_turn_rows(tok, rows, 160, seed=0)
    assert 0 < len(out) <= len(rows) and out == two_turn_rows(tok, rows, 160, seed=0)  # seeded
    by_id = {r["id"]: r for r in rows}
    for r in out:
        first, second = r["id"].split("+")
        assert first != second and (r["first"], r["second"]) == (first, second)
        assert r["messages"] == by_id[first]["messages"] + by_id[second]["messages"]
        assert (r["task"], r["answer"]) == (by_id[second]["task"], by_id[second]["answer"])
        ids, mask = encode_chat(tok, r["messages"])
        assert len(ids) <= 161
        replies = [m["content"] for m in r["messages"] if m["role"] == "assistant"]
        assert len(replies) == 2 and tok.decode([i for i, m in zip(ids, mask) if m]) == "".join(
            x + "<|end|>" for x in replies)
    with pytest.raises(ValueError, match="at least 2 rows"):
        two_turn_rows(tok, rows[:1], 160)
