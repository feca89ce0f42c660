"""Chapter 9: the backward split into B (input gradient) and W (weight gradient, deferred)."""
import pytest
import torch
from torch import nn

from nanoseek.parallel.split_backward import STORE, SplitLinear, WeightGradStore, split_linears


def _grads(model, x, defer: bool):
    model.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_()
    store = WeightGradStore()
    for m in model.modules():
        if isinstance(m, SplitLinear):
            m.store = store
    if defer:
        with store.deferring("chunk"):
            model(x).square().sum().backward()
        assert all(p.grad is None for m in model.modules() if isinstance(m, SplitLinear) for p in m.parameters())
        store.pop("chunk")
    else:
        model(x).square().sum().backward()
    assert len(store) == 0
    return x.grad, {n: p.grad.clone() for n, p in model.named_parameters()}


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 12), nn.GELU(), nn.Linear(12, 6, bias=False)).double()


def test_b_then_w_equals_one_ordinary_backward_exactly():
    ref = _mlp()
    x = torch.randn(3, 5, 6, dtype=torch.float64)
    gx_ref, g_ref = _grads(ref, x, defer=False)           # plain nn.Linear autograd
    split = split_linears(_mlp())
    gx_now, g_now = _grads(split, x, defer=False)         # the store disabled: W at once
    gx_later, g_later = _grads(split, x, defer=True)      # B now, W later
    assert torch.equal(gx_now, gx_later)
    for n in g_ref:
        assert torch.equal(g_now[n], g_later[n]), n
        torch.testing.assert_close(g_later[n], g_ref[n], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(gx_later, gx_ref, rtol=1e-12, atol=1e-14)


def test_tied_weights_accumulate_both_uses():
    torch.manual_seed(1)
    emb = nn.Embedding(10, 4).double()
    head = split_linears(nn.Linear(4, 10, bias=False).double())
    head.weight = emb.weight
    ids = torch.randint(0, 10, (2, 7))

    def run(defer):
        emb.weight.grad = None
        store = WeightGradStore()
        head.store = store
        loss = lambda: nn.functional.cross_entropy(head(emb(ids)).reshape(-1, 10), ids.reshape(-1))
        if defer:
            with store.deferring(0):
                loss().backward()
            store.pop(0)
        else:
            loss().backward()
        return emb.weight.grad.clone()

    plain_emb = nn.Embedding(10, 4).double()
    plain_emb.weight.data.copy_(emb.weight.data)
    plain_head = nn.Linear(4, 10, bias=False).double()
    plain_head.weight = plain_emb.weight
    nn.functional.cross_entropy(plain_head(plain_emb(ids)).reshape(-1, 10), ids.reshape(-1)).backward()
    now, later = run(False), run(True)
    assert torch.equal(now, later)
    torch.testing.assert_close(later, plain_emb.weight.grad, rtol=1e-12, atol=1e-14)


def test_store_fifo_and_errors():
    store, log = WeightGradStore(), []
    store.enabled = True
    store.put(lambda: log.append("a"))
    store.flush("a")
    store.put(lambda: log.append("b"))
    store.flush("b")
    store.enabled = False
    store.put(lambda: log.append("now"))   # disabled: runs at once
    store.pop()
    store.pop("b")
    assert log == ["now", "a", "b"]
    with pytest.raises(ValueError, match="nothing queued"):
        store.pop()
    store.flush("x")
    with pytest.raises(ValueError, match="already queued"):
        store.flush("x")
    with pytest.raises(ValueError, match="not queued"):
        store.pop("y")
    assert STORE is not store
