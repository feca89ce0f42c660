"""Run one chapter at `full` scale as its py:percent script, and record how long it took.

    python3 tools/run_full.py notebooks/01_nanogpt.py [--log-dir benchmarks/results/logs]

On the GPU machine notebooks run as scripts (Jupyter kernels do not start there). The script's output goes to
`benchmarks/results/logs/<stem>_full.log`; the record `benchmarks/results/<stem>_full.json` holds the
whole run's seconds, whether it finished, and the machine, so the chapter's budget table reads it
(`budget_table(..., full_record="<stem>_full")`).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nanoseek.benchmarking import write_result  # noqa: E402


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("notebook", type=Path)
    ap.add_argument("--log-dir", type=Path, default=ROOT / "benchmarks" / "results" / "logs")
    ap.add_argument("--timeout", type=float, default=None, help="seconds before the run is stopped")
    ap.add_argument("--shared-gpu", type=int, default=0, metavar="N",
                    help="N other runs shared the GPU with this one (their time is then an upper bound)")
    args = ap.parse_args(argv)
    script = args.notebook.with_suffix(".py")
    args.log_dir.mkdir(parents=True, exist_ok=True)
    log = args.log_dir / f"{script.stem}_full.log"
    paths = [str(ROOT)]
    try:
        import IPython  # noqa: F401
    except ImportError:  # the GPU machine has no IPython: chapters' display(Markdown(...)) then prints
        paths.append(str(ROOT / "tools" / "no_ipython"))
    env = {**os.environ, "NANOSEEK_SCALE": "full", "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(paths + [os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        try:
            rc = subprocess.run([sys.executable, script.name], cwd=script.parent.resolve(), env=env, stdout=out,
                                stderr=subprocess.STDOUT, timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    seconds = time.perf_counter() - start
    finished = rc == 0
    write_result(f"{script.stem}_full", f"`{script.name}` at `full`: {'finished' if finished else f'stopped ({rc})'}"
                 f" in {seconds:.0f} s; log: `benchmarks/results/logs/{log.name}`"
                 + (f"; {args.shared_gpu} other run(s) shared the GPU" if args.shared_gpu else ""),
                 directory=ROOT / "benchmarks" / "results",
                 data={"seconds": round(seconds, 1), "finished": finished, "returncode": str(rc),
                       "log": f"logs/{log.name}", "shared_gpu": args.shared_gpu})
    print(f"{script.name}: {'finished' if finished else 'stopped'} in {seconds:.0f} s (log {log})")
    return 0 if finished else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
