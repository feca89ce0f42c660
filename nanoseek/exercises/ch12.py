"""Checkers for chapter 12's exercises (SigLIP's sigmoid loss, patchify, splicing image tokens)."""
from __future__ import annotations

import math
from typing import Callable

import torch

from nanoseek.exercises import checking, expect
from nanoseek.models.vlm import splice
from nanoseek.nn.vision import patchify, sigmoid_loss


def check_sigmoid_loss(loss_fn: Callable[..., torch.Tensor]) -> bool:
    """loss_fn(img (B, D), txt (B, D), t_prime, b) -> SigLIP's loss: −(1/B) Σ_ij log σ(z_ij (e^t' cos_ij + b))."""

    def checks():
        g = torch.Generator().manual_seed(12)
        for B, D, t, b in ((4, 8, math.log(10), -10.0), (16, 5, 0.5, 2.0), (7, 3, 1.2, -1.0)):
            img, txt = torch.randn(B, D, generator=g) * 3, torch.randn(B, D, generator=g)
            got = loss_fn(img.clone(), txt.clone(), t, b)
            expect(isinstance(got, torch.Tensor) and got.numel() == 1, "return a scalar tensor")
            want = sigmoid_loss(img, txt, t, b)
            got = float(got)
            if abs(got - float(want)) < 1e-4:
                continue
            F = torch.nn.functional
            z = 2 * torch.eye(B) - 1
            cos = F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
            hints = [(float(want) / B, "sum over all B² pairs, then divide by B (not a mean over pairs)"),
                     (float(-F.logsigmoid(-z * (cos * math.exp(t) + b)).sum() / B),
                      "labels are +1 for matching pairs (the diagonal), −1 for the others"),
                     (float(-F.logsigmoid(z * (img @ txt.T * math.exp(t) + b)).sum() / B),
                      "normalize the embeddings first (cosines)"),
                     (float(-F.logsigmoid(z * (cos * t + b)).sum() / B), "the temperature is exp(t'), not t'")]
            hint = next((h for v, h in hints if abs(got - v) < 1e-4), "")
            expect(False, f"B={B}, t'={t:.3f}, b={b}: expected {float(want):.5f}, got {got:.5f}"
                   + (f" ({hint})" if hint else ""))

    return checking("sigmoid loss", checks)


def check_patchify(patchify_fn: Callable[[torch.Tensor, int], torch.Tensor]) -> bool:
    """patchify_fn(images (B, C, H, W), p) -> (B, N, C·p·p): row-major patches, each flattened (c, i, j)."""

    def checks():
        g = torch.Generator().manual_seed(3)
        for B, C, H, W, p in ((2, 3, 8, 8, 4), (1, 3, 12, 8, 4), (3, 2, 6, 6, 2)):
            x = torch.randn(B, C, H, W, generator=g)
            got = patchify_fn(x.clone(), p)
            want = patchify(x, p)
            expect(isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(want.shape),
                   f"for images {tuple(x.shape)} and p={p} return shape {tuple(want.shape)}, got "
                   f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}")
            if torch.allclose(got, want):
                continue
            gh, gw = H // p, W // p
            col_major = want.reshape(B, gh, gw, -1).transpose(1, 2).reshape(B, gh * gw, -1)
            if H != W and torch.allclose(got, col_major) or H == W and torch.allclose(got, col_major):
                expect(False, "patches go row by row (left to right, then down), not column by column")
            chan_last = x.reshape(B, C, gh, p, gw, p).permute(0, 2, 4, 3, 5, 1).reshape(B, gh * gw, -1)
            if torch.allclose(got, chan_last):
                expect(False, "flatten each patch channel-first (c, i, j), as a conv kernel (D, C, p, p) is")
            expect(False, f"images {tuple(x.shape)}, p={p}: patch 0 should be {want[0, 0, :4].tolist()}…, "
                          f"got {got[0, 0, :4].tolist()}…")

    return checking("patchify", checks)


def check_splice(splice_fn: Callable[..., torch.Tensor]) -> bool:
    """splice_fn(embeds (B, T, C), ids (B, T), image_embeds (B, n, C), image_token_id) -> (B, T, C)."""

    def checks():
        g = torch.Generator().manual_seed(5)
        for B, T, C, n, starts in ((1, 6, 3, 2, [1]), (3, 9, 4, 4, [0, 2, 5])):
            ids = torch.randint(2, 50, (B, T), generator=g)
            for b, s in enumerate(starts):
                ids[b, s:s + n] = 1
            embeds, img = torch.randn(B, T, C, generator=g), torch.randn(B, n, C, generator=g)
            got = splice_fn(embeds.clone(), ids.clone(), img.clone(), 1)
            want = splice(embeds, ids, img, 1)
            expect(isinstance(got, torch.Tensor) and got.shape == want.shape,
                   f"return a tensor of shape {tuple(want.shape)} (the placeholders are replaced, not added)")
            for b, s in enumerate(starts):
                if not torch.allclose(got[b, s:s + n], img[b]):
                    shifted = any(0 <= s + d and s + d + n <= T and torch.allclose(got[b, s + d:s + d + n], img[b])
                                  for d in (-1, 1))
                    expect(False, f"row {b}: image token 0 belongs at position {s}, where the first placeholder is"
                           + (" (off by one)" if shifted else ""))
            expect(torch.allclose(got, want), "text positions must keep their own embeddings")

    return checking("splice image tokens", checks)
