"""The minids story corpus as text, split by story into train and val. (Chapter 1.)

The stories come from the seeded generator `minids/stories.py` (English and Chinese, TinyStories-like).
At `tiny` scale the committed files `minids/tiny/stories_{en,zh}.txt` (about 1 MB each) are read; at
`full` scale (about 50 MB a language) the generator writes them once into the cache
(`$NANOSEEK_CACHE` or `~/.cache/nanoseek`, under `minids/full/`) and later calls read them from there.

The split is by story and fixed: stories are separated by one blank line, and the **last 5%** of a
language's stories (at least one) are `val`, the rest `train`; no story is in both.
"""
from __future__ import annotations

import functools
import importlib
import sys
from pathlib import Path

from nanoseek.env import SCALES, scale as env_scale

LANGS = ("en", "zh", "both")
SPLITS = ("train", "val")
VAL_FRACTION = 0.05
_REPO = Path(__file__).resolve().parents[2]


def _minids(module: str):
    """Import `minids.<module>` from the repository that holds this package (a clone, `pip install -e .`)."""
    try:
        return importlib.import_module(f"minids.{module}")
    except ModuleNotFoundError:
        if (_REPO / "minids" / "stories.py").exists() and str(_REPO) not in sys.path:
            sys.path.insert(0, str(_REPO))
            return importlib.import_module(f"minids.{module}")
        raise ModuleNotFoundError(
            "the minids generators are not importable: run from a clone of the nanoseek repository "
            "(pip install -e .)") from None


def split_stories(text: str) -> list[str]:
    """Stories of a corpus text: paragraphs separated by blank lines, stripped, empty ones dropped."""
    return [s.strip() for s in text.split("\n\n") if s.strip()]


@functools.lru_cache(maxsize=16)
def minids_path(entry: str, fname: str, scale: str) -> Path:
    """The file `fname` of the minids generator `entry` at `scale`, generating it into the cache if needed.

    tiny: the committed `minids/tiny/<fname>` next to the generators when present; otherwise (and at full
    scale) the generator writes all of its files once into `<cache>/minids/<scale>/` (same bytes: seeded).
    """
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r} is not one of {SCALES}")
    build = _minids("build")
    if scale == "tiny":
        committed = build.HERE / "tiny" / fname  # the committed files, next to the generators
        if committed.exists():
            return committed
    out = build.cache_dir() / "minids" / scale
    if not (out / fname).exists():
        build.build(scale, out, (build.get_entry(entry),))
    if not (out / fname).exists():
        raise FileNotFoundError(f"minids generator {entry!r} did not write {fname!r} into {out}")
    return out / fname


def corpus_path(lang: str, scale: str) -> Path:
    """The file that holds the whole story corpus of one language at `scale` (generated first if needed)."""
    if lang not in ("en", "zh"):
        raise ValueError(f"lang={lang!r} is not one of ('en', 'zh')")
    return minids_path("stories", f"stories_{lang}.txt", scale)


@functools.lru_cache(maxsize=4)
def _stories(lang: str, scale: str) -> tuple[str, ...]:
    return tuple(split_stories(corpus_path(lang, scale).read_text(encoding="utf-8")))


def n_val_stories(n_stories: int) -> int:
    """How many of `n_stories` stories are in `val`: the last 5%, at least one."""
    return max(1, int(n_stories * VAL_FRACTION))


def load_story_list(lang: str = "en", split: str = "train", scale: str | None = None) -> list[str]:
    """The stories of one language (`en` or `zh`) and split, as a list of strings."""
    if lang not in ("en", "zh"):
        raise ValueError(f"lang={lang!r} is not one of ('en', 'zh')")
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {SPLITS}")
    scale = env_scale() if scale is None else scale
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r} is not one of {SCALES}")
    stories = _stories(lang, scale)
    n_val = n_val_stories(len(stories))
    return list(stories[:-n_val] if split == "train" else stories[-n_val:])


def load_stories(lang: str = "en", split: str = "train", scale: str | None = None) -> str:
    """The minids stories of `lang` ("en", "zh" or "both") and `split` ("train" or "val") as one text.

    Stories are joined by a blank line and the text ends with a newline. "both" is the English part followed
    by the Chinese part (each split the same way). `scale=None` uses `nanoseek.env.scale()`; `full` generates
    and caches the large corpus on first use (tens of seconds).
    """
    if lang not in LANGS:
        raise ValueError(f"lang={lang!r} is not one of {LANGS}")
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {SPLITS}")
    langs = ("en", "zh") if lang == "both" else (lang,)
    stories = [story for one in langs for story in load_story_list(one, split, scale)]
    return "\n\n".join(stories) + "\n"


__all__ = ["load_stories", "load_story_list", "split_stories", "corpus_path", "minids_path", "n_val_stories",
           "VAL_FRACTION", "LANGS", "SPLITS"]
