"""Speculative sampling (chapter 7): the acceptance rule leaves the output distribution exactly plain sampling's.

Each statistical test is a chi-square goodness-of-fit test at significance ALPHA = 1e-3: a correct
implementation fails it with probability 0.1% for a fresh seed (the seeds are fixed, so the test itself is
deterministic). Each test also shows its power: the plausible wrong rule (accept every draft) fails it.
"""
import torch
import pytest

from nanoseek.generate import generate_speculative_mtp_sample, speculative_accept
from nanoseek.models.decoder import Decoder, DecoderConfig

ALPHA = 1e-3


def chi2_pvalue(counts: torch.Tensor, probs: torch.Tensor, min_expected: float = 5.0) -> float:
    """p-value of observed `counts` against `probs`; cells with expected count < min_expected are pooled."""
    n = counts.sum()
    expected = probs.double() * n
    small = expected < min_expected
    obs, exp = counts[~small].double(), expected[~small]
    if small.any():
        obs = torch.cat([obs, counts[small].double().sum()[None]])
        exp = torch.cat([exp, expected[small].sum()[None]])
    stat = ((obs - exp) ** 2 / exp).sum()
    dof = len(obs) - 1
    return float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64), stat / 2))


def _dists(V: int, m: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    p = (torch.randn(m + 1, V, generator=g) * 1.5).softmax(-1)
    q = (torch.randn(m, V, generator=g) * 1.5).softmax(-1)
    return p, q


def _first_tokens(p, q, n, rule, seed=0):
    g = torch.Generator().manual_seed(seed)
    counts, accepted = torch.zeros(p.shape[1]), 0
    for _ in range(n):
        drafts = [int(torch.multinomial(q[j], 1, generator=g)) for j in range(q.shape[0])]
        a, nxt = rule(p, q, drafts, g)
        first = drafts[0] if a >= 1 else nxt
        counts[first] += 1
        accepted += a >= 1
    return counts, accepted / n


def _accept_all(p, q, drafts, g):  # the wrong rule: trust the draft
    return len(drafts), int(torch.multinomial(p[-1], 1, generator=g))


def test_accept_rule_first_token_is_distributed_as_p():
    p, q = _dists(V=6, m=2, seed=1)
    counts, acceptance = _first_tokens(p, q, 3000, speculative_accept)
    assert chi2_pvalue(counts, p[0]) > ALPHA
    # the acceptance rate of the rule is sum_v min(p, q) (Leviathan et al., Theorem 3.5), within 4 sigma
    expected = float(torch.minimum(p[0], q[0]).sum())
    assert abs(acceptance - expected) < 4 * (expected * (1 - expected) / 3000) ** 0.5
    wrong, _ = _first_tokens(p, q, 3000, _accept_all)
    assert chi2_pvalue(wrong, p[0]) < ALPHA  # the test can tell a wrong rule


def test_accept_rule_second_token_given_first_accepted():
    """When draft 1 is accepted, the next committed token must follow p[1] (draft 2 accepted or the residual)."""
    p, q = _dists(V=5, m=2, seed=2)
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(5)
    while counts.sum() < 2000:
        drafts = [int(torch.multinomial(q[j], 1, generator=g)) for j in range(2)]
        a, nxt = speculative_accept(p, q, drafts, g)
        if a >= 1:
            counts[drafts[1] if a >= 2 else nxt] += 1
    assert chi2_pvalue(counts, p[1]) > ALPHA


def test_accept_rule_checks_shapes():
    p, q = _dists(V=4, m=1, seed=0)
    with pytest.raises(ValueError, match="drafts"):
        speculative_accept(p, q, [0, 1])


def _exact_two_token_distribution(model, prompt, temperature):
    """P(t1, t2) of plain sampling, by enumeration: (V, V)."""
    with torch.no_grad():
        p1 = (model(prompt)[0][0, -1] / temperature).softmax(-1)  # (V,)
        V = p1.shape[0]
        ext = torch.cat([prompt.expand(V, -1), torch.arange(V)[:, None]], dim=1)  # (V, T+1)
        p2 = (model(ext)[0][:, -1] / temperature).softmax(-1)  # (V, V): row t1
    return p1[:, None] * p2


def test_speculative_sampling_matches_plain_sampling_end_to_end():
    """The joint distribution of the first two generated tokens equals plain sampling's (computed exactly)."""
    torch.manual_seed(0)
    V = 6
    model = Decoder(DecoderConfig(vocab_size=V, n_layer=1, n_embd=16, n_head=2, n_kv_head=2, intermediate_size=24,
                                  max_seq_len=16, mtp_depth=1)).eval()
    with torch.no_grad():  # sharper, random distributions (and an MTP head that disagrees with the main one)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    prompt = torch.tensor([[1, 4, 2]])
    exact = _exact_two_token_distribution(model, prompt, 1.0).flatten()
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(V * V)
    drafted = accepted = 0
    for _ in range(1200):
        out, st = generate_speculative_mtp_sample(model, prompt, 3, temperature=1.0, generator=g)
        counts[out[0, 3] * V + out[0, 4]] += 1
        drafted, accepted = drafted + st.drafted[0], accepted + st.accepted[0]
    assert 0.1 < accepted / drafted < 0.95  # both branches (accept and residual) ran many times
    assert chi2_pvalue(counts, exact) > ALPHA


def test_speculative_sampling_rejects_temperature_zero():
    torch.manual_seed(0)
    model = Decoder(DecoderConfig(vocab_size=8, n_layer=1, n_embd=16, n_head=2, n_kv_head=2, intermediate_size=24,
                                  max_seq_len=16, mtp_depth=1)).eval()
    with pytest.raises(ValueError, match="temperature"):
        generate_speculative_mtp_sample(model, torch.tensor([[1, 2]]), 3, temperature=0.0)
