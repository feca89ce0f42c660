"""Checkers for chapter 9's exercises (pipeline parallelism: bubbles, the split backward, deadlocks)."""
from __future__ import annotations

from typing import Callable

import torch

from nanoseek.exercises import checking, expect
from nanoseek.parallel import schedules as S
from nanoseek.parallel.schedules import Op, Schedule
from nanoseek.parallel.simulator import Costs, Deadlock, simulate


def check_rank_idle(rank_idle: Callable[[list[tuple[float, float]], float], float]) -> bool:
    """rank_idle(intervals [(start, end), ...] of one rank's chunks, makespan) -> the rank's idle time."""

    def checks():
        cases = [([(0.0, 1.0), (2.0, 3.0)], 4.0, 2.0), ([(0.5, 2.0)], 2.0, 0.5), ([], 3.0, 3.0)]
        for intervals, makespan, want in cases:
            got = float(rank_idle(list(intervals), makespan))
            expect(abs(got - want) < 1e-9, f"intervals {intervals}, makespan {makespan}: idle is {want}, got {got}"
                   + (" (the time before the first chunk is idle too)" if intervals and
                      abs(got - (want - intervals[0][0])) < 1e-9 else ""))
        for P, M, c in ((4, 8, Costs(1, 2, 0)), (8, 16, Costs(1.5, 1, 0.5))):
            r = simulate(S.one_f_one_b(P, M), c)
            for rank, tl in enumerate(r.timeline):
                got = float(rank_idle([(e.start, e.end) for e in tl], r.makespan))
                want = (P - 1) * (c.F + c.B + c.W)
                expect(abs(got - want) < 1e-9, f"1F1B with {P} ranks, rank {rank}: idle should be "
                                               f"(P-1)(F+B+W) = {want}, got {got}")

    return checking("idle time of a rank", checks)


def check_split_linear_backward(split_backward: Callable) -> bool:
    """split_backward(x (N, in), weight (out, in), grad_out (N, out), store: list) -> grad_input (N, in),
    appending to `store` a closure that adds dW = grad_outᵀ x into weight.grad (creating it if None)."""

    def checks():
        g = torch.Generator().manual_seed(0)
        for n, d_in, d_out in ((5, 3, 4), (7, 6, 2)):
            x = torch.randn(n, d_in, generator=g, dtype=torch.float64)
            w = torch.randn(d_out, d_in, generator=g, dtype=torch.float64, requires_grad=True)
            dy = torch.randn(n, d_out, generator=g, dtype=torch.float64)
            xr = x.clone().requires_grad_()
            wr = w.detach().clone().requires_grad_()
            (xr @ wr.T).backward(dy)
            store: list = []
            dx = split_backward(x, w, dy, store)
            expect(isinstance(dx, torch.Tensor) and dx.shape == x.shape,
                   f"grad_input must have x's shape {tuple(x.shape)}, got "
                   f"{tuple(dx.shape) if isinstance(dx, torch.Tensor) else type(dx).__name__}")
            expect(torch.allclose(dx, xr.grad), "grad_input is wrong (dy @ W: (N, out) @ (out, in))")
            expect(w.grad is None, "weight.grad was set during B: the weight gradient must wait in the store")
            expect(len(store) >= 1 and all(callable(f) for f in store), "append the W closure to `store`")
            for f in store:
                f()
            expect(w.grad is not None and w.grad.shape == w.shape, "running the W closure must fill weight.grad")
            expect(torch.allclose(w.grad, wr.grad), "weight.grad is wrong (dW = grad_outᵀ x, shape (out, in))")
            store2: list = []
            split_backward(x, w, dy, store2)
            for f in store2:
                f()
            expect(torch.allclose(w.grad, 2 * wr.grad),
                   "a second W must add to weight.grad (tied weights and micro-batches accumulate), not overwrite")

    return checking("deferred weight gradient", checks)


def _cases() -> list[tuple[Schedule, bool]]:
    out = [(S.make(n, P, M), False) for n, P, M in (("1f1b", 4, 8), ("zb1p", 2, 4), ("dualpipe", 4, 8),
                                                      ("dualpipev", 2, 4), ("gpipe", 3, 3))]
    s = S.one_f_one_b(2, 2)   # rank 0 runs a backward of micro-batch 1 before its own forward of it
    out.append((Schedule("broken", 2, 2, 2, [[Op("F", 0, 0), Op("BW", 0, 1), Op("F", 0, 1), Op("BW", 0, 0)],
                                            s.ops[1]], s.placement), True))
    s = S.one_f_one_b(2, 2)   # the last stage runs micro-batch 1 before 0, rank 0 waits for B of 0 first
    out.append((Schedule("swapped", 2, 2, 2, [s.ops[0], [Op("F", 1, 1), Op("BW", 1, 1), Op("F", 1, 0),
                                                         Op("BW", 1, 0)]], s.placement), False))
    s = S.one_f_one_b(2, 2)   # cross wait: rank 1 wants F1.1 before F1.0, rank 0 sends 1 only after B0
    out.append((Schedule("crossed", 2, 2, 2, [[Op("F", 0, 0), Op("BW", 0, 0), Op("F", 0, 1), Op("BW", 0, 1)],
                                             [Op("F", 1, 1), Op("BW", 1, 1), Op("F", 1, 0), Op("BW", 1, 0)]],
                        s.placement), True))
    z = S.zb1p(2, 2)          # a W before its own B on the same rank
    ops1 = [op for op in z.ops[1]]
    i = next(k for k, op in enumerate(ops1) if op.kind == "W")
    j = next(k for k, op in enumerate(ops1) if op.kind == "B" and op.mb == ops1[i].mb)
    ops1[i], ops1[j] = ops1[j], ops1[i]
    out.append((Schedule("w-first", 2, 2, 2, [z.ops[0], ops1], z.placement), True))
    return out


def check_deadlocks(deadlocks: Callable[[Schedule], bool]) -> bool:
    """deadlocks(schedule) -> True if executing each rank's ops in order can get stuck."""

    def checks():
        for s, _ in _cases():
            try:
                simulate(s)
                want = False
            except Deadlock:
                want = True
            got = bool(deadlocks(s))
            expect(got == want, f"{s.name} with {s.n_ranks} ranks, {s.n_micro} micro-batches: "
                                f"{'deadlocks' if want else 'runs to the end'}, you said "
                                f"{'deadlock' if got else 'no deadlock'}")

    return checking("deadlock finder", checks)
