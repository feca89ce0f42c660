"""nanoseek.rl rollouts and the RL loop on a tiny Decoder (chapter 10)."""
from __future__ import annotations

import pytest
import torch

from minids.reasoning import arithmetic
from nanoseek.models.decoder import Decoder, DecoderConfig
from nanoseek.rl.rollout import rollout, sample, sequence_logprobs
from nanoseek.rl.tasks import addition_demo, addition_task, addition_trace, sft_examples
from nanoseek.rl.trainer import RLConfig, evaluate, train_rl
from nanoseek.rl.vocab import TaskVocab

VOCAB = TaskVocab("0123456789+-=,")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and a shared CPU makes two threads much slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_policy(seed: int = 0) -> Decoder:
    torch.manual_seed(seed)
    return Decoder(DecoderConfig(vocab_size=len(VOCAB), n_layer=1, n_embd=32, n_head=2, n_kv_head=1,
                                 intermediate_size=64, max_seq_len=64))


def test_vocab_round_trip_and_tags_are_single_tokens():
    text = "<think>6+5+0=11</think><answer>81</answer>"
    ids = VOCAB.encode(text)
    assert VOCAB.decode(ids) == text and len(ids) == len("6+5+0=11") + len("81") + 4
    with pytest.raises(KeyError, match="'x'"):
        VOCAB.encode("3x4")


def test_addition_trace_careful_and_sloppy():
    for a in range(0, 100, 7):
        for b in range(0, 100, 11):
            assert addition_trace(a, b)[1] == str(a + b)
    assert addition_trace(46, 35, carry=False) == ("6+5+0=11,4+3+0=07", "71")
    assert addition_demo({"a": 12, "b": 30}) == "<think>2+0+0=02,1+3+0=04</think><answer>42</answer>"
    seqs, plens = sft_examples(arithmetic("train", 5, 0), VOCAB, p_careful=1.0)
    assert all(s[-1] == VOCAB.eos_id and p == 6 for s, p in zip(seqs, plens))


def test_sample_mask_logp_and_cache_agree_with_full_forward():
    model = tiny_policy()
    prompt = torch.tensor([VOCAB.encode("12+34=")] * 6)
    out = {}
    for use_cache in (True, False):
        g = torch.Generator().manual_seed(3)
        out[use_cache] = sample(model, prompt, 12, VOCAB.eos_id, VOCAB.pad_id, 1.0, None, g, use_cache)
    (resp, mask, logp), (resp2, _, logp2) = out[True], out[False]
    torch.testing.assert_close(resp, resp2)
    torch.testing.assert_close(logp, logp2, atol=1e-5, rtol=1e-5)
    # the mask is a prefix ending at (and including) the first eos; pad after it; logp 0 there
    for r, m in zip(resp.tolist(), mask.tolist()):
        n = int(sum(m))
        assert m == [1.0] * n + [0.0] * (len(m) - n)
        if VOCAB.eos_id in r:
            assert r.index(VOCAB.eos_id) == n - 1 and all(t == VOCAB.pad_id for t in r[n:])
    assert (logp[mask == 0] == 0).all()
    # teacher-forced log-probs equal the sampling log-probs on real tokens (ratio 1 at the first step)
    tf = sequence_logprobs(model, prompt, resp)
    torch.testing.assert_close(tf * mask, logp, atol=1e-5, rtol=1e-5)


def test_rollout_groups_are_contiguous_and_bucketed():
    model = tiny_policy()
    rows = arithmetic("train", 3, 0, digits=2) + arithmetic("train", 2, 0, digits=1)  # two prompt lengths
    batches = rollout(model, rows, lambda r: r["prompt"], VOCAB.encode, VOCAB.decode, 4, 8, VOCAB.eos_id,
                      VOCAB.pad_id, reward_fn=lambda t, r: float(len(t)), generator=torch.Generator().manual_seed(0))
    assert sorted(b.prompt.shape[1] for b in batches) == [4, 6]
    for b in batches:
        assert b.response.shape[0] == len(b.rows) == len(b.texts) == b.rewards.numel()
        for g in range(0, len(b.rows), 4):
            assert len({id(r) for r in b.rows[g:g + 4]}) == 1
            assert (b.prompt[g:g + 4] == b.prompt[g]).all()


@pytest.mark.parametrize("algo", ["grpo", "reinforce", "ppo"])
def test_train_rl_runs_and_is_deterministic(algo):
    task = addition_task(VOCAB, digits=1)
    task.reward_fn = lambda text, row: float(text.count("1"))  # an untrained policy gets varied rewards
    test_rows = arithmetic("test", 4, 0, digits=2)
    cfg = RLConfig(algo=algo, steps=2, prompts_per_step=2, group_size=4, max_new_tokens=10, lr=1e-3,
                   eval_every=2, beta=0.04)
    runs = []
    for _ in range(2):
        model = tiny_policy()
        hist = train_rl(model, task, cfg, eval_rows=test_rows, progress=False)
        runs.append((hist, [p.detach().clone() for p in model.parameters()]))
    (h1, p1), (h2, p2) = runs
    assert h1.step == [1, 2] and h1.eval_step == [0, 2]
    assert h1.metrics["loss"] == h2.metrics["loss"]
    for a, b in zip(p1, p2):
        torch.testing.assert_close(a, b)
    assert all(v == v for vals in h1.metrics.values() for v in vals)  # no NaN
    assert any((a != b).any() for a, b in zip(p1, tiny_policy().parameters()))  # it learned something
    if algo == "ppo":
        assert "value_mse" in h1.metrics


def test_evaluate_greedy_is_deterministic():
    model = tiny_policy()
    rows = arithmetic("test", 6, 0, digits=2)
    a = evaluate(model, rows, addition_task(VOCAB), 10)
    assert a == evaluate(model, rows, addition_task(VOCAB), 10)
    assert set(a) == {"accuracy", "reward", "length"}


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="algo='dpo'"):
        RLConfig(algo="dpo")
    with pytest.raises(ValueError, match="agg='mean'"):
        RLConfig(agg="mean")
    with pytest.raises(ValueError, match="group_size=1"):
        RLConfig(group_size=1)
