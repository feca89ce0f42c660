"""Re-run notebooks at `tiny` scale and store their outputs: `python tools/execute.py [notebooks/NN_x.py ...]`.

For each notebook: sync the .ipynb from its py:percent twin (jupytext keeps outputs of unchanged cells),
execute it in a fresh kernel from the notebooks folder, write the outputs back, and sync the twin again.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def execute(path: Path, timeout: int = 900) -> float:
    py = path.with_suffix(".py")
    ipynb = path.with_suffix(".ipynb")
    nb = jupytext.read(py)
    if ipynb.exists():  # keep the metadata (and widgets state) of the existing notebook
        old = nbformat.read(ipynb, as_version=4)
        nb.metadata = {**old.metadata, **nb.metadata}
    nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"})
    nb.metadata.setdefault("jupytext", {})["formats"] = "ipynb,py:percent"
    os.environ["NANOSEEK_SCALE"] = "tiny"
    os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(py.parent)}},
                   store_widget_state=True).execute()
    seconds = time.perf_counter() - start
    jupytext.write(nb, ipynb)
    jupytext.write(nb, py, fmt="py:percent")
    return seconds


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted(ROOT.glob("notebooks/[0-9][0-9]_*.py"))
    for path in paths:
        seconds = execute(path.resolve())
        print(f"{path.name}: executed in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
