"""Checkers for chapter 6's exercises (DeepSeekMoE: routing, MaxVio, loss-free balancing)."""
from __future__ import annotations

from typing import Callable

import torch

from nanoseek.exercises import checking, expect
from nanoseek.nn.moe import bias_update, max_violation, route


def check_max_vio(max_vio: Callable[[torch.Tensor], float]) -> bool:
    """max_vio(counts (E,)) -> (max load − mean load) / mean load, as a float."""

    def checks():
        cases = [torch.tensor([4, 4, 4, 4]), torch.tensor([10, 2, 2, 2]), torch.tensor([0, 0, 9, 3]),
                 torch.randint(0, 50, (64,), generator=torch.Generator().manual_seed(0))]
        for counts in cases:
            got = max_vio(counts.clone())
            want = max_violation(counts)
            expect(isinstance(got, (float, int)) or (isinstance(got, torch.Tensor) and got.numel() == 1),
                   f"return a number, got {type(got).__name__}")
            got = float(got)
            shown = counts.tolist() if counts.numel() <= 8 else f"a batch of {counts.numel()} experts"
            expect(abs(got - want) < 1e-5, f"for counts {shown} MaxVio is {want:.4f}, got {got:.4f}"
                   + (" (did you divide by the max instead of the mean?)" if abs(got - want / (1 + want)) < 1e-5 else ""))

    return checking("MaxVio", checks)


def check_bias_step(bias_step: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> bool:
    """bias_step(bias (E,), counts (E,), gamma) -> the new bias after one loss-free update."""

    def checks():
        g = torch.Generator().manual_seed(1)
        cases = [torch.tensor([5, 3, 7, 5]), torch.tensor([2, 2, 2, 2])]  # experts exactly at the mean stay put
        cases += [torch.randint(0, 20, (E,), generator=g) for E in (4, 16)]
        for counts in cases:
            E = counts.numel()
            bias = torch.randn(E, generator=g) * 0.1
            got = bias_step(bias.clone(), counts.clone(), 0.01)
            want = bias_update(bias, counts, 0.01)
            expect(isinstance(got, torch.Tensor) and got.shape == bias.shape,
                   f"return a tensor of shape {tuple(bias.shape)}")
            wrong_sign = not torch.equal(want, bias) and torch.allclose(got, bias_update(bias, counts, -0.01), atol=1e-7)
            expect(not wrong_sign, "overloaded experts must get a *lower* bias (sign(mean − load), not load − mean)")
            expect(torch.allclose(got, want, atol=1e-7),
                   f"with counts {counts.tolist()} and gamma 0.01 expected {want.tolist()}, got {got.tolist()}"
                   " (the step is gamma·sign(mean − load): a fixed size, not proportional to the gap, and 0 for an "
                   "expert exactly at the mean)")

    return checking("loss-free bias step", checks)


def check_group_topk(group_topk: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> bool:
    """group_topk(scores (N, E), bias (E,), k, n_group, topk_group) -> (indices (N, k), weights (N, k)).

    V3 routing on sigmoid affinities `scores`: groups scored by the sum of their two best biased scores,
    top-k experts by biased score inside the kept groups, weights = unbiased scores normalized to sum to 1.
    """

    def checks():
        g = torch.Generator().manual_seed(2)
        for N, E, k, n_group, topk_group in ((5, 8, 2, 1, 1), (12, 16, 4, 4, 2), (20, 32, 6, 8, 3)):
            logits = torch.randn(N, E, generator=g)
            bias = torch.randn(E, generator=g) * 0.3
            scores = logits.sigmoid()
            got = group_topk(scores.clone(), bias.clone(), k, n_group, topk_group)
            expect(isinstance(got, tuple) and len(got) == 2, "return a tuple (indices, weights)")
            idx, w = got
            expect(tuple(idx.shape) == (N, k) and tuple(w.shape) == (N, k),
                   f"indices and weights must be ({N}, {k}), got {tuple(idx.shape)} and {tuple(w.shape)}")
            want_w, want_idx, _ = route(logits, k, bias=bias, n_group=n_group, topk_group=topk_group)
            got_sorted, order = idx.long().sort(-1)
            want_sorted, want_order = want_idx.sort(-1)
            if not torch.equal(got_sorted, want_sorted):
                t = int((got_sorted != want_sorted).any(-1).nonzero()[0])
                no_bias = route(logits, k, n_group=n_group, topk_group=topk_group)[1].sort(-1).values
                hint = " (choose with scores + bias)" if torch.equal(got_sorted, no_bias) else ""
                expect(False, f"n_group={n_group}, topk_group={topk_group}, k={k}: token {t} should pick experts "
                              f"{want_sorted[t].tolist()}, got {got_sorted[t].tolist()}{hint}")
            got_w = w.gather(-1, order)
            want_w = want_w.gather(-1, want_order)
            biased = torch.allclose(got_w / got_w.sum(-1, keepdim=True),
                                    (scores + bias).gather(-1, want_sorted) /
                                    (scores + bias).gather(-1, want_sorted).sum(-1, keepdim=True), atol=1e-5)
            expect(not biased or torch.allclose(got_w, want_w, atol=1e-5),
                   "the weights must come from the unbiased scores: the bias only chooses")
            expect(torch.allclose(got_w, want_w, atol=1e-5),
                   "weights must be the chosen experts' scores divided by their sum")

    return checking("group-limited top-k routing", checks)


def check_router_step(router_step: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> bool:
    """router_step(logits (N, E), bias (E,), k, gamma) -> (weights (N, k), indices (N, k), new_bias (E,)).

    The core of DeepSeek-V3's router and of loss-free balancing, in one training step: sigmoid affinities,
    the top-k of (affinity + bias) chosen, weights = the chosen *unbiased* affinities normalized to sum to 1,
    then the bias moved by gamma · sign(mean load − load) from the counts of this step's choices.
    """

    def want(logits, bias, k, gamma):
        w, idx, _ = route(logits, k, bias=bias)
        counts = torch.bincount(idx.flatten(), minlength=logits.shape[1])
        return w, idx, bias_update(bias, counts, gamma)

    def checks():
        g = torch.Generator().manual_seed(4)
        for N, E, k, gamma, bias_size in ((6, 4, 1, 0.01, 0.1), (16, 8, 2, 0.001, 0.5), (40, 16, 3, 0.05, 2.0)):
            logits = torch.randn(N, E, generator=g)
            bias = torch.randn(E, generator=g) * bias_size  # large enough to change choices
            got = router_step(logits.clone(), bias.clone(), k, gamma)
            expect(isinstance(got, tuple) and len(got) == 3, "return a tuple (weights, indices, new_bias)")
            w, idx, new_bias = got
            want_w, want_idx, want_bias = want(logits, bias, k, gamma)
            expect(tuple(w.shape) == (N, k) and tuple(idx.shape) == (N, k) and tuple(new_bias.shape) == (E,),
                   f"shapes must be ({N}, {k}), ({N}, {k}) and ({E},), got {tuple(w.shape)}, {tuple(idx.shape)}, "
                   f"{tuple(new_bias.shape)}")
            got_sorted, order = idx.long().sort(-1)
            want_sorted, want_order = want_idx.sort(-1)
            no_bias_idx = route(logits, k)[1].sort(-1).values
            expect(torch.equal(got_sorted, want_sorted),
                   "choose the top-k of sigmoid(logits) + bias" + (
                       " (you chose without the bias: the bias exists to change the choice)"
                       if torch.equal(got_sorted, no_bias_idx) else ""))
            got_w, want_w_sorted = w.gather(-1, order), want_w.gather(-1, want_order)
            s = logits.sigmoid()
            biased = (s + bias).gather(-1, want_sorted)
            expect(k == 1 or not torch.allclose(got_w, biased / biased.sum(-1, keepdim=True), atol=1e-5),
                   "the weights must come from the unbiased affinities: the bias only chooses")
            expect(not torch.allclose(got_w, s.gather(-1, want_sorted), atol=1e-5),
                   "normalize the chosen affinities to sum to 1 per token")
            expect(torch.allclose(got_w, want_w_sorted, atol=1e-5), "weights = chosen sigmoid affinities / their sum")
            expect(not torch.allclose(new_bias, bias_update(bias, torch.bincount(want_idx.flatten(), minlength=E),
                                                            -gamma), atol=1e-8),
                   "overloaded experts must get a *lower* bias: gamma · sign(mean − load)")
            expect(torch.allclose(new_bias, want_bias, atol=1e-8),
                   f"new bias: count how many tokens chose each expert this step, then bias + gamma · sign(mean − "
                   f"count); expected {[round(x, 4) for x in want_bias.tolist()]}, got "
                   f"{[round(x, 4) for x in new_bias.tolist()]}")

    return checking("V3 router step with loss-free bias update", checks)
