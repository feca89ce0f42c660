"""Seconds per training step of every chapter's `full`-scale model, in fp32 and in bf16 autocast.

    python3 benchmarks/step_time.py --device cuda      # -> benchmarks/results/step_time_cuda.md

Each model is the one its chapter trains at `full` scale (batch 64 x 256 tokens), on random tokens, through
`nanoseek.train.train` itself (so the numbers include everything a real step does: the batch copy, the
loss, backward, clipping, AdamW and the per-step metrics). It tells a reader what a `full` run costs, and
us which precision and MoE dispatch the `full` configs should use.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nanoseek.benchmarking import write_result  # noqa: E402
from nanoseek.models.decoder import Decoder, DecoderConfig  # noqa: E402
from nanoseek.models.gpt import GPT, GPTConfig  # noqa: E402
from nanoseek.nn.moe import BiasUpdateHook  # noqa: E402
from nanoseek.nn.mtp import mtp_loss_fn  # noqa: E402
from nanoseek.train import TrainConfig, train  # noqa: E402

B, T = 64, 256
DENSE = dict(n_layer=6, n_embd=384, max_seq_len=T)
MOE = dict(DENSE, n_head=6, n_kv_head=6, intermediate_size=1536, ffn="moe", first_k_dense_replace=1,
           n_routed_experts=64, num_experts_per_tok=6, moe_intermediate_size=128, n_shared_experts=2, n_group=8,
           topk_group=4, bias_update_speed=0.001)
MLA = dict(DENSE, n_head=6, head_dim=64, intermediate_size=1024, attention="mla", kv_lora_rank=64,
           qk_nope_head_dim=32, qk_rope_head_dim=32, v_head_dim=64)
# name: (chapter, vocabulary, model factory, loss_fn)
MODELS = {
    "GPT, characters (ch1)": (96, lambda V: GPT(GPTConfig(block_size=T, vocab_size=V, n_layer=6, n_head=6,
                                                          n_embd=384, dropout=0.2)), None),
    "GPT, 4,096 BPE tokens (ch3)": (4096, lambda V: GPT(GPTConfig(block_size=T, vocab_size=V, n_layer=6, n_head=6,
                                                                  n_embd=384, dropout=0.0, bias=False)), None),
    "decoder GQA 12/4 heads (ch4)": (96, lambda V: Decoder(DecoderConfig(vocab_size=V, **DENSE, n_head=12, n_kv_head=4,
                                                                         intermediate_size=1024)), None),
    "decoder MLA (ch5)": (96, lambda V: Decoder(DecoderConfig(vocab_size=V, **MLA)), None),
    "MoE 64 experts top-6, sorted dispatch (ch6)": (96, lambda V: Decoder(DecoderConfig(vocab_size=V, **MOE)), None),
    "MoE 64 experts top-6, grouped dispatch (ch6)": (
        96, lambda V: Decoder(DecoderConfig(vocab_size=V, **MOE, moe_dispatch="grouped")), None),
    "decoder + MTP D=1 (ch7)": (96, lambda V: Decoder(DecoderConfig(vocab_size=V, **DENSE, n_head=6, n_kv_head=6,
                                                                    intermediate_size=1024, mtp_depth=1)), mtp_loss_fn),
}


def step_seconds(make, vocab: int, loss_fn, precision: str, device: str, steps: int) -> float:
    def get_batch(split, g):
        x = torch.randint(0, vocab, (B, T + 1), generator=g)
        return x[:, :-1].contiguous(), x[:, 1:].contiguous()

    torch.manual_seed(0)
    model = make(vocab)
    kw = {"loss_fn": loss_fn} if loss_fn else {}
    hook = BiasUpdateHook()
    cfg = dict(lr=1e-3, warmup_steps=1, eval_batches=1, device=device, precision=precision, progress=False)
    train(model, get_batch, TrainConfig(max_steps=3, eval_every=3, **cfg), on_step=hook, **kw)  # warm-up
    result = train(model, get_batch, TrainConfig(max_steps=steps, eval_every=steps, **cfg), on_step=hook, **kw)
    return result.seconds / steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    rows = ["| model | parameters | fp32 ms/step | bf16 autocast ms/step | speed-up | 3,000 steps in bf16 |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name, (vocab, make, loss_fn) in MODELS.items():
        times = {}
        for precision in ("fp32", "bf16"):
            try:
                times[precision] = step_seconds(make, vocab, loss_fn, precision, args.device, args.steps)
            except Exception as err:  # record what failed rather than lose the other rows
                print(f"{name} {precision}: {type(err).__name__}: {err}")
                times[precision] = float("nan")
        n = sum(p.numel() for p in make(vocab).parameters())
        row = (f"| {name} | {n / 1e6:.1f}M | {1000 * times['fp32']:.1f} | {1000 * times['bf16']:.1f} | "
               f"{times['fp32'] / times['bf16']:.2f}x | {3000 * times['bf16'] / 60:.1f} min |")
        print(row, flush=True)
        rows.append(row)
    body = (f"Batch {B} x {T} tokens of random ids, {args.steps} timed steps after 3 warm-up steps, through "
            "`nanoseek.train.train` (`TrainConfig.precision`). bf16 autocast keeps fp32 weights, gradients and "
            "AdamW state.\n\n" + "\n".join(rows) + "\n")
    print("written", write_result(f"step_time_{torch.device(args.device).type}", body))


if __name__ == "__main__":
    main()
