"""Qwen2ForCausalLM <-> Decoder parity on tiny random configs (every weight randomized). (Chapter 4.)"""
import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import Qwen2Config, Qwen2ForCausalLM  # noqa: E402

from nanoseek.generate import generate  # noqa: E402
from nanoseek.interop import from_hf, to_hf  # noqa: E402
from nanoseek.interop.qwen2 import key_from_hf, key_to_hf, load_qwen2  # noqa: E402
from nanoseek.models.decoder import Decoder, DecoderConfig  # noqa: E402


def _randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:  # norm weights around 1, but not 1
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
            else:  # weights and biases alike
                p.copy_(0.15 * torch.randn(p.shape, generator=g))
    return model


def _hf(n_head, n_kv, tie, seed=0, head_dim=None, theta=10000.0):
    kw = dict(vocab_size=101, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
              num_attention_heads=n_head, num_key_value_heads=n_kv, max_position_embeddings=64,
              rms_norm_eps=1e-5, tie_word_embeddings=tie,
              rope_parameters={"rope_type": "default", "rope_theta": theta})
    if head_dim:
        kw["head_dim"] = head_dim
    torch.manual_seed(seed)
    hf = Qwen2ForCausalLM._from_config(Qwen2Config(**kw), attn_implementation="eager")
    return _randomize(hf, seed).eval()


CASES = [(6, 6, False, None), (6, 2, True, None), (6, 1, False, None), (4, 2, True, 16), (8, 4, False, None)]


@pytest.mark.parametrize("n_head,n_kv,tie,head_dim", CASES)
def test_from_hf_logits_and_greedy_match(n_head, n_kv, tie, head_dim):
    hf = _hf(n_head, n_kv, tie, seed=n_head + n_kv, head_dim=head_dim, theta=5000.0)
    ours = from_hf(hf)
    assert ours.config.n_kv_head == n_kv and ours.config.tie_embeddings == tie and ours.config.rope_theta == 5000.0
    assert (ours.lm_head.weight is ours.embed.weight) == tie
    assert ours.embed.weight.data_ptr() != hf.model.embed_tokens.weight.data_ptr()  # a copy, not shared
    idx = torch.randint(0, 101, (3, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(idx).logits
    logits, _ = ours(idx)
    torch.testing.assert_close(logits, ref, atol=1e-5, rtol=1e-5)
    prompt = idx[:, :6]
    theirs = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=15, do_sample=False,
                         pad_token_id=0, eos_token_id=None)
    assert torch.equal(generate(ours, prompt, 15, temperature=0), theirs)


@pytest.mark.parametrize("layout", ["half", "interleaved"])
@pytest.mark.parametrize("qkv_bias,tie", [(True, False), (False, True)])
def test_to_hf_round_trip(layout, qkv_bias, tie):
    cfg = DecoderConfig(vocab_size=89, n_layer=2, n_embd=32, n_head=4, n_kv_head=2, intermediate_size=40,
                        max_seq_len=48, rope_theta=20000.0, rope_layout=layout, norm_eps=1e-6,
                        qkv_bias=qkv_bias, tie_embeddings=tie)
    ours = _randomize(Decoder(cfg), 3).eval()
    hf = to_hf(ours)
    assert hf.config.num_key_value_heads == 2 and hf.config.tie_word_embeddings == tie
    idx = torch.randint(0, 89, (2, 17), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, ours(idx)[0], atol=1e-5, rtol=1e-5)
    back = from_hf(hf)
    with torch.no_grad():
        torch.testing.assert_close(back(idx)[0], ours(idx)[0], atol=1e-5, rtol=1e-5)


def test_key_mapping_is_a_bijection_and_errors():
    hf = _hf(4, 2, False)
    keys = [k for k in hf.state_dict()]
    assert [key_to_hf(key_from_hf(k)) for k in keys] == keys
    with pytest.raises(KeyError, match="layers.0.bogus"):
        key_to_hf("layers.0.bogus.weight")
    with pytest.raises(ValueError, match="model_type"):
        from_hf(torch.nn.Linear(2, 2))
    cfg = DecoderConfig(vocab_size=16, n_layer=1, n_embd=16, n_head=2, n_kv_head=1, intermediate_size=16)
    model = Decoder(cfg)
    model.config.ffn = "moe"
    with pytest.raises(ValueError, match="ffn='moe'"):
        to_hf(model)


def test_load_qwen2_from_a_local_folder(tmp_path):
    """The same code path as loading Qwen/Qwen2.5-0.5B-Instruct by name, on a tiny random save_pretrained."""
    hf = _hf(6, 2, True, seed=9)
    hf.save_pretrained(tmp_path)
    ours = load_qwen2(str(tmp_path), device="cpu", max_seq_len=32)
    assert ours.config.max_seq_len == 32 and not ours.training
    idx = torch.randint(0, 101, (2, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], hf(idx).logits, atol=1e-5, rtol=1e-5)
