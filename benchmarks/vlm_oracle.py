"""Chapter 12's diagnosis of "left of": is it the vision tower or the language model? Over seeds.

The VLM of `benchmarks/vlm.py` (same language model, projector and stage-2 schedule), but its image tokens are
made from **oracle** patch features instead of a trained tower: for each of the 16 patches, one-hots of the
colour and the shape of the object it holds (0: none), its column and its row. Nothing a tower could learn is
missing from them, so what the model still cannot answer is the language model's limit, not the tower's.

Variants (each: the blind language model on text first, then stage 2 on questions, projector + LM):

- ``oracle``: every question type, the stage-2 steps of the tiny recipe;
- ``oracle_left_only``: the same features, trained on "left of" questions alone;
- ``relations_left_only``: also, for each object's patch, which shapes lie in a column left of it (four
  bits): the relation precomputed in the tokens, trained on "left of" alone.

    python benchmarks/vlm_oracle.py --seeds 0 1 2     # -> benchmarks/results/vlm_oracle.{md,json}
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from minids import shapes as gen  # noqa: E402
from nanoseek.benchmarking import machine, write_result  # noqa: E402
from nanoseek.data import shapes as S  # noqa: E402
from nanoseek.models.decoder import DecoderConfig  # noqa: E402
from nanoseek.models.vlm import VLM, VLMConfig, accuracy_by_type, answer, stage  # noqa: E402
from nanoseek.nn.vision import VisionConfig  # noqa: E402
from nanoseek.seeds import SeedSummary, table  # noqa: E402
from nanoseek.train import TrainConfig, train  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vlm import CONFIGS  # noqa: E402

VARIANTS = ("oracle", "oracle_left_only", "relations_left_only")


def oracle_features(rows: list[dict], width: int, patch: int, relations: bool) -> torch.Tensor:
    """(N, P, width) one-hot patch features: colour, shape, column, row (+ shapes left of it), zero-padded."""
    g = gen.SIZE // patch
    lab = S.patch_labels(rows, patch)
    has = lab["shape"] > 0
    col = (torch.arange(g * g) % g + 1).expand_as(has) * has
    row = (torch.arange(g * g) // g + 1).expand_as(has) * has
    parts = [F.one_hot(lab["colour"], len(gen.COLOURS) + 1), F.one_hot(lab["shape"], len(gen.SHAPES) + 1),
             F.one_hot(col, g + 1), F.one_hot(row, g + 1)]
    if relations:
        left = torch.zeros(len(rows), g * g, len(gen.SHAPES), dtype=torch.long)
        for i, r in enumerate(rows):
            for o in r["objects"]:
                p = (o["y"] // patch) * g + o["x"] // patch
                for q in r["objects"]:
                    if q["x"] // patch < o["x"] // patch:
                        left[i, p, gen.SHAPES.index(q["shape"])] = 1
        parts.append(left)
    f = torch.cat(parts, -1).float()
    return F.pad(f, (0, width - f.size(-1)))


def run(seed: int, variant: str, dev: str, steps: int | None = None) -> dict:
    c = CONFIGS["tiny"]
    torch.manual_seed(seed)
    V = S.Vocab()
    tr, te = S.load_shapes("train", "tiny"), S.load_shapes("test", "tiny")
    W, B, p = c["width"], c["batch"], c["patch"]
    relations = variant == "relations_left_only"
    feats = torch.cat([oracle_features(tr, W, p, relations), oracle_features(te, W, p, relations)])  # train, then test
    n_img = feats.size(1)
    L = n_img + 16
    vc = VisionConfig(image_size=gen.SIZE, patch_size=p, hidden_size=W, intermediate_size=2 * W,
                      num_hidden_layers=1, num_attention_heads=4, use_head=False)  # unused: tokens are oracle
    cfg = VLMConfig(vision=vc, decoder=DecoderConfig(vocab_size=len(V), n_layer=c["lm_layers"], n_embd=W, n_head=4,
                                                     n_kv_head=2, intermediate_size=int(2.75 * W), max_seq_len=L,
                                                     qkv_bias=True),
                    image_token_id=V.image, pixel_shuffle=1, projector="mlp")
    vlm = VLM(cfg)
    vlm.image_tokens = lambda idx: vlm.projector(feats.to(idx.device)[idx])  # "pixels" are row indices into feats
    tcfg = lambda n: TrainConfig(max_steps=n, lr=c["lr"], warmup_steps=min(20, n), eval_every=n,  # noqa: E731
                                 eval_batches=1, progress=False, seed=seed, device=dev)
    _, qids, qtg, _ = S.qa_tensors(V, tr, 0, L)
    cids, ctg = S.caption_tensors(V, tr, 0, L)
    tids, ttg = torch.cat([qids, cids]), torch.cat([qtg, ctg])
    with stage(vlm, "lm"):
        train(vlm, lambda s, g: (lambda i: (tids[i], ttg[i]))(torch.randint(0, len(tids), (B,), generator=g)),
              tcfg(steps or c["lm_steps"]), loss_fn=lambda m, b: m(None, *b)[1])
    types = ("left",) if variant.endswith("left_only") else None
    qi, q2ids, q2tg, _ = S.qa_tensors(V, tr, n_img, L, types=types)
    with stage(vlm, "projector", "lm"):
        train(vlm, lambda s, g: (lambda i: (qi[i], q2ids[i], q2tg[i]))(torch.randint(0, len(qi), (B,), generator=g)),
              tcfg(steps or c["stage2_steps"]), loss_fn=lambda m, b: m(*b)[1])
    ri, ids, tg, qas = S.qa_tensors(V, te, n_img, L, types=types)
    ri = ri + len(tr)
    vlm.to(dev).eval()
    out = accuracy_by_type(vlm, ri.to(dev), ids.to(dev), tg.to(dev), [q["type"] for q in qas])
    left = [j for j, q in enumerate(qas) if q["type"] == "left"]
    said = answer(vlm, ri.to(dev), ids.to(dev), tg.to(dev)).cpu()[left]
    out["left_says_yes"] = (said == V.stoi["yes"]).float().mean().item()  # 0 or 1: one answer to every question
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args(argv)
    steps = 4 if os.environ.get("NANOSEEK_GPU_SMOKE") == "1" else None
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    summary = {}
    for v in VARIANTS:
        runs = []
        for seed in args.seeds:
            runs.append(run(seed, v, dev, steps))
            print(v, f"seed {seed}:", {k: round(x, 3) for k, x in runs[-1].items()}, flush=True)
        summary |= {f"{v}/{k}": SeedSummary(tuple(r[k] for r in runs), tuple(args.seeds)) for k in runs[0]}
    lines = ["# VLM with oracle patch features (tiny)", "",
             f"`{' '.join(sys.argv)}` on {machine().get('gpu') or machine().get('cpu')}; language model and steps of "
             f"the tiny config {CONFIGS['tiny']}", "",
             "Accuracy on held-out images; `left_says_yes`: the share of \"left of\" questions answered \"yes\" "
             "(half of them are \"yes\").", "",
             table({k: s for k, s in summary.items()}, digits=3, header=("variant / metric", "value")), ""]
    data = {"seeds": args.seeds, "smoke": steps is not None, "device": dev, "config": CONFIGS["tiny"],
            "metrics": {k: {"mean": s.mean, "std": s.std, "values": list(s.values)} for k, s in summary.items()}}
    print(write_result("vlm_oracle" + ("_smoke" if steps else ""), "\n".join(lines), data=data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
