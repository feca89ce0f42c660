"""nanoseek.rl advantages and losses on small hand-computed cases: signs, clipping, masking (chapter 10)."""
from __future__ import annotations

import math

import pytest
import torch

from nanoseek.rl.advantages import gae, group_advantages, leave_one_out_advantages
from nanoseek.rl.losses import aggregate, clipped_pg_loss, grpo_loss, k3_kl, reinforce_loss, value_loss
from nanoseek.rl.ppo import kl_shaped_rewards

close = torch.testing.assert_close


def test_group_advantages_by_hand():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    # group 1: mean 0.25, unbiased std sqrt(((.75)^2 + 3 * (.25)^2) / 3) = 0.5
    a = group_advantages(r, 4, eps=0.0)
    close(a[:4], torch.tensor([1.5, -0.5, -0.5, -0.5]))
    close(a[4:], torch.zeros(4))  # all equal: no signal, and no division by zero with eps
    close(group_advantages(r, 4, eps=1e-6)[4:], torch.zeros(4))
    close(group_advantages(r, 4, normalize_by_std=False), torch.tensor([0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0]))
    # groups are contiguous runs: size 2 pairs (1,0) (0,0) (1,1) (1,1)
    close(group_advantages(r, 2, normalize_by_std=False), torch.tensor([0.5, -0.5, 0, 0, 0, 0, 0, 0]))
    close(leave_one_out_advantages(r, 4)[:4], torch.tensor([1.0, -1 / 3, -1 / 3, -1 / 3]))
    with pytest.raises(ValueError, match="group_size=3"):
        group_advantages(r, 3)
    with pytest.raises(ValueError, match="group_size=0"):
        group_advantages(r, 0)


def test_k3_by_hand():
    logp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    # r = ref/p = 0.5: k3 = r - log r - 1 = 0.5 + log 2 - 1
    close(k3_kl(logp, ref), torch.tensor([0.5 + math.log(2) - 1]))
    assert float(k3_kl(ref, ref)) == 0.0
    x = torch.randn(1000)
    assert (k3_kl(x, x + torch.randn(1000)) >= 0).all()


def test_k3_is_unbiased_for_kl():
    torch.manual_seed(0)
    p = torch.softmax(torch.randn(6), 0)
    q = torch.softmax(torch.randn(6), 0)
    exact = float((p * (p / q).log()).sum())
    samples = torch.multinomial(p, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    est = float(k3_kl(p.log()[samples], q.log()[samples]).mean())
    assert abs(est - exact) < 0.02 * max(exact, 0.1), (est, exact)


def test_aggregations_by_hand():
    loss = torch.tensor([[1.0, 2.0, 3.0, 0.0], [4.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    close(aggregate(loss, mask, "seq"), torch.tensor((2.0 + 4.0) / 2))          # per sequence, then mean
    close(aggregate(loss, mask, "token"), torch.tensor((1 + 2 + 3 + 4) / 4.0))   # all tokens
    close(aggregate(loss, mask, "constant", max_len=5), torch.tensor(10 / (2 * 5.0)))
    big = loss + 100 * (1 - mask)  # values under the mask never matter
    for agg in ("seq", "token"):
        close(aggregate(big, mask, agg), aggregate(loss, mask, agg))
    with pytest.raises(ValueError, match="max_len=None"):
        aggregate(loss, mask, "constant")
    with pytest.raises(ValueError, match="agg='mean'"):
        aggregate(loss, mask, "mean")


def test_clipped_surrogate_signs_and_clipping():
    old = torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.5, 0.5]]))  # ratios 1.5, 0.5, 1.5, 0.5
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    per_tok, stats = clipped_pg_loss(logp, old, adv, torch.ones(1, 4), clip_low=0.2, clip_high=0.3)
    # A>0, rho=1.5: min(1.5, 1.3) = 1.3 (clipped high); A>0, rho=.5: min(.5, .8) = .5 (unclipped)
    # A<0, rho=1.5: min(-1.5, -1.3) = -1.5 (unclipped); A<0, rho=.5: min(-.5, -.8) = -.8 (clipped low)
    close(per_tok, -torch.tensor([[1.3, 0.5, -1.5, -0.8]]))
    assert float(stats["clip_frac"]) == 0.5


def test_clipped_tokens_get_no_gradient_and_sign_pushes_up_good_tokens():
    logp = torch.log(torch.tensor([[1.5, 1.1]])).requires_grad_(True)
    per_tok, _ = clipped_pg_loss(logp, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2), 0.2, 0.2)
    per_tok.sum().backward()
    # d(-rho*A)/dlogp = -rho*A on the unclipped token; 0 on the clipped one
    close(logp.grad, torch.tensor([[0.0, -1.1]]))
    # gradient descent lowers the loss by raising logp of a positive-advantage token


def test_grpo_loss_by_hand():
    logp = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, 0.0, 0.0]])
    old = logp.clone()  # first inner step: ratio 1, nothing clipped
    ref = torch.tensor([[-1.0, -1.0, 0.0], [-0.5, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    adv = torch.tensor([2.0, -1.0])
    beta = 0.1
    kl_tok = math.exp(1.0) - 1.0 - 1.0  # token (0,1): ref - logp = 1
    # seq: row 0 mean(-2, -2 + beta*kl) ; row 1: +1 ; then mean of rows
    row0 = (-2.0 + (-2.0 + beta * kl_tok)) / 2
    loss, stats = grpo_loss(logp, old, ref, adv, mask, beta=beta, agg="seq")
    close(loss, torch.tensor((row0 + 1.0) / 2))
    close(stats["kl"], kl_tok / 3)
    loss_tok, _ = grpo_loss(logp, old, ref, adv, mask, beta=beta, agg="token")
    close(loss_tok, torch.tensor((-2.0 - 2.0 + beta * kl_tok + 1.0) / 3))
    loss_c, _ = grpo_loss(logp, old, ref, adv, mask, beta=beta, agg="constant", max_len=4)
    close(loss_c, torch.tensor((-2.0 - 2.0 + beta * kl_tok + 1.0) / 8))
    loss0, st0 = grpo_loss(logp, old, None, adv, mask, beta=0.0)
    close(loss0, torch.tensor((-2.0 + 1.0) / 2))
    assert "kl" not in st0
    with pytest.raises(ValueError, match="beta=0.1"):
        grpo_loss(logp, old, None, adv, mask, beta=0.1)


def test_grpo_gradient_at_ratio_one_equals_reinforce():
    torch.manual_seed(0)
    logits = torch.randn(4, 5, 7, requires_grad=True)
    tokens = torch.randint(0, 7, (4, 5))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]]).float()
    adv = torch.tensor([1.0, -0.5, 2.0, 0.3])

    def logp_of(l):
        return torch.log_softmax(l, -1).gather(2, tokens[..., None]).squeeze(2)

    g1 = torch.autograd.grad(grpo_loss(logp_of(logits), logp_of(logits).detach(), None, adv, mask, beta=0.0)[0], logits)[0]
    g2 = torch.autograd.grad(reinforce_loss(logp_of(logits), adv, mask)[0], logits)[0]
    close(g1, g2)


def test_gae_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.6, 0.7, 9.0]])  # the 9.0 is padding and must not matter
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    gamma, lam = 0.9, 0.8
    # terminal after t=2: d2 = 1 - .7 = .3 ; d1 = 0 + .9*.7 - .6 = .03 ; d0 = .9*.6 - .5 = .04
    a2 = 0.3
    a1 = 0.03 + gamma * lam * a2
    a0 = 0.04 + gamma * lam * a1
    adv, ret = gae(rewards, values, mask, gamma, lam)
    close(adv, torch.tensor([[a0, a1, a2, 0.0]]))
    close(ret, torch.tensor([[a0 + 0.5, a1 + 0.6, a2 + 0.7, 0.0]]))
    # lam = 1, gamma = 1: advantage = sum of future rewards - V (Monte Carlo)
    adv1, _ = gae(rewards, values, mask, 1.0, 1.0)
    close(adv1, torch.tensor([[0.5, 0.4, 0.3, 0.0]]))


def test_kl_shaped_rewards_by_hand():
    logp = torch.tensor([[-1.0, -1.0, -1.0], [-1.0, 0.0, 0.0]])
    ref = torch.tensor([[-1.5, -1.0, -0.5], [-2.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    r = kl_shaped_rewards(torch.tensor([1.0, 2.0]), logp, ref, mask, kl_coef=0.1)
    close(r, torch.tensor([[-0.05, 0.0, 0.05 + 1.0], [-0.1 + 2.0, 0.0, 0.0]]))


def test_value_loss_clipping():
    v, old, ret = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 1.0]])
    mask = torch.tensor([[1.0, 0.0]])
    # unclipped err (1-2)^2 = 1; clipped V = 0.2 -> (0.2-2)^2 = 3.24; max = 3.24; times 0.5
    loss, _ = value_loss(v, old, ret, mask, clip=0.2)
    close(loss, torch.tensor(1.62))
    loss_nc, _ = value_loss(v, old, ret, mask, clip=None)
    close(loss_nc, torch.tensor(0.5))
