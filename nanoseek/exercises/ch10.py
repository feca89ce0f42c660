"""Checkers for chapter 10's exercises (RL for reasoning: GRPO)."""
from __future__ import annotations

import builtins
import time
from typing import Callable

import torch

from nanoseek.exercises import checking, expect
from nanoseek.rl.advantages import group_advantages
from nanoseek.rl.losses import clipped_pg_loss, k3_kl
from nanoseek.rl.rewards import countdown_check


def check_group_advantages(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> bool:
    """fn(rewards (N,), group_size) -> (N,) advantages, (r - group mean) / (group std + 1e-6), unbiased std."""

    def checks():
        r = torch.tensor([1.0, 0.0, 0.0, 0.0])
        got = fn(r.clone(), 4)
        expect(isinstance(got, torch.Tensor) and got.shape == r.shape,
               f"return a tensor of shape {tuple(r.shape)}, got {getattr(got, 'shape', type(got).__name__)}")
        expect(float(got[0]) > 0 > float(got[1]), "the correct answer (reward 1) must get a positive advantage, "
                                                  "the wrong ones a negative one")
        want = group_advantages(r, 4)
        expect(torch.allclose(got.float(), want, atol=1e-4),
               f"for rewards {r.tolist()} expected {[round(x, 4) for x in want.tolist()]}, got "
               f"{[round(x, 4) for x in got.tolist()]} (std is the unbiased one: divide by G - 1)")
        same = fn(torch.ones(4), 4)
        expect(bool(torch.isfinite(same).all()) and float(same.abs().max()) < 1e-4,
               "a group whose rewards are all equal must get advantage 0 (and no NaN)")
        g = torch.Generator().manual_seed(1)
        r = torch.randint(0, 2, (24,), generator=g).float()
        for G in (2, 4, 8):
            want = group_advantages(r, G)
            got = fn(r.clone(), G)
            expect(torch.allclose(got.float(), want, atol=1e-4),
                   f"with group_size={G}, groups are contiguous runs of {G} rewards; first mismatch at index "
                   f"{int((got.float() - want).abs().argmax())}")

    return checking("group advantages", checks)


def check_k3(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> bool:
    """fn(logp, ref_logp) -> per-token k3 estimate of KL(pi || pi_ref)."""

    def checks():
        g = torch.Generator().manual_seed(0)
        logp, ref = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
        got = fn(logp.clone(), ref.clone())
        expect(isinstance(got, torch.Tensor) and got.shape == logp.shape,
               f"return a per-token tensor of shape {tuple(logp.shape)}")
        expect(bool((got >= -1e-6).all()), "k3 is never negative (x - 1 - log x >= 0); some of yours are")
        expect(float(fn(logp, logp).abs().max()) < 1e-6, "k3 must be 0 when the policy equals the reference")
        want = k3_kl(logp, ref)
        expect(torch.allclose(got, want, atol=1e-5),
               "values differ from exp(ref - logp) - (ref - logp) - 1; check which log-ratio goes where")

    return checking("k3 KL estimator", checks)


def check_clipped_surrogate(fn: Callable[..., torch.Tensor]) -> bool:
    """fn(logp, old_logp, adv, clip_low, clip_high) -> per-token loss -min(rho A, clip(rho) A)."""

    def checks():
        old = torch.zeros(1, 4)
        logp = torch.log(torch.tensor([[1.5, 0.5, 1.5, 0.5]]))
        adv = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
        got = fn(logp, old, adv, 0.2, 0.3)
        expect(isinstance(got, torch.Tensor) and got.shape == logp.shape, "return a per-token (B, T) loss")
        want, _ = clipped_pg_loss(logp, old, adv, torch.ones(1, 4), 0.2, 0.3)
        for i, what in enumerate(["A>0, ratio 1.5 (clipped at 1+clip_high)", "A>0, ratio 0.5 (not clipped)",
                                  "A<0, ratio 1.5 (not clipped)", "A<0, ratio 0.5 (clipped at 1-clip_low)"]):
            expect(abs(float(got[0, i]) - float(want[0, i])) < 1e-5,
                   f"token {i} ({what}): expected {float(want[0, i]):.3f}, got {float(got[0, i]):.3f} "
                   f"(the loss is the *negative* of the objective)")

    return checking("clipped surrogate", checks)


TRICKY = [  # (answer, numbers, target, expected)
    ("6/(1-3/4)", [6, 1, 3, 4], 24, True), ("(6*4)*(4-3)", [6, 1, 3, 4], 24, False),
    ("6*4", [6, 1, 3, 4], 24, False), ("8*3", [8, 3], 24, True), ("3 * 8", [8, 3], 24, True),
    ("8*3*1", [8, 3], 24, False), ("2**3*3", [2, 3, 3], 24, False), ("(8)*(3)", [8, 3], 24, True),
    ("8/0+24", [8, 0, 24], 24, False), ("-8*-3", [8, 3], 24, False), ("8*3)", [8, 3], 24, False),
    ("((8*3)", [8, 3], 24, False), ("24", [24], 24, True), ("12+12", [12, 12], 24, True),
    ("__import__('os').getcwd()", [1], 1, False), ("9**9**9", [9, 9, 9], 1, False),
    ("(" * 5000 + "1" + ")" * 5000, [1], 1, False), ("1" * 100000, [1], 1, False),
    ("7/2*2", [7, 2, 2], 7, True),  # exact rationals: 7/2 is 3.5, not 3
]


def check_countdown_verifier(fn: Callable[[str, list[int], int], bool]) -> bool:
    """fn(answer, numbers, target) -> True iff answer uses each number once and equals target. No eval."""

    def checks():
        called: list[str] = []
        saved = {name: getattr(builtins, name) for name in ("eval", "exec", "compile")}

        def forbid(name):
            def f(*args, **kwargs):
                called.append(name)
                raise RuntimeError(f"{name} is not allowed in a reward function")
            return f

        for name in saved:
            setattr(builtins, name, forbid(name))
        try:
            for answer, numbers, target, want in TRICKY:
                t0 = time.perf_counter()
                try:
                    got = fn(answer, list(numbers), target)
                except (NotImplementedError, RuntimeError):
                    raise
                except Exception as err:
                    raise AssertionError(f"on {answer[:40]!r} your verifier raised {type(err).__name__}: {err}; "
                                         f"untrusted text must give False, never an exception") from None
                dt = time.perf_counter() - t0
                expect(not called, f"your verifier called {called[:1]}: parse the expression yourself")
                expect(got is want or got == want,
                       f"{answer[:40]!r} with numbers {numbers} and target {target}: expected {want}, got {got}")
                expect(dt < 0.5, f"{answer[:40]!r} took {dt:.2f} s; bound the input length first")
                assert countdown_check(answer, numbers, target) == want  # the reference agrees
        except AssertionError as err:
            expect(False, str(err))
        finally:
            for name, fn_ in saved.items():
                setattr(builtins, name, fn_)
        expect(not called, f"your verifier called {called[:1]}")

    return checking("Countdown verifier", checks)
