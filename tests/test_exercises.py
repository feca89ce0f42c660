"""Every exercise: the unedited stub fails its checker, and the hidden solution passes it.

Exercise and solution cells are self-contained (they do their own imports), so each runs here on its own.
"""
import contextlib
import io

import pytest

from notebook_cells import NOTEBOOKS, cells

PAIRS = []
for nb in NOTEBOOKS:
    stubs, solutions = cells(nb, "exercise"), cells(nb, "solution")
    PAIRS += [pytest.param(nb.name, s.source, sol.source, id=f"{nb.stem}-ex{i + 1}")
              for i, (s, sol) in enumerate(zip(stubs, solutions))]


@pytest.mark.parametrize("notebook", [nb.name for nb in NOTEBOOKS])
def test_every_chapter_has_three_exercises_with_hidden_solutions(notebook):
    from notebook_cells import ROOT

    path = ROOT / "notebooks" / notebook
    stubs, solutions = cells(path, "exercise"), cells(path, "solution")
    assert len(stubs) >= 3, f"{notebook}: {len(stubs)} exercises, the book promises at least 3"
    assert len(stubs) == len(solutions), f"{notebook}: {len(stubs)} exercises but {len(solutions)} solutions"
    for sol in solutions:
        assert "hide-input" in sol.metadata["tags"], f"{notebook}: a solution cell is not hidden in the book"
        assert "assert check_" in sol.source, f"{notebook}: a solution cell does not assert its checker"


@pytest.mark.parametrize("notebook, stub, solution", PAIRS)
def test_stub_fails_and_solution_passes(notebook, stub, solution):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(stub, f"<{notebook} exercise>", "exec"), {"__name__": "__exercise__"})
    printed = out.getvalue()
    assert "❌" in printed and "✅" not in printed, f"the unedited stub should fail its checker, it printed: {printed!r}"

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(solution, f"<{notebook} solution>", "exec"), {"__name__": "__exercise__"})
    assert "✅" in out.getvalue()
