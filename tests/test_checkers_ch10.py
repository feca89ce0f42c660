"""Chapter 10's checkers reject plausible wrong solutions (and accept the right ones)."""
from __future__ import annotations

import contextlib
import io
import re
from fractions import Fraction

import pytest
import torch

from nanoseek.exercises import ch10
from nanoseek.rl.advantages import group_advantages
from nanoseek.rl.losses import clipped_pg_loss, k3_kl
from nanoseek.rl.rewards import countdown_check


def passes(checker, fn) -> bool:
    with contextlib.redirect_stdout(io.StringIO()):
        return checker(fn)


def _adv(normalize=True, unbiased=True, eps=1e-6, nan_on_equal=False):
    def fn(r, G):
        x = r.float().view(-1, G)
        a = x - x.mean(1, keepdim=True)
        if normalize:
            sd = x.std(1, unbiased=unbiased, keepdim=True)
            a = a / sd if nan_on_equal else a / (sd + eps)
        return a.view(-1)
    return fn


ADV_WRONG = {
    "no std division": _adv(normalize=False),
    "biased std": _adv(unbiased=False),
    "NaN on an all-equal group": _adv(nan_on_equal=True),
    "sign flipped": lambda r, G: -group_advantages(r, G),
    "groups interleaved, not contiguous": lambda r, G: group_advantages(r.view(G, -1).t().reshape(-1), G)
                                                     .view(-1, G).t().reshape(-1),
    "mean over the whole batch": lambda r, G: (r - r.mean()) / (r.std() + 1e-6),
}


@pytest.mark.parametrize("name", ADV_WRONG)
def test_group_advantages_rejects(name):
    assert not passes(ch10.check_group_advantages, ADV_WRONG[name])


K3_WRONG = {
    "k1 (log-ratio)": lambda lp, ref: lp - ref,
    "ratio direction swapped": lambda lp, ref: torch.exp(lp - ref) - (lp - ref) - 1,
    "missing the -1": lambda lp, ref: torch.exp(ref - lp) - (ref - lp),
    "k2 (half squared log-ratio)": lambda lp, ref: 0.5 * (lp - ref) ** 2,
}


@pytest.mark.parametrize("name", K3_WRONG)
def test_k3_rejects(name):
    assert not passes(ch10.check_k3, K3_WRONG[name])


def _surrogate(kind):
    def fn(logp, old, adv, lo, hi):
        ratio = torch.exp(logp - old)
        if kind == "symmetric clip":
            clipped = torch.clamp(ratio, 1 - lo, 1 + lo) * adv
        elif kind == "clip ranges swapped":
            clipped = torch.clamp(ratio, 1 - hi, 1 + lo) * adv
        else:
            clipped = torch.clamp(ratio, 1 - lo, 1 + hi) * adv
        unclipped = ratio * adv
        if kind == "max instead of min":
            return -torch.maximum(unclipped, clipped)
        if kind == "objective, not loss":
            return torch.minimum(unclipped, clipped)
        if kind == "no clip":
            return -unclipped
        return -torch.minimum(unclipped, clipped)
    return fn


SURR_WRONG = ["symmetric clip", "clip ranges swapped", "max instead of min", "objective, not loss", "no clip"]


@pytest.mark.parametrize("kind", SURR_WRONG)
def test_clipped_surrogate_rejects(kind):
    assert not passes(ch10.check_clipped_surrogate, _surrogate(kind))


def _float_verifier(answer, numbers, target):  # floats instead of exact rationals, and a lenient parser
    if len(answer) > 200:
        return False
    nums = [int(t) for t in re.findall(r"\d+", answer)]
    if sorted(nums) != sorted(numbers) or not re.fullmatch(r"[\d+\-*/() ]+", answer) or "**" in answer:
        return False
    try:
        return abs(float(countdown_value(answer)) - target) < 1e-9
    except Exception:
        return False


def countdown_value(expr):  # a tiny shunting-free evaluator for the wrong solution: integer division
    return Fraction(int(eval_int(expr)))


def eval_int(expr):
    tokens = re.findall(r"\d+|[-+*/()]", expr)
    pos = 0

    def atom():
        nonlocal pos
        t = tokens[pos]; pos += 1
        if t == "(":
            v = add(); pos += 1
            return v
        return int(t)

    def mul():
        nonlocal pos
        v = atom()
        while pos < len(tokens) and tokens[pos] in "*/":
            op = tokens[pos]; pos += 1
            v = v * atom() if op == "*" else v // atom()  # integer division: 7/2*2 = 6, wrong
        return v

    def add():
        nonlocal pos
        v = mul()
        while pos < len(tokens) and tokens[pos] in "+-":
            op = tokens[pos]; pos += 1
            v = v + mul() if op == "+" else v - mul()
        return v

    return add()


VERIFIER_WRONG = {
    "integer division": _float_verifier,
    "numbers not checked": lambda a, n, t: countdown_check(a, sorted(set(int(x) for x in re.findall(r"\d+", a))) or n, t)
    if len(a) < 200 else False,
    "value not checked": lambda a, n, t: len(a) < 200 and sorted(int(x) for x in re.findall(r"\d+", a)) == sorted(n),
}


@pytest.mark.parametrize("name", VERIFIER_WRONG)
def test_countdown_verifier_rejects(name):
    assert not passes(ch10.check_countdown_verifier, VERIFIER_WRONG[name])


def test_references_pass():
    assert passes(ch10.check_group_advantages, group_advantages)
    assert passes(ch10.check_k3, k3_kl)
    assert passes(ch10.check_clipped_surrogate,
                  lambda lp, old, adv, lo, hi: clipped_pg_loss(lp, old, adv, torch.ones_like(lp), lo, hi)[0])
    assert passes(ch10.check_countdown_verifier, countdown_check)
