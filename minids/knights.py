"""Compact Knights-and-Knaves puzzles for tiny character-level policies, with a solver that writes its work.
(Chapter 10, the R1-Zero benchmark's `--task kk`.)

`minids.reasoning.knights_knaves` writes puzzles in English for a real tokenizer; a 1M-parameter policy that
reads characters needs something shorter. Here the N islanders are the letters ``A, B, C, ...``, knight is
``1`` and knave is ``0``, and each islander's statement is written in a field of 5 characters:

====================  =========  =========================================
statement             written    meaning (speaker A)
====================  =========  =========================================
``("is", p, b)``      ``B0...``  "B is a knave"
``("same", p, q)``    ``B=C..``  "B and C are the same kind"
``("and", p,b,q,c)``  ``B0&C1``  "B is a knave and C is a knight"
``("or", p,b,q,c)``   ``A0|C1``  "I am a knave or C is a knight"
====================  =========  =========================================

A prompt is the statements in order, ``A:B0...;B:A=C..;C:C0|A1?``; every puzzle of N people has the same
prompt length, so rollouts of one batch decode in lockstep (`nanoseek.rl.rollout` buckets by length). Every
puzzle has exactly one solution, checked by brute force over all 2^N assignments.

The worked trace is how a person would solve it on paper: suppose A is a knight (``A1:``), and repeatedly
use a statement that decides someone new given what is known (``A1>B0``: "A is a knight, so A's statement
holds: B is a knave"; ``C?>C1`` for a speaker not yet decided) or that cannot hold (``B0>x``: a
contradiction), preferring the statement of the person decided last, so that each line reads the one before.
A contradiction sends the solver back to suppose A is a knave (``;A0:``); a branch in which everyone is
decided and every statement holds ends in ``ok``. For ``A:B1...;B:A=C..;C:A0...?`` the trace is
``A1:A1>B1,B1>C1,C1>x;A0:A0>B0,B0>C1,ok``. A puzzle is kept only when this one case split on A and
propagation solve it (no guessing deeper), so the teacher's trace always exists and is always right.
"""
from __future__ import annotations

import itertools
import random

from minids.reasoning import _draw

LETTERS = "ABCDEFGH"
FIELD = 5  # characters of a written statement, padded with "."
KINDS = ("is", "same", "and", "or")
# How often each kind is drawn: plain claims are the easiest to use, so they are the most common.
KIND_WEIGHTS = (3, 2, 2, 2)
SELF_SHARE = 0.2  # how often a literal of an and/or statement names the speaker ("I am a knave or ...")


def statement_people(stmt: tuple) -> tuple[int, ...]:
    """The people a statement mentions (not counting its speaker unless it names them)."""
    kind = stmt[0]
    if kind == "is":
        return (stmt[1],)
    if kind == "same":
        return (stmt[1], stmt[2])
    if kind in ("and", "or"):
        return (stmt[1], stmt[3])
    raise ValueError(f"unknown statement kind {kind!r}; expected one of {KINDS}")


def holds(stmt: tuple, world: tuple[bool, ...] | dict[int, bool]) -> bool:
    """The truth of `stmt` in `world` (True = knight), indexable by person."""
    kind = stmt[0]
    if kind == "is":
        return world[stmt[1]] == bool(stmt[2])
    if kind == "same":
        return world[stmt[1]] == world[stmt[2]]
    if kind == "and":
        return world[stmt[1]] == bool(stmt[2]) and world[stmt[3]] == bool(stmt[4])
    if kind == "or":
        return world[stmt[1]] == bool(stmt[2]) or world[stmt[3]] == bool(stmt[4])
    raise ValueError(f"unknown statement kind {kind!r}; expected one of {KINDS}")


def write_statement(stmt: tuple) -> str:
    """The 5-character form of a statement (``B0...``, ``B=C..``, ``B0&C1``, ``A0|C1``)."""
    kind = stmt[0]
    if kind == "is":
        text = f"{LETTERS[stmt[1]]}{stmt[2]:d}"
    elif kind == "same":
        text = f"{LETTERS[stmt[1]]}={LETTERS[stmt[2]]}"
    elif kind in ("and", "or"):
        op = "&" if kind == "and" else "|"
        text = f"{LETTERS[stmt[1]]}{stmt[2]:d}{op}{LETTERS[stmt[3]]}{stmt[4]:d}"
    else:
        raise ValueError(f"unknown statement kind {kind!r}; expected one of {KINDS}")
    return text.ljust(FIELD, ".")


def puzzle_prompt(statements: list[tuple]) -> str:
    """``A:<field>;B:<field>;...?``: the statements in speaker order."""
    return ";".join(f"{LETTERS[i]}:{write_statement(s)}" for i, s in enumerate(statements)) + "?"


def solutions(statements: list[tuple]) -> list[tuple[bool, ...]]:
    """Every assignment (True = knight) in which each speaker's statement is true iff they are a knight:
    brute force over all 2^N."""
    n = len(statements)
    return [w for w in itertools.product((True, False), repeat=n)
            if all(holds(s, w) == w[i] for i, s in enumerate(statements))]


def _consequence(statements: list[tuple], speaker: int, known: dict[int, bool]) -> dict[int, bool] | None:
    """What the constraint "speaker is a knight iff their statement holds" forces given `known`:
    {person: kind} for each undecided person it decides (possibly empty), or None for a contradiction."""
    stmt = statements[speaker]
    people = sorted({speaker, *statement_people(stmt)})
    free = [p for p in people if p not in known]
    fits = []
    for values in itertools.product((True, False), repeat=len(free)):
        world = {**known, **dict(zip(free, values))}
        if holds(stmt, world) == world[speaker]:
            fits.append(values)
    if not fits:
        return None
    return {p: fits[0][j] for j, p in enumerate(free) if all(f[j] == fits[0][j] for f in fits)}


def solve_with_trace(statements: list[tuple]) -> tuple[str, tuple[bool, ...]] | None:
    """(trace, solution) by one case split on A and propagation, or None when that does not settle the
    puzzle (propagation stalls, or both branches fail). The trace format is the module docstring's.

    Which statement to use next: the one of the person decided last, then of the one before, and so on
    (a chain of deductions, each reading the line before it), then those of the undecided in letter order."""
    n = len(statements)
    branches = []
    for a in (True, False):
        known = {0: a}
        order = [0]  # people in the order they were decided
        steps = []
        while True:
            speakers = order[::-1] + [p for p in range(n) if p not in known]
            for speaker in speakers:
                kind = f"{known[speaker]:d}" if speaker in known else "?"
                forced = _consequence(statements, speaker, known)
                if forced is None:
                    steps.append(f"{LETTERS[speaker]}{kind}>x")
                    break
                if forced:
                    known.update(forced)
                    order += sorted(forced)
                    steps.append(f"{LETTERS[speaker]}{kind}>" + "".join(f"{LETTERS[p]}{forced[p]:d}" for p in sorted(forced)))
                    break
            else:  # no statement says anything new
                if len(known) < n:
                    return None  # stalled: this puzzle needs a deeper guess
                steps.append("ok")
            if steps[-1] == "ok" or steps[-1].endswith(">x"):
                break
        branches.append(f"A{a:d}:" + ",".join(steps))
        if steps[-1] == "ok":
            return ";".join(branches), tuple(known[p] for p in range(n))
    return None


def answer_text(solution: tuple[bool, ...]) -> str:
    """The canonical answer ``A1B0C1``: each person's letter and kind, in order."""
    return "".join(f"{LETTERS[i]}{int(k)}" for i, k in enumerate(solution))


def random_statement(rng: random.Random, speaker: int, n: int) -> tuple:
    """One statement of `speaker` among `n` people, drawn with `KIND_WEIGHTS`."""
    others = [p for p in range(n) if p != speaker]
    kind = rng.choices(KINDS, KIND_WEIGHTS)[0]
    if kind == "is":
        return ("is", rng.choice(others), rng.randint(0, 1))
    if kind == "same":
        p, q = sorted(rng.sample(others, 2)) if len(others) >= 2 else (speaker, others[0])
        return ("same", p, q)
    p = speaker if rng.random() < SELF_SHARE else rng.choice(others)
    q = rng.choice([x for x in others if x != p] or others)
    (p, b), (q, c) = sorted([(p, rng.randint(0, 1)), (q, rng.randint(0, 1))])
    return (kind, p, b, q, c)


def knights(split: str, n: int, seed: int = 0, people: int = 4) -> list[dict]:
    """`n` distinct puzzles of `people` islanders for `split`, each with exactly one solution (brute force)
    that one case split on A and propagation reach. Rows: ``prompt``, ``answer`` (``A1B0...``),
    ``statements`` (lists), ``solution`` (bools), ``trace`` (the worked trace), ``people``."""
    if not isinstance(people, int) or isinstance(people, bool) or not 2 <= people <= len(LETTERS):
        raise ValueError(f"people={people!r} must be an int in 2..{len(LETTERS)}")

    def make(rng: random.Random) -> dict:
        while True:
            statements = [random_statement(rng, i, people) for i in range(people)]
            sols = solutions(statements)
            if len(sols) != 1:
                continue
            solved = solve_with_trace(statements)
            if solved is None:
                continue
            trace, world = solved
            if world != sols[0]:  # the solver and brute force must agree (a bug otherwise)
                raise AssertionError(f"solver found {world}, brute force {sols[0]} for {statements}")
            prompt = puzzle_prompt(statements)
            return {"task": "kk_compact", "key": prompt, "prompt": prompt, "people": people,
                    "statements": [list(s) for s in statements], "solution": list(world),
                    "answer": answer_text(world), "trace": trace}

    return _draw(split, n, seed, f"kk_compact{people}", make)
