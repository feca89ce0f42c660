"""What every recorded benchmark result states: the command, the machine and the date."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import sys
from pathlib import Path

import torch


def machine() -> dict:
    info = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu cores": os.cpu_count(),
        "torch threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    # benchmarks/gpu/together.sh runs several jobs on one GPU and says how many: a record made then must say
    # so, because its speeds are lower bounds
    jobs = int(os.environ.get("NANOSEEK_GPU_JOBS", "1") or 1)
    if jobs > 1:
        info["gpu shared with"] = f"{jobs - 1} other job(s) (benchmarks/gpu/together.sh)"
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def command() -> str:
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])


def write_result(name: str, body_markdown: str, directory: str | Path = "benchmarks/results",
                 data: dict | None = None) -> Path:
    """Write `benchmarks/results/<name>.md` with a header of command, machine and date, then the body.

    With `data`, also write `<name>.json` (the same header fields plus `data`): the numbers a notebook reads
    back with `read_result(name)`, so no figure is typed into prose.
    """
    import json

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    header = [f"# {name}", "", f"- command: `{command()}`"]
    header += [f"- {key}: {value}" for key, value in machine().items()]
    path = directory / f"{name}.md"
    path.write_text("\n".join(header) + "\n\n" + body_markdown.strip() + "\n", encoding="utf-8")
    if data is not None:
        record = {"name": name, "command": command(), **machine(), "data": data}
        (directory / f"{name}.json").write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n",
                                                encoding="utf-8")
    return path


def results_dir() -> Path:
    """`benchmarks/results/` of this checkout (the notebooks read records from here)."""
    return Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def read_result(name: str) -> dict | None:
    """The JSON record `benchmarks/results/<name>.json` written by `write_result(..., data=...)`, or None when
    it has not been recorded (a notebook then says "not recorded yet" instead of showing a number)."""
    import json

    path = results_dir() / f"{name}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def notebook_seconds(notebook: str) -> float | None:
    """The `tiny` time of one notebook (e.g. "01_nanogpt") from `notebook_times.md`, or None if not recorded."""
    path = results_dir() / "notebook_times.md"
    if not path.exists():
        return None
    stem = notebook.removesuffix(".ipynb").removesuffix(".py")
    for line in path.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0] == f"{stem}.ipynb":
            try:
                return float(cells[1])
            except ValueError:
                return None
    return None


def budget_table(notebook: str, *, tiny: str, full: str, full_record: str | None = None,
                 full_key: str = "seconds") -> str:
    """A chapter's budget table as Markdown, every time read from `benchmarks/results/`.

    `tiny`/`full` describe what runs at each scale; the `tiny` time comes from `notebook_times.md` (2-core
    CPU, `make test`), the `full` time from the JSON record `full_record` (its `data[full_key]` seconds and
    the GPU it ran on). A time that was never measured says so.
    """
    tiny_s = notebook_seconds(notebook)
    tiny_time = f"{tiny_s:.0f} s (`notebook_times.md`)" if tiny_s is not None else "not recorded yet"
    full_time, full_where = "not recorded yet", "one GPU"
    record = read_result(full_record) if full_record else None
    if record is not None and full_key in record.get("data", {}):
        data = record["data"]
        stopped = "" if data.get("finished", True) else f", stopped before the end ({data.get('returncode')})"
        shared = "; the GPU was shared with other runs" if data.get("shared_gpu") else ""
        full_time = f"{data[full_key]:.0f} s{stopped}{shared} (`{full_record}.json`, {record['date'][:10]})"
        full_where = record.get("gpu", full_where)
    return "\n".join([
        "| scale | what runs | on | time (measured) |",
        "| --- | --- | --- | --- |",
        f"| `tiny` (default) | {tiny} | 2-core CPU | {tiny_time} |",
        f"| `full` (`NANOSEEK_SCALE=full`) | {full} | {full_where} | {full_time} |",
    ])


def sync(device: torch.device | str) -> None:
    """Wait for queued GPU work, so a timer measures it (a no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device | str):
    """(wall seconds, this process's CPU seconds, result) of one call of fn()."""
    import time

    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, time.process_time() - c0, out
