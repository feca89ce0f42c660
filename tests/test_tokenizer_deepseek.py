"""`deepseek_pattern` as one regex splits text exactly as DeepSeek-V3's chain of three isolating splits does
when `tokenizers` runs it (the chain as published in DeepSeek-V3's tokenizer.json)."""
from __future__ import annotations

import random

import pytest

from nanoseek.tokenizer import (DEEPSEEK_LLM_DIGITS_SPLIT_PATTERN, DEEPSEEK_V3_SPLIT_PATTERN, Tokenizer,
                                deepseek_pattern, split_text)

tokenizers = pytest.importorskip("tokenizers")
from tokenizers import Regex, pre_tokenizers as pt  # noqa: E402

V3_REST = (r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"""
           r"""| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")


def chain(digits: str):
    return pt.Sequence([pt.Split(Regex(digits), "isolated"), pt.Split(Regex("[一-龥぀-ゟ゠-ヿ]+"), "isolated"),
                        pt.Split(Regex(V3_REST), "isolated")])


SAMPLES = [
    "Lily had 12345 apples,  3 pears.\n\n她说：“你好！”我有100个苹果。 .Net ok",
    "In 2024, DeepSeek-V3 had 671B parameters (37B active); pi = 3.14159...",
    "今天是2024年12月1日，气温-3℃。  明天   5度。\r\n\t下一行",
    "ひらがなとカタカナ、漢字123と English mixed　全角スペース",
    "e\u0301 café naïve 🙂👍🏽 x²+y²=z² ١٢٣ １２３ $100.00 #hashtag @user",
    "a  3  b   中  \n\n  end   ",
    "don't I'll we've THEY'RE 'quoted' \"double\" ...!!! ?!",
    "   leading and trailing   \n",
]


@pytest.mark.parametrize("digits, ref", [(3, r"\p{N}{1,3}"), (1, r"\p{N}")])
def test_one_regex_equals_deepseeks_chain(digits, ref):
    pattern, reference = deepseek_pattern(digits), chain(ref)
    rng = random.Random(digits)
    alphabet = "".join(SAMPLES)
    texts = SAMPLES + ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60))) for _ in range(300)]
    for text in texts:
        want = [piece for piece, _ in reference.pre_tokenize_str(text)]
        assert split_text(text, pattern) == want, text


def test_digits_and_cjk_rules():
    assert split_text("3141592", DEEPSEEK_V3_SPLIT_PATTERN) == ["314", "159", "2"]
    assert split_text("3141592", DEEPSEEK_LLM_DIGITS_SPLIT_PATTERN) == list("3141592")
    chunks = split_text("她非常高兴！蜡笔。", DEEPSEEK_V3_SPLIT_PATTERN)
    assert chunks == ["她非常高兴", "！", "蜡笔", "。"]  # CJK never joins its punctuation
    with pytest.raises(ValueError, match="digits"):
        deepseek_pattern(2)


def test_a_tokenizer_trains_and_round_trips_with_the_pattern():
    text = "她有12个苹果。He has 345 pears! " * 20
    tok = Tokenizer.train(text, 300, pattern=DEEPSEEK_LLM_DIGITS_SPLIT_PATTERN)
    ids = tok.encode("我有678个。")
    assert tok.decode(ids) == "我有678个。"
    assert all(not any(c.isdigit() for c in tok.decode([i])) or len(tok.decode([i]).strip()) == 1 for i in ids)
