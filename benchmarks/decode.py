"""Decode throughput: nanoseek's KV-cache `generate` vs transformers `generate`, same Qwen2 weights. (Chapter 4.)

The model is a randomly initialized `Decoder` with Qwen2's architecture, exported with `to_hf` so both sides
run the same weights on the same prompt, greedy, at batch 1 and 8. Each measurement alternates the two
implementations and keeps the median of `--repeats` runs; greedy outputs are compared token by token.

    python3 benchmarks/decode.py                      # CPU, tiny (4 layers, 256 wide)
    python3 benchmarks/decode.py --device cuda        # GPU, full (Qwen2.5-0.5B shapes, bf16)

Writes benchmarks/results/decode.md (or decode_cuda.md).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nanoseek.generate import generate  # noqa: E402
from nanoseek.interop import to_hf  # noqa: E402
from nanoseek.models.decoder import Decoder, DecoderConfig  # noqa: E402
from nanoseek.benchmarking import timed  # noqa: E402

CONFIGS = {
    # the small model: 4 layers, 256 wide
    "tiny": dict(vocab_size=2048, n_layer=4, n_embd=256, n_head=4, n_kv_head=2, intermediate_size=688,
                 max_seq_len=512, qkv_bias=True, tie_embeddings=True, rope_theta=1e6),
    # Qwen2.5-0.5B's published shapes (config.json), random weights
    "full": dict(vocab_size=151936, n_layer=24, n_embd=896, n_head=14, n_kv_head=2, head_dim=64,
                 intermediate_size=4864, max_seq_len=2048, qkv_bias=True, tie_embeddings=True,
                 rope_theta=1e6, norm_eps=1e-6),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--scale", choices=sorted(CONFIGS), default=None, help="default: tiny on cpu, full on cuda")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--prompt-len", type=int, default=None)
    ap.add_argument("--new-tokens", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1 on cpu)")
    ap.add_argument("--no-cuda-graph", action="store_true", help="on cuda, skip the CUDA-graph variant")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    device = torch.device(args.device)
    scale = args.scale or ("tiny" if device.type == "cpu" else "full")
    if device.type == "cpu":
        torch.set_num_threads(args.threads or 1)
    prompt_len = args.prompt_len or (32 if scale == "tiny" else 128)
    new_tokens = args.new_tokens or (64 if scale == "tiny" else 256)
    repeats = args.repeats or (5 if device.type == "cpu" else 3)
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16

    torch.manual_seed(0)
    cfg = DecoderConfig(**CONFIGS[scale])
    ours = Decoder(cfg).to(device=device, dtype=dtype).eval()
    theirs = to_hf(ours, attn_implementation="sdpa").eval()
    n_params = ours.num_params()
    variants = ["nanoseek"] + (["nanoseek + CUDA graph"] if device.type == "cuda" and not args.no_cuda_graph else [])
    names = variants + ["transformers"]

    rows, floors = [], []
    for B in args.batch:
        prompt = torch.randint(0, cfg.vocab_size, (B, prompt_len), generator=torch.Generator().manual_seed(B))
        prompt = prompt.to(device)
        mask = torch.ones_like(prompt)
        runs = {
            "nanoseek": lambda: generate(ours, prompt, new_tokens, temperature=0),
            "nanoseek + CUDA graph": lambda: generate(ours, prompt, new_tokens, temperature=0, cuda_graph=True),
            "transformers": lambda: theirs.generate(prompt, attention_mask=mask, max_new_tokens=new_tokens,
                                                    min_new_tokens=new_tokens, do_sample=False, pad_token_id=0,
                                                    eos_token_id=None),
        }
        wall = {n: [] for n in names}
        cpu = {n: [] for n in names}
        outs = {}
        with torch.no_grad():
            for n in names:  # warm-up
                runs[n]()
            for _ in range(repeats):  # alternate, so drifts in machine load hit every variant alike
                for n in names:
                    t, c, outs[n] = timed(runs[n], device)
                    wall[n].append(t)
                    cpu[n].append(c)
        tps = {n: B * new_tokens / statistics.median(wall[n]) for n in names}
        cpu_ratio = {n: statistics.median(cpu["transformers"]) / statistics.median(cpu[n]) for n in variants}
        same = {n: (outs[n] == outs["transformers"]).float().mean().item() for n in variants}
        # the floor every implementation shares: each weight matrix applied once to B token vectors
        linears = [m for m in ours.modules() if isinstance(m, torch.nn.Linear)]
        xs = {n: torch.randn(B, 1, n, device=device, dtype=dtype) for n in {m.in_features for m in linears}}

        def floor():
            for m in linears:
                m(xs[m.in_features])
        def floor50():
            for _ in range(50):
                floor()
        with torch.no_grad():
            floor()
            floor_s = statistics.median(timed(floor50, device)[1 if device.type == "cpu" else 0]
                                        for _ in range(5)) / 50
        step_ms = {n: 1e3 * statistics.median(cpu[n] if device.type == "cpu" else wall[n]) / new_tokens
                   for n in names}
        rows.append((B, tps, cpu_ratio, same))
        floors.append((B, 1e3 * floor_s, step_ms))
        print(f"batch {B}: " + ", ".join(f"{n} {tps[n]:,.0f} tok/s" for n in names) + " | " +
              ", ".join(f"{n}/transformers {tps[n] / tps['transformers']:.2f}x (CPU time {cpu_ratio[n]:.2f}x, "
                        f"identical tokens {same[n]:.1%})" for n in variants), flush=True)

    goal = 2.0 if scale == "tiny" else 1.0
    body = [
        f"Model: random-weight Qwen2-architecture `Decoder` at `{scale}` "
        f"({cfg.n_layer} layers, {cfg.n_embd} wide, {cfg.n_head} heads / {cfg.n_kv_head} kv heads, head_dim "
        f"{cfg.head_dim}, vocab {cfg.vocab_size}, {n_params / 1e6:.1f}M parameters), {dtype} on `{device}`; "
        f"nanoseek `generate(..., temperature=0)` (and `cuda_graph=True`: static cache, one captured graph per "
        f"step); transformers {__import__('transformers').__version__} `Qwen2ForCausalLM.generate` "
        f"(sdpa attention, its default dynamic cache) on the same weights via `to_hf`.",
        f"Prompt {prompt_len} tokens, {new_tokens} new tokens, greedy; median of {repeats} alternating runs "
        f"after one warm-up each. Tokens/s counts generated tokens of the whole batch (prefill included in "
        f"the time). The CPU-time ratio is transformers' process CPU time over ours: on a shared machine it is "
        f"less disturbed by other jobs than wall time.",
        "",
        "| batch | " + " | ".join(f"{n} tok/s" for n in names) + " | " +
        " | ".join(f"{n} / transformers (wall; CPU time)" for n in variants) + " | identical greedy tokens |",
        "| ---: | " + " | ".join("---:" for _ in names) + " | " + " | ".join("---:" for _ in variants) + " | ---: |",
    ]
    for B, tps, cpu_ratio, same in rows:
        body.append(f"| {B} | " + " | ".join(f"{tps[n]:,.0f}" for n in names) + " | " +
                    " | ".join(f"{tps[n] / tps['transformers']:.2f}x; {cpu_ratio[n]:.2f}x" for n in variants) +
                    " | " + ", ".join(f"{same[n]:.1%}" for n in variants) + " |")
    unit = "process CPU" if device.type == "cpu" else "wall"
    body += ["", f"Per generated token ({unit} ms per step, prefill included), against the floor that no "
                 "implementation can beat: every weight matrix applied once (`floor`):", "",
             "| batch | floor | " + " | ".join(names) + " | best possible ratio (transformers / floor) |",
             "| ---: | ---: | " + " | ".join("---:" for _ in names) + " | ---: |"]
    for B, fl, step_ms in floors:
        body.append(f"| {B} | {fl:.2f} | " + " | ".join(f"{step_ms[n]:.2f}" for n in names) +
                    f" | {step_ms['transformers'] / fl:.2f}x |")
    for B, fl, step_ms in floors:
        over = {n: step_ms[n] - fl for n in names}
        body.append("")
        body.append(f"Batch {B}: above the floor, transformers spends {over['transformers']:.2f} ms per step and "
                    + ", ".join(f"{n} {over[n]:.2f} ms" for n in variants)
                    + f"; a 2x ratio would need at most {(step_ms['transformers'] / 2 - fl):.2f} ms above the floor.")
    best = variants[-1]
    worst = min(tps[best] / tps["transformers"] for _, tps, _, _ in rows)
    body += ["", f"Goal: at least {goal:g}x transformers at `{scale}`; worst ratio of `{best}` measured "
                 f"{worst:.2f}x ({'met' if worst >= goal else 'NOT met'})."]
    from nanoseek.benchmarking import write_result

    name = args.out or ("decode" if device.type == "cpu" else f"decode_{device.type}")
    path = write_result(name, "\n".join(body))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
