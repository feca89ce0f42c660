"""The minids instruction rows (chat SFT data about the stories), by split and language. (Chapter 3.)

Rows come from `minids/instructions.py`: `{"id", "lang", "task", "plot", "messages", "answer"}` where
`messages` is a user turn and an assistant turn, and `answer` is the fact a correct reply contains (None for
`continue` rows, whose reply cannot be checked). `train` and `test` share no story and no prompt.
At `tiny` the committed `minids/tiny/instructions_*.jsonl` are read; `full` is generated into the cache.
"""
from __future__ import annotations

import functools
import json

from nanoseek.data.stories import minids_path
from nanoseek.env import SCALES, scale as env_scale

SPLITS = ("train", "test")
LANGS = ("en", "zh", "both")


@functools.lru_cache(maxsize=4)
def _rows(split: str, scale: str) -> tuple[str, ...]:
    path = minids_path("instructions", f"instructions_{split}.jsonl", scale)
    return tuple(line for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def load_instructions(split: str = "train", lang: str = "both", scale: str | None = None,
                      tasks: tuple[str, ...] | None = None) -> list[dict]:
    """Instruction rows of `split` ("train"/"test") in `lang` ("en"/"zh"/"both"), optionally only `tasks`."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {SPLITS}")
    if lang not in LANGS:
        raise ValueError(f"lang={lang!r} is not one of {LANGS}")
    scale = env_scale() if scale is None else scale
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r} is not one of {SCALES}")
    rows = [json.loads(line) for line in _rows(split, scale)]
    if lang != "both":
        rows = [row for row in rows if row["lang"] == lang]
    if tasks is not None:
        known = {row["task"] for row in rows}
        for task in tasks:
            if task not in known:
                raise ValueError(f"task={task!r} is not one of {sorted(known)}")
        rows = [row for row in rows if row["task"] in tasks]
    return rows


__all__ = ["load_instructions", "SPLITS", "LANGS"]
