"""A character-level vocabulary for the reasoning tasks, with the R1 tags as single tokens. (Chapter 10.)

The tiny policies of chapter 10 read and write only a task's alphabet (digits, operators, a few letters), so
a character vocabulary is enough; ``<think>``, ``</think>``, ``<answer>``, ``</answer>`` are one token each
(as special tokens are in a real tokenizer), plus ``<pad>``, ``<bos>`` and ``<eos>``. Decoding turns the tag
tokens back into their text, so the rule rewards read exactly what a real model would have written.
"""
from __future__ import annotations

from nanoseek import validate as V
from nanoseek.rl.rewards import TAGS

SPECIALS = ("<pad>", "<bos>", "<eos>") + TAGS


class TaskVocab:
    """encode/decode between text and ids over `alphabet` + `SPECIALS` (specials first: pad=0, bos=1, eos=2)."""

    def __init__(self, alphabet: str):
        chars = sorted(set(alphabet))
        self.itos: list[str] = list(SPECIALS) + chars
        self.stoi: dict[str, int] = {s: i for i, s in enumerate(self.itos)}
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """Ids of `text`; tags and other specials written literally are single tokens. KeyError names an
        unknown character."""
        ids, i = [], 0
        while i < len(text):
            if text[i] == "<":
                for s in SPECIALS:
                    if text.startswith(s, i):
                        ids.append(self.stoi[s])
                        i += len(s)
                        break
                else:
                    ids.append(self._char(text[i]))
                    i += 1
                continue
            ids.append(self._char(text[i]))
            i += 1
        return ids

    def _char(self, ch: str) -> int:
        try:
            return self.stoi[ch]
        except KeyError:
            raise KeyError(f"character {ch!r} is not in this vocabulary's alphabet") from None

    def decode(self, ids: list[int]) -> str:
        """Text of `ids`; pad/bos/eos are dropped, tags kept as text. ValueError names an id outside the
        vocabulary (a negative one would otherwise index from the end)."""
        return "".join(self.itos[i] for i in V.token_ids(ids, len(self.itos), "ids") if i > 2)
