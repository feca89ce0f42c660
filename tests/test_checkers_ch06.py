"""Chapter 6's checkers: the right solution passes, plausible wrong ones fail."""
import pytest
import torch

from nanoseek.exercises import ch06
from nanoseek.nn.moe import route


# ---- exercise 1: MaxVio
def vio_right(counts):
    load = counts.float()
    return ((load.max() - load.mean()) / load.mean()).item()


def vio_over_max(counts):
    load = counts.float()
    return ((load.max() - load.mean()) / load.max()).item()


def vio_min(counts):  # the spread to the least loaded expert
    load = counts.float()
    return ((load.max() - load.min()) / load.mean()).item()


# ---- exercise 2: one bias step
def step_right(bias, counts, gamma):
    load = counts.float()
    return bias + gamma * torch.sign(load.mean() - load)


def step_wrong_sign(bias, counts, gamma):
    load = counts.float()
    return bias + gamma * torch.sign(load - load.mean())


def step_proportional(bias, counts, gamma):
    load = counts.float()
    return bias + gamma * (load.mean() - load)


def step_no_zero(bias, counts, gamma):  # experts at the mean still move
    load = counts.float()
    return bias + gamma * torch.where(load.mean() - load >= 0, 1.0, -1.0)


# ---- exercise 3: group-limited top-k
def _group_topk(scores, bias, k, n_group, topk_group, use_bias=True, biased_weights=False, normalize=True,
                group_by_max=False):
    N, E = scores.shape
    choice = scores + bias if use_bias else scores
    per_group = choice.view(N, n_group, E // n_group)
    group_score = (per_group.amax(-1) if group_by_max else
                   per_group.topk(min(2, E // n_group), dim=-1).values.sum(-1))
    keep = group_score.topk(topk_group, dim=-1).indices
    mask = torch.zeros(N, n_group, dtype=torch.bool).scatter_(1, keep, True).repeat_interleave(E // n_group, 1)
    idx = choice.masked_fill(~mask, float("-inf")).topk(k, dim=-1).indices
    w = (scores + bias if biased_weights else scores).gather(1, idx)
    return idx, (w / w.sum(-1, keepdim=True) if normalize else w)


def group_right(scores, bias, k, n_group, topk_group):
    return _group_topk(scores, bias, k, n_group, topk_group)


def group_no_bias(scores, bias, k, n_group, topk_group):
    return _group_topk(scores, bias, k, n_group, topk_group, use_bias=False)


def group_biased_weights(scores, bias, k, n_group, topk_group):
    return _group_topk(scores, bias, k, n_group, topk_group, biased_weights=True)


def group_unnormalized(scores, bias, k, n_group, topk_group):
    return _group_topk(scores, bias, k, n_group, topk_group, normalize=False)


def group_by_max(scores, bias, k, n_group, topk_group):  # V2's group score on V3's router
    return _group_topk(scores, bias, k, n_group, topk_group, group_by_max=True)


# ---- exercise 4 (core): router step with the bias update
def _router_step(logits, bias, k, gamma, use_bias=True, biased_weights=False, normalize=True, sign=1.0,
                 counts_from="choice"):
    s = logits.sigmoid()
    idx = (s + bias if use_bias else s).topk(k, dim=-1).indices
    w = (s + bias if biased_weights else s).gather(1, idx)
    if normalize:
        w = w / w.sum(-1, keepdim=True)
    if counts_from == "choice":
        counts = torch.bincount(idx.flatten(), minlength=logits.shape[1]).float()
    else:  # the affinity mass instead of the token counts
        counts = s.sum(0)
    return w, idx, bias + sign * gamma * torch.sign(counts.mean() - counts)


def router_right(logits, bias, k, gamma):
    return _router_step(logits, bias, k, gamma)


def router_no_bias(logits, bias, k, gamma):
    return _router_step(logits, bias, k, gamma, use_bias=False)


def router_biased_weights(logits, bias, k, gamma):
    return _router_step(logits, bias, k, gamma, biased_weights=True)


def router_unnormalized(logits, bias, k, gamma):
    return _router_step(logits, bias, k, gamma, normalize=False)


def router_wrong_sign(logits, bias, k, gamma):
    return _router_step(logits, bias, k, gamma, sign=-1.0)


def router_counts_from_scores(logits, bias, k, gamma):
    return _router_step(logits, bias, k, gamma, counts_from="scores")


def router_softmax(logits, bias, k, gamma):  # V2's softmax scores in V3's router
    w, idx, _ = route(logits, k, bias=bias, scoring_func="softmax")
    counts = torch.bincount(idx.flatten(), minlength=logits.shape[1]).float()
    return w, idx, bias + gamma * torch.sign(counts.mean() - counts)


CASES = [
    (ch06.check_max_vio, vio_right, [vio_over_max, vio_min]),
    (ch06.check_bias_step, step_right, [step_wrong_sign, step_proportional, step_no_zero]),
    (ch06.check_group_topk, group_right, [group_no_bias, group_biased_weights, group_unnormalized, group_by_max]),
    (ch06.check_router_step, router_right, [router_no_bias, router_biased_weights, router_unnormalized,
                                            router_wrong_sign, router_counts_from_scores, router_softmax]),
]


@pytest.mark.parametrize("checker,right", [(c, r) for c, r, _ in CASES], ids=[c.__name__ for c, _, _ in CASES])
def test_right_solution_passes(checker, right):
    assert checker(right)


@pytest.mark.parametrize("checker,wrong", [(c, w) for c, _, ws in CASES for w in ws],
                         ids=[w.__name__ for _, _, ws in CASES for w in ws])
def test_wrong_solution_fails(checker, wrong):
    assert not checker(wrong)
