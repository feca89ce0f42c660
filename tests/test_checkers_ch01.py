"""Chapter 1's checkers catch plausible wrong solutions (each must fail) and pass the right one."""
from __future__ import annotations

import contextlib
import io

import pytest
import torch

from nanoseek.exercises import ch01


def run(checker, fn) -> tuple[bool, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ok = checker(fn)
    return ok, out.getvalue()


# ---------------------------------------------------------------------------------------------- causal mask
def mask_right(T):
    return torch.ones(T, T, dtype=torch.bool).tril()


MASK_WRONG = {
    "upper triangle": lambda T: torch.ones(T, T, dtype=torch.bool).triu(),
    "no diagonal": lambda T: torch.ones(T, T, dtype=torch.bool).tril(-1),
    "float mask": lambda T: torch.ones(T, T).tril(),
    "additive -inf mask": lambda T: torch.zeros(T, T).masked_fill(~mask_right(T), float("-inf")),
    "inverted (True = masked)": lambda T: ~mask_right(T),
    "all ones": lambda T: torch.ones(T, T, dtype=torch.bool),
    "fixed size": lambda T: mask_right(5),
    "numpy list": lambda T: mask_right(T).tolist(),
}


# ------------------------------------------------------------------------------------------------ top-k
def topk_right(logits, k):
    kth = logits.topk(k, dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


TOPK_WRONG = {
    "drops the k-th (<=)": lambda l, k: l.masked_fill(l <= l.topk(k, dim=-1).values[:, -1:], float("-inf")),
    "keeps the smallest": lambda l, k: l.masked_fill(l > (-l).topk(k, dim=-1).values[:, -1:].neg(), float("-inf")),
    "zeros instead of -inf": lambda l, k: l.masked_fill(l < l.topk(k, dim=-1).values[:, -1:], 0.0),
    "k+1 kept": lambda l, k: topk_right(l, min(k + 1, l.shape[-1])),
    "returns sorted values": lambda l, k: l.topk(k, dim=-1).values,
    "top-k over the batch dim": lambda l, k: l.masked_fill(l < l.topk(min(k, l.shape[0]), dim=0).values[-1:], float("-inf")),
    "probabilities not logits": lambda l, k: topk_right(l, k).softmax(-1),
}


# ------------------------------------------------------------------------------------------ parameter count
def count_right(n_layer, n_embd, vocab_size, block_size):
    C = n_embd
    return n_layer * (12 * C * C + 13 * C) + vocab_size * C + block_size * C + 2 * C


COUNT_WRONG = {
    "no biases": lambda L, C, V, T: L * (12 * C * C + 4 * C) + V * C + T * C + 2 * C,
    "untied head": lambda L, C, V, T: count_right(L, C, V, T) + V * C,
    "no position table": lambda L, C, V, T: count_right(L, C, V, T) - T * C,
    "no final LayerNorm": lambda L, C, V, T: count_right(L, C, V, T) - 2 * C,
    "12C² per layer only": lambda L, C, V, T: L * 12 * C * C + V * C + T * C,
    "MLP 2x wide": lambda L, C, V, T: count_right(L, C, V, T) - L * (4 * C * C + 2 * C),
    "float": lambda L, C, V, T: float(count_right(L, C, V, T)) + 0.5,
}


# ------------------------------------------------------------------------------------------ training step
def make_step(*, bias_correction=True, decoupled=True, decay_all=False, clip="global", zero_grad=True,
              eps_inside=False, t_offset=0, returns_tensor=False, no_decay=False, lr_scale=1.0, betas_swap=False):
    def train_step(model, x, y, state, t, lr, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8, grad_clip=1.0):
        if zero_grad:
            for p in model.parameters():
                p.grad = None
        _, loss = model(x, y)
        loss.backward()
        params = [p for p in model.parameters() if p.grad is not None]
        grads = [p.grad for p in params]
        if clip == "global":
            norm = torch.sqrt(sum((g ** 2).sum() for g in grads)).item()
            grads = [g * min(1.0, grad_clip / (norm + 1e-6)) for g in grads]
        elif clip == "per-tensor":
            grads = [g * min(1.0, grad_clip / (g.norm().item() + 1e-6)) for g in grads]
        elif clip == "value":
            grads = [g.clamp(-grad_clip, grad_clip) for g in grads]
        b1, b2 = (betas[1], betas[0]) if betas_swap else betas
        tt = t + t_offset
        with torch.no_grad():
            for p, g in zip(params, grads):
                if not decoupled and (p.dim() >= 2 or decay_all):
                    g = g + weight_decay * p
                m, v = state.setdefault(p, (torch.zeros_like(p), torch.zeros_like(p)))
                m.mul_(b1).add_((1 - b1) * g)
                v.mul_(b2).add_((1 - b2) * g * g)
                if bias_correction:
                    m_hat, v_hat = m / (1 - b1 ** tt), v / (1 - b2 ** tt)
                else:
                    m_hat, v_hat = m, v
                if decoupled and not no_decay and (p.dim() >= 2 or decay_all):
                    p.mul_(1 - lr * weight_decay)
                denom = (v_hat + eps).sqrt() if eps_inside else v_hat.sqrt() + eps
                p.sub_(lr * lr_scale * m_hat / denom)
        return loss.detach() if returns_tensor else loss.item()

    return train_step


STEP_WRONG = {
    "no bias correction": make_step(bias_correction=False),
    "Adam with L2 (decay in the gradient)": make_step(decoupled=False),
    "decay on biases and norms too": make_step(decay_all=True),
    "no weight decay": make_step(no_decay=True),
    "no clipping": make_step(clip=None),
    "clipping each tensor on its own": make_step(clip="per-tensor"),
    "clipping values, not the norm": make_step(clip="value"),
    "gradients never zeroed": make_step(zero_grad=False),
    "eps inside the square root": make_step(eps_inside=True),
    "step counted from 0 + 1 twice": make_step(t_offset=1),
    "betas swapped": make_step(betas_swap=True),
    "returns a tensor": make_step(returns_tensor=True),
    "lr off by 10%": make_step(lr_scale=1.1),
}


CASES = [
    ("causal mask", ch01.check_causal_mask, mask_right, MASK_WRONG),
    ("top-k", ch01.check_top_k_filter, topk_right, TOPK_WRONG),
    ("count params", ch01.check_count_params, count_right, COUNT_WRONG),
    ("train step", ch01.check_train_step, make_step(), STEP_WRONG),
]


@pytest.mark.parametrize("name, checker, right", [(n, c, r) for n, c, r, _ in CASES], ids=[c[0] for c in CASES])
def test_right_solution_passes(name, checker, right):
    ok, printed = run(checker, right)
    assert ok and "✅" in printed, printed


@pytest.mark.parametrize("checker, wrong", [pytest.param(c, fn, id=f"{n}: {w}") for n, c, _, ws in CASES
                                             for w, fn in ws.items()])
def test_wrong_solution_fails(checker, wrong):
    ok, printed = run(checker, wrong)
    assert not ok and "❌" in printed and "✅" not in printed, printed


def test_unimplemented_stub_fails_without_raising():
    def stub(*args, **kwargs):
        raise NotImplementedError

    for _, checker, _, _ in CASES:
        ok, printed = run(checker, stub)
        assert not ok and "not implemented" in printed
