"""Checkers for chapter 11's exercises (knowledge distillation)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from nanoseek.distill import forward_kl, generalized_jsd, keep_verified, log_mixture, reverse_kl
from nanoseek.exercises import checking, expect


def _close(got, want, tol=1e-5) -> bool:
    return isinstance(got, torch.Tensor) and got.numel() == 1 and abs(float(got) - float(want)) <= tol * max(1.0, abs(float(want)))


def check_kd_loss(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> bool:
    """fn(student_logits (N, V), teacher_logits (N, V), T) -> T² · mean over rows of KL(p_T ‖ q_T)."""

    def checks():
        g = torch.Generator().manual_seed(0)
        s, t = torch.randn(6, 10, generator=g) * 2, torch.randn(6, 10, generator=g) * 2
        got = fn(s.clone(), t.clone(), 1.0)
        expect(isinstance(got, torch.Tensor) and got.numel() == 1, "return one number (a 0-d tensor), the mean "
                                                                   "over rows")
        expect(float(fn(s, s.clone(), 2.0).abs()) < 1e-5, "the loss must be 0 when student and teacher agree")
        want = forward_kl(s, t)
        if not _close(got, want) and _close(got, reverse_kl(s, t)):
            expect(False, "you computed KL(student ‖ teacher); distillation's classic loss is KL(teacher ‖ student):"
                          " the teacher's probabilities weight the log-ratio")
        expect(_close(got, want), f"at T = 1 expected {float(want):.5f}, got {float(got):.5f} (sum over the "
                                  "vocabulary, mean over rows)")
        for T in (2.0, 4.0):
            got = fn(s.clone(), t.clone(), T)
            want = forward_kl(s, t, temperature=T)
            if _close(got, want / T**2):
                expect(False, f"at T = {T} your loss is {T**2:g}x too small: Hinton's T² factor is missing (soft "
                              "targets' gradients shrink as 1/T², the factor restores them)")
            expect(_close(got, want), f"at T = {T} expected {float(want):.5f}, got {float(got):.5f}; both "
                                      "student and teacher logits are divided by T before the softmax")

    return checking("temperature-scaled KD loss", checks)


def check_log_mixture(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> bool:
    """fn(log_q, log_p, beta) -> log((1 − β)·q + β·p), computed in log space."""

    def checks():
        g = torch.Generator().manual_seed(1)
        log_q = F.log_softmax(torch.randn(4, 9, generator=g), -1)
        log_p = F.log_softmax(torch.randn(4, 9, generator=g), -1)
        got = fn(log_q.clone(), log_p.clone(), 0.3)
        expect(isinstance(got, torch.Tensor) and got.shape == log_q.shape, f"return a tensor of shape "
                                                                            f"{tuple(log_q.shape)}")
        want = log_mixture(log_q, log_p, 0.3)
        if not torch.allclose(got, want, atol=1e-5) and torch.allclose(got, log_mixture(log_q, log_p, 0.7), atol=1e-5):
            expect(False, "the weights are swapped: TRL's β weighs the teacher, m = (1 − β)·student + β·teacher")
        expect(torch.allclose(got, want, atol=1e-5), "values differ from log((1 − β)·q + β·p)")
        # both distributions far below float32's smallest number: exp() underflows to 0 and log(0) = -inf
        tiny_q = torch.tensor([[0.0, -300.0, -800.0]])
        tiny_p = torch.tensor([[-300.0, 0.0, -900.0]])
        got = fn(tiny_q, tiny_p, 0.5)
        want = log_mixture(tiny_q, tiny_p, 0.5)
        expect(bool(torch.isfinite(got).all()), "a log-probability of -800 in both gave -inf: the mixture was built "
                                                "in probability space; use torch.logsumexp / torch.logaddexp on "
                                                "log q + log(1 − β) and log p + log β")
        expect(torch.allclose(got, want, atol=1e-3), f"expected {want.tolist()}, got {got.tolist()}")

    return checking("JSD mixture in log space", checks)


def check_generalized_jsd(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> bool:
    """fn(student_logits (N, V), teacher_logits (N, V), beta) -> GKD's generalized JSD, mean over rows, with
    β = 0 forward KL(teacher ‖ student) and β = 1 reverse KL(student ‖ teacher)."""

    def checks():
        g = torch.Generator().manual_seed(2)
        s, t = torch.randn(5, 12, generator=g) * 2, torch.randn(5, 12, generator=g) * 2
        for beta in (0.5, 0.2, 0.9):
            got = fn(s.clone(), t.clone(), beta)
            expect(isinstance(got, torch.Tensor) and got.numel() == 1, "return one number, the mean over rows")
            want = generalized_jsd(s, t, beta)
            if not _close(got, want) and _close(got, generalized_jsd(s, t, 1 - beta)):
                expect(False, f"at β = {beta} you computed the JSD of 1 − β: β weighs the teacher in the mixture and "
                              "KL(teacher ‖ m) in the sum")
            expect(_close(got, want), f"at β = {beta} expected {float(want):.5f}, got {float(got):.5f}")
        got0, got1 = fn(s.clone(), t.clone(), 0.0), fn(s.clone(), t.clone(), 1.0)
        expect(abs(float(got0)) > 1e-3 and abs(float(got1)) > 1e-3,
               "at β = 0 and β = 1 the interior formula is 0 (the mixture becomes one of the two): these endpoints "
               "are defined separately, as forward and reverse KL")
        expect(_close(got0, forward_kl(s, t)), "β = 0 must give the forward KL(teacher ‖ student)")
        expect(_close(got1, reverse_kl(s, t)), "β = 1 must give the reverse KL(student ‖ teacher)")
        peaked_s, peaked_t = torch.zeros(2, 50), torch.zeros(2, 50)
        peaked_s[:, 0], peaked_t[:, 1] = 300.0, 300.0
        got = fn(peaked_s, peaked_t, 0.5)
        expect(bool(torch.isfinite(got)) and _close(got, generalized_jsd(peaked_s, peaked_t, 0.5), 1e-3),
               "on very peaked logits the result is not finite or wrong: build the mixture in log space")

    return checking("generalized JSD", checks)


def check_keep_verified(fn: Callable) -> bool:
    """fn(samples [{"row", "text"}], verifier(text, row) -> float, per_row) -> the kept samples, in order."""

    def checks():
        rows = [{"key": "a", "answer": "12"}, {"key": "b", "answer": "7"}, {"key": "c", "answer": "5"}]
        verifier = lambda text, row: (1.0 if text.split("|")[-1] == row["answer"] else 0.0) + (0.1 if "|" in text else 0.0)  # noqa: E731, E501
        verifier01 = lambda text, row: min(1.0, verifier(text, row))  # noqa: E731
        samples = [{"row": rows[0], "text": "x|12"}, {"row": rows[0], "text": "12"}, {"row": rows[0], "text": "y|12"},
                   {"row": rows[1], "text": "x|8"}, {"row": rows[1], "text": "7"}, {"row": rows[1], "text": "7"},
                   {"row": rows[2], "text": "z|4"}]
        got = fn([dict(s) for s in samples], verifier01, None)
        expect(isinstance(got, list), "return a list of the kept samples")
        want = keep_verified(samples, verifier01)
        expect([s["text"] for s in got] != [s["text"] for s in samples], "you kept everything: a sample is kept "
                                                                          "only when the verifier says it is right")
        expect(all(s["text"] != "x|8" for s in got), "a sample with the right format but a wrong answer scores "
                                                     "0.1 here: anything less than 1 is a reject")
        dup = [s["text"] for s in got if s["row"]["key"] == "b"]
        expect(dup.count("7") <= 1, "the same text for the same problem twice: keep distinct traces only")
        expect([(s["row"]["key"], s["text"]) for s in got] == [(s["row"]["key"], s["text"]) for s in want],
               f"expected {[s['text'] for s in want]}, got {[s['text'] for s in got]} (keep the input order)")
        got = fn([dict(s) for s in samples], verifier01, 1)
        want = keep_verified(samples, verifier01, per_row=1)
        expect([s["text"] for s in got] == [s["text"] for s in want],
               f"with per_row=1 expected {[s['text'] for s in want]}, got {[s['text'] for s in got]}: at most one "
               "kept trace per problem, the first that passes")

    return checking("rejection-sampling filter", checks)
