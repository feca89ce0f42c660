"""Chapter 12: our SigLIP towers against transformers' SiglipVisionModel / SiglipTextModel, tiny random configs."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")
from transformers import (Qwen2Config, Qwen2ForCausalLM, SiglipTextConfig, SiglipTextModel,  # noqa: E402
                          SiglipVisionConfig, SiglipVisionModel)

from nanoseek.interop import siglip  # noqa: E402
from nanoseek.models.vlm import load_state_strict  # noqa: E402


def _randomize(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():  # every weight, norms and biases too
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if p.dim() == 1 and p.shape[0] < 0 else 0))
    return model


def _vision_cfg(use_head=True):
    return SiglipVisionConfig(image_size=16, patch_size=4, hidden_size=32, intermediate_size=48,
                              num_hidden_layers=2, num_attention_heads=4, vision_use_head=use_head)


@pytest.mark.parametrize("use_head", [True, False])
def test_vision_tower_matches_transformers(use_head):
    hf = _randomize(SiglipVisionModel(_vision_cfg(use_head)).eval())
    ours = siglip.vision_from_hf(hf).eval()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        want = hf(pixel_values=x)
        h, pooled = ours(x)
    torch.testing.assert_close(h, want.last_hidden_state, atol=1e-4, rtol=1e-4)
    if use_head:
        torch.testing.assert_close(pooled, want.pooler_output, atol=1e-4, rtol=1e-4)
    else:
        assert pooled is None
    back = siglip.vision_to_hf(ours)
    with torch.no_grad():
        torch.testing.assert_close(back(pixel_values=x).last_hidden_state, want.last_hidden_state, atol=1e-5,
                                   rtol=1e-5)


def test_text_tower_matches_transformers():
    cfg = SiglipTextConfig(vocab_size=40, max_position_embeddings=8, hidden_size=32, intermediate_size=48,
                           num_hidden_layers=2, num_attention_heads=4, projection_size=32, pad_token_id=0,
                           bos_token_id=None, eos_token_id=None)
    hf = _randomize(SiglipTextModel(cfg).eval(), seed=1)
    ours = siglip.text_from_hf(hf).eval()
    ids = torch.randint(0, 40, (3, 8))
    with torch.no_grad():
        want = hf(input_ids=ids)
        h, pooled = ours(ids)
    torch.testing.assert_close(h, want.last_hidden_state, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(pooled, want.pooler_output, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(siglip.text_to_hf(ours)(input_ids=ids).pooler_output, want.pooler_output,
                                   atol=1e-5, rtol=1e-5)


def test_strict_loader_names_missing_and_unexpected_keys():
    tower = siglip.vision_from_hf(SiglipVisionModel(_vision_cfg()))
    state = tower.state_dict()
    bad = {k: v for k, v in state.items() if k != "post_layernorm.weight"}
    bad["vision_model.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing=\['post_layernorm.weight'\].*unexpected=\['vision_model.extra"):
        load_state_strict(tower, bad)
    wrong = dict(state)
    wrong["post_layernorm.weight"] = torch.zeros(7)
    with pytest.raises(ValueError, match="post_layernorm.weight: \\(7,\\)"):
        load_state_strict(tower, wrong)


def test_load_vlm_from_saved_tiny_random_checkpoints(tmp_path):
    """load_vlm on tiny random SigLIP + Qwen2 models saved as safetensors (no download): the VLM's towers
    reproduce the transformers models, and the image placeholder is the tokenizer's."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vis = _randomize(SiglipVisionModel(_vision_cfg()).eval(), seed=2)
    vis.save_pretrained(tmp_path / "vis", safe_serialization=True)
    lm_cfg = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=True)
    lm = _randomize(Qwen2ForCausalLM(lm_cfg).eval(), seed=3)
    lm.save_pretrained(tmp_path / "lm", safe_serialization=True)
    vocab = {f"w{i}": i for i in range(63)} | {"<|image_pad|>": 63}
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="w0")),
                                  unk_token="w0")
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save_pretrained(tmp_path / "lm")
    vlm = siglip.load_vlm(str(tmp_path / "vis"), str(tmp_path / "lm"), pixel_shuffle=2, device="cpu",
                          max_seq_len=64)
    assert vlm.config.image_token_id == 63 and vlm.config.n_image_tokens == 4
    assert vlm.vision.head is None and vlm.projector.net[0].in_features == 4 * 32
    x = torch.randn(2, 3, 16, 16)
    ids = torch.randint(0, 63, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(vlm.vision(x)[0], vis(pixel_values=x).last_hidden_state, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(vlm(None, ids)[0], lm(input_ids=ids).logits, atol=1e-4, rtol=1e-4)
        ids[:, 2:6] = 63
        logits, _ = vlm(x, ids)
    assert logits.shape == (2, 10, 64) and torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="not a token"):
        siglip.load_vlm(str(tmp_path / "vis"), str(tmp_path / "lm"), image_token="<image>", device="cpu")
