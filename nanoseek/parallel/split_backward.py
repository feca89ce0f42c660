"""The backward split in two (chapter 9): B, the gradient for the input, now; W, the gradient for the
weights, later.

For y = x Wᵀ + b, the backward has two independent products: dx = dy W (needed upstream at once, it is on
the pipeline's critical path) and dW = dyᵀ x, db = Σ dy (needed only by the optimizer step). `SplitLinear`
computes dx in autograd's backward and hands dW, db to a `WeightGradStore`, which either runs them at once
(disabled, the ordinary backward) or queues them until `pop` runs them: this is the zero-bubble paper's
B/W split, done the way the DualPipe repository's example does it. Defined in chapter 9.
"""
from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager
from typing import Callable, Hashable

import torch
import torch.nn.functional as F
from torch import nn


class WeightGradStore:
    """Deferred weight-gradient work. While `enabled`, `put` collects closures; `flush(key)` files the
    collected ones under a chunk's key; `pop(key)` (or the oldest, FIFO, without a key) runs them."""

    def __init__(self) -> None:
        self.enabled = False
        self._cache: list[Callable[[], None]] = []
        self._queue: OrderedDict[Hashable, list[Callable[[], None]]] = OrderedDict()

    def put(self, fn: Callable[[], None]) -> None:
        if self.enabled:
            self._cache.append(fn)
        else:
            fn()

    def flush(self, key: Hashable = None) -> None:
        if key is None:
            key = object()
        if key in self._queue:
            raise ValueError(f"WeightGradStore.flush: key={key!r} is already queued")
        self._queue[key] = self._cache
        self._cache = []

    def pop(self, key: Hashable = None) -> None:
        if not self._queue:
            raise ValueError("WeightGradStore.pop: nothing queued")
        if key is None:
            _, funcs = self._queue.popitem(last=False)
        elif key not in self._queue:
            raise ValueError(f"WeightGradStore.pop: key={key!r} is not queued (queued: {list(self._queue)})")
        else:
            funcs = self._queue.pop(key)
        for fn in funcs:
            fn()

    def __len__(self) -> int:
        return len(self._queue)

    def clear(self) -> None:
        self.enabled = False
        self._cache, self._queue = [], OrderedDict()

    @contextmanager
    def deferring(self, key: Hashable = None):
        """Inside, SplitLinear backwards queue their W; on exit they are filed under `key`."""
        self.enabled = True
        try:
            yield self
        finally:
            self.enabled = False
        self.flush(key)


STORE = WeightGradStore()  # the store SplitLinear uses unless given another


def _accumulate(param: torch.Tensor, grad: torch.Tensor) -> None:
    if param.grad is None:
        param.grad = grad
    else:
        param.grad += grad


class _SplitLinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, store):
        ctx.save_for_backward(x, weight)
        ctx.has_bias, ctx.store, ctx.bias = bias is not None, store, bias
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, dy):                       # dy: (..., out)
        x, weight = ctx.saved_tensors            # x: (..., in), weight: (out, in)
        bias = ctx.bias

        def weight_grad() -> None:               # W: dW = dyᵀ x, db = Σ dy over every leading dim
            with torch.no_grad():
                _accumulate(weight, dy.reshape(-1, dy.shape[-1]).T @ x.reshape(-1, x.shape[-1]))
                if bias is not None:
                    _accumulate(bias, dy.reshape(-1, dy.shape[-1]).sum(0))

        if weight.requires_grad:
            ctx.store.put(weight_grad)
        dx = dy @ weight if ctx.needs_input_grad[0] else None   # B: (..., in)
        return dx, None, None, None


class SplitLinear(nn.Linear):
    """nn.Linear whose weight gradient goes through a WeightGradStore (run now, or deferred to a W chunk).

    Its parameters' `.grad` are written by the store's closures, not by autograd, so they appear only after
    the W has run."""

    store: WeightGradStore = STORE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _SplitLinearFn.apply(x, self.weight, self.bias, self.store)


def split_linears(module: nn.Module, store: WeightGradStore | None = None) -> nn.Module:
    """Turn every nn.Linear inside `module` into a SplitLinear in place (same parameters, same forward)."""
    for m in module.modules():
        if type(m) is nn.Linear:
            m.__class__ = SplitLinear
            if store is not None:
                m.store = store
    return module
