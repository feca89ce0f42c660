"""Streaming encode (`encode_iterable`) equals `encode_ordinary` wherever the text is cut; bits per byte."""
from __future__ import annotations

import math
import random

import pytest

from nanoseek.tokenizer import GPT2_SPLIT_PATTERN, Tokenizer, bits_per_byte, encode_iterable

TEXT = ("Once upon a time,   Lily found 12345 red balls.\n\n  She said: \"Hello!!\"\t\r\n"
        "从前，莉莉在公园里找到了一个红色的球。她非常高兴！\n"
        "Mixed 中文 and emoji 🙂👍🏽 e\u0301  \n\n\n   trailing   spaces   ") * 4


@pytest.fixture(scope="module")
def tokenizers():
    return [Tokenizer.train(TEXT, 300), Tokenizer.train(TEXT, 290, pattern=GPT2_SPLIT_PATTERN)]


def random_cuts(text: str, rng: random.Random, max_len: int) -> list[str]:
    pieces, i = [], 0
    while i < len(text):
        j = i + rng.randint(1, max_len)
        pieces.append(text[i:j])
        i = j
    return pieces


@pytest.mark.parametrize("max_len", [1, 2, 3, 7, 40])
def test_streaming_equals_whole_text_on_random_cuts(tokenizers, max_len):
    rng = random.Random(max_len)
    for tok in tokenizers:
        want = tok.encode_ordinary(TEXT)
        for _ in range(5):
            assert list(encode_iterable(tok, random_cuts(TEXT, rng, max_len))) == want


def test_streaming_lines_of_a_file_and_edge_cases(tokenizers):
    tok = tokenizers[0]
    lines = TEXT.splitlines(keepends=True)
    assert list(encode_iterable(tok, iter(lines))) == tok.encode_ordinary(TEXT)
    assert list(encode_iterable(tok, [])) == []
    assert list(encode_iterable(tok, ["", "", "a", ""])) == tok.encode_ordinary("a")


def test_streaming_is_lazy_and_bounded():
    tok = Tokenizer.train("the cat sat on the mat " * 20, 280)

    def endless():
        while True:
            yield "the cat sat on the mat "

    stream = encode_iterable(tok, endless())
    first = [next(stream) for _ in range(1000)]  # an endless source still yields
    assert first[:6] == tok.encode_ordinary("the cat sat on the mat ")[:6]


def test_streaming_rejects_bad_input(tokenizers):
    with pytest.raises(TypeError, match="piece"):
        list(encode_iterable(tokenizers[0], ["ok", b"bytes"]))
    with pytest.raises(ValueError, match="hold"):
        list(encode_iterable(tokenizers[0], ["x"], hold=1))
    with pytest.raises(ValueError, match="surrogate"):
        list(encode_iterable(tokenizers[0], ["abc \ud800 def", " more text here and here"]))


def test_bits_per_byte():
    # a character-level model on ASCII text: one token per byte, so bits/byte = nats/char / ln 2
    assert bits_per_byte(1.47, 1000, 1000) == pytest.approx(1.47 / math.log(2))
    # the same information in fewer, longer tokens gives the same bits per byte
    assert bits_per_byte(4 * 1.47, 250, 1000) == pytest.approx(bits_per_byte(1.47, 1000, 1000))
    with pytest.raises(ValueError, match="n_bytes"):
        bits_per_byte(1.0, 10, 0)
    with pytest.raises(ValueError, match="n_tokens"):
        bits_per_byte(1.0, 0, 10)
