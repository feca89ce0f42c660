"""FP8 GEMMs on a Hopper GPU: TFLOP/s and accuracy of every path on DeepGEMM's shapes, one run. (Chapter 8.)

    python3 benchmarks/fp8_gemm.py            # on the H200; records benchmarks/results/fp8_gemm.{md,json}
    NANOSEEK_GPU_SMOKE=1 python benchmarks/fp8_gemm.py   # on a CPU: the simulated path on tiny shapes; with
        TRITON_INTERPRET=1 (and Triton importable) also the whole sweep harness on tiny shapes. No record.

Paths: bf16 (`torch.matmul`), tensorwise FP8 and blockwise FP8 (`torch._scaled_mm` called directly, every
operand and scale prepared in the layout cuBLAS wants *before* timing), the package's `scaled_mm` wrapper
(what training calls: it makes the activation scales column-major on every call), and the chapter's Triton
kernel: the autotuned teaching kernel, and every variant of a sweep (tile shapes, warps, pipeline stages, TMA,
persistent launch, Triton's warp specialization, deferred promotion) measured at 4096x7168x16384. Each
variant is checked against the fp32 product (DeepGEMM's calc_diff < 1e-3) and against `_scaled_mm` on the
same FP8 operands; a variant that fails to compile, runs out of resources or is wrong is recorded and
skipped. The best few variants then run on every shape.

Two timing methods, both on exactly the call named (quantization and layout work are outside):
- "flush": per call, CUDA events around one call, the L2 flushed by a 256 MB write before it; every call is
  queued without a host sync in between (the CPU runs ahead, so no launch gap is timed); median.
- "graph": 20 calls back to back captured in a CUDA graph, replayed; time per call, median of 5 replays (warm
  L2; at 4096x7168x16384 the operands, 176 MB, do not fit the 50 MB L2 anyway).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # sweep_probe

import torch

from nanoseek.benchmarking import write_result
from nanoseek.quant import calc_diff, quantize

# DeepGEMM's test shapes (N, K): DeepSeek-V3's projections
SHAPES = [(2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048)]
MS = (64, 128, 4096)
TARGET = (4096, 7168, 16384)  # (M, N, K) of the issue's targets


def sweep_variants(small: bool = False) -> dict[str, dict]:
    """name -> dict(tma, pipelined, config). `small`: interpreter-sized tiles for the CPU smoke run."""
    v: dict[str, dict] = {}

    def add(kind: str, m: int, n: int, w: int, s: int, **flags):
        tma, pipelined = kind != "pointers", kind == "pipelined"
        cfg = dict(BLOCK_M=m, BLOCK_N=n, GROUP_M=8, num_warps=w, num_stages=s, **flags)
        tag = "".join(f" {k}" for k, on in flags.items() if on)
        v[f"{kind} {m}x{n} w{w} s{s}{tag}"] = dict(tma=tma, pipelined=pipelined, config=cfg)

    if small:
        add("pointers", 32, 32, 4, 2)
        add("tma", 32, 64, 4, 2)
        add("tma", 32, 64, 4, 2, persistent=True)
        add("tma", 16, 128, 4, 2, persistent=True, flatten=True)
        add("tma", 32, 32, 4, 2, persistent=True, warp_specialize=True)
        add("tma", 32, 256, 4, 2, persistent=True, split_n=True)
        add("pipelined", 32, 32, 4, 2)
        v["deliberately broken (smoke)"] = dict(tma=True, pipelined=False, config=dict(BLOCK_M=32, BLOCKN=32))
        v["deliberately crashing (smoke)"] = dict(tma=True, pipelined=False, config={}, crash=True)
        add("tma", 32, 32, 4, 3)  # after the crash: the probe must go on with a new child
        return v
    for m, n, w, s in [(128, 128, 8, 3), (128, 128, 8, 4), (64, 128, 4, 4), (128, 256, 8, 3)]:
        add("pointers", m, n, w, s)
    for m, n, w, s in [(128, 128, 8, 3), (128, 128, 8, 4), (128, 128, 8, 5), (128, 128, 4, 4), (64, 128, 4, 4),
                       (64, 128, 4, 5), (128, 256, 8, 3), (128, 256, 8, 4), (256, 128, 8, 3), (128, 256, 16, 3),
                       (256, 128, 16, 3)]:
        add("tma", m, n, w, s)
    for m, n, w, s in [(128, 128, 8, 3), (128, 128, 8, 4), (128, 128, 8, 5), (64, 128, 4, 4), (128, 256, 8, 3),
                       (256, 128, 8, 3), (128, 256, 16, 3)]:
        add("tma", m, n, w, s, persistent=True)
    for m, n, w, s in [(128, 128, 8, 3), (128, 128, 8, 4), (64, 128, 4, 4), (128, 256, 8, 3)]:
        add("tma", m, n, w, s, persistent=True, flatten=True)
    # Triton 3.6 documents warp specialization for Blackwell; on Hopper it may refuse, ignore or help: measured
    for m, n, w, s in [(128, 128, 8, 3), (128, 128, 8, 4), (128, 128, 4, 4), (128, 256, 8, 3)]:
        add("tma", m, n, w, s, persistent=True, warp_specialize=True)
    add("tma", 128, 128, 8, 4, persistent=True, flatten=True, warp_specialize=True)
    # two column halves, an accumulator each: the second half's MMA can overlap the first half's promotion
    for m, n, w, s in [(128, 128, 8, 3), (128, 128, 8, 4), (128, 256, 8, 3), (128, 256, 16, 3)]:
        add("tma", m, n, w, s, split_n=True)
    for m, n, w, s in [(128, 128, 8, 4), (128, 256, 8, 3), (128, 256, 16, 3)]:
        add("tma", m, n, w, s, persistent=True, split_n=True)
    for m, n, w, s in [(64, 128, 4, 4), (128, 128, 8, 3)]:
        add("pipelined", m, n, w, s)
    return v


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def bench_flush(fn, dev: torch.device, reps: int = 30, warmup: int = 5) -> float:
    """Median seconds of one call, the L2 flushed before each, all calls queued without a host sync."""
    for _ in range(warmup):
        fn()
    if dev.type != "cuda":  # the smoke run: wall time
        times = []
        for _ in range(max(1, reps // 10)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return sorted(times)[len(times) // 2]
    flush = torch.empty(64 * 1024 * 1024, dtype=torch.int32, device=dev)
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
    torch.cuda.synchronize()
    for s, e in ev:
        flush.zero_()
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize()
    times = sorted(s.elapsed_time(e) / 1e3 for s, e in ev)
    return times[len(times) // 2]


def bench_graph(fn, dev: torch.device, calls: int = 20, replays: int = 5) -> float:
    """Seconds a call, `calls` calls back to back in one CUDA graph (no launch gaps, warm L2); median replay."""
    if dev.type != "cuda":
        return bench_flush(fn, dev, reps=10, warmup=0)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(replays):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        graph.replay()
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e) / 1e3 / calls)
    del graph
    return sorted(times)[len(times) // 2]


def measure(fn, ref, dev, flops: float, reps: int, graph: bool = True, check=None) -> dict:
    """Run fn once (compiling it), check it, time it: a dict of tflops, us, calc_diff (or error)."""
    try:
        t0 = time.perf_counter()
        out = fn()
        _sync(dev)
        first = time.perf_counter() - t0
        row = {"calc_diff": calc_diff(out, ref), "first_call_s": first}
        if check is not None:
            row["diff_vs_scaled_mm"] = calc_diff(out, check)
        del out
        if not row["calc_diff"] < 1e-3:  # NaN fails too
            row["error"] = f"wrong: calc_diff {row['calc_diff']:.2e} against the fp32 product"
            return row
        t = bench_flush(fn, dev, reps)
        row.update(tflops=flops / t / 1e12, us=t * 1e6)
        if graph:
            try:
                tg = bench_graph(fn, dev)
                row.update(tflops_graph=flops / tg / 1e12, us_graph=tg * 1e6)
            except Exception as err:  # noqa: BLE001 - capture can fail; the flush number stands alone then
                row["graph_error"] = f"{type(err).__name__}: {str(err)[:120]}"
        return row
    except Exception as err:  # noqa: BLE001 - one failing path is recorded, the run goes on
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"}


def _kernel_stats() -> dict:
    from nanoseek.kernels.fp8_gemm import LAST_LAUNCH
    k = LAST_LAUNCH.pop("kernel", None)
    if k is None:
        return {}
    out = {}
    for key in ("n_regs", "n_spills"):
        if getattr(k, key, None) is not None:
            out[key] = int(getattr(k, key))
    shared = getattr(getattr(k, "metadata", None), "shared", None)
    if shared is not None:
        out["shared_kb"] = round(shared / 1024, 1)
    return out


def operands(M: int, N: int, K: int, dev, dtype):
    g = torch.Generator(device=dev).manual_seed(M * 7 + N * 3 + K)
    x = torch.randn(M, K, device=dev, generator=g).to(dtype)
    w = torch.randn(N, K, device=dev, generator=g).to(dtype)
    xq, wq = quantize(x, (1, 128)), quantize(w, (128, 128))
    return dict(x=x, w=w, ref=x.float() @ w.float().T, xq=xq, wq=wq, xq_t=quantize(x, "tensor"),
                wq_t=quantize(w, "tensor"), sa_cm=xq.scale.t().contiguous().t(),  # (M, K/128) column-major
                sb_t=wq.scale.t())                                               # (K/128, N/128), strides (1, K/128)


def base_paths(op: dict, dev) -> dict:
    """The library paths: name -> zero-argument call, every layout prepared outside."""
    from nanoseek.kernels.fp8_gemm import fp8_gemm
    from nanoseek.quant.scaled_mm import scaled_mm
    x, w, xq, wq, xq_t, wq_t = op["x"], op["w"], op["xq"], op["wq"], op["xq_t"], op["wq_t"]
    sa_t, sb_t = xq_t.scale.reshape(1, 1).float(), wq_t.scale.reshape(1, 1).float()
    a, bt, sa_cm, sb_blk = xq.data, wq.data.t(), op["sa_cm"], op["sb_t"]
    paths = {
        "bf16": lambda: x @ w.T,
        "fp8 tensorwise (_scaled_mm)": lambda: torch._scaled_mm(xq_t.data, wq_t.data.t(), scale_a=sa_t,
                                                                scale_b=sb_t, out_dtype=torch.bfloat16),
        "fp8 blockwise (_scaled_mm)": lambda: torch._scaled_mm(a, bt, scale_a=sa_cm, scale_b=sb_blk,
                                                               out_dtype=torch.bfloat16),
        "fp8 blockwise (package scaled_mm)": lambda: scaled_mm(xq, wq),
    }
    if dev.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1":
        paths["fp8 blockwise (Triton, teaching kernel)"] = lambda: fp8_gemm(xq.data, xq.scale, wq.data, wq.scale)
    return paths


def variant_call(op: dict, spec: dict, col_major: bool = True, out_dtype=torch.bfloat16):
    from nanoseek.kernels.fp8_gemm import fp8_gemm
    xq, wq = op["xq"], op["wq"]
    sa = op["sa_cm"] if col_major else xq.scale
    return lambda: fp8_gemm(xq.data, sa, wq.data, wq.scale, out_dtype=out_dtype, tma=spec["tma"],
                            pipelined=spec["pipelined"], config=spec["config"])


PROBE_SHAPE = (256, 384, 2048)  # every size and stride a multiple of 16, as at the target: the same binaries


def probe_main(names: list[str]) -> None:
    """Child process: compile and run each variant once at a small shape; one PROBE line per variant."""
    from sweep_probe import probe_line
    smoke = not torch.cuda.is_available()  # the CPU smoke run probes its interpreter-sized variants
    dev = torch.device("cpu" if smoke else "cuda")
    op = operands(*((80, 200, 256) if smoke else PROBE_SHAPE), dev, torch.float32 if smoke else torch.bfloat16)
    variants = sweep_variants(small=smoke)
    for name in names:
        try:
            if variants[name].get("crash"):  # the smoke run's stand-in for a compiler or GPU crash
                os._exit(3)
            out = variant_call(op, variants[name])()
            _sync(dev)
            res = f"ok {calc_diff(out, op['ref']):.2e}"
        except Exception as err:  # noqa: BLE001
            res = f"error: {type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
        probe_line(name, res)


def probe_variants(names: list[str], jobs: int = 4) -> dict[str, str]:
    """Every variant compiled and run once in child processes first (`benchmarks/sweep_probe.py`), `jobs` at a
    time: compiling is single-threaded and the GPU machine has 16 cores."""
    from sweep_probe import probe_in_children
    return probe_in_children(__file__, names, jobs)


def cell(r: dict, key: str = "tflops") -> str:
    if "error" in r:
        return "wrong" if r["error"].startswith("wrong") else "failed"
    return f"{r[key]:.0f}" if key in r else "–"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--name", default="fp8_gemm")
    ap.add_argument("--shortlist", type=int, default=3, help="best sweep variants run on every shape")
    ap.add_argument("--no-probe", action="store_true", help="skip compiling the variants in a child process first")
    ap.add_argument("--jobs", type=int, default=4, help="probe processes compiling at once")
    ap.add_argument("--probe", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe:
        probe_main(args.probe)
        return
    smoke = os.environ.get("NANOSEEK_GPU_SMOKE") == "1" or not torch.cuda.is_available()
    if smoke:
        from nanoseek.quant import fp8_mm
        x, w = torch.randn(64, 512), torch.randn(256, 512)
        d = calc_diff(fp8_mm(quantize(x, (1, 128)), quantize(w, (128, 128))), x @ w.T)
        print(f"smoke (CPU, simulated blockwise): calc_diff {d:.2e}")
        assert d < 1e-3
        if os.environ.get("TRITON_INTERPRET") != "1":
            print("(set TRITON_INTERPRET=1 with Triton importable to run the sweep harness on the interpreter)")
            return
    dev = torch.device("cpu" if smoke else "cuda")
    dtype = torch.float32 if smoke else torch.bfloat16
    shapes = [(64, 256, 384), (80, 200, 256)] if smoke else [(M, N, K) for (N, K) in SHAPES for M in MS]
    target = shapes[0] if smoke else TARGET
    variants = sweep_variants(small=smoke)
    reps = 3 if smoke else args.reps
    t_start = time.perf_counter()

    # 1. the sweep at the target shape: every variant, checked, timed (flush method; graph for the best)
    op = operands(*target, dev, dtype)
    M, N, K = target
    flops = 2 * M * N * K
    base = {name: measure(fn, op["ref"], dev, flops, reps) for name, fn in base_paths(op, dev).items()}
    try:
        check = torch._scaled_mm(op["xq"].data, op["wq"].data.t(), scale_a=op["sa_cm"], scale_b=op["sb_t"],
                                 out_dtype=torch.bfloat16) if not smoke else None
    except RuntimeError:
        check = None
    t_probe = time.perf_counter()
    probed = {} if args.no_probe else probe_variants(list(variants), args.jobs)
    probe_s = time.perf_counter() - t_probe
    print(f"probe: {sum(v.startswith('ok') for v in probed.values())} of {len(probed)} variants compiled and ran "
          f"({probe_s:.0f} s)", flush=True)
    sweep = {}
    for name, spec in variants.items():
        if probed.get(name, "ok").startswith("error"):
            sweep[name] = {"error": probed[name][len("error: "):], "probe": probed[name]}
            print(f"sweep {name}: skipped, probe {probed[name]}", flush=True)
            continue
        r = measure(variant_call(op, spec), op["ref"], dev, flops, reps, graph=False, check=check)
        r.update(_kernel_stats())
        if "diff_vs_scaled_mm" in r and not r["diff_vs_scaled_mm"] < 1e-5 and "error" not in r:
            r["error"] = f"wrong: calc_diff {r['diff_vs_scaled_mm']:.2e} against _scaled_mm on the same operands"
        sweep[name] = r
        print(f"sweep {name}: " + (r["error"] if "error" in r else f"{r['tflops']:.0f} TFLOP/s, calc_diff "
              f"{r['calc_diff']:.1e}, {r.get('n_regs', '?')} regs, {r.get('n_spills', '?')} spills, "
              f"{r.get('shared_kb', '?')} KB smem, first call {r['first_call_s']:.1f} s"), flush=True)
    ranked = sorted((n for n, r in sweep.items() if "tflops" in r and "error" not in r),
                    key=lambda n: -sweep[n]["tflops"])
    shortlist = ranked[:args.shortlist]
    for name in shortlist:  # the graph method for the best, and their row-major-scale twins
        try:
            tg = bench_graph(variant_call(op, variants[name]), dev)
            sweep[name].update(tflops_graph=flops / tg / 1e12, us_graph=tg * 1e6)
        except Exception as err:  # noqa: BLE001
            sweep[name]["graph_error"] = f"{type(err).__name__}: {str(err)[:120]}"
    scale_layout = {}
    if ranked:
        best = ranked[0]
        scale_layout = {"column-major (M, K/128) scales": sweep[best].get("tflops"),
                        "row-major (M, K/128) scales": measure(variant_call(op, variants[best], col_major=False),
                                                               op["ref"], dev, flops, reps, graph=False).get("tflops")}
    sweep_s = time.perf_counter() - t_start
    del op, check
    print(f"sweep done in {sweep_s:.0f} s; shortlist {shortlist}", flush=True)

    # 2. every shape: the library paths and the shortlisted variants (best of them per shape)
    rows = []
    for (M, N, K) in shapes:
        op = operands(M, N, K, dev, dtype)
        flops = 2 * M * N * K
        row = {"M": M, "N": N, "K": K}
        if (M, N, K) == target:
            row.update(base)
        else:
            for name, fn in base_paths(op, dev).items():
                row[name] = measure(fn, op["ref"], dev, flops, reps)
        tried = {}
        for name in shortlist:
            tried[name] = sweep[name] if (M, N, K) == target else measure(
                variant_call(op, variants[name]), op["ref"], dev, flops, reps)
        ok = [n for n, r in tried.items() if "tflops" in r and "error" not in r]
        if ok:
            pick = max(ok, key=lambda n: tried[n]["tflops"])
            row["fp8 blockwise (Triton, best variant)"] = {**tried[pick], "variant": pick}
        else:
            row["fp8 blockwise (Triton, best variant)"] = {"error": "no shortlisted variant ran"}
        row["variants"] = {n: {k: v for k, v in r.items() if k in ("tflops", "tflops_graph", "calc_diff", "error")}
                           for n, r in tried.items()}
        rows.append(row)
        print(f"{M}x{N}x{K}: " + ", ".join(f"{p} {cell(row[p])}" for p in row if isinstance(row[p], dict)
                                           and p != "variants"), flush=True)
        del op
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    paths = [p for p in rows[0] if isinstance(rows[0][p], dict) and p != "variants"]
    total_s = time.perf_counter() - t_start
    body = report(rows, paths, sweep, ranked, shortlist, scale_layout, target, reps, sweep_s, total_s, smoke)
    if smoke:
        print(body)
        print("smoke: harness ran end to end; no record written")
        return
    from nanoseek.kernels import fp8_gemm as kern
    probe = torch.tensor([470.0, 480.0, 1e9, float("inf")], device="cuda")
    cast_probe = {"inputs": [470.0, 480.0, 1e9, "inf"],
                  "e4m3": probe.to(torch.float8_e4m3fn).view(torch.uint8).tolist(),
                  "e5m2": probe.to(torch.float8_e5m2).view(torch.uint8).tolist()}
    body += f"\n\nCUDA casts past the E4M3 range (470, 480, 1e9, inf) give codes {cast_probe['e4m3']} " \
            f"(127 = NaN: no saturation); E5M2 {cast_probe['e5m2']}.\n\nTeaching kernel's autotuned config at " \
            f"the last shape: `{getattr(kern._fp8_gemm_kernel_tuned, 'best_config', None)}`."
    write_result(args.name, body, data={"rows": rows, "paths": paths, "sweep": sweep, "ranked": ranked,
                                        "shortlist": shortlist, "scale_layout": scale_layout,
                                        "target": list(target), "probe": probed,
                                        "seconds": {"probe": probe_s, "sweep": sweep_s, "total": total_s},
                                        "cuda_cast_overflow": cast_probe})


def report(rows, paths, sweep, ranked, shortlist, scale_layout, target, reps, sweep_s, total_s, smoke) -> str:
    M, N, K = target
    big = next(r for r in rows if (r["M"], r["N"], r["K"]) == tuple(target))
    get = lambda p, k="tflops": big.get(p, {}).get(k)  # noqa: E731
    lines = [f"All numbers TFLOP/s. **flush**: median of {reps} calls, L2 flushed before each, calls queued "
             "without host syncs; **graph**: 20 calls back to back in a CUDA graph (warm L2). Operands, "
             "quantization and scale layouts prepared outside the timed call. calc_diff is DeepGEMM's measure "
             "against the fp32 product of the bf16 inputs.", ""]
    bf, blk, ten = get("bf16"), get("fp8 blockwise (_scaled_mm)"), get("fp8 tensorwise (_scaled_mm)")
    tri = get("fp8 blockwise (Triton, best variant)")
    bfg, blkg = get("bf16", "tflops_graph"), get("fp8 blockwise (_scaled_mm)", "tflops_graph")
    trig = get("fp8 blockwise (Triton, best variant)", "tflops_graph")
    ratio = lambda a, b: f"{a / b:.2f}x" if a and b else "–"  # noqa: E731
    share = lambda a, b: f"{a / b:.0%}" if a and b else "–"  # noqa: E731
    lines += [f"## Targets at {M}x{N}x{K}", "",
              "| measure | flush | graph | target |", "| --- | ---: | ---: | ---: |",
              f"| blockwise `_scaled_mm` / bf16 | {ratio(blk, bf)} | {ratio(blkg, bfg)} | >= 1.5x |",
              f"| best Triton variant / blockwise `_scaled_mm` | {share(tri, blk)} | {share(trig, blkg)} | >= 80% |",
              f"| tensorwise `_scaled_mm` / bf16 | {ratio(ten, bf)} | "
              f"{ratio(get('fp8 tensorwise (_scaled_mm)', 'tflops_graph'), bfg)} | – |",
              f"| package `scaled_mm` wrapper / raw `_scaled_mm` | "
              f"{share(get('fp8 blockwise (package scaled_mm)'), blk)} | "
              f"{share(get('fp8 blockwise (package scaled_mm)', 'tflops_graph'), blkg)} | – |", "",
              f"Best Triton variant there: `{big.get('fp8 blockwise (Triton, best variant)', {}).get('variant')}`. "
              "DeepGEMM reports 1,358-1,550 TFLOP/s for this shape on an H800.", ""]
    lines += ["## Every shape (flush method; graph in parentheses)", "",
              "| M | N | K | " + " | ".join(paths) + " | best variant there |",
              "| ---: | ---: | ---: |" + " ---: |" * len(paths) + " --- |"]
    for r in rows:
        cells = [f"{cell(r[p])} ({cell(r[p], 'tflops_graph')})" for p in paths]
        lines.append(f"| {r['M']} | {r['N']} | {r['K']} | " + " | ".join(cells) + " | "
                     f"{r['fp8 blockwise (Triton, best variant)'].get('variant', '–')} |")
    lines += ["", "calc_diff per path (same rows):", "", "| M | N | K | " + " | ".join(paths) + " |",
              "| ---: | ---: | ---: |" + " ---: |" * len(paths)]
    for r in rows:
        lines.append(f"| {r['M']} | {r['N']} | {r['K']} | " + " | ".join(
            f"{r[p]['calc_diff']:.1e}" if "calc_diff" in r[p] else "–" for p in paths) + " |")
    lines += ["", f"## The Triton sweep at {M}x{N}x{K} ({len(sweep)} variants, {sweep_s:.0f} s with the probe)",
              "", "The probe runs every variant once in a child process first, so that one that crashes the "
              "compiler or the GPU context costs only itself.", "",
              "Kind: pointers (the teaching kernel with fixed settings), tma (TMA descriptors; one program per "
              "tile, or `persistent`: one per SM looping over tiles; `flatten`, `warp_specialize`: Triton's "
              "loop options; `split_n`: two column halves, two independent MMAs a slice), pipelined (promotion of slice k-1 after the MMA of slice k). BLOCK_M x BLOCK_N, "
              "warps, pipeline stages; column-major activation scales. Sorted by flush TFLOP/s.", "",
              "| variant | flush | graph | calc_diff | vs `_scaled_mm` | regs | spills | smem KB | first call s | "
              "error |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name in ranked + [n for n in sweep if n not in ranked]:
        r = sweep[name]
        f = lambda k, spec: format(r[k], spec) if isinstance(r.get(k), (int, float)) else "–"  # noqa: E731
        lines.append(f"| {name} | {f('tflops', '.0f')} | {f('tflops_graph', '.0f')} | {f('calc_diff', '.1e')} | "
                     f"{f('diff_vs_scaled_mm', '.1e')} | {r.get('n_regs', '–')} | {r.get('n_spills', '–')} | "
                     f"{r.get('shared_kb', '–')} | {f('first_call_s', '.1f')} | {r.get('error', '')[:120]} |")
    if scale_layout:
        lines += ["", "Activation-scale layout, best variant: " + ", ".join(
            f"{k}: {v:.0f}" if v else f"{k}: –" for k, v in scale_layout.items()) + " TFLOP/s."]
    lines += ["", f"Shortlist run on every shape: {shortlist}. Whole benchmark: {total_s:.0f} s."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
