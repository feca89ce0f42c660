"""FP8 GEMMs on a Hopper GPU: TFLOP/s and accuracy of four paths on DeepGEMM's shapes. (Chapter 8.)

    python benchmarks/fp8_gemm.py            # on the H200; records benchmarks/results/fp8_gemm.{md,json}
    NANOSEEK_GPU_SMOKE=1 python benchmarks/fp8_gemm.py   # on a CPU: the simulated path, tiny shapes, no record

Paths: bf16 (`torch.matmul`), tensorwise FP8 (`torch._scaled_mm`, one scale per tensor), blockwise FP8
(`torch._scaled_mm` with 1×128 activation tiles and 128×128 weight blocks), and the chapter's Triton
kernel (`nanoseek.kernels.fp8_gemm`). Accuracy: DeepGEMM's calc_diff against the bf16 inputs' product in
float32. Quantization is done once outside the timed region (as DeepGEMM's benchmark does).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from nanoseek.benchmarking import write_result
from nanoseek.quant import calc_diff, quantize

# DeepGEMM's test shapes (N, K): DeepSeek-V3's projections
SHAPES = [(2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048)]
MS = (64, 128, 4096)


def bench(fn, reps: int = 50) -> float:
    """Median seconds of fn() by CUDA events, after warmup, with the L2 flushed by a 256 MB write between calls."""
    flush = torch.empty(64 * 1024 * 1024, dtype=torch.int32, device="cuda")
    for _ in range(5):
        fn()
    times = []
    for _ in range(reps):
        flush.zero_()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e) / 1e3)
    return sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--name", default="fp8_gemm")
    args = ap.parse_args()
    smoke = os.environ.get("NANOSEEK_GPU_SMOKE") == "1" or not torch.cuda.is_available()
    if smoke:
        from nanoseek.quant import fp8_mm
        x, w = torch.randn(64, 512), torch.randn(256, 512)
        ref = x @ w.T
        d = calc_diff(fp8_mm(quantize(x, (1, 128)), quantize(w, (128, 128))), ref)
        print(f"smoke (CPU, simulated blockwise): calc_diff {d:.2e}")
        assert d < 1e-3
        return
    from nanoseek.kernels.fp8_gemm import fp8_gemm
    from nanoseek.quant.scaled_mm import scaled_mm
    torch.manual_seed(0)
    probe = torch.tensor([470.0, 480.0, 1e9, float("inf")], device="cuda")
    cast_probe = {"inputs": [470.0, 480.0, 1e9, "inf"],
                  "e4m3": probe.to(torch.float8_e4m3fn).view(torch.uint8).tolist(),
                  "e5m2": probe.to(torch.float8_e5m2).view(torch.uint8).tolist()}
    rows, data = [], []
    for (N, K) in SHAPES:
        w = torch.randn(N, K, device="cuda", dtype=torch.bfloat16)
        wq_b, wq_t = quantize(w, (128, 128)), quantize(w, "tensor")
        for M in MS:
            x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
            ref = x.float() @ w.float().T
            xq_b, xq_t = quantize(x, (1, 128)), quantize(x, "tensor")
            paths = {
                "bf16": lambda: x @ w.T,
                "fp8 tensorwise (_scaled_mm)": lambda: scaled_mm(xq_t, wq_t),
                "fp8 blockwise (_scaled_mm)": lambda: scaled_mm(xq_b, wq_b),
                "fp8 blockwise (Triton)": lambda: fp8_gemm(xq_b.data, xq_b.scale, wq_b.data, wq_b.scale),
                "fp8 blockwise (Triton, TMA)": lambda: fp8_gemm(xq_b.data, xq_b.scale, wq_b.data, wq_b.scale,
                                                                tma=True),
                "fp8 blockwise (Triton, TMA, pipelined)": lambda: fp8_gemm(
                    xq_b.data, xq_b.scale, wq_b.data, wq_b.scale, tma=True, pipelined=True),
            }
            row = {"M": M, "N": N, "K": K}
            for name, fn in paths.items():
                try:
                    out = fn()
                    torch.cuda.synchronize()
                    t = bench(fn, args.reps)
                    row[name] = {"tflops": 2 * M * N * K / t / 1e12, "us": t * 1e6, "calc_diff": calc_diff(out, ref)}
                except Exception as err:  # a path that fails is recorded as failed, with its message
                    row[name] = {"error": f"{type(err).__name__}: {str(err)[:200]}"}
            data.append(row)
            cells = [f"{row[n]['tflops']:.0f} ({row[n]['calc_diff']:.1e})" if "tflops" in row[n] else "failed"
                     for n in paths]
            rows.append(f"| {M} | {N} | {K} | " + " | ".join(cells) + " |")
            print(rows[-1], flush=True)
    body = ["TFLOP/s (calc_diff against the fp32 product of the bf16 inputs) of each path; median of "
            f"{args.reps} timed calls with the L2 flushed between them; quantization not timed.", "",
            "| M | N | K | " + " | ".join(paths) + " |", "| ---: | ---: | ---: |" + " ---: |" * len(paths), *rows]
    from nanoseek.kernels import fp8_gemm as kern
    configs = {name: str(getattr(k, "best_config", None)) for name, k in
               (("pointers", kern._fp8_gemm_kernel), ("tma", kern._fp8_gemm_tma_kernel),
                ("tma pipelined", kern._fp8_gemm_tma_pipelined_kernel))}
    body += ["", f"Triton configs picked by autotune for the last shape: {configs}", "",
             f"CUDA casts past the E4M3 range (470, 480, 1e9, inf) give codes {cast_probe['e4m3']} "
             f"(127 = NaN: no saturation); E5M2 {cast_probe['e5m2']}."]
    errors = {f"{r['M']}x{r['N']}x{r['K']} {n}": v["error"] for r in data for n, v in r.items()
              if isinstance(v, dict) and "error" in v}
    if errors:
        body += ["", "Failures:", *[f"- {k}: {v}" for k, v in errors.items()]]
    write_result(args.name, "\n".join(body), data={"rows": data, "paths": list(paths),
                                                    "cuda_cast_overflow": cast_probe})


if __name__ == "__main__":
    main()
