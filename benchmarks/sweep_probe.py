"""Run sweep variants once in child processes before timing them, so that one that crashes costs only itself.

A Triton variant can fail in three ways: a Python error (caught anywhere), a compiler crash, or an illegal
memory access that poisons the process's CUDA context for every later variant. The benchmarks that sweep
(`fp8_gemm.py`, `mla_decode.py`) therefore first run `python <script> --probe NAME...` in a few child
processes at once: each child compiles and runs the named variants at a small shape and prints one
`PROBE<TAB>name<TAB>ok ...|error: ...` line each. A child that dies is restarted after the variant it died on.
The children fill Triton's disk cache, so the parent's own launches reuse their binaries.
"""
from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor


def probe_line(name: str, result: str) -> None:
    """What a child prints for each variant (`result`: "ok ..." or "error: ...")."""
    print(f"PROBE\t{name}\t{result}", flush=True)


def _chunk(script: str, names: list[str], extra: list[str], timeout: float) -> dict[str, str]:
    status: dict[str, str] = {}
    left = list(names)
    while left:
        try:
            proc = subprocess.run([sys.executable, script, *extra, "--probe", *left], capture_output=True,
                                  text=True, timeout=timeout)
            out, err, rc = proc.stdout, proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            err, rc = "", "timeout"
        for line in out.splitlines():
            if line.startswith("PROBE\t"):
                _, name, res = line.split("\t", 2)
                status[name] = res
        left = [n for n in left if n not in status]
        if left:  # the child died on the first variant it did not report
            tail = (err.strip().splitlines() or [""])[-1][:160]
            status[left[0]] = f"error: crashed the probe process (exit {rc}): {tail}"
            left = left[1:]
    return status


def probe_in_children(script: str, names: list[str], jobs: int = 4, extra: list[str] | None = None,
                      timeout: float = 900) -> dict[str, str]:
    """name -> "ok ..." or "error: ..." for every variant, `jobs` child processes at a time."""
    chunks = [names[i::jobs] for i in range(max(1, jobs)) if names[i::jobs]]
    status: dict[str, str] = {}
    if chunks:
        with ThreadPoolExecutor(len(chunks)) as pool:
            for part in pool.map(lambda c: _chunk(script, c, extra or [], timeout), chunks):
                status.update(part)
    return {n: status[n] for n in names}
