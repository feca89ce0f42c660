"""Token dispatch in a DeepSeekMoE layer: sorted (argsort + contiguous slices) vs a loop over experts with a
boolean mask each (transformers' eager path) vs one grouped matmul. (Chapter 6.)

    python3 benchmarks/moe_dispatch.py                 # CPU, side-by-side ratios
    python3 benchmarks/moe_dispatch.py --device cuda   # H200: absolute times, bf16

Writes benchmarks/results/moe_dispatch[_cuda].md. All three dispatches compute the same function (checked
here before timing, and in tests/test_moe.py).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nanoseek.benchmarking import sync, write_result  # noqa: E402
from nanoseek.nn.moe import MoE, MoEConfig  # noqa: E402


def race(fns: dict, device: str, warmup: int, iters: int) -> dict:
    """Fastest seconds of each fn, timed round-robin (one call of each in turn) so that load from other
    processes hits every contender alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    best = {name: float("inf") for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--iters", type=int, default=None)
    args = ap.parse_args()
    dev = args.device
    if dev == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch.cuda.is_available() is False")
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    if dev == "cpu":
        torch.set_num_threads(1)  # steadier ratios on a shared CPU
        # (tokens, dim, experts, top-k, expert width)
        shapes = [(512, 128, 16, 2, 64), (1024, 128, 64, 6, 32)]
        iters = args.iters or 5
    else:
        shapes = [(4096, 1024, 64, 6, 256), (16384, 2048, 64, 6, 512), (16384, 7168, 256, 8, 2048)]
        iters = args.iters or 10
    rows = []
    for N, C, E, K, I in shapes:
        torch.manual_seed(0)
        cfg = MoEConfig(dim=C, n_routed_experts=E, num_experts_per_tok=K, moe_intermediate_size=I, n_shared_experts=0)
        with torch.device(dev):  # built where it runs: DeepSeek-V3's layer is 11B parameters
            m = MoE(cfg).to(dtype)
        m.gate.float()  # the router stays in float32, as in transformers
        x = torch.randn(1, N, C, device=dev, dtype=dtype)
        with torch.no_grad():
            m.experts.dispatch = "loop"
            ref = m(x).float()
        fwd, fwd_bwd, notes = {}, {}, {}
        for dispatch in ["loop", "sorted", "grouped"]:
            m.experts.dispatch = dispatch
            try:
                with torch.no_grad():
                    err = (m(x).float() - ref).abs().max().item() / ref.abs().max().item()
                if err > (2e-2 if dtype == torch.bfloat16 else 1e-4):
                    raise RuntimeError(f"{dispatch} differs from loop by {err:.2e}")
            except Exception as errm:  # noqa: BLE001 (a dispatch this torch/device lacks is a note, not a crash)
                notes[dispatch] = str(errm).split("\n")[0][:80]
                continue

            def f(d=dispatch):
                m.experts.dispatch = d
                with torch.no_grad():
                    m(x)

            def fb(d=dispatch):
                m.experts.dispatch = d
                xx = x.detach().requires_grad_()
                m(xx).float().square().mean().backward()
                m.zero_grad(set_to_none=True)

            fwd[dispatch], fwd_bwd[dispatch] = f, fb
        t_f = race(fwd, dev, 1, iters)
        t_fb = race(fwd_bwd, dev, 1, iters)
        for dispatch in ["loop", "sorted", "grouped"]:
            nan = float("nan")
            rows.append((N, C, E, K, I, dispatch, t_f.get(dispatch, nan) * 1e3, t_fb.get(dispatch, nan) * 1e3,
                         notes.get(dispatch, "")))
            print(rows[-1], flush=True)
    loop_times = {(r[0], r[1], r[2]): (r[6], r[7]) for r in rows if r[5] == "loop"}
    lines = [
        f"MoE token dispatch: sorted (argsort + contiguous slices) vs a loop over experts with a mask each "
        f"(transformers' eager path) vs one grouped matmul. dtype {str(dtype).replace('torch.', '')}; no shared "
        f"experts; fastest of {iters} round-robin runs; speedup = loop time / this time, measured side by side "
        "in one run.",
        "",
        "| tokens | dim | experts | top-k | expert width | dispatch | fwd ms | fwd+bwd ms | fwd speedup | fwd+bwd speedup | note |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for N, C, E, K, I, d, f, fb, note in rows:
        lf, lfb = loop_times.get((N, C, E), (float("nan"), float("nan")))
        lines.append(f"| {N} | {C} | {E} | {K} | {I} | {d} | {f:.2f} | {fb:.2f} | {lf / f:.2f}x | {lfb / fb:.2f}x | {note} |")
    root = Path(__file__).resolve().parents[1]
    out = write_result(f"moe_dispatch{'_cuda' if dev == 'cuda' else ''}", "\n".join(lines), root / "benchmarks" / "results")
    print(out.read_text())


if __name__ == "__main__":
    main()
