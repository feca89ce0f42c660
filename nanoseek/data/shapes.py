"""The minids shapes images as tensors, and the token sequences a VLM trains on. (Chapter 12.)

Rows come from `minids/shapes.py` (``train``, ``test`` = held-out images, ``unseen`` = images holding a
colour–shape pair never seen in training). The vocabulary is word-level: a few special tokens, then every
word the generator can write. Three kinds of sequence, all padded on the right to a fixed length:

- caption (stage 1):  ``<image>×n  <caption>  red circle , blue square  <eos>``
- question (stage 2): ``<image>×n  what colour is the circle ?  <answer>  red  <eos>``
- text only: the same without the image tokens (the baseline that cannot see).

Targets are -100 everywhere except the tokens after ``<caption>`` / ``<answer>``: the loss is only on what
the model must say, never on the prompt or the image.
"""
from __future__ import annotations

import functools
import json

import numpy as np
import torch

from nanoseek.data.stories import minids_path
from nanoseek.env import SCALES, scale as env_scale

SPLITS = ("train", "test", "unseen")
SPECIALS = ("<pad>", "<image>", "<eos>", "<caption>", "<answer>")


def _generator():
    import importlib

    return importlib.import_module("minids.shapes")


@functools.lru_cache(maxsize=6)
def _rows(split: str, scale: str) -> tuple[str, ...]:
    path = minids_path("shapes", f"shapes_{split}.jsonl", scale)
    return tuple(line for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def load_shapes(split: str = "train", scale: str | None = None) -> list[dict]:
    """Rows of `split` ("train", "test", "unseen"): {"id", "pixels", "objects", "caption", "qa"}."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {SPLITS}")
    scale = env_scale() if scale is None else scale
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r} is not one of {SCALES}")
    return [json.loads(line) for line in _rows(split, scale)]


class Vocab:
    """Word-level tokens: `SPECIALS`, then the generator's `WORDS`."""

    def __init__(self):
        self.itos = list(SPECIALS) + list(_generator().WORDS)
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.pad, self.image, self.eos, self.caption, self.answer = (self.stoi[s] for s in SPECIALS)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[w] for w in text.split()]
        except KeyError as err:
            raise ValueError(f"word {err.args[0]!r} is not in the shapes vocabulary") from None

    def decode(self, ids) -> str:
        return " ".join(self.itos[int(i)] for i in ids)


def images(rows: list[dict]) -> torch.Tensor:
    """(N, 3, H, W) float pixels in [-1, 1] (SigLIP's normalization: mean 0.5, std 0.5)."""
    gen = _generator()
    rgb = gen.to_rgb(np.stack([gen.decode_pixels(r["pixels"]) for r in rows]))  # (N, H, W, 3) uint8
    return torch.from_numpy(rgb).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def patch_labels(rows: list[dict], patch_size: int, image_size: int | None = None) -> dict[str, torch.Tensor]:
    """{"colour", "shape"}: (N, P) class ids of the object whose centre lies in each of the P patches
    (row-major, as `patchify` orders them); 0 where a patch holds no object centre, else 1 + the index in
    `COLOURS` / `SHAPES`. The labels of the dense auxiliary loss (`nanoseek.nn.vision.PatchClassifier`)."""
    gen = _generator()
    size = gen.SIZE if image_size is None else image_size
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1 or size % patch_size:
        raise ValueError(f"patch_size={patch_size!r} must be a positive integer dividing the image size {size}")
    g = size // patch_size
    colour = torch.zeros(len(rows), g * g, dtype=torch.long)
    shape = torch.zeros_like(colour)
    names = list(gen.COLOURS)
    for i, r in enumerate(rows):
        for o in r["objects"]:
            p = (o["y"] // patch_size) * g + o["x"] // patch_size
            colour[i, p] = 1 + names.index(o["colour"])
            shape[i, p] = 1 + gen.SHAPES.index(o["shape"])
    return {"colour": colour, "shape": shape}


def questions(rows: list[dict], types: tuple[str, ...] | None = None, novel: bool | None = None
              ) -> list[tuple[int, dict]]:
    """(row index, qa) for every question of `rows`, optionally only some types / only (not) novel ones."""
    return [(i, qa) for i, r in enumerate(rows) for qa in r["qa"]
            if (types is None or qa["type"] in types) and (novel is None or qa["novel"] == novel)]


def sequence(vocab: Vocab, prompt: str, reply: str, n_image: int, length: int, kind: str = "answer"
             ) -> tuple[list[int], list[int]]:
    """(ids, targets) of one example, padded to `length`; targets are the next token on the reply only."""
    sep = vocab.answer if kind == "answer" else vocab.caption
    head = [vocab.image] * n_image + vocab.encode(prompt) + [sep]
    tail = vocab.encode(reply) + [vocab.eos]
    ids = head + tail
    if len(ids) > length:
        raise ValueError(f"sequence of {len(ids)} tokens does not fit length={length}")
    targets = [-100] * (len(head) - 1) + tail + [-100]  # position t predicts token t+1
    pad = length - len(ids)
    return ids + [vocab.pad] * pad, targets + [-100] * pad


def qa_tensors(vocab: Vocab, rows: list[dict], n_image: int, length: int, **filters
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[dict]]:
    """(row index (M,), ids (M, T), targets (M, T), the qa dicts) of every question of `rows`."""
    pairs = questions(rows, **filters)
    seqs = [sequence(vocab, qa["q"], qa["a"], n_image, length) for _, qa in pairs]
    return (torch.tensor([i for i, _ in pairs]), torch.tensor([s[0] for s in seqs]),
            torch.tensor([s[1] for s in seqs]), [qa for _, qa in pairs])


def caption_tensors(vocab: Vocab, rows: list[dict], n_image: int, length: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (N, T), targets (N, T)) of each row's caption, loss on the caption and <eos>."""
    seqs = [sequence(vocab, "", r["caption"], n_image, length, kind="caption") for r in rows]
    return torch.tensor([s[0] for s in seqs]), torch.tensor([s[1] for s in seqs])


def text_tensors(vocab: Vocab, rows: list[dict], length: int) -> torch.Tensor:
    """(N, length) caption ids for a text tower: the words, <eos>, then padding (SigLIP pads to a fixed length)."""
    out = []
    for r in rows:
        ids = vocab.encode(r["caption"]) + [vocab.eos]
        if len(ids) > length:
            raise ValueError(f"caption of {len(ids)} tokens does not fit length={length}")
        out.append(ids + [vocab.pad] * (length - len(ids)))
    return torch.tensor(out)
