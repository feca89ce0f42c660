"""Chapter 12: the ViT's pieces, pixel shuffle, and the image–text losses against references."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nanoseek.nn.vision import (DualEncoder, ImageTextLoss, TextConfig, VisionConfig, VisionTower, patchify,
                                pixel_shuffle, pixel_unshuffle, sigmoid_loss, softmax_loss)


def test_patch_embedding_conv_is_patchify_then_linear():
    tower = VisionTower(VisionConfig(image_size=16, patch_size=4, hidden_size=32, num_attention_heads=4))
    x = torch.randn(2, 3, 16, 16)
    conv = tower.embeddings.patch_embedding
    want = conv(x).flatten(2).transpose(1, 2)
    got = patchify(x, 4) @ conv.weight.reshape(32, -1).T + conv.bias
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # patch 1 is the second patch of the first row: columns 4..7 of rows 0..3
    torch.testing.assert_close(patchify(x, 4)[:, 1], x[:, :, 0:4, 4:8].reshape(2, -1))


@pytest.mark.parametrize("factor", [1, 2, 4])
def test_pixel_shuffle_round_trip_and_neighbourhoods(factor):
    x = torch.randn(3, 64, 5)  # an 8x8 grid of 5-wide tokens
    y = pixel_shuffle(x, factor)
    assert y.shape == (3, 64 // factor ** 2, 5 * factor ** 2)
    torch.testing.assert_close(pixel_unshuffle(y, factor), x, atol=0, rtol=0)
    if factor == 2:  # the first new token holds grid cells (0,0), (0,1), (1,0), (1,1)
        torch.testing.assert_close(y[:, 0], torch.cat([x[:, 0], x[:, 1], x[:, 8], x[:, 9]], -1))


def test_pixel_shuffle_rejects_a_grid_it_cannot_divide():
    with pytest.raises(ValueError, match="factor=2"):
        pixel_shuffle(torch.randn(1, 9, 4), 2)


def _reference_sigmoid_loss(img, txt, t, b):
    """transformers' SiglipModel loss (transcribed from modeling_siglip.py, big_vision's siglip.py)."""
    img, txt = img / img.norm(dim=-1, keepdim=True), txt / txt.norm(dim=-1, keepdim=True)
    logits_per_text = txt @ img.T * math.exp(t) + b
    eye = torch.eye(logits_per_text.size(0))
    m1_diag1 = -torch.ones_like(logits_per_text) + 2 * eye
    return -torch.sum(F.logsigmoid(m1_diag1 * logits_per_text), dim=-1).mean()


def test_sigmoid_loss_matches_the_siglip_reference_and_its_init():
    torch.manual_seed(0)
    img, txt = torch.randn(16, 8), torch.randn(16, 8)
    loss = ImageTextLoss("sigmoid")
    assert loss.t_prime.item() == pytest.approx(math.log(10)) and loss.bias.item() == -10
    torch.testing.assert_close(loss(img, txt), _reference_sigmoid_loss(img, txt, math.log(10), -10.0))
    torch.testing.assert_close(sigmoid_loss(img, txt, 0.3, 1.5), _reference_sigmoid_loss(img, txt, 0.3, 1.5))
    # orthogonal embeddings (cosine 0): exactly softplus(10) for the positive + (B−1)·softplus(−10) per image
    eye = torch.eye(32)
    want = F.softplus(torch.tensor(10.0)) + 15 * F.softplus(torch.tensor(-10.0))
    torch.testing.assert_close(loss(eye[:16], eye[16:]), want)


def test_softmax_loss_is_symmetric_infonce():
    torch.manual_seed(1)
    img, txt = torch.randn(8, 4), torch.randn(8, 4)
    loss = ImageTextLoss("softmax")
    assert loss.bias is None and loss.t_prime.item() == pytest.approx(math.log(1 / 0.07))
    logits = F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T / 0.07
    want = (F.cross_entropy(logits, torch.arange(8)) + F.cross_entropy(logits.T, torch.arange(8))) / 2
    torch.testing.assert_close(loss(img, txt), want)
    torch.testing.assert_close(softmax_loss(torch.eye(8), torch.eye(8), 0.0) * 0 + softmax_loss(
        torch.zeros(8, 4) + 1, torch.zeros(8, 4) + 1, 0.0), torch.tensor(math.log(8)))  # all equal: log B


def test_dual_encoder_trains_and_validates():
    v = VisionConfig(image_size=8, patch_size=4, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                     num_attention_heads=2)
    t = TextConfig(vocab_size=10, max_position_embeddings=4, hidden_size=16, intermediate_size=32,
                   num_hidden_layers=1, num_attention_heads=2)
    model = DualEncoder(v, t)
    loss = model(torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4, 4)))
    loss.backward()
    assert model.loss_fn.bias.grad is not None and model.vision.embeddings.patch_embedding.weight.grad is not None
    with pytest.raises(ValueError, match="use_head"):
        DualEncoder(VisionConfig(image_size=8, patch_size=4, hidden_size=16, num_attention_heads=2,
                                 use_head=False), t)
    with pytest.raises(ValueError, match="pixels must be"):
        model.vision(torch.randn(1, 3, 16, 16))


@pytest.mark.parametrize("kwargs, bad", [(dict(image_size=10, patch_size=4), "image_size=10"),
                                         (dict(hidden_size=30, num_attention_heads=4), "hidden_size=30"),
                                         (dict(patch_size=0), "patch_size")])
def test_bad_vision_configs_name_the_field(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        VisionConfig(**kwargs)
    with pytest.raises(ValueError, match="'cosine'"):
        ImageTextLoss("cosine")


def test_patch_classifier_loss_is_mean_cross_entropy_per_attribute_and_checks_its_labels():
    from nanoseek.nn.vision import PatchClassifier

    torch.manual_seed(0)
    head = PatchClassifier(8, {"colour": 5, "shape": 3})
    tokens = torch.randn(2, 4, 8)
    labels = {"colour": torch.randint(0, 5, (2, 4)), "shape": torch.randint(0, 3, (2, 4))}
    logits = head(tokens)
    assert logits["colour"].shape == (2, 4, 5) and logits["shape"].shape == (2, 4, 3)
    want = (F.cross_entropy(logits["colour"].reshape(-1, 5), labels["colour"].reshape(-1))
            + F.cross_entropy(logits["shape"].reshape(-1, 3), labels["shape"].reshape(-1))) / 2
    torch.testing.assert_close(head.loss(tokens, labels), want)
    with pytest.raises(ValueError, match="heads for"):
        head.loss(tokens, {"colour": labels["colour"]})
    with pytest.raises(ValueError, match="classes="):
        PatchClassifier(8, {"colour": 1})
