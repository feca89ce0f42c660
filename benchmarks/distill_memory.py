"""Peak memory of the distillation losses, unchunked vs chunked, at Qwen2.5's 151,936-token vocabulary. (Chapter 11.)

Each measurement allocates the student's logits (with grad) and the teacher's,
then runs loss + backward. On the CPU the peak is the process's maximum resident set size (`ru_maxrss`) minus
its resident size just before the loss (each variant in a fresh subprocess); on a GPU it is
`torch.cuda.max_memory_allocated` minus the memory allocated before the loss (in one process: the peak counter
is reset before each variant). Both count what the loss adds on top of the logits it is given.

    python benchmarks/distill_memory.py                 # CPU, 256 positions
    python benchmarks/distill_memory.py --positions 4096 --dtype bf16   # on a GPU
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(kind: str, chunk: int | None, positions: int, vocab: int, dtype: str, device: str) -> dict:
    import resource

    import torch

    from nanoseek.distill import distill_loss

    dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    g = torch.Generator(device=device).manual_seed(0)
    s = torch.randn(positions, vocab, generator=g, device=device, dtype=dt).requires_grad_(True)
    t = torch.randn(positions, vocab, generator=g, device=device, dtype=dt)
    mask = torch.ones(positions, device=device)

    def rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = rss()
    loss = distill_loss(s, t, kind, mask=mask, beta=0.5, chunk_size=chunk)
    loss.backward()
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return {"kind": kind, "chunk": chunk, "peak_bytes": peak, "loss": float(loss),
            "logits_bytes": s.numel() * s.element_size()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--positions", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=151_936)
    ap.add_argument("--chunk", type=int, default=32)
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--device", default=None)
    ap.add_argument("--kinds", default="forward_kl,reverse_kl,jsd")
    ap.add_argument("--name", default=None)
    ap.add_argument("--child", default=None)
    args = ap.parse_args()
    if args.child:
        kind, chunk = args.child.split(":")
        print(json.dumps(child(kind, int(chunk) or None, args.positions, args.vocab, args.dtype, args.device)))
        return

    import torch

    from nanoseek.benchmarking import write_result

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    for kind in args.kinds.split(","):
        for chunk in (0, args.chunk):
            if device == "cuda":  # the caching allocator's peak counter resets exactly: no fresh process needed
                rows.append(child(kind, chunk or None, args.positions, args.vocab, args.dtype, device))
                torch.cuda.empty_cache()
                print(rows[-1], flush=True)
                continue
            out = subprocess.run([sys.executable, __file__, "--child", f"{kind}:{chunk}", "--positions",
                                  str(args.positions), "--vocab", str(args.vocab), "--dtype", args.dtype,
                                  "--device", device], capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    mib = 2**20
    lines = [f"Positions {args.positions}, vocabulary {args.vocab:,}, {args.dtype} logits on {device}; "
             f"one (N, V) logits tensor is {rows[0]['logits_bytes'] / mib:.0f} MiB. Peak = memory the loss and "
             "its backward add on top of the student's and teacher's logits.", "",
             "| loss | unchunked peak (MiB) | chunked peak (MiB) | ratio | same loss |", "| --- | --- | --- | --- | --- |"]
    data = {"positions": args.positions, "vocab": args.vocab, "dtype": args.dtype, "device": device,
            "chunk": args.chunk, "logits_mib": rows[0]["logits_bytes"] / mib, "rows": {}}
    for i in range(0, len(rows), 2):
        a, b = rows[i], rows[i + 1]
        same = abs(a["loss"] - b["loss"]) <= 1e-6 * max(1.0, abs(a["loss"]))
        lines.append(f"| {a['kind']} | {a['peak_bytes'] / mib:.0f} | {b['peak_bytes'] / mib:.0f} | "
                     f"{a['peak_bytes'] / max(b['peak_bytes'], 1):.1f}x | {same} |")
        data["rows"][a["kind"]] = {"unchunked_mib": a["peak_bytes"] / mib, "chunked_mib": b["peak_bytes"] / mib,
                                   "loss_unchunked": a["loss"], "loss_chunked": b["loss"]}
    name = args.name or ("distill_memory" if device == "cpu" else "distill_memory_cuda")
    print(write_result(name, "\n".join(lines), data=data))


if __name__ == "__main__":
    main()
