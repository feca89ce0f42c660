"""Seeded reasoning tasks with verifiable answers, for RL with rule rewards. (Chapter 10.)

Three task families, each a pure function of `(split, n, seed)`:

- ``arithmetic``: multi-digit ``a + b``, ``a - b`` (and optionally ``a * b``); answer an integer.
- ``countdown``: reach a target with 3-4 given numbers, each used exactly once, with + - * / and
  parentheses; the target is reachable by construction (found by exhaustive search in exact rationals).
- ``knights_knaves``: 2-5 islanders, knights always tell the truth, knaves always lie; every puzzle has
  exactly one consistent assignment, checked by brute force over all 2^n assignments.

Held-out splits do not depend on the seed: a problem belongs to ``train``, ``val`` or ``test`` by the
sha256 of its canonical key, so no seed can leak a test problem into training. Each row is a plain dict
(JSON-serialisable) with ``task``, ``prompt``, ``answer`` and the fields its verifier needs; `verify(row,
answer_text)` checks a candidate answer (the text inside ``<answer>…</answer>``).
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import json
import random
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable

SPLITS = ("train", "val", "test")
TASKS = ("arithmetic", "countdown", "knights_knaves")
# A problem is in `test` when its hash bucket (of 100) is below 10, in `val` below 15, else `train`.
_TEST_BUCKETS, _VAL_BUCKETS = 10, 15


def split_of(key: str) -> str:
    """The split a problem belongs to, from the sha256 of its canonical key (seed-independent)."""
    bucket = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % 100
    if bucket < _TEST_BUCKETS:
        return "test"
    if bucket < _VAL_BUCKETS:
        return "val"
    return "train"


def _check_split(split: str, n: int) -> None:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {SPLITS}")
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n={n!r} must be a non-negative int")


def _draw(split: str, n: int, seed: int, task: str, make: Callable[[random.Random], dict],
          max_tries_per_row: int = 2000) -> list[dict]:
    """Draw `n` distinct problems of `split` from `make(rng)`, rejecting those of other splits."""
    _check_split(split, n)
    # The stream depends on (task, split, seed), so the three splits of one seed are independent draws.
    rng = random.Random(f"{task}/{split}/{seed}")
    rows: list[dict] = []
    seen: set[str] = set()
    tries = 0
    while len(rows) < n:
        tries += 1
        if tries > max_tries_per_row * (n + 1):
            raise ValueError(f"could not draw n={n} distinct {task} problems for split={split!r}; "
                             f"the problem space is too small for these settings")
        row = make(rng)
        key = row["key"]
        if key in seen or split_of(key) != split:
            continue
        seen.add(key)
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------------
# Multi-digit arithmetic
# ---------------------------------------------------------------------------------------------------------
ARITH_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def arithmetic(split: str, n: int, seed: int = 0, digits: int = 2, ops: str = "+",
               min_digits: int | None = None) -> list[dict]:
    """`n` problems ``a op b`` with operands of `min_digits`..`digits` digits; answer ``str(a op b)``."""
    if not isinstance(digits, int) or digits < 1 or digits > 18:
        raise ValueError(f"digits={digits!r} must be an int in 1..18")
    lo_digits = digits if min_digits is None else min_digits
    if not isinstance(lo_digits, int) or not 1 <= lo_digits <= digits:
        raise ValueError(f"min_digits={min_digits!r} must be an int in 1..digits={digits}")
    if not ops or any(op not in ARITH_OPS for op in ops):
        raise ValueError(f"ops={ops!r} must be a non-empty string of {''.join(ARITH_OPS)}")
    lo, hi = (0 if lo_digits == 1 else 10 ** (lo_digits - 1)), 10**digits - 1

    def make(rng: random.Random) -> dict:
        a, b, op = rng.randint(lo, hi), rng.randint(lo, hi), rng.choice(ops)
        value = ARITH_OPS[op](a, b)
        return {"task": "arithmetic", "key": f"{a}{op}{b}", "prompt": f"{a}{op}{b}=",
                "a": a, "b": b, "op": op, "answer": str(value)}

    return _draw(split, n, seed, f"arithmetic{digits}{lo_digits}{ops}", make)


def verify_arithmetic(row: dict, answer: str) -> bool:
    """True when `answer` is exactly the integer ``row['answer']`` (spaces around it allowed)."""
    text = answer.strip()
    if not 0 < len(text) <= 40:
        return False
    body = text[1:] if text[:1] == "-" else text
    if not body.isascii() or not body.isdigit():
        return False
    return int(text) == int(row["answer"])


# ---------------------------------------------------------------------------------------------------------
# Countdown
# ---------------------------------------------------------------------------------------------------------
_CD_OPS = ("+", "-", "*", "/")


def _combine(x: Fraction, y: Fraction) -> list[tuple[Fraction, str]]:
    """Values of one operator applied to x and y (both orders where it matters), with a pattern."""
    out = [(x + y, "({a}+{b})"), (x * y, "({a}*{b})"), (x - y, "({a}-{b})"), (y - x, "({b}-{a})")]
    if y != 0:
        out.append((x / y, "({a}/{b})"))
    if x != 0:
        out.append((y / x, "({b}/{a})"))
    return out


@functools.lru_cache(maxsize=65536)
def _reach(values: tuple[Fraction, ...]) -> frozenset[Fraction]:
    """Every value reachable from the sorted multiset `values`, each used exactly once."""
    if len(values) == 1:
        return frozenset(values)
    out: set[Fraction] = set()
    for i, j in itertools.combinations(range(len(values)), 2):
        rest = [values[k] for k in range(len(values)) if k not in (i, j)]
        for v, _ in _combine(values[i], values[j]):
            out |= _reach(tuple(sorted(rest + [v])))
    return frozenset(out)


def countdown_values(numbers: Iterable[int]) -> frozenset[Fraction]:
    """Every value reachable using *all* `numbers` once each with + - * / (exact rationals)."""
    return _reach(tuple(sorted(Fraction(x) for x in numbers)))


def countdown_solve(numbers: Iterable[int], target: int | Fraction) -> str | None:
    """One expression over all `numbers` (each once) equal to `target`, or None when none exists."""
    items = [(Fraction(x), str(x)) for x in numbers]
    target = Fraction(target)

    def rec(items: list[tuple[Fraction, str]]) -> str | None:
        if len(items) == 1:
            return items[0][1] if items[0][0] == target else None
        if target not in _reach(tuple(sorted(v for v, _ in items))):
            return None
        for i, j in itertools.combinations(range(len(items)), 2):
            (x, ex), (y, ey) = items[i], items[j]
            rest = [items[k] for k in range(len(items)) if k not in (i, j)]
            for v, pattern in _combine(x, y):
                found = rec(rest + [(v, pattern.format(a=ex, b=ey))])
                if found is not None:
                    return found
        return None

    expr = rec(items)
    if expr is not None and expr.startswith("(") and expr.endswith(")"):
        expr = expr[1:-1]
    return expr


def countdown(split: str, n: int, seed: int = 0, n_numbers: int | tuple[int, int] = (3, 4),
              max_number: int = 25, max_target: int = 100) -> list[dict]:
    """`n` Countdown puzzles: numbers in 1..`max_number`, an integer target in 1..`max_target` reachable
    with every number used exactly once; ``answer`` is one solution expression."""
    lo, hi = (n_numbers, n_numbers) if isinstance(n_numbers, int) else n_numbers
    if not (isinstance(lo, int) and isinstance(hi, int) and 2 <= lo <= hi <= 5):
        raise ValueError(f"n_numbers={n_numbers!r} must be an int or a (lo, hi) pair within 2..5")
    if max_number < 1 or max_target < 1:
        raise ValueError(f"max_number={max_number!r} and max_target={max_target!r} must be >= 1")

    def make(rng: random.Random) -> dict:
        while True:
            numbers = [rng.randint(1, max_number) for _ in range(rng.randint(lo, hi))]
            # The split is decided by the number set alone (cheap to reject before any search), so a
            # held-out puzzle's numbers never occur in training with another target.
            key = " ".join(map(str, sorted(numbers)))
            if split_of(key) != split:
                continue
            targets = sorted(int(v) for v in countdown_values(numbers) if v.denominator == 1 and 1 <= v <= max_target)
            if targets:
                break
        target = rng.choice(targets)
        nums = " ".join(map(str, numbers))
        return {"task": "countdown", "key": key,
                "prompt": f"Using the numbers {nums}, each exactly once, with + - * / and parentheses, "
                          f"make {target}.",
                "numbers": numbers, "target": target, "answer": countdown_solve(numbers, target)}

    return _draw(split, n, seed, f"countdown{lo}{hi}-{max_number}-{max_target}", make)


def verify_countdown(row: dict, answer: str) -> bool:
    """True when `answer` is an expression over exactly ``row['numbers']`` whose value is the target.
    Uses the safe parser of `nanoseek.rl.rewards` (no eval, bounded cost)."""
    from nanoseek.rl.rewards import countdown_check

    return countdown_check(answer, row["numbers"], row["target"])


# ---------------------------------------------------------------------------------------------------------
# Knights and Knaves
# ---------------------------------------------------------------------------------------------------------
KK_NAMES = ("Alice", "Bob", "Carol", "Dave", "Eve", "Frank", "Grace", "Heidi", "Ivan", "Judy",
            "Mallory", "Oscar", "Peggy", "Trent", "Victor", "Wendy", "Zoe", "Uma", "Quinn", "Ruth")


def _kk_eval(stmt: tuple, world: tuple[bool, ...]) -> bool:
    kind = stmt[0]
    if kind == "is":  # ("is", person, knight?)
        return world[stmt[1]] == stmt[2]
    if kind == "and":
        return _kk_eval(stmt[1], world) and _kk_eval(stmt[2], world)
    if kind == "or":
        return _kk_eval(stmt[1], world) or _kk_eval(stmt[2], world)
    if kind == "same":  # ("same", p, q): p and q are the same kind
        return world[stmt[1]] == world[stmt[2]]
    if kind == "not":
        return not _kk_eval(stmt[1], world)
    raise ValueError(f"unknown knights-and-knaves statement kind {kind!r}")


def _kk_text(stmt: tuple, names: list[str]) -> str:
    kind = stmt[0]
    if kind == "is":
        return f"{names[stmt[1]]} is a {'knight' if stmt[2] else 'knave'}"
    if kind == "and":
        return f"{_kk_text(stmt[1], names)} and {_kk_text(stmt[2], names)}"
    if kind == "or":
        return f"{_kk_text(stmt[1], names)} or {_kk_text(stmt[2], names)}"
    if kind == "same":
        return f"{names[stmt[1]]} and {names[stmt[2]]} are the same kind"
    if kind == "not":
        return f"it is not true that {_kk_text(stmt[1], names)}"
    raise ValueError(f"unknown knights-and-knaves statement kind {kind!r}")


def kk_solutions(statements: list[tuple]) -> list[tuple[bool, ...]]:
    """All assignments (True = knight) in which every speaker's statement is true iff they are a knight."""
    n = len(statements)
    return [world for world in itertools.product((True, False), repeat=n)
            if all(_kk_eval(s, world) == world[i] for i, s in enumerate(statements))]


def _kk_statement(rng: random.Random, speaker: int, n: int) -> tuple:
    others = [p for p in range(n) if p != speaker] or [speaker]

    def lit() -> tuple:
        return ("is", rng.choice(others + [speaker] * (rng.random() < 0.15)), rng.random() < 0.5)

    kind = rng.choice(("is", "is", "and", "or", "same", "not"))
    if kind == "is":
        return lit()
    if kind in ("and", "or"):
        return (kind, lit(), lit())
    if kind == "same":
        p, q = (rng.sample(range(n), 2) if n > 2 else (speaker, others[0]))
        return ("same", p, q)
    return ("not", lit())


def knights_knaves(split: str, n: int, seed: int = 0, people: int | tuple[int, int] = (2, 5)) -> list[dict]:
    """`n` puzzles with 2-5 islanders each, every one with exactly one solution (brute-force checked)."""
    lo, hi = (people, people) if isinstance(people, int) else people
    if not (isinstance(lo, int) and isinstance(hi, int) and 2 <= lo <= hi <= 8):
        raise ValueError(f"people={people!r} must be an int or a (lo, hi) pair within 2..8")

    def make(rng: random.Random) -> dict:
        while True:
            k = rng.randint(lo, hi)
            names = rng.sample(KK_NAMES, k)
            statements = [_kk_statement(rng, i, k) for i in range(k)]
            sols = kk_solutions(statements)
            if len(sols) == 1:
                break
        world = sols[0]
        says = " ".join(f'{names[i]} says: "{_kk_text(s, names)}."' for i, s in enumerate(statements))
        prompt = (f"On an island every inhabitant is a knight, who always tells the truth, or a knave, "
                  f"who always lies. You meet {k}: {', '.join(names)}. {says} Who is a knight and who "
                  f"is a knave?")
        answer = ", ".join(f"{names[i]} is a {'knight' if world[i] else 'knave'}" for i in range(k))
        return {"task": "knights_knaves", "key": prompt, "prompt": prompt, "names": names,
                "statements": json.loads(json.dumps(statements)), "solution": list(world),
                "answer": answer}

    return _draw(split, n, seed, f"kk{lo}{hi}", make)


def verify_knights_knaves(row: dict, answer: str) -> bool:
    """True when `answer` names every islander with their true kind (parsed by `nanoseek.rl.rewards`)."""
    from nanoseek.rl.rewards import parse_kk_answer

    parsed = parse_kk_answer(answer, row["names"])
    if parsed is None or len(parsed) != len(row["names"]):
        return False
    return all(parsed[name] == bool(k) for name, k in zip(row["names"], row["solution"]))


# ---------------------------------------------------------------------------------------------------------
GENERATORS: dict[str, Callable[..., list[dict]]] = {
    "arithmetic": arithmetic, "countdown": countdown, "knights_knaves": knights_knaves}
VERIFIERS: dict[str, Callable[[dict, str], bool]] = {
    "arithmetic": verify_arithmetic, "countdown": verify_countdown, "knights_knaves": verify_knights_knaves}


def generate(split: str, n: int, seed: int = 0, task: str = "arithmetic", **options) -> list[dict]:
    """`n` rows of `task` for `split`, deterministic in `seed`; options go to the task's generator."""
    if task not in GENERATORS:
        raise KeyError(f"task={task!r} is not one of {TASKS}")
    return GENERATORS[task](split, n, seed, **options)


def verify(row: dict, answer: str) -> bool:
    """Check a candidate answer against a row of any task."""
    task = row.get("task")
    if task not in VERIFIERS:
        raise KeyError(f"row task={task!r} is not one of {TASKS}")
    return VERIFIERS[task](row, answer)


def write_jsonl(rows: list[dict], path: str | Path) -> Path:
    """Write rows as JSON lines (sorted keys, so the bytes are reproducible)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------------
# Files for `python -m minids.build` (entry "reasoning"): small committed samples at tiny, larger at full.
# ---------------------------------------------------------------------------------------------------------
SIZES = {  # (task, options, {split: n at tiny}); full multiplies train by FULL_FACTOR
    "arith2": ("arithmetic", {"digits": 2, "ops": "+"}, {"train": 1000, "test": 200}),
    "arith4": ("arithmetic", {"digits": 4, "ops": "+-*", "min_digits": 2}, {"train": 1000, "test": 200}),
    "countdown": ("countdown", {}, {"train": 150, "test": 50}),
    "kk": ("knights_knaves", {}, {"train": 300, "test": 100}),
}
FULL_FACTOR = 20
FULL_CAP = {"arith2": 4000}  # 2-digit sums: about 8,000 problems exist in all, 20x the tiny train set does not


def build_files(scale: str, seed: int) -> dict[str, str]:
    """{file name: jsonl text} of every task and split at `scale` (the `minids.build` entry point)."""
    if scale not in ("tiny", "full"):
        raise ValueError(f"scale={scale!r} is not one of ('tiny', 'full')")
    files = {}
    for name, (task, opts, sizes) in SIZES.items():
        for split, n in sizes.items():
            if scale == "full" and split == "train":
                n = min(n * FULL_FACTOR, FULL_CAP.get(name, n * FULL_FACTOR))
            rows = generate(split, n, seed, task=task, **opts)
            files[f"reasoning_{name}_{split}.jsonl"] = "".join(
                json.dumps({k: v for k, v in r.items() if k != "key"}, sort_keys=True, ensure_ascii=False) + "\n"
                for r in rows)
    return files
