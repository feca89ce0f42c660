"""nanoseek.rl.rewards: rule rewards on tricky cases, and a fuzz test with hostile completions (chapter 10)."""
from __future__ import annotations

import builtins
import os
import random
import subprocess
import sys
import time

import pytest

from minids import reasoning
from nanoseek.rl import rewards as W

ROW_CD = {"task": "countdown", "numbers": [6, 1, 3, 4], "target": 24}
ROW_AR = {"task": "arithmetic", "answer": "81"}
ROW_KK = {"task": "knights_knaves", "names": ["Alice", "Bob"], "solution": [True, False]}


def wrap(think: str, answer: str) -> str:
    return f"<think>{think}</think><answer>{answer}</answer>"


@pytest.mark.parametrize("text,expected", [
    (wrap("a", "b"), 1.0),
    ("  <think>\nx\n</think>\n\n<answer> 3 </answer>\n", 1.0),  # whitespace around blocks is fine
    (wrap("", ""), 1.0),
    ("hello " + wrap("a", "b"), 0.0),                         # text before <think>
    (wrap("a", "b") + " bye", 0.0),                           # text after </answer>
    ("<think>a</think> and so <answer>b</answer>", 0.0),      # text between the blocks
    ("<answer>b</answer><think>a</think>", 0.0),              # wrong order
    (wrap("a", "b") + wrap("c", "d"), 0.0),                   # two of each
    ("<think>a<think>b</think><answer>c</answer>", 0.0),      # nested / repeated tag
    ("<think>a</think><answer>b", 0.0),                       # unclosed
    ("<think>a</answer><answer>b</think>", 0.0),              # crossed
    ("", 0.0), (None, 0.0), (123, 0.0), (b"<think>a</think><answer>b</answer>", 1.0),
])
def test_format_reward(text, expected):
    assert W.format_reward(text) == expected


@pytest.mark.parametrize("answer,expected", [
    ("6/(1-3/4)", 1.0),            # needs exact rationals: 1 - 3/4 = 1/4
    (" 6 / ( 1 - 3 / 4 ) ", 1.0),
    ("6÷(1−3÷4)", 1.0),            # Unicode operators
    ("6/(1-3/4)=24", 1.0),         # "= target" suffix accepted
    ("6/(1-3/4)=25", 0.0),
    ("6*4*1*3/3", 0.0),            # 3 used twice, so the multiset differs
    ("6*4", 0.0),                  # numbers missing
    ("6*4*(3-3+1)", 0.0),
    ("6*4*1", 0.0),
    ("(6*4)*(4-3)", 0.0),          # 4 twice, 1 missing
    ("24", 0.0),
    ("6/(1-3/4", 0.0), ("6/(1-3/4))", 0.0), ("6/((1-3/4)", 0.0),
    ("-6/(1-3/4)*-1", 0.0),        # no unary minus
    ("6**4", 0.0), ("6^4", 0.0), ("6.0/(1-3/4)", 0.0),
    ("6/(3/4-3/4)*1", 0.0),        # division by zero
    ("", 0.0), ("()", 0.0), ("6 4 1 3", 0.0),
])
def test_countdown_reward(answer, expected):
    assert W.countdown_reward(wrap("", answer), ROW_CD) == expected


def test_countdown_parser_values_and_errors():
    assert W.parse_expression("2+3*4")[0] == 14          # precedence
    assert W.parse_expression("(2+3)*4")[0] == 20
    assert W.parse_expression("8-3-2")[0] == 3           # left associative
    assert W.parse_expression("8/4/2")[0] == 1
    assert W.parse_expression("1/3+1/6")[0] == W.Fraction(1, 2)
    assert W.parse_expression("((((7))))") == (7, [7])
    for bad in ["9**9**9", "10^10^10", "(" * 17 + "1" + ")" * 17, "1" * 7, "1e9", "abs(3)",
                "__import__('os')", "*".join(["99999"] * 6), "3 +", ""]:
        with pytest.raises(W.ExpressionError):
            W.parse_expression(bad)


@pytest.mark.parametrize("answer,expected", [
    ("81", 1.0), (" 81\n", 1.0), ("081", 1.0), ("81.0", 0.0), ("+81", 0.0), ("8 1", 0.0),
    ("٨١", 0.0), ("80", 0.0), ("", 0.0), ("9" * 41, 0.0),
])
def test_arithmetic_reward(answer, expected):
    assert W.arithmetic_reward(wrap("", answer), ROW_AR) == expected


def test_answer_is_the_last_answer_block():
    assert W.arithmetic_reward("<answer>5</answer> no, <answer>81</answer>", ROW_AR) == 1.0
    assert W.arithmetic_reward("<answer>81</answer> no, <answer>5</answer>", ROW_AR) == 0.0
    assert W.arithmetic_reward("81", ROW_AR) == 0.0  # no answer block, no accuracy reward


@pytest.mark.parametrize("answer,expected", [
    ("Alice is a knight, Bob is a knave", 1.0), ("bob is a KNAVE and alice is a knight.", 1.0),
    ("Alice is a knight; Bob is a knave", 1.0), ("Alice is a knight", 0.0),
    ("Alice is a knight, Bob is a knight", 0.0), ("Alice is a knight, Alice is a knight, Bob is a knave", 0.0),
    ("Alice is a knight, Bob is a knave, Carol is a knave", 0.0), ("Alice knight, Bob knave", 0.0),
])
def test_knights_knaves_reward(answer, expected):
    assert W.knights_knaves_reward(wrap("", answer), ROW_KK) == expected


def test_r1_reward_sums_accuracy_and_format():
    assert W.r1_reward(wrap("8+1", "81"), ROW_AR) == pytest.approx(1.1)
    assert W.r1_reward("junk <answer>81</answer>", ROW_AR) == pytest.approx(1.0)
    assert W.r1_reward(wrap("", "80"), ROW_AR) == pytest.approx(0.1)
    assert W.r1_reward(wrap("", "80"), {"task": "chess"}) == pytest.approx(0.1)
    assert W.accuracy_reward(wrap("", "81"), None) == 0.0


# --------------------------------------------------------------------------------------------------------
# Fuzz: thousands of hostile completions. Every call returns a float quickly; nothing is executed.
# --------------------------------------------------------------------------------------------------------
HOSTILE = [
    "9**9**9", "10^10^10", "9**9**9**9", "2**10000000", "(" * 10000 + "1" + ")" * 10000, "(" * 100000,
    "1" * 100000, "99999*" * 2000 + "1", "1/" * 5000 + "1", "__import__('os').system('touch PWNED')",
    "exec('import os; os.system(\"touch PWNED\")')", "eval('1+1')", "compile('1','x','eval')",
    "lambda: 1", "().__class__.__bases__[0].__subclasses__()", "open('/etc/passwd').read()",
    "\ud800", "\udfff\ud800", "\x00" * 100, "\u202e24", "𝟐𝟒", "٢٤", "1e308*1e308", "float('nan')",
    "<think>", "</think>", "<answer>", "</answer>", "<answer><answer></answer>", "</answer><answer>",
    "<think></think><answer>" + "(" * 5000, "<answer>" * 10000, "</answer>" * 10000,
    "6/(1-3/4)", "6/(1-3/4)=24", "24", "Alice is a knight", "81", "-81", "0/0", "1/0",
]


def hostile_completions(n: int, seed: int = 0) -> list[object]:
    rng = random.Random(seed)
    out: list[object] = [
        "x" * (1 << 20), "<think>" + "a" * (1 << 20) + "</think><answer>81</answer>",  # megabyte strings
        ("<answer>" + "(" * 300000 + "</answer>"), b"\xff\xfe\xfd" * 1000, b"<answer>\xc3\x28</answer>",
        bytearray(b"\x80" * (1 << 20)), None, 12, 3.5, ["<answer>81</answer>"], object(),
    ]
    alphabet = "0123456789+-*/()^= \n.eExX×÷−<>/abcdefghijklmnopqrstuvwxyz_'\"\\\ud800\udc00\x00"
    while len(out) < n:
        kind = rng.randrange(5)
        if kind == 0:
            body = rng.choice(HOSTILE)
        elif kind == 1:
            body = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 200)))
        elif kind == 2:
            body = "".join(rng.choice(HOSTILE) for _ in range(rng.randrange(1, 6)))
        elif kind == 3:
            depth = rng.choice([15, 16, 17, 50, 1000])
            body = "(" * depth + rng.choice(["6/(1-3/4)", "1", "9**9", ""]) + ")" * rng.choice([depth, depth - 1])
        else:
            piece = rng.choice(HOSTILE)
            body = piece * min(rng.choice([1, 10, 1000, 20000]), (1 << 21) // len(piece))  # at most ~2 MB
        wrapper = rng.randrange(4)
        if wrapper == 0:
            text = f"<think>{rng.choice(HOSTILE)}</think><answer>{body}</answer>"
        elif wrapper == 1:
            text = f"<answer>{body}"
        elif wrapper == 2:
            text = body
        else:
            text = f"<think>{body}</think><answer>{body}</answer>"
        out.append(text.encode("utf-8", "surrogatepass") if rng.random() < 0.1 else text)
    return out


def test_fuzz_hostile_completions(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    calls: list[str] = []
    watched = (os.path.abspath(W.__file__), os.path.abspath(reasoning.__file__))

    def guard(name, original):
        def f(*args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if os.path.abspath(caller) in watched or name in ("eval", "exec", "os.system", "subprocess.Popen"):
                calls.append(f"{name} from {caller}")
                raise RuntimeError(f"{name} called during a reward call")
            return original(*args, **kwargs)
        return f

    for name in ("eval", "exec", "compile", "__import__", "open"):
        monkeypatch.setattr(builtins, name, guard(name, getattr(builtins, name)))
    monkeypatch.setattr(os, "system", guard("os.system", os.system))
    monkeypatch.setattr(subprocess, "Popen", guard("subprocess.Popen", subprocess.Popen))

    rows = [ROW_CD, ROW_AR, ROW_KK, {"task": "countdown", "numbers": [9, 9, 9], "target": 81},
            {"task": "arithmetic", "answer": "-81"}]
    fns = [W.format_reward, W.r1_reward, W.accuracy_reward]
    slowest = 0.0
    n = 0
    clock = time.perf_counter  # bound before the patching above can matter
    for i, text in enumerate(hostile_completions(3000)):
        for fn in fns:
            args = (text,) if fn is W.format_reward else (text, rows[i % len(rows)])
            t0 = clock()
            value = fn(*args)
            dt = clock() - t0
            slowest = max(slowest, dt)
            n += 1
            assert type(value) is float and 0.0 <= value <= 1.1, (fn.__name__, repr(text)[:80], value)
    assert not calls, f"forbidden calls: {calls[:5]}"
    assert not (tmp_path / "PWNED").exists()
    # "A few milliseconds": generous (20 ms) so a loaded shared CPU cannot flake it; typical is ~10 µs.
    assert slowest < 0.020, f"slowest reward call took {slowest * 1e3:.1f} ms over {n} calls"
