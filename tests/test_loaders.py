"""The loader rule: no converter builds a silently wrong model. Configs that disagree with the weights, tied
heads over untied checkpoints, GPT-2 options our GPT lacks, parameters nobody copied, and pickles."""
from __future__ import annotations

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")

from nanoseek.interop import _weights as W  # noqa: E402
from nanoseek.interop import from_hf  # noqa: E402


def _randomize(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + [(n, b) for n, b in model.named_buffers() if "e_score" in n]:
            t.copy_(torch.randn(t.shape, generator=g) * 0.2 + (1.0 if "norm" in name else 0.0))
    return model.eval()


# ---- DeepseekV3 -------------------------------------------------------------------------------------------

def _deepseek(**kw):
    base = dict(vocab_size=61, hidden_size=32, intermediate_size=48, moe_intermediate_size=16, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=2, n_shared_experts=1, n_routed_experts=4,
                num_experts_per_tok=2, n_group=2, topk_group=1, first_k_dense_replace=1, kv_lora_rank=8,
                q_lora_rank=None, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=8, max_position_embeddings=32,
                tie_word_embeddings=False)
    base.update(kw)
    cfg = transformers.DeepseekV3Config(**base)
    return _randomize(transformers.DeepseekV3ForCausalLM._from_config(cfg, attn_implementation="eager"))


@pytest.fixture(scope="module")
def deepseek():
    return _deepseek()


@pytest.mark.parametrize("field, value, named", [
    ("qk_rope_head_dim", 4, "q_proj.weight"),            # used to convert and give logits off by several
    ("qk_nope_head_dim", 4, "q_proj.weight"),
    ("v_head_dim", 4, "kv_b_proj.weight"),
    ("kv_lora_rank", 4, "kv_a_proj_with_mqa.weight"),
    ("num_hidden_layers", 3, "model.layers.2."),       # used to leave a randomly initialised layer
    ("num_hidden_layers", 1, "unexpected"),             # weights the config has no place for
    ("vocab_size", 64, "embed_tokens.weight"),          # used to raise a raw shape RuntimeError
    ("hidden_size", 48, "embed_tokens.weight"),
    ("intermediate_size", 40, "mlp.gate_proj.weight"),
    ("moe_intermediate_size", 8, "experts"),
    ("n_routed_experts", 8, "experts"),
    ("first_k_dense_replace", 0, "layers.0.mlp"),
])
def test_deepseek_config_that_disagrees_with_the_weights_is_refused(deepseek, field, value, named):
    original = getattr(deepseek.config, field)
    setattr(deepseek.config, field, value)
    try:
        with pytest.raises(ValueError, match="do not match") as err:
            from_hf(deepseek)
    finally:
        setattr(deepseek.config, field, original)
    assert named in str(err.value)


def test_deepseek_untied_checkpoint_with_tied_config_is_refused(deepseek):
    deepseek.config.tie_word_embeddings = True
    try:
        with pytest.raises(ValueError, match="untied"):
            from_hf(deepseek)
    finally:
        deepseek.config.tie_word_embeddings = False


def test_deepseek_matching_config_still_converts(deepseek):
    ours = from_hf(deepseek)
    idx = torch.randint(0, 61, (1, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], deepseek(idx).logits, atol=2e-5, rtol=1e-4)


def test_deepseek_single_layers_check_too(deepseek):
    from nanoseek.interop.deepseek_v3 import mla_from_hf, moe_from_hf

    attn = deepseek.model.layers[0].self_attn
    attn.config.qk_rope_head_dim = 4
    try:
        with pytest.raises(ValueError, match="q_proj.weight"):
            mla_from_hf(attn)
    finally:
        attn.config.qk_rope_head_dim = 8
    mlp = deepseek.model.layers[1].mlp
    with pytest.raises(ValueError, match="experts"):
        moe_from_hf(mlp, moe_intermediate_size=8)


# ---- Qwen2 ------------------------------------------------------------------------------------------------

def _qwen(**kw):
    base = dict(vocab_size=53, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=32, tie_word_embeddings=False)
    base.update(kw)
    return _randomize(transformers.Qwen2ForCausalLM._from_config(transformers.Qwen2Config(**base),
                                                                attn_implementation="eager"))


@pytest.fixture(scope="module")
def qwen():
    return _qwen()


@pytest.mark.parametrize("field, value, named", [
    ("num_hidden_layers", 3, "model.layers.2."), ("num_hidden_layers", 1, "unexpected"),
    ("vocab_size", 60, "embed_tokens.weight"), ("num_key_value_heads", 4, "k_proj.weight"),
    ("intermediate_size", 40, "gate_proj.weight"), ("head_dim", 4, "q_proj.weight"),
])
def test_qwen2_config_that_disagrees_with_the_weights_is_refused(qwen, field, value, named):
    original = getattr(qwen.config, field, None)
    setattr(qwen.config, field, value)
    try:
        with pytest.raises(ValueError, match="do not match") as err:
            from_hf(qwen)
    finally:
        setattr(qwen.config, field, original)
    assert named in str(err.value)


def test_qwen2_untied_checkpoint_with_tied_config_is_refused(qwen):
    qwen.config.tie_word_embeddings = True
    try:
        with pytest.raises(ValueError, match="untied"):
            from_hf(qwen)
    finally:
        qwen.config.tie_word_embeddings = False


def test_qwen2_truly_tied_checkpoint_converts():
    hf = _qwen(tie_word_embeddings=True)
    ours = from_hf(hf)
    assert ours.lm_head.weight is ours.embed.weight
    idx = torch.randint(0, 53, (1, 5), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], hf(idx).logits, atol=1e-5, rtol=1e-5)


# ---- GPT-2 ------------------------------------------------------------------------------------------------

def _gpt2(**kw):
    base = dict(vocab_size=50, n_positions=16, n_embd=16, n_layer=2, n_head=2, activation_function="gelu",
                resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    base.update(kw)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**base))
    hf.config._attn_implementation = "eager"
    return _randomize(hf)


@pytest.mark.parametrize("option", [dict(scale_attn_by_inverse_layer_idx=True), dict(scale_attn_weights=False),
                                    dict(layer_norm_epsilon=1e-2)])
def test_gpt2_options_that_change_the_output_are_refused(option):
    from nanoseek.interop.gpt2 import from_gpt2

    plain, changed = _gpt2(), _gpt2(**option)
    changed.load_state_dict(plain.state_dict())
    idx = torch.randint(0, 50, (1, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # the option really changes the function, so ignoring it would be wrong
        assert not torch.allclose(plain(idx).logits, changed(idx).logits, atol=1e-4)
    (name, value), = option.items()
    with pytest.raises(ValueError, match=f"{name}={value!r}"):
        from_gpt2(changed)
    ours = from_gpt2(plain)  # and the plain config converts exactly
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], plain(idx).logits, atol=1e-5, rtol=1e-5)


def test_gpt2_untied_head_is_refused():
    from nanoseek.interop.gpt2 import from_gpt2

    hf = _gpt2(tie_word_embeddings=False)
    assert hf.lm_head.weight.data_ptr() != hf.transformer.wte.weight.data_ptr()
    with pytest.raises(ValueError, match="untied"):
        from_gpt2(hf)


def test_gpt2_wrong_shapes_are_named():
    from nanoseek.interop.gpt2 import from_gpt2

    hf = _gpt2()
    hf.config.n_positions = 32
    with pytest.raises(ValueError, match="wpe.weight"):
        from_gpt2(hf)


# ---- the rule itself --------------------------------------------------------------------------------------

def test_check_weights_names_every_problem():
    expected = {"a": (2, 3), "b": (4,), "c": (1,)}
    source = {"a": torch.zeros(3, 2), "b": torch.zeros(4), "d": torch.zeros(1)}
    with pytest.raises(ValueError) as err:
        W.check_weights(expected, source, "test", "n sets a")
    msg = str(err.value)
    assert "a is (3, 2), the config needs (2, 3)" in msg and "missing weight(s): c" in msg
    assert "unexpected weight(s) the config has no place for: d" in msg and "n sets a" in msg
    W.check_weights(expected, {"a": torch.zeros(2, 3), "b": torch.zeros(4)}, "test", optional=("c",))


def test_a_parameter_nobody_copied_is_named():
    model = W.poison(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.zero_()
        model[1].weight.zero_()
    with pytest.raises(ValueError, match=r"1 parameter\(s\) were not copied.*1\.bias"):
        W.assert_written(model, "test")


def test_check_tied():
    e = torch.randn(4, 3)
    W.check_tied(True, e, e, "t")
    W.check_tied(True, e.clone(), e, "t")  # equal values: a tied checkpoint saved as two tensors
    W.check_tied(False, torch.randn(4, 3), e, "t")
    with pytest.raises(ValueError, match="untied"):
        W.check_tied(True, torch.randn(4, 3), e, "t")


# ---- safetensors only -------------------------------------------------------------------------------------

@pytest.mark.parametrize("loader", ["nanoseek.interop.qwen2:load_qwen2", "nanoseek.interop.deepseek_v3:load_deepseek_v3",
                                    "nanoseek.rl.hf:load_policy"])
def test_real_weight_loaders_ask_for_safetensors(monkeypatch, loader):
    import importlib

    seen = {}

    class Stop(Exception):
        pass

    def record(name, *args, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", record)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: None)
    module, fn = loader.split(":")
    with pytest.raises(Stop):
        getattr(importlib.import_module(module), fn)("some/model")
    assert seen.get("use_safetensors") is True


def test_a_pickled_checkpoint_is_not_loaded(tmp_path, qwen):
    from nanoseek.interop.qwen2 import load_qwen2

    qwen.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(qwen.state_dict(), tmp_path / "pytorch_model.bin")  # the pickle format a hostile repo would ship
    with pytest.raises(OSError):
        load_qwen2(str(tmp_path), device="cpu")
