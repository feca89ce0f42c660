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


def write_result(name: str, body_markdown: str, directory: str | Path = "benchmarks/results") -> Path:
    """Write `benchmarks/results/<name>.md` with a header of command, machine and date, then the body."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    header = [f"# {name}", "", f"- command: `{command()}`"]
    header += [f"- {key}: {value}" for key, value in machine().items()]
    path = directory / f"{name}.md"
    path.write_text("\n".join(header) + "\n\n" + body_markdown.strip() + "\n", encoding="utf-8")
    return path


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
