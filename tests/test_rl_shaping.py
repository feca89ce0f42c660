"""Kimi k1.5's length reward, DAPO's overlong shaping and dynamic sampling, token entropy, peer-shaped
advantages: hand-computed cases (chapter 10, second edition)."""
from __future__ import annotations

import math

import pytest
import torch

from minids.reasoning import arithmetic
from nanoseek.models.decoder import Decoder, DecoderConfig
from nanoseek.rl.losses import grpo_loss, masked_mean, reinforce_loss, token_entropy
from nanoseek.rl.rewards import kimi_length_rewards, overlong_penalty
from nanoseek.rl.tasks import addition_task
from nanoseek.rl.trainer import RLConfig, informative, select_groups, train_rl
from nanoseek.rl.rollout import Rollout
from nanoseek.rl.vocab import TaskVocab


def test_kimi_length_reward_by_hand():
    # lengths 10, 20, 30: λ = 0.5, 0, -0.5; correct ones keep λ, wrong ones get min(0, λ)
    assert kimi_length_rewards([10, 20, 30], [True, True, True]) == [0.5, 0.0, -0.5]
    assert kimi_length_rewards([10, 20, 30], [False, False, False]) == [0.0, 0.0, -0.5]
    assert kimi_length_rewards([30, 10, 25], [True, False, False]) == [-0.5, 0.0, -0.25]
    assert kimi_length_rewards([7, 7], [True, False]) == [0.0, 0.0]  # no spread, no signal
    with pytest.raises(ValueError, match="equal, non-empty"):
        kimi_length_rewards([1, 2], [True])
    with pytest.raises(ValueError, match="non-negative"):
        kimi_length_rewards([1, float("nan")], [True, True])


def test_overlong_penalty_by_hand():
    # max 20, buffer 5: free up to 15, then (15 - L) / 5 down to -1 at 20, -1 beyond
    assert [overlong_penalty(n, 20, 5) for n in (0, 15, 16, 18, 20, 21)] == [0.0, 0.0, -0.2, -0.6, -1.0, -1.0]
    for bad in [(20, 0), (20, 21), (20, 2.5)]:
        with pytest.raises(ValueError, match="buffer"):
            overlong_penalty(3, *bad)


def test_token_entropy_matches_the_definition_and_is_stable():
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [1000.0, 0.0, 0.0, 0.0]]])
    h = token_entropy(logits)
    assert torch.allclose(h, torch.tensor([[math.log(4), 0.0]]), atol=1e-6)
    z = torch.randn(2, 3, 5, dtype=torch.float64)
    p = z.softmax(-1)
    torch.testing.assert_close(token_entropy(z), -(p * p.log()).sum(-1).float())
    assert token_entropy(z, torch.tensor([[1, 0, 1], [0, 0, 0]]))[1].abs().sum() == 0


def test_masked_mean_of_an_all_masked_row_is_zero():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert masked_mean(x, torch.zeros(2, 2)) == 0
    assert masked_mean(x, torch.tensor([[1, 1], [0, 0]]), dim=1).tolist() == [1.5, 0.0]


def test_advantages_as_b_or_b1_give_the_same_loss():
    torch.manual_seed(0)
    logp, old = torch.randn(3, 4), torch.randn(3, 4)
    adv, mask = torch.randn(3), torch.ones(3, 4)
    a, _ = grpo_loss(logp, old, None, adv, mask, beta=0.0)
    b, _ = grpo_loss(logp, old, None, adv[:, None], mask, beta=0.0)
    assert torch.equal(a, b)
    assert torch.equal(reinforce_loss(logp, adv, mask)[0], reinforce_loss(logp, adv[:, None], mask)[0])
    with pytest.raises(ValueError, match=r"\(B,\), \(B, 1\) or \(B, T\)"):
        grpo_loss(logp, old, None, torch.randn(3, 2), mask, beta=0.0)


def _rollout(rewards: list[float], group_size: int) -> Rollout:
    n = len(rewards)
    return Rollout(torch.zeros(n, 2, dtype=torch.long), torch.arange(n * 3).view(n, 3), torch.ones(n, 3),
                   torch.zeros(n, 3), [str(i) for i in range(n)], [{"i": i} for i in range(n)], group_size,
                   torch.tensor(rewards))


def test_dynamic_sampling_keeps_only_informative_groups():
    ro = _rollout([1, 1, 0, 1, 0, 0, 1, 0], group_size=2)  # groups: (1,1) (0,1) (0,0) (1,0)
    keep = informative(ro)
    assert keep.tolist() == [False, True, False, True]
    sub = select_groups(ro, keep)
    assert sub.texts == ["2", "3", "6", "7"] and sub.rewards.tolist() == [0, 1, 1, 0]
    assert torch.equal(sub.response, ro.response[[2, 3, 6, 7]])
    assert select_groups(ro, torch.zeros(4, dtype=torch.bool)) is None


VOCAB = TaskVocab("0123456789+-=,")


def _policy() -> Decoder:
    torch.manual_seed(0)
    return Decoder(DecoderConfig(vocab_size=len(VOCAB), n_layer=1, n_embd=32, n_head=2, n_kv_head=1,
                                 intermediate_size=64, max_seq_len=64))


def test_train_rl_with_dapo_and_kimi_switches():
    torch.set_num_threads(1)
    task = addition_task(VOCAB, digits=1)
    task.reward_fn = lambda text, row: float(text.count("1") % 2)  # varied, often all-equal groups
    cfg = RLConfig(steps=2, prompts_per_step=2, group_size=4, max_new_tokens=10, lr=1e-3, eval_every=0,
                   beta=0.0, dynamic_sampling=True, max_resample_rounds=3, overlong_buffer=4,
                   length_reward=0.5, agg="constant", normalize_by_std=False)
    hist = train_rl(_policy(), task, cfg, progress=False)
    m = hist.metrics
    assert all(t <= 2 for t in m["trained_groups"])
    # at least the first round is sampled (2 prompts x 4), whole groups only; no kept group, no update
    assert all(s >= 8 for s in m["sampled"]) and all(s % 4 == 0 for s in m["sampled"])
    assert all((u == 0) == (g == 0) for u, g in zip(m["updates"], m["trained_groups"]))
    assert all(u >= cfg.inner_epochs or g == 0 for u, g in zip(m["updates"], m["trained_groups"]))


def test_bad_shaping_config_names_the_field():
    with pytest.raises(ValueError, match="overlong_buffer=0"):
        RLConfig(overlong_buffer=0)
    with pytest.raises(ValueError, match="length_reward=inf"):
        RLConfig(length_reward=float("inf"))
    with pytest.raises(ValueError, match="max_resample_rounds=-1"):
        RLConfig(max_resample_rounds=-1)
