"""The modern decoder: config validation, loss convention, tied embeddings, aux-loss hook, cache. (Chapter 4.)"""
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nanoseek.models import decoder as dec
from nanoseek.models.decoder import Decoder, DecoderConfig
from nanoseek.nn.attention import KVCache

TINY = dict(vocab_size=97, n_layer=2, n_embd=32, n_head=4, n_kv_head=2, intermediate_size=48, max_seq_len=24)


def _randomize(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


@pytest.mark.parametrize("field,value", [
    ("vocab_size", 0), ("n_layer", -1), ("n_embd", 2.5), ("n_kv_head", 3), ("head_dim", 7),
    ("rope_layout", "spiral"), ("norm_eps", 0.0), ("rope_theta", -1.0), ("attention", "nope"), ("ffn", "xxl"),
    ("max_seq_len", 0),
])
def test_config_errors_name_field_and_value(field, value):
    with pytest.raises(ValueError, match=rf"{field}.*{value}|{value}.*{field}"):
        DecoderConfig(**{**TINY, field: value})


def test_config_head_dim_default_and_explicit():
    assert DecoderConfig(**TINY).head_dim == 8
    cfg = DecoderConfig(**{**TINY, "head_dim": 16})
    model = Decoder(cfg)
    assert model.layers[0].attn.q_proj.weight.shape == (4 * 16, 32)
    with pytest.raises(ValueError, match="n_embd=30"):
        DecoderConfig(**{**TINY, "n_embd": 30, "n_head": 4})
    with pytest.raises(TypeError, match="dict"):
        Decoder(TINY)


def test_forward_shapes_and_loss_ignores_minus_100():
    torch.manual_seed(0)
    model = Decoder(DecoderConfig(**TINY))
    idx = torch.randint(0, 97, (3, 10))
    targets = torch.randint(0, 97, (3, 10))
    targets[:, :4] = -100
    logits, loss = model(idx, targets)
    assert logits.shape == (3, 10, 97)
    keep = targets != -100
    expected = F.cross_entropy(logits[keep], targets[keep])
    torch.testing.assert_close(loss, expected)
    assert model(idx)[1] is None
    with pytest.raises(ValueError, match="shape"):
        model(idx[0])


def test_tied_and_untied():
    tied = Decoder(DecoderConfig(**{**TINY, "tie_embeddings": True}))
    untied = Decoder(DecoderConfig(**TINY))
    assert tied.lm_head.weight is tied.embed.weight
    assert untied.lm_head.weight is not untied.embed.weight
    assert untied.num_params() - tied.num_params() == 97 * 32
    assert "lm_head.weight" in tied.state_dict()


def test_param_count_formula():
    for kw in (dict(qkv_bias=True), dict(qkv_bias=False, n_kv_head=1), dict(tie_embeddings=True)):
        cfg = DecoderConfig(**{**TINY, **kw})
        C, H, Hkv, D, I, V, L = cfg.n_embd, cfg.n_head, cfg.n_kv_head, cfg.head_dim, cfg.intermediate_size, \
            cfg.vocab_size, cfg.n_layer
        attn = C * H * D + 2 * C * Hkv * D + H * D * C + (H * D + 2 * Hkv * D if cfg.qkv_bias else 0)
        per_layer = 2 * C + attn + 3 * C * I
        expected = V * C * (1 if cfg.tie_embeddings else 2) + L * per_layer + C
        assert Decoder(cfg).num_params() == expected


def test_causal_and_cached_matches_full():
    torch.manual_seed(1)
    model = Decoder(DecoderConfig(**{**TINY, "qkv_bias": True}))
    _randomize(model)
    idx = torch.randint(0, 97, (2, 15))
    full, _ = model(idx)
    cache = model.new_cache(2, 20)
    assert len(cache) == 2 and all(isinstance(c, KVCache) for c in cache)
    steps = [model(idx[:, :6], cache=cache)[0]] + [model(idx[:, t:t + 1], cache=cache)[0] for t in range(6, 15)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="n_layer=2"):
        model(idx, cache=cache[:1])
    with pytest.raises(ValueError, match="25"):
        model(torch.randint(0, 97, (1, 25)))


def test_cache_bytes_match_formula():
    cfg = DecoderConfig(**TINY)
    cache = Decoder(cfg).new_cache(5, 16, dtype=torch.bfloat16)
    total = sum(c.nbytes for c in cache)
    assert total == 2 * cfg.n_layer * 5 * cfg.n_kv_head * cfg.head_dim * 16 * 2


class _FakeMoE(nn.Module):
    """A dense FFN that reports an aux_loss, standing in for chapter 6's MoE."""

    def __init__(self, cfg, layer_idx):
        super().__init__()
        self.ffn = dec.build_dense(cfg, layer_idx)
        self.aux_loss = None

    def forward(self, x):
        self.aux_loss = x.pow(2).mean()
        return self.ffn(x)


def test_aux_loss_hook_and_switch_point(monkeypatch):
    monkeypatch.setitem(dec.FFN_BUILDERS, "fake_moe", _FakeMoE)
    torch.manual_seed(2)
    cfg = DecoderConfig(**{**TINY, "ffn": "fake_moe"})
    model = Decoder(cfg)
    plain = Decoder(dataclasses.replace(cfg, ffn="dense"))
    plain.load_state_dict({k.replace("ffn.ffn.", "ffn."): v for k, v in model.state_dict().items()})
    idx = torch.randint(0, 97, (2, 8))
    logits, loss = model(idx, idx)
    logits_plain, loss_plain = plain(idx, idx)
    torch.testing.assert_close(logits, logits_plain)
    aux = sum(b.ffn.aux_loss for b in model.layers)
    assert aux > 0
    torch.testing.assert_close(loss, loss_plain + aux)
    loss.backward()
    assert model.embed.weight.grad is not None


def test_backward_and_training_step_lowers_loss():
    torch.manual_seed(3)
    model = Decoder(DecoderConfig(**TINY))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    idx = torch.randint(0, 97, (4, 16))
    first = None
    for _ in range(15):
        _, loss = model(idx[:, :-1], idx[:, 1:])
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first - 0.5


def test_bf16_forward_with_cache():
    model = Decoder(DecoderConfig(**TINY)).to(torch.bfloat16)
    cache = model.new_cache(1)
    assert cache[0].k.dtype == torch.bfloat16 and cache[0].max_len == 24
    logits, _ = model(torch.randint(0, 97, (1, 5)), cache=cache)
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()
