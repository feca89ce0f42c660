"""Multi-token prediction (chapter 7): alignment on hand cases, gradients, config checks, depth 0 == plain."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from nanoseek.nn.mtp import MTPModule, MultiTokenPrediction, combine_losses

V = C = 8


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run many small forwards: one thread avoids oversubscribing a busy 2-core CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _hand_mtp(depth: int, take: str) -> tuple[MultiTokenPrediction, nn.Embedding, nn.Linear]:
    """Identity blocks, one-hot embeddings, a head that maps token v to v+1; eh_proj reads one half only."""
    mtp = MultiTokenPrediction(C, depth, make_block=lambda k: nn.Identity())
    embed = nn.Embedding(V, C)
    head = nn.Linear(C, V, bias=False)
    with torch.no_grad():
        embed.weight.copy_(torch.eye(V))
        head.weight.copy_(20 * torch.roll(torch.eye(V), 1, dims=0))  # logits[v+1] = 20 x[v]
        for m in mtp.depths:
            eye, zero = torch.eye(C), torch.zeros(C, C)
            m.eh_proj.weight.copy_(torch.cat([eye, zero] if take == "emb" else [zero, eye], dim=1))
    return mtp, embed, head


@pytest.mark.parametrize("depth", [1, 2])
def test_depth_k_reads_token_t_plus_k_and_predicts_t_plus_k_plus_1(depth):
    idx = torch.tensor([[0, 1, 2, 3, 4, 5]])
    targets = torch.tensor([[1, 2, 3, 4, 5, 6]])
    mtp, embed, head = _hand_mtp(depth, take="emb")
    h0 = torch.randn(1, 6, C)
    logits, losses = mtp(h0, idx, embed, head, targets)
    assert [tuple(lg.shape) for lg in logits] == [(1, 6 - k, V) for k in range(1, depth + 1)]
    for k, lg in enumerate(logits, start=1):
        # the embedding path: depth k at position i sees t_{i+k} = idx[i+k], says idx[i+k]+1 = t_{i+k+1}
        assert lg.argmax(-1).tolist() == [[i + k + 1 for i in range(6 - k)]]
        assert losses[k - 1].item() < 1e-3
    # shifting the targets by one breaks every depth's loss: the alignment is not a coincidence
    _, bad = mtp(h0, idx, embed, head, torch.roll(targets, 1, dims=1))
    assert all(b.item() > 10 for b in bad)


@pytest.mark.parametrize("depth", [1, 2])
def test_hidden_state_chain_is_aligned_by_position(depth):
    """Reading only h^{k-1}: every depth at position i still talks about position i (h0 = embedding of t_i)."""
    idx = torch.tensor([[3, 1, 4, 1, 5, 2, 6]])
    mtp, embed, head = _hand_mtp(depth, take="h")
    h0 = embed(idx)
    logits, losses = mtp(h0, idx, embed, head)
    assert losses is None
    for k, lg in enumerate(logits, start=1):
        assert lg.argmax(-1)[0].tolist() == [(t + 1) % V for t in idx[0, : 7 - k].tolist()]


def test_targets_minus_100_are_ignored():
    idx = torch.tensor([[0, 1, 2, 3, 4]])
    targets = torch.tensor([[1, 2, 3, -100, -100]])
    mtp, embed, head = _hand_mtp(1, take="emb")
    logits, losses = mtp(torch.zeros(1, 5, C), idx, embed, head, targets)
    assert logits[0].shape == (1, 4, V)
    assert losses[0].item() < 1e-3  # positions 0, 1 have targets 2, 3; the rest are ignored


def test_gradients_reach_every_parameter_and_the_shared_embedding_and_head():
    torch.manual_seed(0)
    block = lambda k: nn.Sequential(nn.Linear(C, C), nn.GELU())  # noqa: E731
    mtp = MultiTokenPrediction(C, 2, block)
    embed, head = nn.Embedding(V, C), nn.Linear(C, V, bias=False)
    h0 = torch.randn(2, 6, C, requires_grad=True)
    idx = torch.randint(0, V, (2, 6))
    _, losses = mtp(h0, idx, embed, head, torch.randint(0, V, (2, 6)))
    combine_losses(torch.zeros(()), losses, 0.3).backward()
    for name, p in [*mtp.named_parameters(), ("embed", embed.weight), ("head", head.weight), ("h0", h0)]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_combine_losses_is_main_plus_lambda_times_mean():
    main, mtp = torch.tensor(2.0), [torch.tensor(3.0), torch.tensor(5.0)]
    assert combine_losses(main, mtp, 0.3).item() == pytest.approx(2.0 + 0.3 * 4.0)
    assert combine_losses(main, [], 0.3) is main


def test_bad_inputs_name_the_field_and_value():
    with pytest.raises(ValueError, match="depth=0"):
        MultiTokenPrediction(C, 0, lambda k: nn.Identity())
    with pytest.raises(ValueError, match="dim=0"):
        MTPModule(0, nn.Identity())
    mtp, embed, head = _hand_mtp(2, take="emb")
    with pytest.raises(ValueError, match="T=2"):
        mtp(torch.zeros(1, 2, C), torch.zeros(1, 2, dtype=torch.long), embed, head)
    with pytest.raises(ValueError, match="targets="):
        mtp(torch.zeros(1, 4, C), torch.zeros(1, 4, dtype=torch.long), embed, head, torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="emb_next="):
        mtp.depths[0](torch.zeros(1, 4, C), torch.zeros(1, 3, C))


# ---- the decoder with MTP -------------------------------------------------------------------------------

from nanoseek.generate import generate, generate_speculative_mtp  # noqa: E402
from nanoseek.models.decoder import Decoder, DecoderConfig  # noqa: E402
from nanoseek.nn.mtp import main_loss_fn, mtp_loss_fn  # noqa: E402

SMALL = dict(vocab_size=16, n_layer=2, n_embd=32, n_head=4, n_kv_head=2, intermediate_size=64, max_seq_len=96)


def _model(depth: int, seed: int = 0, **kw) -> Decoder:
    torch.manual_seed(seed)
    return Decoder(DecoderConfig(**{**SMALL, **kw}, mtp_depth=depth)).eval()


def test_mtp_depth_0_is_exactly_the_plain_decoder():
    torch.manual_seed(0)
    plain = Decoder(DecoderConfig(**SMALL)).eval()
    zero = _model(0)  # the same seed, mtp_depth=0 given explicitly
    assert zero.mtp is None
    assert plain.state_dict().keys() == zero.state_dict().keys()
    for (name, a), b in zip(plain.state_dict().items(), zero.state_dict().values()):
        assert torch.equal(a, b), name
    x, y = torch.randint(0, 16, (2, 12)), torch.randint(0, 16, (2, 12))
    (la, loss_a), (lb, loss_b) = plain(x, y), zero(x, y)
    assert torch.equal(la, lb) and torch.equal(loss_a, loss_b)
    assert zero.last_losses.keys() == {"main"}


@pytest.mark.parametrize("depth", [1, 2])
def test_mtp_leaves_the_main_model_alone_and_adds_lambda_times_mean(depth):
    plain, mtp = _model(0), _model(depth, seed=1, mtp_lambda=0.25)
    # the MTP model's state is the plain model's state plus the mtp.* entries
    missing, unexpected = mtp.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(name.startswith("mtp.depths.") for name in missing)
    x, y = torch.randint(0, 16, (2, 12)), torch.randint(0, 16, (2, 12))
    (lp, loss_p), (lm, loss_m) = plain(x, y), mtp(x, y)
    assert torch.equal(lp, lm)
    parts = mtp.last_losses
    assert torch.equal(parts["main"], loss_p) and torch.equal(main_loss_fn(mtp, (x, y)), loss_p)
    assert sorted(parts) == ["main"] + [f"mtp_{k}" for k in range(1, depth + 1)]
    expected = parts["main"] + 0.25 * torch.stack([parts[f"mtp_{k}"] for k in range(1, depth + 1)]).mean()
    torch.testing.assert_close(loss_m, expected)
    mtp.train()
    total, metrics = mtp_loss_fn(mtp, (x, y))
    assert torch.equal(total, loss_m) and metrics["main"] == pytest.approx(loss_p.item())
    mtp.eval()  # evaluation (nanoseek.train.evaluate) sees the main head only
    assert torch.equal(mtp_loss_fn(mtp, (x, y))[0], loss_p)


def test_mtp_gradients_reach_the_mtp_modules_and_the_shared_embedding():
    model = _model(2).train()
    x, y = torch.randint(0, 16, (2, 12)), torch.randint(0, 16, (2, 12))
    model(x, y)[1].backward()
    for name, p in model.mtp.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # the embedding gets gradient from the MTP input path too: positions the main model never reads as input
    # cannot exist, so compare against the main loss alone
    g_total = model.embed.weight.grad.clone()
    model.zero_grad()
    main_loss_fn(model, (x, y)).backward()
    assert not torch.allclose(g_total, model.embed.weight.grad)


@pytest.mark.parametrize("field,value", [("mtp_depth", -1), ("mtp_depth", 1.5), ("mtp_depth", True),
                                         ("mtp_depth", 96), ("mtp_lambda", -0.1), ("mtp_lambda", "0.3")])
def test_bad_mtp_config_names_field_and_value(field, value):
    with pytest.raises(ValueError, match=f"{field}={value!r}".replace("(", r"\(").replace(".", r"\.")):
        DecoderConfig(**{**SMALL, field: value})


# ---- self-speculative decoding ---------------------------------------------------------------------------

def _check_drafts_against_full_forward(model: Decoder, out: torch.Tensor, stats) -> None:
    """Every draft equals what the MTP modules say on the full sequence without any cache."""
    D = model.mtp.depth
    for N, drafts, _ in stats.rounds:
        toks = out[0, :N].tolist()
        for k, d in enumerate(drafts, start=1):
            full = torch.tensor([toks + drafts[: k - 1] + [0] * D])  # padding after N-2+k changes nothing there
            logits, _ = model.mtp(model.hidden(full), full, model.embed, model.lm_head)
            assert logits[k - 1][0, N - 2].argmax().item() == d, (N, k)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_speculative_equals_greedy_on_untrained_models(depth):
    for seed in range(4):
        model = _model(depth, seed=seed)
        g = torch.Generator().manual_seed(seed)
        idx = torch.randint(0, 16, (1, 1 + 3 * seed), generator=g)
        ref = generate(model, idx, 24, temperature=0)
        out, stats = generate_speculative_mtp(model, idx, 24)
        assert torch.equal(out, ref), (depth, seed)
        assert stats.new_tokens == 24 and 1 <= stats.main_forwards <= 24
        assert stats.tokens_per_forward == pytest.approx(24 / stats.main_forwards)
        assert sum(a for *_, a in stats.rounds) == stats.new_tokens - stats.main_forwards
        _check_drafts_against_full_forward(model, out, stats)


def test_speculative_on_a_trained_model_accepts_most_drafts_and_still_equals_greedy():
    torch.manual_seed(0)
    perm = torch.randperm(16)
    model = _model(2, seed=1, n_layer=1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(60):  # sequences that follow t_{i+1} = perm[t_i]: depth k must learn perm^(k+1)
        seq = [torch.randint(0, 16, (8,))]
        for _ in range(24):
            seq.append(perm[seq[-1]])
        seq = torch.stack(seq, dim=1)
        loss = model(seq[:, :-1], seq[:, 1:])[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    idx = torch.tensor([[3]])
    out, stats = generate_speculative_mtp(model, idx, 40)
    assert torch.equal(out, generate(model, idx, 40, temperature=0))
    assert stats.acceptance_rate > 0.8 and stats.tokens_per_forward > 2.0, stats
    _check_drafts_against_full_forward(model, out, stats)
    one, stats1 = generate_speculative_mtp(model, idx, 40, n_draft=1)
    assert torch.equal(one, out) and stats1.drafted[0] > 0 and len(stats1.drafted) == 1


def test_speculative_stops_at_eos_like_generate():
    model = _model(1, seed=3)
    idx = torch.tensor([[1, 2, 3]])
    ref = generate(model, idx, 30, temperature=0)
    eos = ref[0, 6].item()
    out, _ = generate_speculative_mtp(model, idx, 30, eos_id=eos)
    assert torch.equal(out, generate(model, idx, 30, temperature=0, eos_id=eos))


def test_speculative_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mtp_depth=0"):
        generate_speculative_mtp(_model(0), torch.tensor([[1]]), 4)
    model = _model(2)
    with pytest.raises(ValueError, match="n_draft=3"):
        generate_speculative_mtp(model, torch.tensor([[1]]), 4, n_draft=3)
    with pytest.raises(ValueError, match="batch size 2"):
        generate_speculative_mtp(model, torch.tensor([[1], [2]]), 4)
    with pytest.raises(ValueError, match="context length 96"):
        generate_speculative_mtp(model, torch.tensor([[1]]), 200)
    out, stats = generate_speculative_mtp(model, torch.tensor([[1]]), 0)
    assert out.tolist() == [[1]] and stats.main_forwards == 0


# ---- parity with transformers' MtpLayer -----------------------------------------------------------------

def test_mtp_module_matches_transformers_mtp_layer():
    """transformers' generic MtpLayer (DeepSeek-V3, GLM-4.5, ...) around a random Qwen2 block == our MTPModule."""
    modeling_layers = pytest.importorskip("transformers.modeling_layers")
    if not hasattr(modeling_layers, "MtpLayer"):
        pytest.skip("this transformers has no MtpLayer")
    from transformers import Qwen2Config
    from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer, Qwen2RMSNorm, Qwen2RotaryEmbedding

    from nanoseek.interop.qwen2 import config_from_hf, key_from_hf
    from nanoseek.models.decoder import Block

    torch.manual_seed(0)
    hc = Qwen2Config(hidden_size=32, intermediate_size=48, num_attention_heads=4, num_key_value_heads=2,
                     vocab_size=50, num_hidden_layers=1, max_position_embeddings=64, rms_norm_eps=1e-6)
    hc._attn_implementation = "eager"
    hf = modeling_layers.MtpLayer(hc, Qwen2DecoderLayer, Qwen2RMSNorm, 0).eval()
    with torch.no_grad():  # every weight random: norms (around 1), biases, projections
        for p in hf.parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if p.dim() == 1 and p.shape[0] == 32 else 0.0))
    cfg = config_from_hf(hc, max_seq_len=64)
    ours = MTPModule(32, Block(cfg, 1), eps=cfg.norm_eps).eval()
    state = {}
    for key, value in hf.state_dict().items():
        if key.startswith("mtp_block."):
            state["block." + key_from_hf("model.layers.0." + key[len("mtp_block."):])[len("layers.0."):]] = value
        else:
            state[{"post_norm.weight": "norm.weight"}.get(key, key)] = value
    ours.load_state_dict(state, strict=True)
    B, T = 2, 7
    h_prev, emb = torch.randn(B, T, 32), torch.randn(B, T, 32)
    pos = torch.arange(T)[None].expand(B, T)
    cos, sin = Qwen2RotaryEmbedding(hc)(emb, pos)
    mask = torch.full((T, T), float("-inf")).triu(1)[None, None].expand(B, 1, T, T)
    # the cache argument is `past_key_values` in transformers <= 5.17 or so, `cache` in newer ones (5.24)
    import inspect

    params = inspect.signature(hf.forward).parameters
    no_cache = {"past_key_values" if "past_key_values" in params else "cache": None}
    with torch.no_grad():
        want = hf(emb, h_prev, position_embeddings=(cos, sin), attention_mask=mask, position_ids=pos, **no_cache)
        got = ours(h_prev, emb)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mla_mode", ["naive", "absorbed"])
def test_speculative_with_deepseek_style_mla_and_moe(mla_mode):
    """The DeepSeek-V3 shape: MLA attention, MoE feed-forward (the MTP block is an MoE layer too)."""
    model = _model(1, seed=5, attention="mla", kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=8,
                   v_head_dim=8, mla_mode=mla_mode, ffn="moe", first_k_dense_replace=1, n_routed_experts=4,
                   num_experts_per_tok=2, moe_intermediate_size=16, n_shared_experts=1)
    assert type(model.mtp.depths[0].block.ffn).__name__ == "MoE"
    x, y = torch.randint(0, 16, (2, 10)), torch.randint(0, 16, (2, 10))
    model.train()
    model(x, y)[1].backward()
    assert model.mtp.depths[0].eh_proj.weight.grad.abs().sum() > 0
    model.eval()
    for seed in range(2):
        idx = torch.randint(0, 16, (1, 3 + seed), generator=torch.Generator().manual_seed(seed))
        out, stats = generate_speculative_mtp(model, idx, 20)
        assert torch.equal(out, generate(model, idx, 20, temperature=0))
        _check_drafts_against_full_forward(model, out, stats)
