"""Checkers for chapter 1's exercises (nanoGPT from scratch)."""
from __future__ import annotations

from typing import Callable

import torch

from nanoseek.exercises import checking, expect
from nanoseek.models.gpt import GPT, GPTConfig


def check_causal_mask(causal_mask: Callable[[int], torch.Tensor]) -> bool:
    def checks():
        for T in (1, 2, 5, 9):
            got = causal_mask(T)
            expect(isinstance(got, torch.Tensor), f"return a torch.Tensor, got {type(got).__name__}")
            expect(tuple(got.shape) == (T, T), f"for T={T} the mask must be ({T}, {T}), got {tuple(got.shape)}")
            expect(got.dtype == torch.bool, f"return a bool tensor (True = may attend), got {got.dtype}")
            want = torch.ones(T, T, dtype=torch.bool).tril()
            if not torch.equal(got, want):
                i, j = (got != want).nonzero()[0].tolist()
                expect(False, f"for T={T}, entry [{i}, {j}] is {bool(got[i, j])}: query {i} "
                              f"{'may' if want[i, j] else 'must not'} look at key {j}")

    return checking("causal mask", checks)


def check_top_k_filter(top_k_filter: Callable[[torch.Tensor, int], torch.Tensor]) -> bool:
    def checks():
        g = torch.Generator().manual_seed(0)
        logits = torch.randn(3, 10, generator=g)
        for k in (1, 3, 10):
            got = top_k_filter(logits.clone(), k)
            expect(isinstance(got, torch.Tensor) and got.shape == logits.shape,
                   f"return a tensor shaped like the logits {tuple(logits.shape)}")
            kept = torch.isfinite(got)
            expect(bool((kept.sum(-1) == k).all()), f"with k={k} keep exactly {k} logits per row, got "
                                                    f"{kept.sum(-1).tolist()}")
            top = logits.topk(k, dim=-1).indices
            expect(bool(kept.gather(-1, top).all()), f"with k={k} the kept logits must be the {k} largest")
            expect(torch.equal(got[kept], logits[kept]), "kept logits must keep their values")
            expect(bool((got[~kept] == float("-inf")).all()), "dropped logits must be -inf (probability 0)")

    return checking("top-k filter", checks)


def check_count_params(count_params: Callable[[int, int, int, int], int]) -> bool:
    def checks():
        for n_layer, n_embd, vocab, block in ((1, 8, 5, 4), (4, 128, 65, 64), (6, 384, 100, 256)):
            cfg = GPTConfig(n_layer=n_layer, n_head=4 if n_embd % 4 == 0 else 1, n_embd=n_embd,
                            vocab_size=vocab, block_size=block)
            want = GPT(cfg).num_params() if n_embd <= 128 else _formula(cfg)
            got = count_params(n_layer, n_embd, vocab, block)
            expect(got == want, f"n_layer={n_layer}, n_embd={n_embd}, vocab_size={vocab}, block_size={block}: "
                                f"expected {want:,} parameters, got {got!r}")

    return checking("parameter count", checks)


def _formula(cfg: GPTConfig) -> int:
    from nanoseek.models.gpt import gpt_num_params

    return gpt_num_params(cfg)


def check_train_step(train_step: Callable) -> bool:
    """The reader's `train_step(model, x, y, state, t, lr, weight_decay, betas, eps, grad_clip) -> float` against
    PyTorch's AdamW (decay on tensors of dim >= 2 only) and `clip_grad_norm_`, for several steps."""
    import copy

    from nanoseek.train import TrainConfig, make_optimizer

    def reference(model, batches, lr, wd, betas, clip):
        cfg = TrainConfig(lr=lr, weight_decay=wd, beta1=betas[0], beta2=betas[1], grad_clip=clip)
        opt, losses = make_optimizer(model, cfg), []
        for x, y in batches:
            opt.zero_grad(set_to_none=True)
            _, loss = model(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            losses.append(loss.item())
        return losses

    def checks():
        g = torch.Generator().manual_seed(0)
        # (lr, weight decay, betas, clip): a clip that bites hard, and one that does not bite at all
        for lr, wd, betas, clip in ((1e-2, 0.5, (0.9, 0.95), 0.05), (3e-3, 0.1, (0.8, 0.99), 1e3)):
            torch.manual_seed(0)
            # no biases: the key bias's gradient is exactly zero, and Adam would amplify its rounding noise
            model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, bias=False))
            want_model = copy.deepcopy(model)
            batches = [(torch.randint(0, 11, (4, 8), generator=g), torch.randint(0, 11, (4, 8), generator=g))
                       for _ in range(4)]
            want = reference(want_model, batches, lr, wd, betas, clip)
            state: dict = {}
            for t, (x, y) in enumerate(batches, start=1):
                got = train_step(model, x, y, state, t, lr, weight_decay=wd, betas=betas, eps=1e-8, grad_clip=clip)
                expect(isinstance(got, float), f"return the loss as a Python float (loss.item()), got {type(got).__name__}")
                expect(abs(got - want[t - 1]) < 1e-5, f"step {t}: loss {got:.6f}, expected {want[t - 1]:.6f} "
                                                      "(the forward pass, or an earlier update, differs)")
            for (name, p), q in zip(model.named_parameters(), want_model.parameters()):
                err = (p.detach() - q.detach()).abs().max().item()
                expect(err < 1e-6 + 1e-5 * q.abs().max().item(),
                       f"with lr={lr}, weight_decay={wd}, betas={betas}, grad_clip={clip}: after {len(batches)} "
                       f"steps parameter {name!r} is off by {err:.2e} from AdamW's (check the bias correction, "
                       "decoupled decay on matrices only, and clipping the whole gradient vector)")

    return checking("training step with AdamW", checks)
