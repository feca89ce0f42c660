"""generate(): KV-cache decoding equals full recompute; sampling rules; models without a cache. (Chapter 4.)"""
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from nanoseek.generate import context_length, generate, sample_next
from nanoseek.models.decoder import Decoder, DecoderConfig

TINY = dict(vocab_size=61, n_layer=2, n_embd=32, n_head=4, n_kv_head=2, intermediate_size=48, max_seq_len=32,
            qkv_bias=True)


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    model = Decoder(DecoderConfig(**{**TINY, **kw}))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model


class NoCacheGPT(nn.Module):
    """A chapter-1-style model: `logits, loss = model(idx)`, a block_size, no new_cache."""

    def __init__(self, inner: Decoder, block_size: int):
        super().__init__()
        self.inner = inner
        self.config = SimpleNamespace(block_size=block_size)
        self.seen = []

    def forward(self, idx, targets=None):
        if idx.shape[1] > self.config.block_size:
            raise ValueError("too long")
        self.seen.append(idx.shape[1])
        return self.inner(idx, targets)


@pytest.mark.parametrize("n_kv", [4, 2, 1])
def test_cached_logits_equal_full_forward_every_step(n_kv):
    model = _model(n_kv_head=n_kv).eval()
    idx = torch.randint(0, 61, (3, 5), generator=torch.Generator().manual_seed(1))
    out = generate(model, idx, 12, temperature=0)
    cache = model.new_cache(3, out.shape[1])
    step_logits, _ = model(out[:, :5], cache=cache)
    for t in range(5, out.shape[1] - 1):
        full, _ = model(out[:, :t + 1])
        step, _ = model(out[:, t:t + 1], cache=cache)
        torch.testing.assert_close(step[:, -1], full[:, -1], atol=1e-4, rtol=1e-4)


def test_greedy_cached_equals_uncached():
    model = _model(1)
    idx = torch.randint(0, 61, (4, 6), generator=torch.Generator().manual_seed(2))
    a = generate(model, idx, 20, temperature=0, use_cache=True)
    b = generate(model, idx, 20, temperature=0, use_cache=False)
    assert a.shape == (4, 26)
    assert torch.equal(a, b)
    assert torch.equal(a[:, :6], idx)
    # batched equals one row at a time
    for r in range(4):
        assert torch.equal(generate(model, idx[r:r + 1], 20, temperature=0), a[r:r + 1])


def test_sampling_repeatable_and_cache_agnostic():
    model = _model(2)
    idx = torch.randint(0, 61, (2, 4), generator=torch.Generator().manual_seed(3))
    runs = [generate(model, idx, 15, temperature=0.8, top_k=20, top_p=0.9,
                     generator=torch.Generator().manual_seed(7), use_cache=c) for c in (True, True, False)]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])


def test_model_without_cache_is_cropped_to_its_context():
    gpt = NoCacheGPT(_model(3), block_size=8).eval()
    idx = torch.randint(0, 61, (2, 5))
    out = generate(gpt, idx, 10, temperature=0)
    assert out.shape == (2, 15)
    assert max(gpt.seen) == 8 and context_length(gpt) == 8
    assert not gpt.training  # restored
    gpt.train()
    generate(gpt, idx, 1)
    assert gpt.training


def test_eos_pads_and_stops():
    model = _model(4)
    idx = torch.randint(0, 61, (2, 3), generator=torch.Generator().manual_seed(5))
    greedy = generate(model, idx, 10, temperature=0)
    eos = int(greedy[0, 5])  # row 0 emits it at step 3
    out = generate(model, idx, 10, temperature=0, eos_id=eos)
    first = (out[0, 3:] == eos).nonzero()[0].item() + 3
    assert (out[0, first:] == eos).all()
    assert torch.equal(out[0, :first + 1], greedy[0, :first + 1])
    # once every row has emitted eos, generation stops
    one = idx[:1]
    first_tok = int(generate(model, one, 1, temperature=0)[0, -1])
    assert generate(model, one, 10, temperature=0, eos_id=first_tok).shape == (1, 4)


def test_sample_next_rules():
    logits = torch.tensor([[0.0, 5.0, 1.0, 4.9], [3.0, 0.0, 0.0, 0.0]])
    assert sample_next(logits, 0).tolist() == [[1], [0]]
    g = torch.Generator().manual_seed(0)
    draws = torch.cat([sample_next(logits, 1.0, top_k=2, generator=g) for _ in range(200)], 1)
    assert set(draws[0].tolist()) == {1, 3} and set(draws[1].tolist()) <= {0, 1, 2, 3}
    draws = torch.cat([sample_next(logits, 1.0, top_p=0.4, generator=g) for _ in range(50)], 1)
    assert set(draws[0].tolist()) == {1} and set(draws[1].tolist()) == {0}  # the top token alone passes 0.4
    draws = torch.cat([sample_next(logits, 1.0, top_p=0.6, generator=g) for _ in range(200)], 1)
    assert set(draws[0].tolist()) == {1, 3}


@pytest.mark.parametrize("kw,msg", [
    (dict(max_new_tokens=-1), "max_new_tokens"), (dict(temperature=-0.5), "temperature"),
    (dict(top_k=0), "top_k"), (dict(top_p=1.5), "top_p"), (dict(max_new_tokens=40), "context length 32"),
])
def test_bad_arguments(kw, msg):
    model = _model(5)
    args = dict(max_new_tokens=3)
    args.update(kw)
    with pytest.raises(ValueError, match=msg):
        generate(model, torch.zeros(1, 2, dtype=torch.long), **args)
    with pytest.raises(ValueError, match="idx"):
        generate(model, torch.zeros(2, dtype=torch.long), 3)


def test_fills_the_context_exactly():
    model = _model(6)
    out = generate(model, torch.zeros(1, 2, dtype=torch.long), 31, temperature=0)  # feeds 32 positions
    assert out.shape == (1, 33)
