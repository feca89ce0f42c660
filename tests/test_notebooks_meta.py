"""Structure every chapter must have: a synced py:percent twin, committed outputs, the Colab badge, a CFG."""
import sys

import jupytext
import nbformat
import pytest

from notebook_cells import NOTEBOOKS, ROOT

sys.path.insert(0, str(ROOT / "tools"))
import colab  # noqa: E402

NAMES = [nb.name for nb in NOTEBOOKS]


def test_there_are_chapters():
    assert NOTEBOOKS, "no notebooks found"


@pytest.mark.parametrize("name", NAMES)
def test_py_percent_twin_in_sync(name):
    ipynb = ROOT / "notebooks" / name
    twin = ipynb.with_suffix(".py")
    assert twin.exists(), f"{name} has no py:percent twin"
    nb = jupytext.read(ipynb)
    assert jupytext.writes(nb, fmt="py:percent") == twin.read_text(encoding="utf-8"), (
        f"{name} and {twin.name} differ: edit the .py, then `make execute NB=notebooks/{twin.name}`")


@pytest.mark.parametrize("name", NAMES)
def test_outputs_committed(name):
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    missing = [i for i, c in enumerate(code) if not c.get("execution_count")]
    assert not missing, f"{name}: code cells {missing} were not executed; run `make execute`"


@pytest.mark.parametrize("name", NAMES)
def test_chapter_anatomy(name):
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# Chapter"), f"{name}: first cell must be the title"
    sources = "\n".join(c.source for c in nb.cells)
    assert "CFG = pick(" in sources, f"{name}: no `CFG = pick(tiny=..., full=...)` cell"
    assert "## Exercises" in sources and "## Summary" in sources, f"{name}: missing Summary or Exercises"


def test_colab_badges_and_install_lines_match_config():
    assert colab.problems() == []


def test_toc_lists_every_chapter():
    toc = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    for nb in NOTEBOOKS:
        assert f"notebooks/{nb.stem}" in toc, f"{nb.name} is not in _toc.yml"
