"""Knights and Knaves for the tiny R1-Zero experiment: demonstrations, the verifier, the task. (Chapter 10.)

The puzzles and the solver that writes its work are `minids.knights` (``A:B0...;B:A=C..;C:C0|A1?``). A
response is R1's format with the answer as each person's letter and kind, ``A1B0C1`` (1 = knight):

- worked:  ``<think>A1:A1>B1,B1>C1,C1>x;A0:A0>B0,B0>C1,ok</think><answer>A0B0C1</answer>``
- direct:  ``<think></think><answer>A0B0C1</answer>``

The rule for "this response shows its work" (`kk_worked`): its think block holds at least one deduction,
a ``>``. A response *re-checks* (`kk_rechecks`) when its think block abandons a supposition after a
contradiction and tries the other (``;``). Both read only complete ``<think>…</think>`` blocks.

The verifier reads untrusted text: it never evaluates anything, looks at no more than `MAX_ANSWER_CHARS`
characters, and `parse_kk_compact` says exactly what is wrong with a malformed answer; the reward wraps it
so that any malformed text scores 0.0.
"""
from __future__ import annotations

from typing import Callable

from minids.knights import LETTERS, knights
from nanoseek.rl.rewards import (MAX_ANSWER_CHARS, THINK_CLOSE, THINK_OPEN, _as_text, _never_raises,
                                 extract_answer, format_reward)
from nanoseek.rl.trainer import Task
from nanoseek.rl.vocab import TaskVocab

KK_ALPHABET = LETTERS + "01.:;=&|?>,xok"


class KKAnswerError(ValueError):
    """An answer that is not one kind for each of the puzzle's people."""


def parse_kk_compact(answer: str, people: int) -> tuple[bool, ...]:
    """The kinds (True = knight) an answer gives to persons A, B, ... in order.

    Accepted: ``A1B0C1`` (any order of the pairs, spaces or commas between them) or the bare kinds in
    order, ``101``. Each of the `people` letters exactly once, each kind 0 or 1 (ASCII). Raises
    `KKAnswerError` naming what is wrong: too long, an unknown character, a person missing or repeated.
    """
    if not isinstance(answer, str):
        raise KKAnswerError(f"answer must be str, got {type(answer).__name__}")
    if not isinstance(people, int) or not 2 <= people <= len(LETTERS):
        raise KKAnswerError(f"people={people!r} must be an int in 2..{len(LETTERS)}")
    if len(answer) > MAX_ANSWER_CHARS:
        raise KKAnswerError(f"answer of {len(answer)} characters is longer than {MAX_ANSWER_CHARS}")
    text = "".join(ch for ch in answer if ch not in " ,\t\n")
    if not text:
        raise KKAnswerError("empty answer")
    if all(ch in "01" for ch in text):  # bare kinds, in order
        if len(text) != people:
            raise KKAnswerError(f"{len(text)} kinds for {people} people in {answer!r}")
        return tuple(ch == "1" for ch in text)
    if len(text) % 2:
        raise KKAnswerError(f"answer {answer!r} is not letter-kind pairs like A1B0")
    kinds: dict[int, bool] = {}
    for i in range(0, len(text), 2):
        who, kind = text[i], text[i + 1]
        person = LETTERS.find(who)
        if person < 0 or person >= people:
            raise KKAnswerError(f"{who!r} at {i} is not one of the people {LETTERS[:people]}")
        if kind not in ("0", "1"):
            raise KKAnswerError(f"kind {kind!r} of {who} is not 0 (knave) or 1 (knight)")
        if person in kinds:
            raise KKAnswerError(f"{who} is named twice in {answer!r}")
        kinds[person] = kind == "1"
    missing = [LETTERS[p] for p in range(people) if p not in kinds]
    if missing:
        raise KKAnswerError(f"no kind for {', '.join(missing)} in {answer!r}")
    return tuple(kinds[p] for p in range(people))


@_never_raises
def kk_accuracy(completion: object, row: dict) -> float:
    """1.0 when the last <answer> gives every person their true kind (`parse_kk_compact`), else 0.0."""
    answer = extract_answer(completion)
    if answer is None:
        return 0.0
    try:
        kinds = parse_kk_compact(answer, int(row["people"]))
    except KKAnswerError:
        return 0.0
    return 1.0 if list(kinds) == [bool(k) for k in row["solution"]] else 0.0


@_never_raises
def kk_reward(completion: object, row: dict, format_weight: float = 0.1) -> float:
    """R1-Zero's two rule rewards: accuracy + format_weight * format. Nothing about length or the trace."""
    return kk_accuracy(completion, row) + format_weight * format_reward(completion)


def _think(completion: object) -> str | None:
    text = _as_text(completion)
    if text is None:
        return None
    start, end = text.find(THINK_OPEN), text.find(THINK_CLOSE)
    return text[start + len(THINK_OPEN):end] if 0 <= start < end else None


def kk_worked(completion: object) -> bool:
    """The rule for "shows its work": a complete think block holding at least one deduction ``>``."""
    think = _think(completion)
    return think is not None and ">" in think


def kk_rechecks(completion: object) -> bool:
    """The rule for "re-checks": a complete think block that drops a supposition and tries another (``;``)."""
    think = _think(completion)
    return think is not None and ";" in think


def kk_worked_demo(row: dict) -> str:
    """The careful teacher: the solver's trace, then the answer."""
    return f"<think>{row['trace']}</think><answer>{row['answer']}</answer>"


def kk_direct_demo(row: dict) -> str:
    """The hasty teacher: the right answer at once, with an empty think block."""
    return f"<think></think><answer>{row['answer']}</answer>"


def kk_vocab() -> TaskVocab:
    """The character vocabulary of the compact puzzles and their traces."""
    return TaskVocab(KK_ALPHABET)


def kk_task(vocab: TaskVocab, people: int = 4, format_weight: float = 0.1) -> Task:
    """The RL task: prompts from `minids.knights`' train split, reward accuracy + format_weight * format."""
    reward: Callable[[str, dict], float] = lambda text, row: kk_reward(text, row, format_weight)  # noqa: E731
    return Task(train_rows=lambda n, seed: knights("train", n, seed, people=people),
                prompt_fn=lambda row: row["prompt"], reward_fn=reward, accuracy_fn=kk_accuracy,
                encode=vocab.encode, decode=vocab.decode, eos_id=vocab.eos_id, pad_id=vocab.pad_id)
