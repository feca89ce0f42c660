"""MLA decode step time for four ways of running the same weights, DeepSeek-V3 attention shapes. (Chapter 5.)

    python3 benchmarks/mla_decode.py --device cuda --tune   # H200: writes benchmarks/results/mla_decode.{md,json}
    NANOSEEK_GPU_SMOKE=1 python benchmarks/mla_decode.py    # CPU, tiny shapes, no record; with TRITON_INTERPRET=1
                                                            # (Triton importable) the kernel sweep runs too (fp16)

One layer, one new token per sequence, the cache already holding `context` tokens. Timed: the attention
step from the new token's queries (q_nope, rotated q_pe) to the per-head outputs (B, 1, H, v_head_dim),
through the package's own code (`nanoseek.nn.mla.MLA`):

- naive-cached: per-head keys and values cached (B, H, S, 192) + (B, H, S, 128), attended with SDPA;
- latent-re-expanded: latent cache decompressed by `kv_b_proj` at every step, then SDPA;
- absorbed-einsum: latent cache, W_UK folded into the query, W_UV applied after, plain einsums;
- absorbed-Triton: the same with the fused flash-decoding kernel (`nanoseek.kernels.mla_decode`);
- and, for scale, a GQA baseline with about the same cache: 128 query heads of dim 128 sharing 2 key/value
  heads (512 cached numbers a token against MLA's 576), SDPA with `enable_gqa`.

The new token's projections and cache write are left out (the same few small matmuls for every path).
"Required bytes" is what the path must read at least: its cache, plus W_UK/W_UV (kv_b_proj) where it uses
them; achieved bandwidth = required bytes / step time, against a device-to-device copy measured in the same run.

`--tune` first sweeps the kernel's settings at each batch and the longest context (tiles of heads and tokens,
warps, pipeline stages, lazy rescaling, bf16 partial outputs, how the context is split), every variant
compiled first in child processes (`sweep_probe.py`: a crash costs only that variant) and checked against
the float32 einsums; the fastest whose error stays at the default's level is used for the tables. For the
best setting it also times three ablations of the kernel (no P·V matmul; no softmax; tile loads only),
which measure where the time goes. The roofline section gives, for every row, the compute bound (FLOPs at
the bf16 matmul rate measured in this run) and the memory bound (cache bytes at the copy bandwidth).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # sweep_probe

from nanoseek.kernels import mla_decode as K  # noqa: E402
from nanoseek.nn.mla import MLA, MLAConfig  # noqa: E402

V3 = dict(dim=7168, n_heads=128, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
          q_lora_rank=1536, max_seq_len=8, mode="absorbed")
SMOKE = dict(dim=64, n_heads=32, kv_lora_rank=64, qk_nope_head_dim=16, qk_rope_head_dim=16, v_head_dim=16,
             q_lora_rank=32, max_seq_len=8, mode="absorbed")
PROBE_SHAPE = (2, 4096)  # (batch, context) of the probe: sizes and strides with the target's divisibility


def is_smoke() -> bool:
    return os.environ.get("NANOSEEK_GPU_SMOKE") == "1" or not torch.cuda.is_available()


def triton_here() -> bool:
    return K.triton is not None and (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1")


def bench(fn, graph: bool) -> float:
    """Median milliseconds of fn(); CUDA-graph replay (no launch overhead) where `graph`."""
    fn()
    if not torch.cuda.is_available():  # the smoke run: wall time of a few calls
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return sorted(times)[1]
    import triton.testing as tt

    torch.cuda.synchronize()
    if graph:
        try:
            return float(tt.do_bench_cudagraph(fn, rep=50, return_mode="median"))
        except Exception as err:  # noqa: BLE001 - fall back to plain launches, and say so
            print(f"  (cuda graph failed: {type(err).__name__}; plain timing)")
    return float(tt.do_bench(fn, warmup=5, rep=50, return_mode="median"))


def copy_bandwidth(dev) -> float:
    """Device-to-device copy of 4 GiB (1 MiB on a CPU), bytes read + written per second (TB/s)."""
    n = 2 * 1024**3 if dev.type == "cuda" else 2**19
    x = torch.empty(n, dtype=torch.bfloat16, device=dev).normal_()
    y = torch.empty_like(x)
    ms = bench(lambda: y.copy_(x), graph=False)
    del x, y
    return 2 * 2 * n / (ms * 1e-3) / 1e12


def matmul_peak(dev) -> tuple[float, int]:
    """bf16 TFLOP/s of one large square matmul (8192^3 on the GPU), the compute roof of this run."""
    n = 8192 if dev.type == "cuda" else 256
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    ms = bench(lambda: a @ b, graph=dev.type == "cuda")
    return 2 * n**3 / (ms * 1e-3) / 1e12, n


# ---------------------------------------------------------------------------------------------------------
# the kernel sweep

def sweep_configs(smoke: bool) -> dict[str, dict]:
    """name -> keyword settings of `mla_decode_triton` (the tile sweep; splits are swept at run time)."""
    def name(h, n, w, s, lazy=False, bf16=False, tma=False):
        return (f"h{h} n{n} w{w} s{s}" + (" tma" if tma else "") + (" lazy" if lazy else "")
                + (" bf16-partials" if bf16 else ""))

    def kw(h, n, w, s, lazy=False, bf16=False, tma=False):
        return dict(block_h=h, block_n=n, num_warps=w, num_stages=s, lazy_rescale=lazy,
                    partial_dtype=torch.bfloat16 if bf16 else torch.float32, tma=tma)

    if smoke:
        tiles = [(16, 16, 4, 1, False, False), (16, 32, 4, 2, False, False), (32, 16, 4, 2, True, False),
                 (16, 16, 4, 1, False, True), (16, 32, 4, 2, False, False, True)]
    else:
        tiles = [(64, n, w, s, False, False) for n, w, s in [(32, 8, 1), (32, 8, 2), (32, 8, 3), (64, 8, 1),
                                                               (64, 8, 2), (64, 8, 3), (128, 8, 1), (128, 8, 2)]]
        tiles += [(32, n, w, s, False, False) for n, w, s in [(64, 4, 2), (64, 8, 2), (128, 4, 2), (128, 8, 2)]]
        # 128 heads a program: 16 warps hold the (128, 512) fp32 accumulator at 128 registers a thread
        tiles += [(128, n, 16, s, False, False) for n, s in [(32, 1), (32, 2), (64, 1)]]
        tiles += [(h, n, w, s, True, False) for h, n, w, s in [(64, 32, 8, 2), (64, 64, 8, 2), (64, 64, 8, 3),
                                                               (32, 128, 8, 2)]]
        tiles += [(h, n, w, s, False, True) for h, n, w, s in [(64, 64, 8, 2), (32, 128, 8, 2)]]
        # the TMA kernel: tiles by descriptor, the latent in two halves with an accumulator each
        tiles += [(h, n, w, s, lazy, False, True) for h, n, w, s, lazy in [
            (64, 32, 8, 1, False), (64, 32, 8, 2, False), (64, 32, 8, 3, False), (64, 64, 8, 1, False),
            (64, 64, 8, 2, False), (128, 32, 16, 1, False), (128, 32, 16, 2, False), (64, 64, 8, 2, True),
            (64, 32, 8, 2, True), (32, 64, 4, 2, False)]]
    return {name(*t): kw(*t) for t in tiles}


def _inputs(B, S, dims, dev, dtype, seed=0):
    g = torch.Generator(device=dev).manual_seed(seed)
    H, c, r = dims["n_heads"], dims["kv_lora_rank"], dims["qk_rope_head_dim"]
    rnd = lambda *shape: torch.randn(*shape, device=dev, generator=g).to(dtype)  # noqa: E731
    return rnd(B, H, c), rnd(B, H, r), rnd(B, S, c), rnd(B, S, r)


def _scale(dims) -> float:
    return (dims["qk_nope_head_dim"] + dims["qk_rope_head_dim"]) ** -0.5


def probe_main(names: list[str]) -> None:
    """Child process: run each named setting once at the probe shape; one PROBE line each."""
    from sweep_probe import probe_line
    smoke = is_smoke()
    dev = torch.device("cpu" if smoke else "cuda")
    dims, dtype = (SMOKE, torch.float16) if smoke else (V3, torch.bfloat16)
    q, qp, ckv, kpe = _inputs(*((2, 300) if smoke else PROBE_SHAPE), dims, dev, dtype)
    configs = sweep_configs(smoke)
    ref = K.mla_decode_einsum(q.float(), qp.float(), ckv.float(), kpe.float(), _scale(dims))
    for name in names:
        try:
            out = K.mla_decode_triton(q, qp, ckv, kpe, _scale(dims), **configs[name])
            if dev.type == "cuda":
                torch.cuda.synchronize()
            probe_line(name, f"ok {(out.float() - ref).abs().max().item():.2e}")
        except Exception as err:  # noqa: BLE001
            probe_line(name, f"error: {type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}")


def kernel_flops_bytes(B: int, S: int, dims: dict) -> tuple[float, float]:
    """FLOPs (2·B·H·S·(2c + r): scores and weighted sum) and cache bytes (B·S·(c + r)·2) of one decode step."""
    H, c, r = dims["n_heads"], dims["kv_lora_rank"], dims["qk_rope_head_dim"]
    return 2 * B * H * S * (2 * c + r), B * S * (c + r) * 2


def sweep(B: int, S: int, dims: dict, dev, dtype, probed: dict[str, str], notes: list[str]) -> dict:
    """Every setting at (B, S): time, error against float32 einsums; splits for the best three; ablations."""
    configs = sweep_configs(is_smoke())
    q, qp, ckv, kpe = _inputs(B, S, dims, dev, dtype, seed=B)
    sc = _scale(dims)
    ref = K.mla_decode_einsum(q.float(), qp.float(), ckv.float(), kpe.float(), sc)
    ein_err = (K.mla_decode_einsum(q, qp, ckv, kpe, sc).float() - ref).abs().max().item()
    flops, _ = kernel_flops_bytes(B, S, dims)
    results: dict[str, dict] = {}

    def run(name, kw):
        if probed.get(name.split(" + ")[0], "ok").startswith("error"):
            results[name] = {"error": probed[name.split(" + ")[0]][len("error: "):]}
            return
        try:
            out = K.mla_decode_triton(q, qp, ckv, kpe, sc, **kw)
            err = (out.float() - ref).abs().max().item()
            del out
            ms = bench(lambda: K.mla_decode_triton(q, qp, ckv, kpe, sc, **kw), graph=True)
            results[name] = {"us": ms * 1e3, "tflops": flops / (ms * 1e-3) / 1e12, "max_err_fp32": err,
                             "settings": {k: str(v) if isinstance(v, torch.dtype) else v for k, v in kw.items()}}
        except Exception as e:  # noqa: BLE001 - recorded, the sweep goes on
            if dev.type == "cuda":
                torch.cuda.synchronize()
            results[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
        r = results[name]
        print(f"  B={B} S={S} {name}: " + (r["error"] if "error" in r else
              f"{r['us']:.1f} µs, {r['tflops']:.0f} TFLOP/s, max err {r['max_err_fp32']:.2e}"), flush=True)

    default = {k: K.DEFAULTS[k] for k in ("block_h", "block_n", "num_warps", "num_stages", "lazy_rescale",
                                          "partial_dtype", "min_chunk", "waves")}
    run("package default", default)
    for name, kw in configs.items():
        run(name, kw)
    base = results["package default"].get("max_err_fp32")
    limit = 1.5 * base if base is not None else 2 * ein_err  # "accuracy unchanged": within 1.5x the default's

    def accurate(n):
        return "us" in results[n] and results[n]["max_err_fp32"] <= limit

    ranked = sorted((n for n in configs if accurate(n)), key=lambda n: results[n]["us"])
    for name in ranked[:3]:  # how the context is split: chunk floor and programs per SM
        for min_chunk, waves in [(128, 1), (256, 1), (256, 2), (512, 1), (512, 2), (1024, 1)]:
            run(f"{name} + chunk {min_chunk} waves {waves}", dict(configs[name], min_chunk=min_chunk, waves=waves))
    everything = [n for n in results if accurate(n)]
    best = min(everything, key=lambda n: results[n]["us"]) if everything else "package default"
    best_kw = {**default, **{k: v for k, v in (configs.get(best.split(" + ")[0]) or {}).items()}}
    if " + " in best:
        best_kw.update(min_chunk=int(best.split("chunk ")[1].split()[0]), waves=int(best.split("waves ")[1]))
    ablations = {}
    abl_kw = dict(best_kw, tma=False)  # the ablations live in the pointer kernel
    for code, what in [(1, "no P·V matmul"), (2, "no softmax"), (3, "tile loads only")]:
        try:
            ms = bench(lambda: K.mla_decode_triton(q, qp, ckv, kpe, sc, _ablate=code, **abl_kw), graph=True)
            ablations[what] = ms * 1e3
        except Exception as e:  # noqa: BLE001
            ablations[what] = f"{type(e).__name__}"
    rb = results[best]
    notes.append(f"- sweep at batch {B}, context {S}: {len(results)} settings ({sum('error' in r for r in results.values())}"
                 f" failed, {len(results) - len(everything) - 1} outside the accuracy limit {limit:.2e}); package "
                 f"default {results['package default'].get('us', float('nan')):.1f} µs; best `{best}` "
                 f"{rb.get('us', float('nan')):.1f} µs ({rb.get('tflops', float('nan')):.0f} TFLOP/s, max error "
                 f"{rb.get('max_err_fp32', float('nan')):.2e} against float32 einsums; the bf16 einsums' own: "
                 f"{ein_err:.2e}). Ablations of the best (pointer kernel, its tile settings): " + ", ".join(
                     f"{k} {v:.1f} µs" if isinstance(v, float) else f"{k} failed ({v})" for k, v in ablations.items()))
    print(notes[-1], flush=True)
    del q, qp, ckv, kpe, ref
    return {"batch": B, "context": S, "results": results, "best": best, "best_settings": {
        k: str(v) if isinstance(v, torch.dtype) else v for k, v in best_kw.items()}, "best_kw": best_kw,
        "ablations_us": ablations, "accuracy_limit": limit, "bf16_einsum_err": ein_err, "ranked_tiles": ranked}


# ---------------------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 1])
    ap.add_argument("--contexts", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384, 32768])
    ap.add_argument("--tune", action="store_true", help="sweep the kernel's launch settings first")
    ap.add_argument("--jobs", type=int, default=4, help="probe processes compiling at once")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--probe", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe:
        probe_main(args.probe)
        return
    if is_smoke():
        args.batches, args.contexts = [2, 1], [64, 300]
        run(args, torch.device("cpu"), smoke=True)
        return
    if args.device != "cuda":
        raise SystemExit("this benchmark measures a GPU: run it with --device cuda on a CUDA machine")
    run(args, torch.device(args.device))


def run(args, dev: torch.device, smoke: bool = False) -> None:
    t_start = time.perf_counter()
    dims = SMOKE if smoke else V3
    dtype = torch.float16 if smoke else torch.bfloat16  # the interpreter misreads bf16
    torch.manual_seed(0)
    mla = MLA(MLAConfig(**dims)).to(dev, dtype).eval()
    cfg = mla.cfg
    H, c, r, nope, vd = cfg.n_heads, cfg.kv_lora_rank, cfg.qk_rope_head_dim, cfg.qk_nope_head_dim, cfg.v_head_dim
    w_bytes = mla.kv_b_proj.weight.numel() * 2
    copy_tbs = copy_bandwidth(dev)
    peak, peak_n = matmul_peak(dev)
    print(f"copy bandwidth {copy_tbs:.2f} TB/s; bf16 matmul {peak_n}^3: {peak:.0f} TFLOP/s", flush=True)
    has_triton = triton_here()
    notes: list[str] = []
    tuned, sweeps = {}, {}
    if args.tune and has_triton:
        from sweep_probe import probe_in_children
        t0 = time.perf_counter()
        names = list(sweep_configs(smoke))
        probed = probe_in_children(__file__, names, args.jobs)
        bad = {n: v for n, v in probed.items() if v.startswith("error")}
        notes.append(f"- probe: {len(names) - len(bad)} of {len(names)} settings compiled and ran in child "
                     f"processes ({time.perf_counter() - t0:.0f} s)" + ("; failed: " + "; ".join(
                         f"`{n}`: {v[7:120]}" for n, v in bad.items()) if bad else ""))
        print(notes[-1], flush=True)
        for B in args.batches:
            sw = sweep(B, max(args.contexts), dims, dev, dtype, probed, notes)
            tuned[B] = sw.pop("best_kw")
            sweeps[B] = sw
    tune_s = time.perf_counter() - t_start
    rows = []
    paths = ("naive-cached", "latent-re-expanded", "absorbed-einsum", "absorbed-Triton", "GQA-2 baseline")
    Smax = max(args.contexts)
    defaults0 = dict(K.DEFAULTS)
    for B in args.batches:
        K.DEFAULTS.clear()
        K.DEFAULTS.update(defaults0, **tuned.get(B, {}))
        g = torch.Generator(device=dev).manual_seed(B)
        q_nope = torch.randn(B, 1, H, nope, device=dev, generator=g).to(dtype)
        q_pe = torch.randn(B, 1, H, r, device=dev, generator=g).to(dtype)
        c_buf = torch.randn(B, Smax, c, device=dev, generator=g).to(dtype)
        k_buf = torch.randn(B, Smax, r, device=dev, generator=g).to(dtype)
        try:  # the per-head cache at its largest: B x H x S x 320 bf16 (86 GB at batch 32, 32K)
            k_cache = torch.empty(B, H, Smax, nope + r, device=dev, dtype=dtype).normal_()
            v_cache = torch.empty(B, H, Smax, vd, device=dev, dtype=dtype).normal_()
        except torch.cuda.OutOfMemoryError:
            k_cache = v_cache = None
        kg_cache = torch.randn(B, 2, Smax, 128, device=dev, generator=g).to(dtype)
        vg_cache = torch.randn(B, 2, Smax, 128, device=dev, generator=g).to(dtype)
        q_g = torch.randn(B, H, 1, 128, device=dev, generator=g).to(dtype)
        for S in args.contexts:
            ckv, kpe = c_buf[:, :S], k_buf[:, :S]
            latent_bytes = B * S * (c + r) * 2
            need = {"naive-cached": B * H * S * (nope + r + vd) * 2, "latent-re-expanded": latent_bytes + w_bytes,
                    "absorbed-einsum": latent_bytes + w_bytes, "absorbed-Triton": latent_bytes + w_bytes,
                    "GQA-2 baseline": B * 2 * S * 256 * 2}
            fns = {
                "naive-cached": (lambda: mla._attend_heads(q_nope, q_pe, k_cache[:, :, :S], v_cache[:, :, :S]))
                if k_cache is not None else None,
                "latent-re-expanded": lambda: mla._attend_heads(q_nope, q_pe, *mla.expand(ckv, kpe)),
                "absorbed-einsum": lambda: _absorbed(mla, "einsum", q_nope, q_pe, ckv, kpe),
                "absorbed-Triton": (lambda: _absorbed(mla, "triton", q_nope, q_pe, ckv, kpe)) if has_triton else None,
                "GQA-2 baseline": lambda: F.scaled_dot_product_attention(
                    q_g, kg_cache[:, :, :S], vg_cache[:, :, :S], enable_gqa=True),
            }
            row = dict(batch=B, context=S)
            with torch.no_grad():
                ref = fns["absorbed-einsum"]().float()
                err = (fns["absorbed-Triton"]().float() - ref).abs().max().item() if has_triton else None
                for name in paths:
                    fn = fns[name]
                    if fn is None:
                        row[name] = None
                        continue
                    try:
                        ms = bench(fn, graph=name != "latent-re-expanded")
                    except torch.cuda.OutOfMemoryError:
                        ms = None
                    if dev.type == "cuda":
                        torch.cuda.empty_cache()
                    row[name] = ms
                    row[name + " TB/s"] = None if ms is None else need[name] / (ms * 1e-3) / 1e12
            row["max |triton - einsum|"] = err
            # the kernel alone (latent-space attention, no W_UK/W_UV): bandwidth on the cache, and the roofline
            flops, kbytes = kernel_flops_bytes(B, S, dims)
            t_comp, t_mem = flops / (peak * 1e12), kbytes / (copy_tbs * 1e12)
            row.update({"flops": flops, "cache bytes": kbytes, "compute bound us": t_comp * 1e6,
                        "memory bound us": t_mem * 1e6, "bound us": max(t_comp, t_mem) * 1e6})
            if has_triton:
                ql = torch.randn(B, H, c, device=dev, generator=g).to(dtype)
                kern_ms = bench(lambda: K.mla_decode_triton(ql, q_pe[:, 0], ckv, kpe, 0.1), graph=True)
                row["kernel only ms"] = kern_ms
                row["kernel TB/s"] = latent_bytes / (kern_ms * 1e-3) / 1e12
                row["kernel TFLOP/s"] = flops / (kern_ms * 1e-3) / 1e12
                row["kernel / bound"] = max(t_comp, t_mem) / (kern_ms * 1e-3)
            rows.append(row)
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        del k_cache, v_cache, c_buf, k_buf, kg_cache, vg_cache
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    K.DEFAULTS.clear()
    K.DEFAULTS.update(defaults0)
    total_s = time.perf_counter() - t_start
    body = report(rows, paths, copy_tbs, peak, peak_n, tuned, notes, sweeps, H, c, r, has_triton, tune_s, total_s)
    if smoke:
        print(body)
        print("smoke: ran end to end; no record written")
        return
    from nanoseek.benchmarking import write_result
    path = write_result("mla_decode", body, args.out, data={
        "rows": rows, "paths": list(paths), "copy_tbs": copy_tbs, "matmul_peak_tflops": peak,
        "matmul_peak_n": peak_n, "tuned": {str(b): {k: str(v) if isinstance(v, torch.dtype) else v
                                                    for k, v in t.items()} for b, t in tuned.items()},
        "sweeps": {str(b): s for b, s in sweeps.items()}, "seconds": {"tune": tune_s, "total": total_s}})
    print(body)
    print(f"wrote {path}")


def report(rows, paths, copy_tbs, peak, peak_n, tuned, notes, sweeps, H, c, r, has_triton, tune_s, total_s) -> str:
    def fmt(ms):
        return "OOM" if ms is None else (f"{ms * 1e3:.0f} µs" if ms < 1 else f"{ms:.2f} ms")

    settings = lambda t: {k: str(v).replace("torch.", "") for k, v in t.items()}  # noqa: E731
    lines = [
        "One MLA layer with DeepSeek-V3 attention shapes (128 heads, latent 512, RoPE 64, nope 128, v 128), "
        "bf16, one decode step (one new token per sequence). Timed with `triton.testing` (median; CUDA-graph "
        "replay except latent-re-expanded). The new token's projections and cache write are not timed.",
        "",
        f"Device-to-device copy bandwidth, this run: **{copy_tbs:.2f} TB/s** (bytes read + written). "
        f"bf16 matmul {peak_n}x{peak_n}x{peak_n}, this run: **{peak:.0f} TFLOP/s**.",
        "Kernel launch settings: " + ("; ".join(f"batch {b}: `{settings(t)}`" for b, t in tuned.items())
                                      + " (the sweep's best, below)" if tuned else f"`{settings(K.DEFAULTS)}`"),
        *notes,
        f"- sweep and probe {tune_s:.0f} s; whole benchmark {total_s:.0f} s.",
        "",
        "## Step time",
        "",
        "| batch | context | naive-cached | latent-re-expanded | absorbed-einsum | absorbed-Triton | GQA-2 baseline | "
        "Triton vs naive | Triton vs einsum | einsum vs naive |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        n, e, t = row["naive-cached"], row["absorbed-einsum"], row["absorbed-Triton"]
        sp = lambda a, b: "–" if a is None or b is None else f"{a / b:.1f}x"  # noqa: E731
        lines.append(f"| {row['batch']} | {row['context']} | " + " | ".join("–" if p == "absorbed-Triton" and not has_triton else fmt(row[p]) for p in paths)
                     + f" | {sp(n, t)} | {sp(e, t)} | {sp(n, e)} |")
    lines += ["", "## Achieved bandwidth (required bytes / step time)", "",
              f"Copy bandwidth {copy_tbs:.2f} TB/s. Kernel only: the fused kernel without the W_UK/W_UV einsums, "
              "bytes = latent + RoPE caches.", "",
              "| batch | context | naive-cached | latent-re-expanded | absorbed-einsum | absorbed-Triton | "
              "GQA-2 baseline | kernel only | kernel / copy | kernel TFLOP/s | max abs diff Triton vs einsum |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        bw = lambda p: "–" if row.get(p + " TB/s") is None else f"{row[p + ' TB/s']:.2f} TB/s"  # noqa: E731
        if has_triton:
            kern = (f"{row['kernel TB/s']:.2f} TB/s ({fmt(row['kernel only ms'])}) | {row['kernel TB/s'] / copy_tbs:.0%}"
                    f" | {row['kernel TFLOP/s']:.0f} | {row['max |triton - einsum|']:.2e}")
        else:
            kern = "– | – | – | –"
        lines.append(f"| {row['batch']} | {row['context']} | " + " | ".join(bw(p) for p in paths) + f" | {kern} |")
    lines += ["", "## Roofline (the kernel alone)", "",
              f"Compute bound: the step's FLOPs (2·B·H·S·(2c + r)) at the {peak:.0f} TFLOP/s of the bf16 matmul above; "
              f"memory bound: its cache bytes (B·S·(c + r)·2) at the {copy_tbs:.2f} TB/s copy bandwidth. The "
              "roofline is the larger; achieved ÷ bound is the share of it the kernel reaches (1.0 = on the roof).",
              "", "| batch | context | GFLOP | cache MB | compute bound | memory bound | kernel | achieved ÷ bound | "
              "kernel TFLOP/s | share of matmul peak |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        k = row.get("kernel only ms")
        lines.append(f"| {row['batch']} | {row['context']} | {row['flops'] / 1e9:.1f} | {row['cache bytes'] / 1e6:.1f} | "
                     f"{row['compute bound us']:.1f} µs | {row['memory bound us']:.1f} µs | "
                     + (f"{k * 1e3:.1f} µs | {row['kernel / bound']:.2f} | {row['kernel TFLOP/s']:.0f} | "
                        f"{row['kernel TFLOP/s'] / peak:.0%} |" if k is not None else "– | – | – | – |"))
    big = {row["batch"]: row for row in rows if row["context"] == max(r_["context"] for r_ in rows)}
    if has_triton and 32 in big and 1 in big:
        t32, t1 = big[32]["kernel TFLOP/s"], big[1]["kernel only ms"] * 1e3
        lines += ["", "## Targets (issue 21)", "",
                  "| case | goal | this run | met |", "| --- | --- | --- | --- |",
                  f"| batch 32, {big[32]['context']} tokens | >= 60% of the matmul peak ({0.6 * peak:.0f} TFLOP/s) | "
                  f"{t32:.0f} TFLOP/s ({t32 / peak:.0%}) | {'yes' if t32 >= 0.6 * peak else 'no'} |",
                  f"| batch 1, {big[1]['context']} tokens | <= 25 µs (2x the roofline, {big[1]['bound us']:.1f} µs here) | "
                  f"{t1:.1f} µs | {'yes' if t1 <= 25 else 'no'} |"]
    intensity = H * 2 * (2 * c + r) / ((c + r) * 2)
    lines += ["", f"Arithmetic intensity of absorbed decode with {H} heads: {intensity:.0f} FLOP per cache byte "
              f"(2·H·(2c + r) FLOP per token against (c + r)·2 bytes); the machine balance of this run is "
              f"{peak / copy_tbs:.0f} FLOP per byte ({peak:.0f} TFLOP/s ÷ {copy_tbs:.2f} TB/s), so with "
              f"{H} heads the kernel is {'compute' if intensity > peak / copy_tbs else 'memory'}-bound on this GPU."]
    if sweeps:
        lines += ["", "## Kernel sweep", "",
                  "Every setting at the longest context, time of the kernel alone (CUDA graph), TFLOP/s, and max "
                  "abs error against float32 einsums of the same bf16 inputs. `hH nN wW sS`: H heads and N "
                  "tokens a tile, W warps, S pipeline stages; `lazy`: rescale only when a maximum grows by more "
                  "than 2^8; `bf16-partials`: chunks' partial outputs in bf16; `chunk C waves W`: no chunk "
                  "under C tokens, W programs per SM."]
        for b, sw in sweeps.items():
            res = sw["results"]
            lines += ["", f"Batch {b}, context {sw['context']} (accuracy limit {sw['accuracy_limit']:.2e}; best "
                      f"`{sw['best']}`). Ablations of the best (pointer kernel, its tile settings): " + ", ".join(
                          f"{k} {v:.1f} µs" if isinstance(v, float) else f"{k}: {v}" for k, v in sw["ablations_us"].items()),
                      "", "| setting | µs | TFLOP/s | max error | note |", "| --- | ---: | ---: | ---: | --- |"]
            order = sorted(res, key=lambda n: res[n].get("us", float("inf")))
            for n in order:
                x = res[n]
                note = x.get("error", "")[:100] or ("over the accuracy limit" if x["max_err_fp32"] > sw["accuracy_limit"] else "")
                lines.append(f"| {n} | {x['us']:.1f} | {x['tflops']:.0f} | {x['max_err_fp32']:.2e} | {note} |" if "us" in x
                             else f"| {n} | – | – | – | {note} |")
    return "\n".join(lines)


def _absorbed(mla: MLA, backend: str, q_nope, q_pe, ckv, kpe):
    mla.cfg.decode_backend = backend
    return mla._attend_absorbed(q_nope, q_pe, ckv, kpe)


if __name__ == "__main__":
    main()
