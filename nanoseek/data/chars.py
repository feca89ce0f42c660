"""A character-level vocabulary: the tokenizer of chapter 1, before BPE arrives in chapter 2."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from nanoseek import validate as V


class CharVocab:
    """Maps each distinct character of a training text to an id (sorted, so the ids are reproducible)."""

    def __init__(self, chars: list[str]):
        if len(set(chars)) != len(chars):
            raise ValueError("CharVocab chars must be distinct")
        self.chars = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharVocab":
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        try:
            return [self.stoi[c] for c in text]
        except KeyError as err:
            raise KeyError(f"character {err.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids) -> str:
        """Text of a sequence (or 1-D tensor) of ids; ValueError names an id outside 0..len(self) - 1."""
        if isinstance(ids, torch.Tensor) and ids.dim() != 1:
            raise ValueError(f"decode expects a 1-D sequence of ids, got a tensor of shape {tuple(ids.shape)}")
        return "".join(self.chars[i] for i in V.token_ids(ids, len(self.chars), "ids"))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"chars": self.chars}, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "CharVocab":
        return cls(json.loads(Path(path).read_text(encoding="utf-8"))["chars"])
