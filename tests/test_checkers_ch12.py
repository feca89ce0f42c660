"""Chapter 12's checkers reject plausible wrong answers and accept the right ones."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nanoseek.exercises.ch12 import check_patchify, check_sigmoid_loss, check_splice


def _logits(img, txt, t, b):
    return F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T * math.exp(t) + b


def right_loss(img, txt, t, b):
    z = 2 * torch.eye(len(img)) - 1
    return -F.logsigmoid(z * _logits(img, txt, t, b)).sum() / len(img)


def test_sigmoid_loss():
    assert check_sigmoid_loss(right_loss)
    z = lambda n: 2 * torch.eye(n) - 1  # noqa: E731
    wrong = [
        lambda i, t_, t, b: -F.logsigmoid(-z(len(i)) * _logits(i, t_, t, b)).sum() / len(i),   # sign flipped
        lambda i, t_, t, b: -F.logsigmoid(z(len(i)) * _logits(i, t_, t, b)).mean(),             # mean over pairs
        lambda i, t_, t, b: -F.logsigmoid(z(len(i)) * _logits(i, t_, t, b)).sum(),              # no /B
        lambda i, t_, t, b: -F.logsigmoid(z(len(i)) * (i @ t_.T * math.exp(t) + b)).sum() / len(i),  # no normalize
        lambda i, t_, t, b: -F.logsigmoid(z(len(i)) * _logits(i, t_, math.log(t) if t > 0 else t, b)).sum() / len(i),
        lambda i, t_, t, b: -F.logsigmoid(z(len(i)) * (_logits(i, t_, t, b) - b)).sum() / len(i),  # no bias
        lambda i, t_, t, b: -F.logsigmoid(torch.eye(len(i)) * _logits(i, t_, t, b)).sum() / len(i),  # labels 0/1
    ]
    for fn in wrong:
        assert not check_sigmoid_loss(fn)


def right_patchify(x, p):
    B, C, H, W = x.shape
    return x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5).reshape(B, -1, C * p * p)


def test_patchify():
    assert check_patchify(right_patchify)
    wrong = [
        lambda x, p: right_patchify(x.transpose(2, 3), p),  # column-major patch order (and transposed patches)
        lambda x, p: x.reshape(x.shape[0], x.shape[1], x.shape[2] // p, p, x.shape[3] // p, p)
                      .permute(0, 2, 4, 3, 5, 1).reshape(x.shape[0], -1, x.shape[1] * p * p),  # channel last
        lambda x, p: x.reshape(x.shape[0], -1, x.shape[1] * p * p),  # a plain reshape is not patches
        lambda x, p: right_patchify(x, p).transpose(1, 2),  # (B, D, N)
        lambda x, p: x.unfold(2, p, p).unfold(3, p, p).reshape(x.shape[0], -1, x.shape[1] * p * p),
    ]
    for fn in wrong:
        assert not check_patchify(fn)


def right_splice(embeds, ids, img, image_token_id):
    out = embeds.clone()
    out[ids == image_token_id] = img.reshape(-1, img.size(-1))
    return out


def test_splice():
    assert check_splice(right_splice)

    def off_by_one(embeds, ids, img, tid):
        out = embeds.clone()
        for b in range(len(ids)):
            s = int((ids[b] == tid).nonzero()[0]) + 1
            n = img.size(1)
            out[b, s:s + n] = img[b, :max(0, min(n, out.size(1) - s))]
        return out

    def inserted(embeds, ids, img, tid):  # adds the image tokens instead of replacing the placeholders
        return torch.cat([img, embeds], dim=1)

    def first_row_everywhere(embeds, ids, img, tid):
        out = embeds.clone()
        for b in range(len(ids)):
            out[b, ids[b] == tid] = img[0]
        return out

    def added(embeds, ids, img, tid):
        out = embeds.clone()
        out[ids == tid] += img.reshape(-1, img.size(-1))
        return out

    for fn in (off_by_one, inserted, first_row_everywhere, added, lambda e, i, m, t: e):
        assert not check_splice(fn)
