"""Why is chapter 6's `full` training slow inside the notebook? A probe, kept for whoever looks next.

    python3 benchmarks/moe_probe.py          # on a GPU: ms/step of chapter 6's full MoE model, then a profile

Chapter 6's notebook at `full` trained at 2.4 steps/s on an H200, while the same model on the same story text in
this fresh process ran at 108 ms/step (sorted dispatch) and 58 ms/step (grouped); random tokens ran at 61 ms/step
(`benchmarks/results/h200_full_runs.md`). The profile shows about 2,100 kernel launches a step: these small MoE
layers are bound by launches and Python. The notebook's extra slowness is not explained yet.
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import step_time as st  # noqa: E402
from nanoseek.data import CharVocab, load_stories, window_batcher  # noqa: E402
from nanoseek.models.decoder import Decoder, DecoderConfig  # noqa: E402
from nanoseek.nn.moe import BiasUpdateHook  # noqa: E402
from nanoseek.train import TrainConfig, train  # noqa: E402

text = load_stories("en", "train")[:20_000_000]
val = load_stories("en", "val")
vocab = CharVocab.from_text(text + val)
real = window_batcher(torch.tensor(vocab.encode(text)), torch.tensor(vocab.encode(val)), st.T, st.B)


def random_tokens(split, g):
    x = torch.randint(0, len(vocab), (st.B, st.T + 1), generator=g)
    return x[:, :-1].contiguous(), x[:, 1:].contiguous()


def run(name, get_batch, steps=20, profile=False, **overrides):
    torch.manual_seed(0)
    model = Decoder(DecoderConfig(vocab_size=len(vocab), **{**st.MOE, "bias_update_speed": 0.0, **overrides}))
    cfg = dict(eval_batches=1, warmup_steps=1, progress=False)
    train(model, get_batch, TrainConfig(max_steps=3, eval_every=3, **cfg), on_step=BiasUpdateHook())  # warm-up
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            train(model, get_batch, TrainConfig(max_steps=5, eval_every=5, **cfg), on_step=BiasUpdateHook())
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15))
        print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=15))
        return
    result = train(model, get_batch, TrainConfig(max_steps=steps, eval_every=steps, **cfg), on_step=BiasUpdateHook())
    print(f"{name}: {1000 * result.seconds / steps:.1f} ms/step, MaxVio {result.metrics['maxvio'][-1]:.2f}", flush=True)


if __name__ == "__main__":
    run("random tokens, sorted", random_tokens)
    run("stories, sorted", real)
    run("stories, grouped", real, moe_dispatch="grouped")
    run("stories, sorted, loss-free bias", real, bias_update_speed=0.001)
    run("stories, sorted", real, profile=True)
