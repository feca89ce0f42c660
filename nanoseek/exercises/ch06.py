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
        for E in (4, 16):
            bias = torch.randn(E, generator=g) * 0.1
            counts = torch.randint(0, 20, (E,), generator=g)
            counts[0] = counts.float().mean().round().long()  # some may sit exactly on the mean
            got = bias_step(bias.clone(), counts.clone(), 0.01)
            want = bias_update(bias, counts, 0.01)
            expect(isinstance(got, torch.Tensor) and got.shape == bias.shape,
                   f"return a tensor of shape {tuple(bias.shape)}")
            wrong_sign = torch.allclose(got, bias_update(bias, counts, -0.01), atol=1e-7)
            expect(not wrong_sign, "overloaded experts must get a *lower* bias (sign(mean − load), not load − mean)")
            expect(torch.allclose(got, want, atol=1e-7),
                   f"with counts {counts.tolist()} and gamma 0.01 expected {want.tolist()}, got {got.tolist()}"
                   " (the step is gamma·sign(mean − load): a fixed size, not proportional to the gap)")

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
