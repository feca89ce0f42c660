"""Repository-wide pytest hooks: record how long each notebook takes under nbval.

`make test` runs every notebook; the per-notebook wall time (the sum of its cells) is written to
`benchmarks/results/notebook_times.md`, so the two-minutes-a-chapter budget can be watched as chapters grow.
"""
from __future__ import annotations

import datetime as dt
import os
import platform
from collections import defaultdict
from pathlib import Path

import pytest

_times: dict[str, float] = defaultdict(float)
_failed: set[str] = set()
BUDGET_S = 120  # the target for one chapter at tiny scale on a 2-core CPU
LIMIT_S = 300  # no chapter may take longer


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::", 1)[0]
    if path.endswith(".ipynb"):
        _times[path] += report.duration
        if report.failed:
            _failed.add(path)


def pytest_sessionfinish(session, exitstatus):
    if not _times or hasattr(session.config, "workerinput"):  # only the controller writes
        return
    root = Path(session.config.rootpath)
    every = {f"notebooks/{p.name}" for p in (root / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    if not every <= set(_times):  # a run of some notebooks must not overwrite the record of all of them
        return
    rows = ["| notebook | seconds | budget (120 s) | result |", "| --- | --- | --- | --- |"]
    for path, seconds in sorted(_times.items()):
        verdict = "ok" if seconds <= BUDGET_S else ("over budget" if seconds <= LIMIT_S else "OVER LIMIT")
        rows.append(f"| {Path(path).name} | {seconds:.0f} | {verdict} | {'failed' if path in _failed else 'passed'} |")
    workers = getattr(session.config.option, "numprocesses", None) or 1
    cache = "empty" if os.environ.get("NANOSEEK_COLD_CACHE") else "as found"
    header = (f"# Notebook execution times at `tiny` scale\n\nWritten by `make test` (pytest --nbval-lax) on "
              f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}, {platform.node() or 'unknown host'}, "
              f"{os.cpu_count()} CPU cores, {workers} pytest workers, one torch thread each, model cache "
              f"(`nanoseek.zoo`) {cache}. Time is the sum of a notebook's cells; with several workers, "
              f"notebooks share the cores.\n\n")
    out = Path(session.config.rootpath) / "benchmarks" / "results" / "notebook_times.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + "\n".join(rows) + "\n", encoding="utf-8")
