"""Checkers for chapter 2's exercises (a byte-level BPE tokenizer)."""
from __future__ import annotations

import functools
from typing import Callable, Sequence

from nanoseek.exercises import checking, expect
from nanoseek.tokenizer import Tokenizer, count_pairs, merge_pair, split_text, tie_order

_TEXTS = (
    "the cat sat on the mat; the cat ate the rat.",
    "aaaa bbb aaaa abab abab",
    "小猫在花园里玩。小猫很高兴！小狗也在花园里。",
    "Lily and Tom played 123 games. 小红和小明玩了123个游戏。",
)


@functools.lru_cache(maxsize=1)
def _reference() -> Tokenizer:
    text = (
        "Once upon a time, Lily found a red ball in the park. She was very happy. "
        "从前，莉莉在公园里找到了一个红色的球。她非常高兴。"
        # digits: the split cuts "123456" into "123" + "456", so a learned merge such as ("3", "4") can sit
        # across a chunk boundary, and an encode that skips `split_text` gives other ids
        "She counted 34, 343 and 3434 stars. "
    ) * 3
    return Tokenizer.train(text, 330, special_tokens=["<|endoftext|>"])


def check_merge(merge: Callable[[list[int], tuple[int, int], int], list[int]]) -> bool:
    """Exercise 1: one BPE merge step, ``merge(ids, pair, new_id)``."""

    def checks():
        cases = [
            ([1, 2, 3, 1, 2], (1, 2), 9),
            ([], (1, 2), 9),
            ([1], (1, 2), 9),
            ([5, 5, 5], (5, 5), 7),  # overlapping: left to right
            ([5, 5, 5, 5], (5, 5), 7),
            ([1, 2, 1, 2, 2], (2, 1), 8),
            ([3, 4], (4, 3), 8),  # order matters
            (list("hello world".encode()), (ord("l"), ord("l")), 256),
        ]
        for ids, pair, new in cases:
            want = merge_pair(ids, pair, new)
            got = merge(list(ids), pair, new)
            expect(isinstance(got, list), f"return a list of ints, got {type(got).__name__}")
            expect(got == want, f"merge({ids}, {pair}, {new}) should be {want}, got {got}")

    return checking("one BPE merge step", checks)


def check_most_frequent_pair(most_frequent_pair: Callable[[list[list[int]]], tuple[int, int]]) -> bool:
    """Exercise 2: the pair to merge next, counted inside chunks only, ties broken by ``tie_order``."""

    def checks():
        cases = [
            [[1, 2, 3], [1, 2]],
            [[1, 2], [2, 3], [3, 1]],  # a three-way tie: smallest (tie_order(a), tie_order(b)) wins
            [[5, 5, 5]],  # overlapping occurrences count twice
            [[1, 2], [3, 4, 1, 2], [7]],
            [[1], [2], [1], [2], [3, 4]],  # pairs never cross chunks: (1, 2) is not a pair here, (3, 4) is
            [[7, 7, 7, 7], [1, 2], [1, 2]],  # (7, 7) is seen 3 times (overlaps count), (1, 2) twice
        ] + [[list(c.encode()) for c in split_text(t)] for t in _TEXTS]
        for chunks in cases:
            counts: dict = {}
            for c in chunks:
                count_pairs(c, counts)
            want = min(counts, key=lambda p: (-counts[p], tie_order(p[0]), tie_order(p[1])))
            got = most_frequent_pair([list(c) for c in chunks])
            expect(isinstance(got, tuple) and len(got) == 2, f"return a pair (a, b), got {got!r}")
            expect(
                tuple(got) == want,
                f"for chunks {chunks if len(str(chunks)) < 120 else str(chunks)[:120] + '...'} the pair is "
                f"{want} (seen {counts[want]} times), got {tuple(got)} (seen {counts.get(tuple(got), 0)} times)",
            )

    return checking("most frequent pair", checks)


def check_encode(encode: Callable[[str, Sequence[tuple[int, int, int]]], list[int]]) -> bool:
    """Exercise 3: encode a text with a list of learned merges ``(a, b, new_id)``."""

    def checks():
        tok = _reference()
        merges = tok.merges
        for text in _TEXTS + ("", " ", "Lily found a ball.", "她非常高兴！", "🙂 e\u0301", "343434 and 1234",
                     "pyiyapy antaherer"):  # a later merge that occurs more often than an earlier one
            want = tok.encode(text)
            got = encode(text, merges)
            expect(isinstance(got, list), f"return a list of ints, got {type(got).__name__}")
            expect(got == want, f"encode({text!r}) should be {want}, got {got}")

    return checking("encode with merges", checks)


def check_stream_decode(stream_decode: Callable[[Tokenizer, list[int]], list[str]]) -> bool:
    """Exercise 4: decode a stream of ids piece by piece without ever printing half a character."""

    def checks():
        tok = _reference()
        for text in ("Lily found a ball.", "她非常高兴！", "Mixed 中文 and emoji 🙂👍🏽 e\u0301", "猫" * 5):
            for ids in (tok.encode(text), list(text.encode())):  # the second cuts every character in bytes
                got = stream_decode(tok, list(ids))
                expect(isinstance(got, list) and all(isinstance(p, str) for p in got),
                       f"return a list of str, got {type(got).__name__}")
                expect("".join(got) == text, f"the pieces must join to {text!r}, got {''.join(got)!r}")
                expect(all("\ufffd" not in p for p in got),
                       f"no piece may contain the replacement character U+FFFD; got {got}")
                expect(len(got) == len(ids), f"yield one piece (maybe '') per id: {len(ids)} ids, {len(got)} pieces")

    return checking("streaming decode", checks)


def check_train_bpe(train_bpe: Callable[[str, int], list]) -> bool:
    """Exercise 5: BPE training, ``train_bpe(text, vocab_size) -> [(a, b, new_id), ...]``, against the package's
    trainer (the same merges as Hugging Face ``tokenizers``)."""

    def checks():
        cases = [("aaabdaaabac", 259), ("the cat sat on the mat; the cat ate the rat. " * 3, 280),
                 (_TEXTS[2] * 2, 300), (_TEXTS[3] + " " + _TEXTS[1], 290)]
        for text, vocab_size in cases:
            want = Tokenizer.train(text, vocab_size).merges
            assert [m[2] for m in want] == list(range(256, 256 + len(want)))  # fresh ids: a fair reference
            got = train_bpe(text, vocab_size)
            expect(isinstance(got, list), f"return a list of (a, b, new_id) triples, got {type(got).__name__}")
            got = [tuple(m) for m in got]
            expect(len(got) == len(want), f"train_bpe({text[:30]!r}..., {vocab_size}) should learn {len(want)} "
                                          f"merges (vocab_size - 256), got {len(got)}")
            for r, (g, w) in enumerate(zip(got, want)):
                expect(g == w, f"on {text[:30]!r}...: merge {r} should be {w}, got {g} (count pairs inside "
                               "chunks of split_text, break ties with tie_order, new ids 256, 257, ...)")

    return checking("BPE training", checks)


__all__ = ["check_merge", "check_most_frequent_pair", "check_encode", "check_stream_decode", "check_train_bpe"]
