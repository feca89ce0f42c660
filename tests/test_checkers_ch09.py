"""Chapter 9's checkers reject plausible wrong answers and accept the right ones."""
import torch

from nanoseek.exercises.ch09 import check_deadlocks, check_rank_idle, check_split_linear_backward


def test_rank_idle():
    right = lambda iv, T: T - sum(e - s for s, e in iv)
    assert check_rank_idle(right)
    assert not check_rank_idle(lambda iv, T: sum(b[0] - a[1] for a, b in zip(iv, iv[1:])))  # gaps between only
    assert not check_rank_idle(lambda iv, T: T - sum(e - s for s, e in iv) - (iv[0][0] if iv else 0))
    assert not check_rank_idle(lambda iv, T: sum(e - s for s, e in iv))  # busy, not idle


def _right_split(x, w, dy, store):
    def weight_grad():
        g = dy.T @ x
        if w.grad is None:
            w.grad = g
        else:
            w.grad += g
    store.append(weight_grad)
    return dy @ w.detach()


def test_split_linear_backward():
    assert check_split_linear_backward(_right_split)

    def eager(x, w, dy, store):   # computes W inside B
        w.grad = dy.T @ x
        return dy @ w.detach()

    def transposed(x, w, dy, store):   # x^T dy: (in, out), the transpose of dW
        store.append(lambda: setattr(w, "grad", x.T @ dy))
        return dy @ w.detach()

    def overwrites(x, w, dy, store):
        store.append(lambda: setattr(w, "grad", dy.T @ x))
        return dy @ w.detach()

    def wrong_dx(x, w, dy, store):
        store.append(lambda: setattr(w, "grad", dy.T @ x))
        return (dy @ w.detach()) * 0.5

    for wrong in (eager, transposed, overwrites, wrong_dx):
        assert not check_split_linear_backward(wrong), wrong.__name__


def _right_deadlocks(s):
    done, pos = set(), [0] * s.n_ranks
    while True:
        moved = False
        for r in range(s.n_ranks):
            while pos[r] < len(s.ops[r]):
                op = s.ops[r][pos[r]]
                ready = True
                for p in op.parts():
                    if p.kind == "F":
                        need = [("F", p.stage - 1, p.mb)] if p.stage > 0 else []
                    elif p.kind in ("B", "BW"):
                        need = [("F", p.stage, p.mb)] + ([("B", p.stage + 1, p.mb)] if p.stage < s.n_stages - 1 else [])
                    else:
                        need = [("B", p.stage, p.mb)]
                    ready = ready and all(n in done for n in need)
                if not ready:
                    break
                for p in op.parts():
                    done.add(("B" if p.kind == "BW" else p.kind, p.stage, p.mb))
                pos[r] += 1
                moved = True
        if all(pos[r] == len(s.ops[r]) for r in range(s.n_ranks)):
            return False
        if not moved:
            return True


def test_deadlocks():
    assert check_deadlocks(_right_deadlocks)
    assert not check_deadlocks(lambda s: False)
    assert not check_deadlocks(lambda s: True)

    def forwards_only(s):  # ignores what a backward waits for
        done, pos = set(), [0] * s.n_ranks
        for _ in range(10 * sum(map(len, s.ops))):
            for r in range(s.n_ranks):
                if pos[r] < len(s.ops[r]):
                    op = s.ops[r][pos[r]]
                    if op.kind == "F" and op.stage > 0 and ("F", op.stage - 1, op.mb) not in done:
                        continue
                    done.add((op.kind, op.stage, op.mb))
                    pos[r] += 1
        return any(pos[r] < len(s.ops[r]) for r in range(s.n_ranks))

    assert not check_deadlocks(forwards_only)
