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
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nanoseek.generate import generate  # noqa: E402
from nanoseek.interop import to_hf  # noqa: E402
from nanoseek.models.decoder import Decoder, DecoderConfig  # noqa: E402

CONFIGS = {
    # the small model: 4 layers, 256 wide
    "tiny": dict(vocab_size=2048, n_layer=4, n_embd=256, n_head=4, n_kv_head=2, intermediate_size=688,
                 max_seq_len=512, qkv_bias=True, tie_embeddings=True, rope_theta=1e6),
    # Qwen2.5-0.5B's published shapes (config.json), random weights
    "full": dict(vocab_size=151936, n_layer=24, n_embd=896, n_head=14, n_kv_head=2, head_dim=64,
                 intermediate_size=4864, max_seq_len=2048, qkv_bias=True, tie_embeddings=True,
                 rope_theta=1e6, norm_eps=1e-6),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device) -> tuple[float, float, torch.Tensor]:
    """(wall seconds, this process's CPU seconds, result) of one call."""
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, time.process_time() - c0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--scale", choices=sorted(CONFIGS), default=None, help="default: tiny on cpu, full on cuda")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--prompt-len", type=int, default=None)
    ap.add_argument("--new-tokens", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1 on cpu)")
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

    rows = []
    for B in args.batch:
        prompt = torch.randint(0, cfg.vocab_size, (B, prompt_len), generator=torch.Generator().manual_seed(B))
        prompt = prompt.to(device)
        mask = torch.ones_like(prompt)

        def run_ours():
            return generate(ours, prompt, new_tokens, temperature=0)

        def run_theirs():
            return theirs.generate(prompt, attention_mask=mask, max_new_tokens=new_tokens,
                                   min_new_tokens=new_tokens, do_sample=False, pad_token_id=0, eos_token_id=None)

        with torch.no_grad():
            run_ours(), run_theirs()  # warm-up
            t_ours, t_theirs, c_ours, c_theirs = [], [], [], []
            for _ in range(repeats):
                t, c, out_ours = _time(run_ours, device)
                t_ours.append(t), c_ours.append(c)
                t, c, out_theirs = _time(run_theirs, device)
                t_theirs.append(t), c_theirs.append(c)
        same = (out_ours == out_theirs).float().mean().item()
        tps_ours = B * new_tokens / statistics.median(t_ours)
        tps_theirs = B * new_tokens / statistics.median(t_theirs)
        cpu_ratio = statistics.median(c_theirs) / statistics.median(c_ours)
        rows.append((B, tps_ours, tps_theirs, same, cpu_ratio))
        print(f"batch {B}: nanoseek {tps_ours:,.0f} tok/s, transformers {tps_theirs:,.0f} tok/s, "
              f"ratio {tps_ours / tps_theirs:.2f}x (CPU-time ratio {cpu_ratio:.2f}x), identical tokens {same:.1%}",
              flush=True)

    goal = 2.0 if scale == "tiny" else 1.0
    body = [
        f"Model: random-weight Qwen2-architecture `Decoder` at `{scale}` "
        f"({cfg.n_layer} layers, {cfg.n_embd} wide, {cfg.n_head} heads / {cfg.n_kv_head} kv heads, head_dim "
        f"{cfg.head_dim}, vocab {cfg.vocab_size}, {n_params / 1e6:.1f}M parameters), {dtype} on `{device}`; "
        f"transformers {__import__('transformers').__version__} `Qwen2ForCausalLM.generate` "
        f"(sdpa attention, its default dynamic cache) on the same weights via `to_hf`.",
        f"Prompt {prompt_len} tokens, {new_tokens} new tokens, greedy; median of {repeats} alternating runs "
        f"after one warm-up each. Tokens/s counts generated tokens of the whole batch (prefill included in "
        f"the time).",
        "",
        "| batch | nanoseek tok/s | transformers tok/s | nanoseek / transformers | same, by process CPU time "
        "| identical greedy tokens |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    body += [f"| {B} | {a:,.0f} | {b:,.0f} | {a / b:.2f}x | {c:.2f}x | {s:.1%} |" for B, a, b, s, c in rows]
    worst = min(a / b for _, a, b, _, _ in rows)
    body += ["", f"Goal: at least {goal:g}x transformers at `{scale}`; worst ratio measured {worst:.2f}x "
                 f"({'met' if worst >= goal else 'NOT met'})."]
    try:
        from nanoseek.benchmarking import write_result
    except ImportError:  # before the foundation's benchmarking module existed
        write_result = None
    name = args.out or ("decode" if device.type == "cpu" else f"decode_{device.type}")
    if write_result is not None:
        path = write_result(name, "\n".join(body))
    else:
        path = Path("benchmarks/results") / f"{name}.md"
        path.write_text(f"# {name}\n\n- command: `{' '.join(sys.argv)}`\n\n" + "\n".join(body) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
