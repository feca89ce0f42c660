"""Chapter 11's checkers reject the plausible wrong answers and accept the right ones."""
import contextlib
import io
import math

import pytest
import torch
import torch.nn.functional as F

from nanoseek.exercises import ch11


def run(checker, fn) -> bool:
    with contextlib.redirect_stdout(io.StringIO()):
        return checker(fn)


def _kl(logp, logq):  # KL(p || q) per row
    return (logp.exp() * (logp - logq)).sum(-1)


# ---- exercise 1: temperature-scaled KD loss ----
def kd_right(s, t, T):
    return T * T * _kl(F.log_softmax(t / T, -1), F.log_softmax(s / T, -1)).mean()


KD_WRONG = {
    "direction swapped": lambda s, t, T: T * T * _kl(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1)).mean(),
    "T² missing": lambda s, t, T: _kl(F.log_softmax(t / T, -1), F.log_softmax(s / T, -1)).mean(),
    "T only on the teacher": lambda s, t, T: T * T * _kl(F.log_softmax(t / T, -1), F.log_softmax(s, -1)).mean(),
    "T instead of T²": lambda s, t, T: T * _kl(F.log_softmax(t / T, -1), F.log_softmax(s / T, -1)).mean(),
    "mean over vocabulary": lambda s, t, T: T * T * (F.log_softmax(t / T, -1).exp()
                                                     * (F.log_softmax(t / T, -1) - F.log_softmax(s / T, -1))).mean(),
    "cross-entropy, not KL": lambda s, t, T: T * T * -(F.softmax(t / T, -1) * F.log_softmax(s / T, -1)).sum(-1).mean(),
    "unimplemented": lambda s, t, T: (_ for _ in ()).throw(NotImplementedError),
}


def test_kd_loss_checker():
    assert run(ch11.check_kd_loss, kd_right)
    for name, wrong in KD_WRONG.items():
        assert not run(ch11.check_kd_loss, wrong), name


# ---- exercise 2: log-space mixture ----
def mix_right(log_q, log_p, beta):
    return torch.logaddexp(log_q + math.log(1 - beta), log_p + math.log(beta))


MIX_WRONG = {
    "probability space": lambda lq, lp, b: torch.log((1 - b) * lq.exp() + b * lp.exp()),
    "weights swapped": lambda lq, lp, b: torch.logaddexp(lq + math.log(b), lp + math.log(1 - b)),
    "mixture of log-probs": lambda lq, lp, b: (1 - b) * lq + b * lp,
    "max instead of logsumexp": lambda lq, lp, b: torch.maximum(lq + math.log(1 - b), lp + math.log(b)),
}


def test_log_mixture_checker():
    assert run(ch11.check_log_mixture, mix_right)
    for name, wrong in MIX_WRONG.items():
        assert not run(ch11.check_log_mixture, wrong), name


# ---- exercise 3: generalized JSD ----
def jsd_right(s, t, beta):
    lq, lp = F.log_softmax(s, -1), F.log_softmax(t, -1)
    if beta == 0:
        return _kl(lp, lq).mean()
    if beta == 1:
        return _kl(lq, lp).mean()
    lm = mix_right(lq, lp, beta)
    return (beta * _kl(lp, lm) + (1 - beta) * _kl(lq, lm)).mean()


def jsd_no_endpoints(s, t, beta):
    lq, lp = F.log_softmax(s, -1), F.log_softmax(t, -1)
    lm = torch.logaddexp(lq + math.log(1 - beta) if beta < 1 else lq - 1e30, lp + math.log(beta) if beta > 0 else lp - 1e30)
    return (beta * torch.nan_to_num(_kl(lp, lm)) + (1 - beta) * torch.nan_to_num(_kl(lq, lm))).mean()


def jsd_prob_space(s, t, beta):
    q, p = F.softmax(s, -1), F.softmax(t, -1)
    if beta in (0, 1):
        return jsd_right(s, t, beta)
    m = (1 - beta) * q + beta * p
    return (beta * (p * (p.log() - m.log())).sum(-1) + (1 - beta) * (q * (q.log() - m.log())).sum(-1)).mean()


def jsd_swapped(s, t, beta):
    return jsd_right(s, t, 1 - beta) if 0 < beta < 1 else jsd_right(s, t, beta)


def jsd_endpoints_swapped(s, t, beta):
    return jsd_right(s, t, {0.0: 1.0, 1.0: 0.0}.get(beta, beta))


@pytest.mark.parametrize("wrong", [jsd_no_endpoints, jsd_prob_space, jsd_swapped, jsd_endpoints_swapped])
def test_generalized_jsd_checker(wrong):
    assert run(ch11.check_generalized_jsd, jsd_right)
    assert not run(ch11.check_generalized_jsd, wrong)


# ---- exercise 4: rejection-sampling filter ----
def keep_right(samples, verifier, per_row):
    kept, seen, count = [], set(), {}
    for s in samples:
        key = s["row"]["key"]
        if (key, s["text"]) in seen or (per_row is not None and count.get(key, 0) >= per_row):
            continue
        if verifier(s["text"], s["row"]) == 1.0:
            kept.append(s)
            seen.add((key, s["text"]))
            count[key] = count.get(key, 0) + 1
    return kept


KEEP_WRONG = {
    "keeps everything": lambda samples, v, k: list(samples),
    "partial score kept": lambda samples, v, k: [s for s in samples if v(s["text"], s["row"]) > 0][: None],
    "no dedupe": lambda samples, v, k: [s for s in samples if v(s["text"], s["row"]) == 1.0]
    if k is None else keep_right(samples, v, k),
    "ignores per_row": lambda samples, v, k: keep_right(samples, v, None),
    "sorted, not input order": lambda samples, v, k: sorted(keep_right(samples, v, k), key=lambda s: s["text"]),
}


def test_keep_verified_checker():
    assert run(ch11.check_keep_verified, keep_right)
    for name, wrong in KEEP_WRONG.items():
        assert not run(ch11.check_keep_verified, wrong), name
