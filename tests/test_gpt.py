import pytest
import torch

from nanoseek.models.gpt import GPT, GPTConfig, gpt_num_params


@pytest.mark.parametrize("bias", [True, False])
def test_param_count_matches_formula(bias):
    cfg = GPTConfig(block_size=32, vocab_size=50, n_layer=3, n_head=4, n_embd=64, bias=bias)
    assert GPT(cfg).num_params() == gpt_num_params(cfg)


def test_forward_shapes_and_loss_ignores_minus_100():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=20, n_layer=2, n_head=2, n_embd=32))
    x = torch.randint(0, 20, (3, 16))
    y = x.clone()
    logits, loss = model(x, y)
    assert logits.shape == (3, 16, 20)
    y_masked = y.clone()
    y_masked[:, :8] = -100
    _, loss_masked = model(x, y_masked)
    manual = torch.nn.functional.cross_entropy(logits[:, 8:].reshape(-1, 20), y[:, 8:].reshape(-1))
    torch.testing.assert_close(loss_masked, manual)


def test_attention_weights_match_sdpa_output():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=10, n_layer=1, n_head=2, n_embd=16)).eval()
    attn = model.transformer.h[0].attn
    x = torch.randn(2, 8, 16)
    w = attn.attention_weights(x)  # (B, H, T, T)
    _, _, v = attn._qkv(x)
    y = (w @ v).transpose(1, 2).reshape(2, 8, 16)
    torch.testing.assert_close(attn.c_proj(y), attn(x))
    assert torch.all(w.triu(1) == 0)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(n_embd=30, n_head=4), "n_embd=30"),
        (dict(block_size=0), "block_size=0"),
        (dict(n_head=0), "n_head=0"),
        (dict(dropout=1.5), "dropout=1.5"),
    ],
)
def test_bad_config_names_field_and_value(kwargs, field):
    with pytest.raises(ValueError, match=field):
        GPTConfig(**kwargs)


def test_too_long_sequence_is_a_clear_error():
    model = GPT(GPTConfig(block_size=8, vocab_size=10, n_layer=1, n_head=1, n_embd=8))
    with pytest.raises(ValueError, match="T=9"):
        model(torch.zeros(1, 9, dtype=torch.long))
