"""nanoseek: DeepSeek-V2/V3/R1 built from scratch, one chapter at a time.

The package is the single implementation behind the book's notebooks: a chapter builds an idea inline,
asserts that the package computes the same thing, and uses the package from then on.
"""
from __future__ import annotations

import inspect

__version__ = "0.1.0"

from nanoseek.env import device, scale, seed_everything, doctor, pick  # noqa: E402


def show(obj) -> None:
    """Print the real source of a package object, so a notebook shows the code it runs (not a copy)."""
    try:
        source = inspect.getsource(obj)
        where = f"{inspect.getsourcefile(obj).split('nanoseek/', 1)[-1]}"
    except (TypeError, OSError) as err:  # builtins, C extensions
        raise TypeError(f"cannot show the source of {obj!r}: {err}") from None
    try:
        from IPython.display import Markdown, display
    except ImportError:  # plain Python: print it
        print(f"# nanoseek/{where}\n{source}")
        return
    display(Markdown(f"`nanoseek/{where}`\n\n```python\n{source}```"))


__all__ = ["device", "scale", "seed_everything", "doctor", "pick", "show", "__version__"]
