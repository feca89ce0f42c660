"""Our GPT + tokenizer exported as a transformers GPT-2 folder: same logits, same greedy tokens. (Chapter 3.)"""
from __future__ import annotations

import pytest
import torch

from nanoseek.data.chat import CHAT_TEMPLATE, END, SPECIAL_TOKENS, encode_prompt, render_chat
from nanoseek.generate import generate
from nanoseek.interop.gpt2 import export_gpt2, from_gpt2, to_gpt2, to_gpt2_state_dict
from nanoseek.models.gpt import GPT, GPTConfig
from nanoseek.tokenizer import Tokenizer


def _random_gpt(bias: bool, vocab: int = 300, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(GPTConfig(block_size=48, vocab_size=vocab, n_layer=2, n_head=4, n_embd=32, bias=bias)).eval()
    with torch.no_grad():  # every weight random, norms and biases too
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    text = "Lily went to the park. She found a red ball. 小明在公园里玩。他很开心。" * 20
    return Tokenizer.train(text, 300, special_tokens=SPECIAL_TOKENS)


@pytest.mark.parametrize("bias", [True, False])
def test_same_logits_and_round_trip(bias):
    model = _random_gpt(bias)
    hf = to_gpt2(model)
    x = torch.randint(0, 300, (2, 40), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(hf(x).logits, model(x)[0], atol=1e-4, rtol=1e-4)
    back = from_gpt2(hf)
    torch.testing.assert_close(back(x)[0], model(x)[0], atol=1e-5, rtol=1e-5)
    sd = to_gpt2_state_dict(model)
    assert sd["transformer.h.0.attn.c_attn.weight"].shape == (32, 96)  # Conv1D layout (in, out)


def test_untied_head_is_refused():
    model = _random_gpt(True)
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    with pytest.raises(ValueError, match="tied"):
        to_gpt2(model)


def test_export_loads_with_auto_classes_and_generates_the_same_tokens(tok, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = _random_gpt(False, vocab=tok.vocab_size, seed=3)
    export_gpt2(model, tok, tmp_path)
    hf = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
    hf_tok = AutoTokenizer.from_pretrained(tmp_path)
    assert type(hf).__name__ == "GPT2LMHeadModel"
    assert hf_tok.eos_token == END and hf.generation_config.eos_token_id == tok.special_id(END)
    messages = [{"role": "user", "content": "Where is Lily? 小明在哪里？"}]
    text = hf_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == render_chat(messages, add_generation_prompt=True)
    prompt = hf_tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    assert prompt[0].tolist() == encode_prompt(tok, messages)
    n = 48 - prompt.shape[1]
    # both stop at <|end|> (our end-of-turn, the exported EOS) and pad with it after
    ours = generate(model, prompt, n, temperature=0.0, eos_id=tok.special_id(END))
    theirs = hf.generate(prompt, max_new_tokens=n, do_sample=False)
    assert theirs.shape == ours.shape and torch.equal(theirs, ours)
    assert ours.shape[1] > prompt.shape[1] + 3
    assert hf_tok.decode(theirs[0]) == tok.decode(ours[0].tolist())


def test_export_refuses_a_model_smaller_than_the_vocab(tok, tmp_path):
    with pytest.raises(ValueError, match="vocab_size=100"):
        export_gpt2(_random_gpt(False, vocab=100), tok, tmp_path)


def test_interop_dispatch_knows_gpt2():
    from nanoseek.interop import from_hf, to_hf

    model = _random_gpt(True)
    hf = to_hf(model)
    assert type(hf).__name__ == "GPT2LMHeadModel"
    x = torch.randint(0, 300, (1, 12))
    torch.testing.assert_close(from_hf(hf)(x)[0], model(x)[0], atol=1e-5, rtol=1e-5)
