"""The `full` path of chapter 10 on a tiny random Qwen2: transformers model -> our Decoder -> GRPO -> back.

Same code as the Colab run on Qwen2.5-0.5B-Instruct; only the weights and the tokenizer's size differ (the
tokenizer here is a small BPE trained in the test, with a Qwen-style chat template).
"""
from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from minids.reasoning import arithmetic  # noqa: E402
from nanoseek.interop import from_hf, to_hf  # noqa: E402
from nanoseek.rl.hf import load_policy, tiny_chat_tokenizer, tiny_random_qwen2  # noqa: E402
from nanoseek.rl.rollout import sequence_logprobs  # noqa: E402
from nanoseek.rl.tasks import hf_task, r1_chat_prompt  # noqa: E402
from nanoseek.rl.trainer import RLConfig, train_rl  # noqa: E402

@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and a shared CPU makes two threads much slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_chat_tokenizer()


def test_prompt_ends_inside_think(tokenizer):
    row = arithmetic("train", 1, 0, digits=3)[0]
    text = r1_chat_prompt(tokenizer, row)
    assert text.startswith("<|im_start|>system\n") and text.endswith("<think>")
    assert f"What is {row['prompt'][:-1]}?" in text


def test_grpo_on_tiny_random_qwen2_and_export(tokenizer):
    hf = tiny_random_qwen2(len(tokenizer))
    policy = from_hf(hf, max_seq_len=256)
    task = hf_task(tokenizer, "arithmetic", digits=2)
    rows = task.train_rows(2, 0)
    prompt = torch.tensor([task.encode(task.prompt_fn(rows[0]))])
    response = torch.randint(0, len(tokenizer), (1, 5))
    # our log-probs of a response equal those of the transformers model (the ratio's denominator is right)
    with torch.no_grad():
        ours = sequence_logprobs(policy, prompt, response)
        logits = hf(torch.cat([prompt, response], 1)).logits[:, prompt.shape[1] - 1:-1].float()
        theirs = torch.log_softmax(logits, -1).gather(2, response[..., None]).squeeze(2)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    # the GRPO loop runs on it, with a reward that varies so that the weights move
    task.reward_fn = lambda text, row: float(len(text) % 3)
    before = [p.detach().clone() for p in policy.parameters()]
    hist = train_rl(policy, task, RLConfig(steps=2, prompts_per_step=2, group_size=4, max_new_tokens=6,
                                           lr=1e-3, eval_every=0), progress=False)
    assert len(hist.step) == 2 and all(v == v for v in hist.metrics["loss"])
    assert any((a != b).any() for a, b in zip(before, policy.parameters()))
    # the trained policy goes back to transformers with the same logits
    back = to_hf(policy)
    idx = torch.cat([prompt, response], 1)
    with torch.no_grad():
        torch.testing.assert_close(back(idx).logits, policy(idx)[0], atol=1e-4, rtol=1e-4)


def test_load_policy_without_a_name_is_the_tiny_random_qwen2():
    policy, tok = load_policy(None)
    assert type(policy).__name__ == "Decoder" and policy.config.vocab_size == len(tok)
    assert policy.config.tie_embeddings and policy.config.qkv_bias
