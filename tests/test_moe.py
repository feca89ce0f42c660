"""DeepSeekMoE (chapter 6): routing, dispatch, balancing, and parity with transformers' DeepseekV3MoE."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from nanoseek.nn.moe import (
    BiasUpdateHook,
    MoE,
    MoEConfig,
    bias_update,
    load_balance_loss,
    max_violation,
    moe_param_counts,
    route,
    update_router_bias,
)

TINY = dict(dim=32, n_routed_experts=8, num_experts_per_tok=3, moe_intermediate_size=16, n_shared_experts=2,
            n_group=4, topk_group=2, routed_scaling_factor=2.5)


def _randomize(module: nn.Module, std: float = 0.3, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g) * std)


def _hf_moe(**overrides):
    transformers = pytest.importorskip("transformers")
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE

    kw = dict(hidden_size=32, moe_intermediate_size=16, n_routed_experts=8, n_shared_experts=2,
              num_experts_per_tok=3, n_group=4, topk_group=2, routed_scaling_factor=2.5, norm_topk_prob=True,
              num_attention_heads=4, num_key_value_heads=4)
    kw.update(overrides)
    cfg = transformers.DeepseekV3Config(**kw)
    cfg._experts_implementation = "eager"
    hf = DeepseekV3MoE(cfg).eval()
    _randomize(hf)
    return hf


@pytest.mark.parametrize("dispatch", ["sorted", "loop", "grouped"])
def test_parity_with_transformers_deepseek_v3_moe(dispatch):
    hf = _hf_moe()
    assert hf.gate.e_score_correction_bias.abs().min() > 0  # a real, non-zero bias
    ours = MoE(MoEConfig(**TINY, dispatch=dispatch)).eval()
    ours.load_state_dict(hf.state_dict(), strict=True)
    x = torch.randn(3, 7, 32, generator=torch.Generator().manual_seed(1))
    if dispatch == "grouped":
        try:
            ours(x)
        except RuntimeError as err:  # a torch without grouped_mm on this device
            pytest.skip(str(err))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf(x), atol=1e-5, rtol=1e-5)
        # the bias really changed some choices, so the test covers it
        w, idx, _ = ours.gate(x.reshape(-1, 32))
        ours.gate.e_score_correction_bias.zero_()
        _, idx0, _ = ours.gate(x.reshape(-1, 32))
    assert not torch.equal(idx.sort(-1).values, idx0.sort(-1).values)


def test_parity_without_groups_or_shared_or_norm():
    hf = _hf_moe(n_group=1, topk_group=1, n_shared_experts=1, norm_topk_prob=False, routed_scaling_factor=1.0)
    ours = MoE(MoEConfig(**{**TINY, "n_group": 1, "topk_group": 1, "n_shared_experts": 1,
                            "norm_topk_prob": False, "routed_scaling_factor": 1.0})).eval()
    ours.load_state_dict(hf.state_dict(), strict=True)
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf(x), atol=1e-5, rtol=1e-5)


def test_dispatch_modes_agree_in_value_and_gradient():
    torch.manual_seed(0)
    outs, grads = [], []
    x0 = torch.randn(4, 9, 32)
    for dispatch in ["loop", "sorted"]:
        torch.manual_seed(3)
        m = MoE(MoEConfig(**TINY, dispatch=dispatch))
        x = x0.clone().requires_grad_()
        y = m(x)
        (y ** 2).sum().backward()
        outs.append(y.detach())
        grads.append((x.grad, m.experts.gate_up_proj.grad, m.gate.weight.grad))
    torch.testing.assert_close(outs[0], outs[1])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
    assert grads[0][2].abs().sum() > 0  # the router learns through the gate weights


def test_expert_as_swiglu_matches_the_fused_weights():
    m = MoE(MoEConfig(**TINY))
    _randomize(m)
    x = torch.randn(5, 32)
    idx = torch.full((5, 1), 6)
    torch.testing.assert_close(m.experts(x, idx, torch.ones(5, 1)), m.experts.expert(6)(x))
    with pytest.raises(KeyError, match="e=8"):
        m.experts.expert(8)


def _naive_route(logits, k, bias, n_group, topk_group, scoring_func, norm, scale):
    """Token by token, the way the papers write it."""
    N, E = logits.shape
    size = E // n_group
    W, I = [], []
    for t in range(N):
        s = logits[t].sigmoid() if scoring_func == "sigmoid" else logits[t].softmax(-1)
        c = s + bias
        if scoring_func == "sigmoid":
            gs = [sorted(c[g * size:(g + 1) * size].tolist(), reverse=True)[:2] for g in range(n_group)]
            gs = [sum(v) for v in gs]
        else:
            gs = [max(c[g * size:(g + 1) * size].tolist()) for g in range(n_group)]
        groups = sorted(range(n_group), key=lambda g: -gs[g])[:topk_group]
        allowed = [e for e in range(E) if e // size in groups]
        chosen = sorted(allowed, key=lambda e: -float(c[e]))[:k]
        w = torch.stack([s[e] for e in chosen])
        if norm:
            w = w / w.sum()
        W.append(w * scale)
        I.append(torch.tensor(chosen))
    return torch.stack(W), torch.stack(I)


@pytest.mark.parametrize("scoring_func", ["sigmoid", "softmax"])
def test_route_matches_the_token_by_token_definition(scoring_func):
    g = torch.Generator().manual_seed(5)
    logits, bias = torch.randn(20, 12, generator=g), torch.randn(12, generator=g) * 0.2
    for n_group, topk_group, k in [(1, 1, 2), (4, 2, 3), (3, 1, 2)]:
        w, i, _ = route(logits, k, bias=bias, n_group=n_group, topk_group=topk_group, scoring_func=scoring_func,
                        norm_topk_prob=scoring_func == "sigmoid", routed_scaling_factor=2.0)
        w_ref, i_ref = _naive_route(logits, k, bias, n_group, topk_group, scoring_func,
                                    scoring_func == "sigmoid", 2.0)
        torch.testing.assert_close(i, i_ref)
        torch.testing.assert_close(w, w_ref)
        groups = i // (12 // n_group)
        assert max(len(set(row.tolist())) for row in groups) <= topk_group


def test_bias_chooses_but_does_not_weight():
    logits = torch.randn(50, 8)
    _, _, scores = route(logits, 2)
    bias = torch.zeros(8)
    bias[3] = 10.0  # force expert 3 into every token's top-2
    w, idx, scores_b = route(logits, 2, bias=bias, norm_topk_prob=False)
    assert (idx == 3).any(-1).all()
    torch.testing.assert_close(scores_b, scores)
    torch.testing.assert_close(w, scores.gather(1, idx))  # weights are unbiased affinities


def test_load_balance_loss_values():
    E, K, T = 4, 2, 8
    scores = torch.full((T, E), 0.5)
    idx = torch.tensor([[0, 1], [2, 3]] * (T // 2))  # perfectly balanced
    assert load_balance_loss(scores, idx, E).item() == pytest.approx(1.0)
    idx_bad = torch.tensor([[0, 1]] * T)  # two experts take everything
    probs = torch.tensor([[0.4, 0.4, 0.1, 0.1]] * T)
    # f = (2, 2, 0, 0), P = (0.4, 0.4, 0.1, 0.1): 0.8 + 0.8
    assert load_balance_loss(probs, idx_bad, E).item() == pytest.approx(1.6)
    # sequence-wise: each sequence is balanced on its own only if its own tokens are
    seq_idx = torch.cat([torch.tensor([[0, 1]] * T), torch.tensor([[2, 3]] * T)])
    seq_scores = torch.full((2 * T, E), 0.25)
    assert load_balance_loss(seq_scores, seq_idx, E).item() == pytest.approx(1.0)
    assert load_balance_loss(seq_scores, seq_idx, E, per_sequence=True, batch=2).item() == pytest.approx(1.0)
    seq_scores = torch.cat([probs, probs.flip(-1)])
    batch_wise = load_balance_loss(seq_scores, seq_idx, E).item()
    seq_wise = load_balance_loss(seq_scores, seq_idx, E, per_sequence=True, batch=2).item()
    assert seq_wise == pytest.approx(0.8 * 2) and batch_wise == pytest.approx(1.0)


def test_aux_loss_contract():
    x = torch.randn(2, 6, 32)
    off = MoE(MoEConfig(**TINY))
    off.train()
    off(x)
    assert off.aux_loss is None
    assert off.last_counts.sum().item() == 2 * 6 * 3 and off.last_counts.shape == (8,)
    for kind in ["switch", "seq"]:
        m = MoE(MoEConfig(**TINY, aux_loss=kind, aux_loss_alpha=0.1)).train()
        m(x)
        assert m.aux_loss.dim() == 0 and m.aux_loss.item() > 0
        m.aux_loss.backward()
        assert m.gate.weight.grad.abs().sum() > 0
        m.eval()
        m(x)
        assert m.aux_loss is None


def test_max_violation_and_bias_update():
    assert max_violation(torch.tensor([5, 5, 5, 5])) == 0.0
    assert max_violation(torch.tensor([10, 2, 2, 2])) == pytest.approx((10 - 4) / 4)
    with pytest.raises(ValueError, match="all-zero"):
        max_violation(torch.zeros(4))
    b = bias_update(torch.zeros(4), torch.tensor([10, 2, 4, 0]), 0.01)
    torch.testing.assert_close(b, torch.tensor([-0.01, 0.01, 0.0, 0.01]))


def test_loss_free_bias_updates_balance_a_skewed_router():
    torch.manual_seed(0)
    m = MoE(MoEConfig(**{**TINY, "n_group": 1, "topk_group": 1}, bias_update_speed=0.02)).train()
    with torch.no_grad():
        m.gate.weight[:2] += 0.1  # experts 0 and 1 are everyone's favourites (inputs have a positive mean)
    x = torch.randn(4, 16, 32) + 1.0
    hook = BiasUpdateHook()
    for step in range(150):
        with torch.no_grad():
            m(x)
        hook(step, m, {})
    first, last = hook.history[0][1][0], hook.history[-1][1][0]
    assert first > 1.0 and last < 0.5 * first
    assert m.gate.e_score_correction_bias[0] < 0
    assert m.load_accum.sum() == 0  # reset after each update
    # gamma=0: measures only
    before = m.gate.e_score_correction_bias.clone()
    m(x)
    update_router_bias(m, gamma=0.0)
    torch.testing.assert_close(m.gate.e_score_correction_bias, before)


def test_param_counts_match_the_module():
    cfg = MoEConfig(**TINY)
    m = MoE(cfg)
    counts = moe_param_counts(cfg)
    assert counts["total"] == sum(p.numel() for p in m.parameters())
    per_expert = 3 * 32 * 16
    assert counts["total"] - counts["active"] == (8 - 3) * per_expert


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(topk_group=5), "topk_group=5"),
        (dict(n_routed_experts=10), "n_routed_experts=10"),
        (dict(num_experts_per_tok=9), "num_experts_per_tok=9"),
        (dict(n_group=4, topk_group=1, num_experts_per_tok=3), "num_experts_per_tok=3"),
        (dict(scoring_func="relu"), "scoring_func='relu'"),
        (dict(aux_loss="zloss"), "aux_loss='zloss'"),
        (dict(dispatch="scatter"), "dispatch='scatter'"),
        (dict(aux_loss_alpha=-1.0), "aux_loss_alpha=-1.0"),
        (dict(moe_intermediate_size=0), "moe_intermediate_size=0"),
        (dict(routed_scaling_factor=0), "routed_scaling_factor"),
    ],
)
def test_config_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        MoEConfig(**{**TINY, **bad})


def test_bad_input_shape():
    m = MoE(MoEConfig(**TINY))
    with pytest.raises(ValueError, match=r"\(B, T, 32\)"):
        m(torch.randn(4, 32))
    with pytest.raises(TypeError, match="MoEConfig"):
        MoE(dict(TINY))


# ---- the decoder with ffn="moe" ----------------------------------------------------------------------------

def _moe_decoder_cfg(**kw):
    from nanoseek.models.decoder import DecoderConfig

    base = dict(vocab_size=64, n_layer=3, n_embd=32, n_head=4, n_kv_head=2, intermediate_size=64, max_seq_len=32,
                ffn="moe", first_k_dense_replace=1, n_routed_experts=8, num_experts_per_tok=2,
                moe_intermediate_size=16, n_group=2, topk_group=1)
    base.update(kw)
    return DecoderConfig(**base)


def test_decoder_with_moe_layers():
    from nanoseek.models.decoder import Decoder
    from nanoseek.nn import SwiGLU
    from nanoseek.nn.moe import count_params

    torch.manual_seed(0)
    model = Decoder(_moe_decoder_cfg(aux_loss="seq", aux_loss_alpha=0.01))
    assert isinstance(model.layers[0].ffn, SwiGLU) and all(isinstance(b.ffn, MoE) for b in model.layers[1:])
    counts = count_params(model)
    assert counts["total"] == model.num_params()
    assert counts["total"] - counts["active"] == 2 * (8 - 2) * 3 * 32 * 16
    idx = torch.randint(0, 64, (2, 16))
    model.train()
    _, loss = model(idx, idx)
    model.eval()
    with torch.no_grad():
        logits, ce = model(idx, idx)
    assert model.aux_loss() is None  # eval: no aux loss, val loss is pure cross-entropy
    model.train()
    _, loss = model(idx, idx)
    aux = model.aux_loss()
    assert aux is not None and aux.item() > 0
    torch.testing.assert_close(loss - aux, torch.nn.functional.cross_entropy(
        model(idx)[0].view(-1, 64), idx.view(-1)), atol=1e-5, rtol=1e-5)
    loss.backward()
    assert model.layers[1].ffn.gate.weight.grad.abs().sum() > 0
    # the loss-free hook sees every MoE layer's load and moves its bias
    hook = BiasUpdateHook(gamma=0.01)
    hook(0, model, {})
    assert len(hook.history[0][1]) == 2
    assert model.layers[1].ffn.gate.e_score_correction_bias.abs().sum() > 0


def test_decoder_moe_generates_with_cache():
    from nanoseek.models.decoder import Decoder

    torch.manual_seed(0)
    model = Decoder(_moe_decoder_cfg()).eval()
    idx = torch.randint(0, 64, (2, 10))
    with torch.no_grad():
        full, _ = model(idx)
        cache = model.new_cache(2)
        steps = [model(idx[:, :6], cache=cache)[0]] + [model(idx[:, t:t + 1], cache=cache)[0] for t in range(6, 10)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bad, match", [
    (dict(first_k_dense_replace=4), "first_k_dense_replace=4"),
    (dict(topk_group=3), "topk_group=3"),
    (dict(n_routed_experts=7), "n_routed_experts=7"),
    (dict(moe_dispatch="scatter"), "dispatch='scatter'"),
])
def test_decoder_moe_config_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        _moe_decoder_cfg(**bad)


def test_expert_load_counts_every_token_of_every_layer():
    from nanoseek.models.decoder import Decoder
    from nanoseek.nn.moe import expert_load

    model = Decoder(_moe_decoder_cfg()).train()
    batches = [torch.randint(0, 64, (2, 8)) for _ in range(3)]
    load = expert_load(model, batches)
    assert load.shape == (2, 8) and (load.sum(1) == 3 * 2 * 8 * 2).all()
    assert model.training and model.layers[1].ffn.load_accum.sum() == 0  # eval passes do not feed the bias
    with pytest.raises(ValueError, match="no MoE layer"):
        expert_load(torch.nn.Linear(2, 2), batches)


def test_router_and_load_counts_survive_a_bf16_cast():
    m = MoE(MoEConfig(**TINY)).to(torch.bfloat16).train()
    assert m.gate.weight.dtype == torch.float32 and m.gate.e_score_correction_bias.dtype == torch.float32
    assert m.experts.gate_up_proj.dtype == torch.bfloat16
    for _ in range(200):  # 200 * 10 * 3 = 6000 assignments: far past bf16's exact integers (256)
        with torch.no_grad():
            m(torch.randn(1, 10, 32, dtype=torch.bfloat16))
    assert m.load_accum.dtype == torch.long and m.load_accum.sum().item() == 6000
    update_router_bias(m, gamma=1e-4)
    assert m.gate.e_score_correction_bias.abs().max().item() == pytest.approx(1e-4)
