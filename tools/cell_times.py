"""Where a notebook's time goes: `python tools/cell_times.py notebooks/NN_x.py [--top 10] [--out copy.ipynb]`.

Executes the notebook's py:percent twin in a fresh kernel from the notebooks folder at `tiny` (as
`tools/execute.py` does, but without writing anything back: the committed files stay as they are) and prints
each code cell's wall time from nbclient's execution timestamps, slowest first, with the sum of the cells
(what `conftest.py` records in `benchmarks/results/notebook_times.md`). The model cache is whatever
`NANOSEEK_CACHE` points at: an empty folder measures the cold run that `make test COLD=1` sees.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

import jupytext
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def _seconds(cell) -> float:
    ex = cell.metadata.get("execution", {})
    start, end = ex.get("iopub.execute_input"), ex.get("shell.execute_reply")
    if not (start and end):
        return float("nan")
    parse = lambda s: dt.datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def cell_times(path: Path, timeout: int = 900) -> tuple[list[tuple[int, float, str]], float, object]:
    """[(cell index, seconds, first line)] of the code cells, the wall time of the whole run, the notebook."""
    py = path.with_suffix(".py")
    nb = jupytext.read(py)
    nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"})
    os.environ["NANOSEEK_SCALE"] = "tiny"
    os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(py.parent)}}).execute()
    wall = time.perf_counter() - start
    rows = [(i, _seconds(c), (c.source.splitlines() or [""])[0][:72])
            for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    return rows, wall, nb


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("notebook", type=Path)
    ap.add_argument("--top", type=int, default=10, help="how many of the slowest cells to list (0: all, in order)")
    ap.add_argument("--out", type=Path, help="also write the executed copy here (never over the committed one)")
    args = ap.parse_args(argv)
    rows, wall, nb = cell_times(args.notebook.resolve())
    total = sum(s for _, s, _ in rows)
    shown = rows if args.top == 0 else sorted(rows, key=lambda r: -r[1])[:args.top]
    for i, s, first in shown:
        print(f"{s:8.2f} s  {100 * s / total:5.1f}%  cell {i:3d}  {first}")
    print(f"sum of the cells {total:.1f} s (wall {wall:.1f} s); cache {os.environ.get('NANOSEEK_CACHE', 'default')}")
    if args.out is not None:
        if args.out.resolve() == args.notebook.resolve().with_suffix(".ipynb"):
            ap.error("--out must not be the committed notebook: use tools/execute.py to update it")
        jupytext.write(nb, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
