"""Seeded images of coloured shapes, with captions and questions whose answers need the image. (Chapter 12.)

Each image is `SIZE`×`SIZE` pixels with one to four objects on a dark background: a colour from `COLOURS`
and a shape from `SHAPES`, at a size, each in its own cell of a `GRID`×`GRID` grid (with a pixel of jitter),
so objects never overlap and a `CELL`-pixel patch sees one object whole. Every row of the data carries

- ``pixels``: the image as `SIZE`·`SIZE` palette indices, run-length coded row by row (``0`` is the
  background, ``1``.. the colours in `COLOURS` order); `decode_pixels` turns it back into an array and
  `to_rgb` into RGB values. The pixels are drawn with numpy (`render`), so they are exact on every machine;
- ``objects``: what is in the image (colour, shape, centre x and y, half-size r);
- ``caption``: the objects from left to right, e.g. ``"red circle , blue square"``;
- ``qa``: questions of four types, each answerable only by looking:
  ``colour`` ("what colour is the circle ?"), ``shape`` ("what shape is the red object ?"),
  ``count`` ("how many squares are there ?") and ``left`` ("is the circle left of the cross ?").
  A question refers to a shape or colour only when it is unique in the image.

Held-out compositions: the colour–shape pairs in `HELD_OUT` never appear in ``train`` or ``test``; the
``unseen`` split holds images that contain at least one of them, and its questions about such an object are
marked ``"novel": true`` (answering them means composing a colour and a shape never seen together).

Files (`build_files`): ``shapes_train.jsonl``, ``shapes_test.jsonl`` (held-out images, seen compositions),
``shapes_unseen.jsonl``. ``tiny`` is committed; ``full`` is generated on demand into the cache.
"""
from __future__ import annotations

import json
import random

import numpy as np

SIZE = 32
CELL = 8  # objects sit in a 4×4 grid of 8-px cells, one object a cell: an 8-px patch sees each object whole
GRID = SIZE // CELL
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 50, 47), "green": (60, 180, 75), "blue": (40, 100, 230), "yellow": (240, 210, 40)}
SHAPES = ("circle", "square", "triangle", "cross")
PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles", "cross": "crosses"}
NUMBERS = ("zero", "one", "two", "three", "four")
BACKGROUND = (20, 20, 28)
HELD_OUT = frozenset({("red", "triangle"), ("green", "cross"), ("blue", "circle"), ("yellow", "square")})
QUESTION_TYPES = ("colour", "shape", "count", "left")
SPLITS = ("train", "test", "unseen")
SCALE_ROWS = {"tiny": {"train": 2000, "test": 300, "unseen": 300},
              "full": {"train": 20000, "test": 2000, "unseen": 2000}}
RADII = (2, 3)

# every word a caption, question or answer can use: the chapter's word-level vocabulary is built from this
WORDS = tuple(sorted(set(COLOURS) | set(SHAPES) | set(PLURAL.values()) | set(NUMBERS) | {
    "what", "colour", "is", "the", "shape", "object", "how", "many", "are", "there", "left", "of", "yes", "no",
    ",", "?"}))


def shape_mask(shape: str, cx: int, cy: int, r: int, size: int = SIZE) -> np.ndarray:
    """(size, size) bool mask of one shape centred at pixel (cx, cy) with half-size r."""
    if shape not in SHAPES:
        raise ValueError(f"shape={shape!r} is not one of {SHAPES}")
    yy, xx = np.mgrid[0:size, 0:size]
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r + r
    if shape == "square":
        return (np.abs(dx) <= r - 1) & (np.abs(dy) <= r - 1)  # a circle's area, about
    if shape == "triangle":  # apex up: the half-width grows from 0 at the top to r at the bottom
        return (dy >= -r) & (dy <= r) & (2 * np.abs(dx) <= dy + r)
    arm = (r - 1) // 2  # cross: two bars, 1 px wide at r=2 (wider would be a circle), 3 px at r=3
    return ((np.abs(dx) <= r) & (np.abs(dy) <= arm)) | ((np.abs(dy) <= r) & (np.abs(dx) <= arm))


def render(objects: list[dict], size: int = SIZE) -> np.ndarray:
    """(size, size) uint8 palette indices: 0 background, 1 + COLOURS index for each object's pixels."""
    names = list(COLOURS)
    img = np.zeros((size, size), dtype=np.uint8)
    for obj in objects:
        img[shape_mask(obj["shape"], obj["x"], obj["y"], obj["r"], size)] = 1 + names.index(obj["colour"])
    return img


def encode_pixels(img: np.ndarray) -> str:
    """Run-length code of the palette indices, row-major: ``"0*35 1*3 0*21 ..."`` (value*count)."""
    flat = img.reshape(-1).tolist()
    runs, start = [], 0
    for i in range(1, len(flat) + 1):
        if i == len(flat) or flat[i] != flat[start]:
            runs.append(f"{flat[start]}*{i - start}")
            start = i
    return " ".join(runs)


def decode_pixels(text: str, size: int = SIZE) -> np.ndarray:
    """The (size, size) uint8 palette image of a row's ``pixels`` string."""
    flat = [int(v) for run in text.split() for v, n in [run.split("*")] for _ in range(int(n))]
    if len(flat) != size * size:
        raise ValueError(f"pixels codes {len(flat)} pixels, expected {size * size} for a {size}x{size} image")
    return np.array(flat, dtype=np.uint8).reshape(size, size)


def to_rgb(img: np.ndarray) -> np.ndarray:
    """Palette image (..., H, W) -> uint8 RGB (..., H, W, 3)."""
    palette = np.array([BACKGROUND, *COLOURS.values()], dtype=np.uint8)
    return palette[img]


def _place(rng: random.Random, pairs: list[tuple[str, str]]) -> list[dict]:
    cells = rng.sample(range(GRID * GRID), len(pairs))
    objects = []
    for (colour, shape), cell in zip(pairs, cells):
        row, col = divmod(cell, GRID)
        r = rng.choice(RADII)
        x, y = col * CELL + rng.choice((3, 4)), row * CELL + rng.choice((3, 4))  # a pixel of jitter in the cell
        objects.append({"colour": colour, "shape": shape, "x": x, "y": y, "r": r})
    return objects


def caption(objects: list[dict]) -> str:
    """The objects from left to right: ``"red circle , blue square , green cross"``."""
    return " , ".join(f"{o['colour']} {o['shape']}" for o in sorted(objects, key=lambda o: (o["x"] // CELL, o["y"])))


def questions(objects: list[dict], rng: random.Random) -> list[dict]:
    """Every question of each type the image answers unambiguously (counts: the shapes present and one absent)."""
    held = lambda o: (o["colour"], o["shape"]) in HELD_OUT  # noqa: E731
    shapes = [o["shape"] for o in objects]
    colours = [o["colour"] for o in objects]
    out = []
    for o in objects:
        if shapes.count(o["shape"]) == 1:
            out.append({"type": "colour", "q": f"what colour is the {o['shape']} ?", "a": o["colour"],
                        "novel": held(o)})
        if colours.count(o["colour"]) == 1:
            out.append({"type": "shape", "q": f"what shape is the {o['colour']} object ?", "a": o["shape"],
                        "novel": held(o)})
    absent = [s for s in SHAPES if s not in shapes]
    asked = sorted(set(shapes)) + ([rng.choice(absent)] if absent and rng.random() < 0.5 else [])
    for s in asked:
        out.append({"type": "count", "q": f"how many {PLURAL[s]} are there ?", "a": NUMBERS[shapes.count(s)],
                    "novel": False})
    unique = [o for o in objects if shapes.count(o["shape"]) == 1]
    for a in unique:
        for b in unique:
            if a["x"] // CELL != b["x"] // CELL:  # different columns: "left of" is never a near tie
                out.append({"type": "left", "q": f"is the {a['shape']} left of the {b['shape']} ?",
                            "a": "yes" if a["x"] < b["x"] else "no", "novel": False})
    return out


def make_row(rng: random.Random, split: str, index: int) -> dict:
    """One image with its caption and questions. ``unseen`` images hold at least one `HELD_OUT` pair."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {SPLITS}")
    seen = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in HELD_OUT]
    n = rng.choice((1, 2, 2, 3, 3, 4))
    if split == "unseen":
        pairs = [rng.choice(sorted(HELD_OUT))] + [rng.choice(seen + sorted(HELD_OUT)) for _ in range(n - 1)]
        rng.shuffle(pairs)
    else:
        pairs = [rng.choice(seen) for _ in range(n)]
    objects = _place(rng, pairs)
    return {"id": f"{split}-{index:06d}", "pixels": encode_pixels(render(objects)), "objects": objects,
            "caption": caption(objects), "qa": questions(objects, rng)}


def generate(split: str, n: int, seed: int) -> list[dict]:
    """`n` rows of `split`, a pure function of (split, n, seed); the splits use different streams."""
    rng = random.Random(f"{seed}-{split}")
    return [make_row(rng, split, i) for i in range(n)]


def build_files(scale: str, seed: int) -> dict[str, str]:
    """minids entry point: {file name: JSONL text} of the three splits at `scale`."""
    if scale not in SCALE_ROWS:
        raise ValueError(f"scale={scale!r} is not one of {tuple(SCALE_ROWS)}")
    files = {}
    for split, n in SCALE_ROWS[scale].items():
        rows = generate(split, n, seed)
        files[f"shapes_{split}.jsonl"] = "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows)
    return files
