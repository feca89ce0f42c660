"""Rule rewards in the DeepSeek-R1-Zero style: a format reward and per-task accuracy rewards. (Chapter 10.)

R1-Zero is trained with two rule rewards and no reward model: *accuracy* (is the final answer right, checked
by a program) and *format* (did the model put its reasoning between ``<think>`` and ``</think>`` and its
answer between ``<answer>`` and ``</answer>``).

A completion is untrusted text written by a model that is being optimised to make these functions return
large numbers. So every function here:

- returns a float and never raises (anything unexpected is reward 0.0);
- bounds its cost before doing any work: completions longer than `MAX_COMPLETION_CHARS` score 0.0, an
  answer longer than `MAX_ANSWER_CHARS` scores 0.0;
- never calls `eval`, `exec` or `compile`: the Countdown checker tokenises and parses the expression itself
  (numbers, + - * / and their Unicode forms × ÷ −, parentheses) and evaluates it in exact rationals
  (`fractions.Fraction`), bounding nesting depth and the size of every intermediate result, so
  ``9**9**9`` is a syntax error and ``(((...)))`` ten thousand deep is refused at depth `MAX_DEPTH`.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Callable, Iterable

MAX_COMPLETION_CHARS = 16_384
MAX_ANSWER_CHARS = 256
MAX_DEPTH = 16
MAX_TOKENS = 64
MAX_NUMBER_DIGITS = 6
MAX_BITS = 64  # numerator and denominator of every intermediate result stay below 2**64

THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE = "<think>", "</think>", "<answer>", "</answer>"
TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)


def _as_text(completion: object) -> str | None:
    """The completion as a str of bounded length, or None. Bytes are decoded leniently (bad UTF-8 becomes
    U+FFFD); lone surrogates in a str are kept (they are only compared, never encoded)."""
    if isinstance(completion, (bytes, bytearray)):
        if len(completion) > 4 * MAX_COMPLETION_CHARS:
            return None
        completion = bytes(completion).decode("utf-8", errors="replace")
    if not isinstance(completion, str) or len(completion) > MAX_COMPLETION_CHARS:
        return None
    return completion


def parse_think_answer(completion: object) -> tuple[str, str] | None:
    """(think, answer) when the completion is exactly ``<think>…</think><answer>…</answer>`` (whitespace
    allowed around and between the blocks, each tag exactly once), else None. Linear time, no regex."""
    text = _as_text(completion)
    if text is None or any(text.count(tag) != 1 for tag in TAGS):
        return None
    i0, i1, i2, i3 = (text.find(tag) for tag in TAGS)
    if not (i0 < i1 < i2 < i3):
        return None
    if text[:i0].strip() or text[i1 + len(THINK_CLOSE):i2].strip() or text[i3 + len(ANSWER_CLOSE):].strip():
        return None
    return text[i0 + len(THINK_OPEN):i1], text[i2 + len(ANSWER_OPEN):i3]


def extract_answer(completion: object) -> str | None:
    """The text inside the last ``<answer>…</answer>`` pair (format not otherwise checked), or None."""
    text = _as_text(completion)
    if text is None:
        return None
    end = text.rfind(ANSWER_CLOSE)
    if end < 0:
        return None
    start = text.rfind(ANSWER_OPEN, 0, end)
    if start < 0:
        return None
    answer = text[start + len(ANSWER_OPEN):end]
    return answer if len(answer) <= MAX_ANSWER_CHARS else None


def _never_raises(fn: Callable[..., float]) -> Callable[..., float]:
    """Wrap a reward so that any exception (including RecursionError, MemoryError) is reward 0.0."""

    def wrapper(*args, **kwargs) -> float:
        try:
            value = float(fn(*args, **kwargs))
        except Exception:  # the model's text must never crash training
            return 0.0
        return value if value == value else 0.0  # NaN -> 0.0

    wrapper.__name__, wrapper.__doc__, wrapper.__wrapped__ = fn.__name__, fn.__doc__, fn
    return wrapper


@_never_raises
def format_reward(completion: object) -> float:
    """1.0 when the completion is exactly ``<think>…</think><answer>…</answer>``, else 0.0."""
    return 1.0 if parse_think_answer(completion) is not None else 0.0


# ---------------------------------------------------------------------------------------------------------
# The Countdown expression checker: a tokenizer and a recursive-descent parser over exact rationals.
# ---------------------------------------------------------------------------------------------------------
class ExpressionError(ValueError):
    """The text is not a bounded arithmetic expression."""


_OP_ALIASES = {"+": "+", "-": "-", "−": "-", "–": "-", "*": "*", "×": "*", "x": "*", "X": "*", "·": "*",
               "/": "/", "÷": "/"}


def tokenize_expression(text: str) -> list[tuple[str, object]]:
    """Tokens ('num', int) / ('op', '+-*/') / ('(', None) / (')', None); ExpressionError on anything else."""
    if not isinstance(text, str):
        raise ExpressionError(f"expression must be str, got {type(text).__name__}")
    if len(text) > MAX_ANSWER_CHARS:
        raise ExpressionError(f"expression longer than {MAX_ANSWER_CHARS} characters")
    tokens: list[tuple[str, object]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\n\r":
            i += 1
        elif "0" <= ch <= "9":
            j = i
            while j < n and "0" <= text[j] <= "9":
                j += 1
            if j - i > MAX_NUMBER_DIGITS:
                raise ExpressionError(f"number with more than {MAX_NUMBER_DIGITS} digits")
            tokens.append(("num", int(text[i:j])))
            i = j
        elif ch in _OP_ALIASES:
            tokens.append(("op", _OP_ALIASES[ch]))
            i += 1
        elif ch in "()":
            tokens.append((ch, None))
            i += 1
        else:
            raise ExpressionError(f"unexpected character {ch!r} at {i}")
        if len(tokens) > MAX_TOKENS:
            raise ExpressionError(f"more than {MAX_TOKENS} tokens")
    return tokens


def _bounded(value: Fraction) -> Fraction:
    if value.numerator.bit_length() > MAX_BITS or value.denominator.bit_length() > MAX_BITS:
        raise ExpressionError(f"intermediate result exceeds {MAX_BITS} bits")
    return value


def parse_expression(text: str) -> tuple[Fraction, list[int]]:
    """(value, numbers used, in order) of an expression of non-negative integers, binary + - * /, and
    parentheses. No unary operators, no powers, no names: anything else is an ExpressionError.

    Grammar:  expr := term (('+'|'-') term)* ;  term := atom (('*'|'/') atom)* ;  atom := NUM | '(' expr ')'
    """
    tokens = tokenize_expression(text)
    if not tokens:
        raise ExpressionError("empty expression")
    pos = 0
    numbers: list[int] = []

    def peek() -> tuple[str, object] | None:
        return tokens[pos] if pos < len(tokens) else None

    def atom(depth: int) -> Fraction:
        nonlocal pos
        if depth > MAX_DEPTH:
            raise ExpressionError(f"parentheses nested deeper than {MAX_DEPTH}")
        tok = peek()
        if tok is None:
            raise ExpressionError("expression ends early")
        if tok[0] == "num":
            pos += 1
            numbers.append(tok[1])  # type: ignore[arg-type]
            return Fraction(tok[1])  # type: ignore[arg-type]
        if tok[0] == "(":
            pos += 1
            value = expr(depth + 1)
            if peek() != (")", None):
                raise ExpressionError("unbalanced parentheses")
            pos += 1
            return value
        raise ExpressionError(f"unexpected token {tok!r}")

    def term(depth: int) -> Fraction:
        nonlocal pos
        value = atom(depth)
        while (tok := peek()) is not None and tok[0] == "op" and tok[1] in "*/":
            pos += 1
            rhs = atom(depth)
            if tok[1] == "*":
                value = _bounded(value * rhs)
            else:
                if rhs == 0:
                    raise ExpressionError("division by zero")
                value = _bounded(value / rhs)
        return value

    def expr(depth: int) -> Fraction:
        nonlocal pos
        value = term(depth)
        while (tok := peek()) is not None and tok[0] == "op" and tok[1] in "+-":
            pos += 1
            rhs = term(depth)
            value = _bounded(value + rhs if tok[1] == "+" else value - rhs)
        return value

    value = expr(0)
    if pos != len(tokens):
        raise ExpressionError(f"unexpected token {tokens[pos]!r} after a complete expression")
    return value, numbers


def countdown_check(answer: str, numbers: Iterable[int], target: int) -> bool:
    """True when `answer` uses exactly the multiset `numbers` (each once) and equals `target`.
    An optional ``= target`` suffix is accepted (``"3*4=12"``). Never raises."""
    try:
        if not isinstance(answer, str) or len(answer) > MAX_ANSWER_CHARS:
            return False
        text = answer
        if text.count("=") == 1:
            text, rhs = text.split("=")
            if rhs.strip() != str(target):
                return False
        value, used = parse_expression(text)
        return sorted(used) == sorted(int(x) for x in numbers) and value == Fraction(int(target))
    except Exception:
        return False


# ---------------------------------------------------------------------------------------------------------
# Accuracy rewards per task, and the R1-Zero combination.
# ---------------------------------------------------------------------------------------------------------
@_never_raises
def arithmetic_reward(completion: object, row: dict) -> float:
    """1.0 when the last <answer> holds exactly the integer ``row['answer']``."""
    from_answer = extract_answer(completion)
    if from_answer is None:
        return 0.0
    text = from_answer.strip()
    if not 0 < len(text) <= 40:
        return 0.0
    body = text[1:] if text[:1] == "-" else text
    if not (body.isascii() and body.isdigit()):
        return 0.0
    return 1.0 if int(text) == int(row["answer"]) else 0.0


@_never_raises
def countdown_reward(completion: object, row: dict) -> float:
    """1.0 when the last <answer> is an expression using each of ``row['numbers']`` once that equals
    ``row['target']`` (checked by the safe parser)."""
    answer = extract_answer(completion)
    if answer is None:
        return 0.0
    return 1.0 if countdown_check(answer, row["numbers"], row["target"]) else 0.0


def parse_kk_answer(answer: str, names: list[str]) -> dict[str, bool] | None:
    """Read ``"Alice is a knight, Bob is a knave"`` (any order, `,`/`;`/`and`/newlines between clauses,
    case-insensitive) into {name: is_knight}; None when a clause is malformed or a name repeats."""
    if len(answer) > 64 * (len(names) + 1):
        return None
    lookup = {name.lower(): name for name in names}
    text = answer.replace(";", ",").replace("\n", ",").replace(" and ", ",").strip().rstrip(".")
    out: dict[str, bool] = {}
    for clause in text.split(","):
        words = clause.strip().rstrip(".").lower().split()
        if not words:
            continue
        if len(words) != 4 or words[1:3] != ["is", "a"] or words[3] not in ("knight", "knave"):
            return None
        name = lookup.get(words[0])
        if name is None or name in out:
            return None
        out[name] = words[3] == "knight"
    return out



@_never_raises
def knights_knaves_reward(completion: object, row: dict) -> float:
    """1.0 when the last <answer> names every islander with their true kind."""
    answer = extract_answer(completion)
    if answer is None:
        return 0.0
    parsed = parse_kk_answer(answer, list(row["names"]))
    if parsed is None or len(parsed) != len(row["names"]):
        return 0.0
    ok = all(parsed[name] == bool(k) for name, k in zip(row["names"], row["solution"]))
    return 1.0 if ok else 0.0


ACCURACY_REWARDS: dict[str, Callable[[object, dict], float]] = {
    "arithmetic": arithmetic_reward, "countdown": countdown_reward, "knights_knaves": knights_knaves_reward}


@_never_raises
def accuracy_reward(completion: object, row: dict) -> float:
    """The accuracy reward of ``row['task']`` (0.0 for an unknown task)."""
    fn = ACCURACY_REWARDS.get(row.get("task")) if isinstance(row, dict) else None
    return fn(completion, row) if fn is not None else 0.0


@_never_raises
def r1_reward(completion: object, row: dict, format_weight: float = 0.1) -> float:
    """accuracy + format_weight * format, the sum of R1-Zero's two rule rewards."""
    return accuracy_reward(completion, row) + format_weight * format_reward(completion)


# ---------------------------------------------------------------------------------------------------------
# Length shaping: Kimi k1.5's length reward and DAPO's overlong reward shaping. Both read only token counts
# and correctness, never the text, so they add no attack surface to the rewards above.
# ---------------------------------------------------------------------------------------------------------
def kimi_length_rewards(lengths, correct) -> list[float]:
    """Kimi k1.5's length reward for the responses to ONE prompt (Kimi Team, 2025, sec. 2.3.3).

    λ_i = 0.5 − (len_i − min_len) / (max_len − min_len), with min/max over this group's responses; a correct
    response gets λ_i, a wrong one min(0, λ_i): shorter correct answers are encouraged, and a long wrong one
    is penalised, a short wrong one is not rewarded. When every response has the same length, λ = 0 for all
    (the paper's formula divides by zero there; no length signal exists). Returns one float per response.
    """
    lengths, correct = [float(x) for x in lengths], [bool(c) for c in correct]
    if len(lengths) != len(correct) or not lengths:
        raise ValueError(f"lengths ({len(lengths)}) and correct ({len(correct)}) must be equal, non-empty lists")
    if any(not (x >= 0) for x in lengths):  # also rejects NaN
        raise ValueError(f"lengths must be non-negative numbers, got {lengths!r}")
    lo, hi = min(lengths), max(lengths)
    if hi == lo:
        return [0.0] * len(lengths)
    lam = [0.5 - (x - lo) / (hi - lo) for x in lengths]
    return [l if c else min(0.0, l) for l, c in zip(lam, correct)]


def overlong_penalty(length: int, max_len: int, buffer: int) -> float:
    """DAPO's soft overlong punishment (Yu et al., 2025, eq. 13), added to the rule reward.

    0 while length <= max_len − buffer; then falls linearly to −1 at length = max_len; −1 beyond. `buffer`
    is L_cache, the interval over which the penalty ramps (0 < buffer <= max_len).
    """
    if not isinstance(max_len, int) or not isinstance(buffer, int) or not 0 < buffer <= max_len:
        raise ValueError(f"need ints with 0 < buffer <= max_len, got max_len={max_len!r}, buffer={buffer!r}")
    if length <= max_len - buffer:
        return 0.0
    if length <= max_len:
        return ((max_len - buffer) - length) / buffer
    return -1.0
