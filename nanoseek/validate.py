"""The checks every config dataclass and entry point shares, so that each rule is written once. (Chapter 1.)

Each function checks one value and returns it (ints as plain `int`, so configs stay JSON-serialisable); a bad
value raises ``ValueError`` naming the owner, the field and the value, e.g.
``DecoderConfig.n_layer must be an int >= 1, got n_layer=True (a bool, not an int)``.

The rules:

- an **int** is a true integer: not a bool (``True`` is 1 to Python, never to a config), not a float
  (``2.5`` steps do not exist; ``2.0`` is refused too, so a computed size that is off shows up at once);
- a **number** is an int or a float, never a bool or a string (``'0.1'`` is text, not a dropout), and it
  is finite: ``inf`` and ``nan`` pass every comparison they should fail and turn the loss into NaN later;
- ranges are checked after the type, with ``minimum``/``maximum`` inclusive unless marked open;
- a **choice** is one of a fixed tuple of strings.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any


def _what(value: Any) -> str:
    if isinstance(value, bool):
        return " (a bool, not an int)"
    if isinstance(value, str):
        return " (a str, not a number)"
    if isinstance(value, float) and not math.isfinite(value):
        return " (not finite)"
    return ""


def _fail(owner: str, name: str, rule: str, value: Any) -> ValueError:
    where = f"{owner}.{name}" if owner else name
    return ValueError(f"{where} must be {rule}, got {name}={value!r}{_what(value)}")


def _range(minimum, maximum, min_open: bool = False, max_open: bool = False) -> str:
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if min_open else '>='} {minimum}")
    if maximum is not None:
        parts.append(f"{'<' if max_open else '<='} {maximum}")
    return " and ".join(parts)


def is_int(value: Any) -> bool:
    """True for ints (numpy ints included), False for bools, floats and everything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def integer(value: Any, name: str, owner: str = "", *, minimum: int | None = None, maximum: int | None = None,
            optional: bool = False) -> int | None:
    """`value` as an int in [minimum, maximum]; None passes when `optional`."""
    if value is None and optional:
        return None
    bounds = _range(minimum, maximum)
    rule = "an int" + (f" {bounds}" if bounds else "") + (" or None" if optional else "")
    if not is_int(value):
        raise _fail(owner, name, rule, value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise _fail(owner, name, rule, value)
    return int(value)


def number(value: Any, name: str, owner: str = "", *, minimum: float | None = None, maximum: float | None = None,
           min_open: bool = False, max_open: bool = False, optional: bool = False) -> float | int | None:
    """`value` as a finite number (int or float, not bool or str) in the given range; None when `optional`."""
    if value is None and optional:
        return None
    bounds = _range(minimum, maximum, min_open, max_open)
    rule = "a finite number" + (f" {bounds}" if bounds else "") + (" or None" if optional else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise _fail(owner, name, rule, value)
    if minimum is not None and (value <= minimum if min_open else value < minimum):
        raise _fail(owner, name, rule, value)
    if maximum is not None and (value >= maximum if max_open else value > maximum):
        raise _fail(owner, name, rule, value)
    return value


def positive(value: Any, name: str, owner: str = "", optional: bool = False) -> float | int | None:
    """A finite number > 0 (a learning rate, an epsilon, a rope theta, a standard deviation)."""
    return number(value, name, owner, minimum=0, min_open=True, optional=optional)


def probability(value: Any, name: str, owner: str = "", *, max_open: bool = False, min_open: bool = False,
                optional: bool = False) -> float | int | None:
    """A number in [0, 1] (a dropout: [0, 1) with `max_open`; a top-p: (0, 1] with `min_open`)."""
    return number(value, name, owner, minimum=0, maximum=1, min_open=min_open, max_open=max_open,
                  optional=optional)


def flag(value: Any, name: str, owner: str = "") -> bool:
    """A bool (numpy bools included); 0/1 and strings such as 'False' are refused."""
    if type(value).__name__ == "bool_":  # numpy.bool_
        value = bool(value)
    if not isinstance(value, bool):
        raise _fail(owner, name, "True or False", value)
    return value


def choice(value: Any, name: str, options: Iterable[str], owner: str = "") -> str:
    """One of `options` (compared as strings; an unhashable value is refused, not a TypeError)."""
    options = tuple(options)
    if not isinstance(value, str) or value not in options:
        raise _fail(owner, name, f"one of {options}", value)
    return value


def token_ids(ids: Any, vocab_size: int | None, what: str = "token ids") -> list[int]:
    """`ids` (a sequence or tensor of ints, any shape) as a flat list, every id in [0, vocab_size).

    Raises ValueError naming the first bad id, its position and the vocabulary size, instead of the raw
    IndexError an embedding lookup or a list index would give (a negative id would even wrap around)."""
    if isinstance(ids, (str, bytes)):
        raise ValueError(f"{what} must be a sequence of ints, got a {type(ids).__name__}: {ids!r:.60}")
    if hasattr(ids, "tolist"):  # torch tensors, numpy arrays
        if getattr(ids, "is_floating_point", lambda: False)() or str(getattr(ids, "dtype", "")).startswith(
                ("float", "torch.float", "torch.bfloat", "bool", "torch.bool", "complex", "torch.complex")):
            raise ValueError(f"{what} must be integers, got a tensor of dtype {ids.dtype}")
        ids = ids.tolist()
    flat: list = []

    def walk(x, pos):
        if isinstance(x, (list, tuple)):
            for i, y in enumerate(x):
                walk(y, pos + (i,))
        else:
            flat.append((pos, x))

    if not isinstance(ids, Sequence):
        try:
            ids = list(ids)
        except TypeError:
            raise ValueError(f"{what} must be a sequence of ints, got {type(ids).__name__}: {ids!r:.60}") from None
    walk(ids, ())
    out = []
    for pos, x in flat:
        where = f"{what}[{', '.join(map(str, pos))}]" if pos else what
        if not is_int(x):
            raise ValueError(f"{where} must be an int, got {x!r} ({type(x).__name__})")
        if x < 0 or (vocab_size is not None and x >= vocab_size):
            size = f"a vocabulary of {vocab_size} (ids 0..{vocab_size - 1})" if vocab_size is not None else "ids >= 0"
            raise ValueError(f"{where} = {x} is outside {size}")
        out.append(int(x))
    return out


def check_token_tensor(idx, vocab_size: int | None, what: str = "idx") -> None:
    """Fast path of `token_ids` for an integer tensor: one min/max reduction, the first bad id named."""
    if idx.numel() == 0:
        return
    lo, hi = int(idx.min()), int(idx.max())
    if lo < 0 or (vocab_size is not None and hi >= vocab_size):
        bad = (idx < 0) if lo < 0 else (idx >= vocab_size)
        pos = tuple(int(p) for p in bad.nonzero()[0].tolist())
        size = f"a vocabulary of {vocab_size} (ids 0..{vocab_size - 1})" if vocab_size is not None else "ids >= 0"
        raise ValueError(f"{what}[{', '.join(map(str, pos))}] = {int(idx[pos])} is outside {size}")


__all__ = ["is_int", "integer", "number", "positive", "probability", "flag", "choice", "token_ids",
           "check_token_tensor"]
