"""SFT helpers: batched greedy decoding equals one-row decoding; chat metrics. (Chapter 3.)"""
from __future__ import annotations

import pytest
import torch

from nanoseek.data.chat import END, SPECIAL_TOKENS
from nanoseek.generate import generate
from nanoseek.models.gpt import GPT, GPTConfig
from nanoseek.sft import chat_reply, evaluate_chat, greedy_batch
from nanoseek.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train("Lily went to the park. Who is the story about? It is about Lily. " * 30, 300,
                           special_tokens=SPECIAL_TOKENS)


def _model(vocab: int) -> GPT:
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=40, vocab_size=vocab, n_layer=2, n_head=2, n_embd=32, bias=False)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.4)
    return model


def test_greedy_batch_equals_one_row_generate():
    model = _model(300)
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, 300, (n,), generator=g).tolist() for n in (3, 17, 9, 30, 1)]
    eos = 7
    got = greedy_batch(model, prompts, 12, eos)
    for p, new in zip(prompts, got):
        n = min(12, 40 - len(p))
        ref = generate(model, torch.tensor([p]), n, temperature=0.0, eos_id=eos)[0, len(p):].tolist()
        if eos in ref:
            ref = ref[: ref.index(eos) + 1]
        assert new == ref
    assert len(got[3]) == 10  # 30-token prompt: stops at the context of 40
    with pytest.raises(ValueError, match="context 40"):
        greedy_batch(model, [[1] * 40], 5, eos)


def test_evaluate_chat_reports_shares(tok):
    model = _model(tok.vocab_size)
    rows = [{"id": f"r{i}", "task": "hero", "answer": "Lily",
             "messages": [{"role": "user", "content": "Who is the story about?" + " x" * i},
                          {"role": "assistant", "content": "It is about Lily."}]} for i in range(3)]
    res = evaluate_chat(model, tok, rows, max_new_tokens=8, batch_size=2)
    assert res["n"] == 3 and res["n_checkable"] == 3 and len(res["replies"]) == 3
    for key in ("template", "eot", "accuracy", "contains"):
        assert 0.0 <= res[key] <= 1.0
    one = chat_reply(model, tok, rows[0]["messages"][:1], max_new_tokens=8)
    assert one["text"] == res["replies"][0]["reply"]
    with pytest.raises(ValueError, match="at least one row"):
        evaluate_chat(model, tok, [], 4)
    with pytest.raises(ValueError, match="'bad'"):
        evaluate_chat(model, tok, [{"id": "bad", "messages": [{"role": "assistant", "content": "x"},
                                                               {"role": "assistant", "content": "y"}]}], 4)


def test_evaluate_chat_keeps_earlier_turns_in_the_prompt(tok, monkeypatch):
    import nanoseek.sft as sft
    from nanoseek.data.chat import encode_prompt

    seen = []

    def fake(model, prompts, max_new_tokens, eos_id):
        seen.extend(prompts)
        return [[eos_id] for _ in prompts]

    monkeypatch.setattr(sft, "greedy_batch", fake)
    two = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
           {"role": "user", "content": "Who is it about?"}, {"role": "assistant", "content": "Lily."}]
    evaluate_chat(None, tok, [{"id": "t", "task": "continue", "answer": None, "messages": two}], 4)
    assert seen == [encode_prompt(tok, two[:3])]  # the first exchange stays, the last reply is left out
