"""Chapter 12: the VLM's splice, answer-only loss, and stage guards (frozen parts bitwise unchanged)."""
from __future__ import annotations

import pytest
import torch

from nanoseek.models.decoder import DecoderConfig
from nanoseek.models.vlm import VLM, VLMConfig, load_state_strict, splice, stage
from nanoseek.nn.vision import VisionConfig
from nanoseek.train import TrainConfig, train


def tiny_vlm(projector="mlp", shuffle=2) -> VLM:
    torch.manual_seed(0)
    return VLM(VLMConfig(
        vision=VisionConfig(image_size=16, patch_size=4, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                            num_attention_heads=2, use_head=False),
        decoder=DecoderConfig(vocab_size=20, n_layer=1, n_embd=16, n_head=2, n_kv_head=1, intermediate_size=32,
                              max_seq_len=32, qkv_bias=True),
        image_token_id=1, pixel_shuffle=shuffle, projector=projector))


def batch(model: VLM, B=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = model.config.n_image_tokens
    T = n + 8
    ids = torch.randint(2, 20, (B, T), generator=g)
    ids[:, :n] = 1
    targets = torch.full((B, T), -100)
    targets[:, -3:] = ids[:, -3:]
    return torch.randn(B, 3, 16, 16, generator=g), ids, targets


def test_splice_puts_image_tokens_at_the_placeholders_in_order():
    embeds = torch.randn(2, 6, 3)
    ids = torch.tensor([[5, 1, 1, 7, 8, 9], [1, 1, 4, 4, 4, 4]])
    img = torch.randn(2, 2, 3)
    out = splice(embeds, ids, img, image_token_id=1)
    torch.testing.assert_close(out[0, 1:3], img[0])
    torch.testing.assert_close(out[1, 0:2], img[1])
    torch.testing.assert_close(out[0, [0, 3, 4, 5]], embeds[0, [0, 3, 4, 5]])
    with pytest.raises(ValueError, match="placeholders"):
        splice(embeds, torch.zeros(2, 6, dtype=torch.long), img, image_token_id=1)


@pytest.mark.parametrize("projector, shuffle, n", [("mlp", 2, 4), ("linear", 1, 16)])
def test_forward_shapes_and_image_tokens_matter(projector, shuffle, n):
    model = tiny_vlm(projector, shuffle)
    assert model.config.n_image_tokens == n
    x, ids, targets = batch(model)
    logits, loss = model(x, ids, targets)
    assert logits.shape == (4, n + 8, 20) and loss.ndim == 0
    other, _ = model(torch.randn_like(x), ids)
    assert not torch.allclose(logits[:, n:], other[:, n:])  # later text sees the image


def test_loss_is_only_on_answer_tokens():
    model = tiny_vlm()
    x, ids, targets = batch(model)
    _, loss = model(x, ids, targets)
    logits, _ = model(x, ids)
    manual = torch.nn.functional.cross_entropy(logits[:, -3:].reshape(-1, 20), targets[:, -3:].reshape(-1))
    torch.testing.assert_close(loss, manual)


def test_text_only_path_is_the_bare_decoder():
    model = tiny_vlm()
    ids = torch.randint(2, 20, (2, 7))
    torch.testing.assert_close(model(None, ids)[0], model.lm(ids)[0])


@pytest.mark.parametrize("trains", [("projector",), ("projector", "lm")])
def test_stage_trains_only_what_it_declares_and_frozen_parts_are_bitwise_unchanged(trains):
    model = tiny_vlm()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, ids, targets = batch(model, B=8)
    with stage(model, *trains):
        train(model, lambda split, g: (x, ids, targets),
              TrainConfig(max_steps=5, lr=1e-2, warmup_steps=1, eval_every=5, eval_batches=1, progress=False,
                          device="cpu"),
              loss_fn=lambda m, b: m(*b)[1])
    for k, v in model.state_dict().items():
        moved = not torch.equal(v, before[k])
        assert moved == k.startswith(trains), k
    assert all(p.requires_grad for p in model.parameters())  # unfrozen again after the stage


def test_stage_catches_a_frozen_parameter_that_moved():
    model = tiny_vlm()
    with pytest.raises(RuntimeError, match="lm.embed.weight"):
        with stage(model, "projector"):
            with torch.no_grad():
                model.lm.embed.weight.add_(1.0)  # e.g. an optimizer built before the freeze
    with pytest.raises(ValueError, match="'decoder'"):
        with stage(model, "decoder"):
            pass


def test_strict_load_fails_on_missing_and_unexpected_keys():
    model = tiny_vlm()
    state = model.state_dict()
    load_state_strict(model, state)
    with pytest.raises(ValueError, match="missing=\\['projector.net.0.bias'\\]"):
        load_state_strict(model, {k: v for k, v in state.items() if k != "projector.net.0.bias"})
    with pytest.raises(ValueError, match="unexpected=\\['mm_projector.weight'\\]"):
        load_state_strict(model, {**state, "mm_projector.weight": torch.zeros(1)})


@pytest.mark.parametrize("kwargs, bad", [(dict(projector="qformer"), "'qformer'"), (dict(pixel_shuffle=3), "3"),
                                         (dict(image_token_id=99), "99")])
def test_bad_configs_name_the_field(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        VLMConfig(vision=VisionConfig(image_size=16, patch_size=4, hidden_size=16, num_attention_heads=2),
                  decoder=DecoderConfig(vocab_size=20, n_layer=1, n_embd=16, n_head=2, n_kv_head=1,
                                        intermediate_size=32), **kwargs)
