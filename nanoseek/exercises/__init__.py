"""Checkers for the exercises at the end of each chapter; one module per chapter (`ch01`, `ch02`, ...).

A checker takes the reader's function, runs it on cases, and prints ✅ or ❌ with the reason. It never raises:
an exception in the reader's code is a failed check that names the exception.
"""
from __future__ import annotations

from typing import Callable


class ExerciseFailure(AssertionError):
    """A check the reader's code did not pass; its message is shown to the reader."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise ExerciseFailure(message)


def checking(title: str, checks: Callable[[], None]) -> bool:
    """Run `checks()`; print and return whether the exercise passed."""
    try:
        checks()
    except NotImplementedError:
        print(f"❌ {title}: not implemented yet — edit the function above and run the cell again.")
        return False
    except ExerciseFailure as failure:
        print(f"❌ {title}: {failure}")
        return False
    except Exception as err:  # the reader's code raised
        print(f"❌ {title}: your code raised {type(err).__name__}: {err}")
        return False
    print(f"✅ {title}: correct!")
    return True
