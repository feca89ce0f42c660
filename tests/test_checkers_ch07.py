"""Chapter 7's checkers: the right solution passes, plausible wrong ones fail."""
import pytest
import torch
import torch.nn.functional as F

from nanoseek.exercises import ch07


# ---- exercise 1: what depth k reads and predicts
def io_right(idx, targets, k):
    return idx[:, k:], targets[:, k:]


def io_from_targets(idx, targets, k):  # the same tokens, read from the shifted targets: also right
    return targets[:, k - 1:-1], targets[:, k:]


def io_read_one_early(idx, targets, k):
    return idx[:, k - 1:-1], targets[:, k:]


def io_predict_one_late(idx, targets, k):
    return idx[:, k:], torch.cat([targets[:, k + 1:], targets[:, -1:]], dim=1)


def io_arith(idx, targets, k):  # passed the old arange checker: labels = read + 1
    return idx[:, k:], idx[:, k:] + 1


# ---- exercise 2: accept drafts (greedy)
def accept_right(drafts, greedy):
    a = 0
    while a < len(drafts) and drafts[a] == greedy[a]:
        a += 1
    return drafts[:a] + [greedy[a]]


def accept_no_bonus(drafts, greedy):  # forgets the main model's own token
    a = 0
    while a < len(drafts) and drafts[a] == greedy[a]:
        a += 1
    return drafts[:a]


def accept_all_matches(drafts, greedy):  # keeps later matches after a mismatch
    kept = [d for d, g in zip(drafts, greedy) if d == g]
    return kept + [greedy[len(kept)]]


def accept_shifted(drafts, greedy):  # compares draft j with the main model's token j+1
    a = 0
    while a < len(drafts) and drafts[a] == greedy[a + 1]:
        a += 1
    return drafts[:a] + [greedy[a]]


# ---- exercise 3: one MTP module
def fwd_right(module, h_prev, emb):
    return module.norm(module.block(module.eh_proj(torch.cat([module.enorm(emb), module.hnorm(h_prev)], -1))))


def fwd_swapped(module, h_prev, emb):
    return module.norm(module.block(module.eh_proj(torch.cat([module.hnorm(h_prev), module.enorm(emb)], -1))))


def fwd_no_final_norm(module, h_prev, emb):
    return module.block(module.eh_proj(torch.cat([module.enorm(emb), module.hnorm(h_prev)], -1)))


def fwd_no_input_norms(module, h_prev, emb):
    return module.norm(module.block(module.eh_proj(torch.cat([emb, h_prev], -1))))


# ---- exercise 4: expected tokens per forward
def tokens_right(p, k):
    return float(sum(p ** j for j in range(k + 1)))


def tokens_independent(p, k):  # each draft accepted on its own, not only after the earlier ones
    return 1 + k * p


def tokens_no_bonus(p, k):
    return float(sum(p ** j for j in range(1, k + 1)))


# ---- exercise 5 (core): the MTP loss over D depths
def _ce(logits, labels):
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten())


def loss_right(main, depths, targets, lam):
    total = _ce(main, targets)
    if depths:
        total = total + lam * torch.stack([_ce(lg, targets[:, k:]) for k, lg in enumerate(depths, 1)]).mean()
    return total


def loss_summed(main, depths, targets, lam):
    return _ce(main, targets) + lam * sum(_ce(lg, targets[:, k:]) for k, lg in enumerate(depths, 1))


def loss_unshifted(main, depths, targets, lam):  # depth k scored against the main model's targets
    T = targets.shape[1]
    total = _ce(main, targets)
    if depths:
        total = total + lam * torch.stack([_ce(lg, targets[:, : T - k]) for k, lg in enumerate(depths, 1)]).mean()
    return total


def loss_no_lambda(main, depths, targets, lam):
    total = _ce(main, targets)
    if depths:
        total = total + torch.stack([_ce(lg, targets[:, k:]) for k, lg in enumerate(depths, 1)]).mean()
    return total


def loss_main_only(main, depths, targets, lam):
    return _ce(main, targets)


CASES = [
    (ch07.check_mtp_io, io_right, [io_read_one_early, io_predict_one_late, io_arith]),
    (ch07.check_accept, accept_right, [accept_no_bonus, accept_all_matches, accept_shifted]),
    (ch07.check_mtp_forward, fwd_right, [fwd_swapped, fwd_no_final_norm, fwd_no_input_norms]),
    (ch07.check_expected_tokens, tokens_right, [tokens_independent, tokens_no_bonus]),
    (ch07.check_mtp_loss, loss_right, [loss_summed, loss_unshifted, loss_no_lambda, loss_main_only]),
]


@pytest.mark.parametrize("checker,right", [(c, r) for c, r, _ in CASES] + [(ch07.check_mtp_io, io_from_targets)],
                         ids=[c.__name__ for c, _, _ in CASES] + ["check_mtp_io-from_targets"])
def test_right_solution_passes(checker, right):
    assert checker(right)


@pytest.mark.parametrize("checker,wrong", [(c, w) for c, _, ws in CASES for w in ws],
                         ids=[w.__name__ for _, _, ws in CASES for w in ws])
def test_wrong_solution_fails(checker, wrong):
    assert not checker(wrong)
