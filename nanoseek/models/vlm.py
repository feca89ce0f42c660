"""A vision-language model: SigLIP vision tower -> pixel shuffle -> projector -> Qwen2-style decoder. (Chapter 12.)

The LLaVA recipe on the book's parts: the vision tower (`nanoseek.nn.vision.VisionTower`) turns an image into
patch tokens; `pixel_shuffle` optionally folds s×s neighbours into one token (nanoVLM's token reduction);
the **projector** maps them to the language model's width (``"linear"`` as MiniGPT-4, ``"mlp"``: Linear–GELU–
Linear as LLaVA-1.5); the image tokens replace the ``image_token_id`` placeholders of the prompt, and the
chapter-4 `Decoder` (Qwen2-compatible) reads the spliced sequence. The loss is the decoder's cross-entropy
with targets -100 everywhere except on the answer.

Training goes in stages, and a stage declares what it trains: `stage(model, "projector")` freezes every other
parameter, and on exit checks that the frozen ones are bitwise unchanged (a frozen part that moved is a bug,
e.g. an optimizer built before the freeze, or weight decay on a parameter that has no gradient).
`load_state_strict` loads a state dict and fails, naming them, on missing or unexpected keys.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from nanoseek.models.decoder import Decoder, DecoderConfig
from nanoseek.nn.vision import VisionConfig, VisionTower, pixel_shuffle

PROJECTORS = ("linear", "mlp")


@dataclass
class VLMConfig:
    vision: VisionConfig = field(default_factory=lambda: VisionConfig(use_head=False))
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    image_token_id: int = 1
    pixel_shuffle: int = 1     # s: s×s patches per image token (1: none)
    projector: str = "mlp"     # "linear" (MiniGPT-4) or "mlp" (LLaVA-1.5's mlp2x_gelu)

    def __post_init__(self):
        if isinstance(self.vision, dict):
            self.vision = VisionConfig(**self.vision)
        if isinstance(self.decoder, dict):
            self.decoder = DecoderConfig(**self.decoder)
        if self.projector not in PROJECTORS:
            raise ValueError(f"VLMConfig.projector={self.projector!r} is not one of {PROJECTORS}")
        s = self.pixel_shuffle
        if isinstance(s, bool) or not isinstance(s, int) or s < 1 or self.vision.grid % s:
            raise ValueError(f"VLMConfig.pixel_shuffle={s!r} must be an integer >= 1 dividing the "
                             f"{self.vision.grid}x{self.vision.grid} patch grid")
        if not 0 <= self.image_token_id < self.decoder.vocab_size:
            raise ValueError(f"VLMConfig.image_token_id={self.image_token_id} is outside the vocabulary "
                             f"(vocab_size={self.decoder.vocab_size})")

    @property
    def n_image_tokens(self) -> int:
        return self.vision.num_patches // self.pixel_shuffle ** 2


class Projector(nn.Module):
    """(B, N, D_vision·s²) -> (B, N, C_lm)."""

    def __init__(self, kind: str, d_in: int, d_out: int):
        super().__init__()
        if kind == "linear":
            self.net = nn.Sequential(nn.Linear(d_in, d_out))
        elif kind == "mlp":
            self.net = nn.Sequential(nn.Linear(d_in, d_out), nn.GELU(), nn.Linear(d_out, d_out))
        else:
            raise ValueError(f"projector kind={kind!r} is not one of {PROJECTORS}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def splice(embeds: torch.Tensor, ids: torch.Tensor, image_embeds: torch.Tensor, image_token_id: int) -> torch.Tensor:
    """Put image_embeds (B, n, C) at the n placeholder positions of each row of ids (B, T) in embeds (B, T, C)."""
    mask = ids == image_token_id  # (B, T)
    counts = mask.sum(1)
    if not torch.all(counts == image_embeds.size(1)):
        raise ValueError(f"each sequence needs {image_embeds.size(1)} image placeholders "
                         f"(id {image_token_id}), got {counts.tolist()}")
    out = embeds.clone()
    out[mask] = image_embeds.reshape(-1, image_embeds.size(-1)).to(embeds.dtype)  # row-major: row b's n in order
    return out


class VLM(nn.Module):
    """forward(pixels (B, 3, H, W) or None, idx (B, T), targets=None) -> (logits (B, T, V), loss).

    With ``pixels=None`` the model is the bare language model (the text-only baseline; no placeholders).
    """

    def __init__(self, config: VLMConfig):
        super().__init__()
        self.config = config
        self.vision = VisionTower(config.vision)
        d_in = config.vision.hidden_size * config.pixel_shuffle ** 2
        self.projector = Projector(config.projector, d_in, config.decoder.n_embd)
        self.lm = Decoder(config.decoder)

    def image_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, n_image_tokens, C_lm): patch tokens, shuffled, projected."""
        h, _ = self.vision(pixels)  # (B, N, D); the pooling head (if any) is not used by the VLM
        if self.config.pixel_shuffle > 1:
            h = pixel_shuffle(h, self.config.pixel_shuffle)  # (B, N/s², D·s²)
        return self.projector(h)

    def forward(self, pixels: torch.Tensor | None, idx: torch.Tensor, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.lm.embed(idx)  # (B, T, C); placeholders get the embedding of the image token, then are replaced
        if pixels is not None:
            x = splice(x, idx, self.image_tokens(pixels), self.config.image_token_id)
        for block in self.lm.layers:  # the decoder's own blocks, fed embeddings instead of token ids
            x = block(x)
        logits = self.lm.lm_head(self.lm.norm(x))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        return logits, loss


# ---- training stages -------------------------------------------------------------------------------------

def set_trainable(model: nn.Module, trains: tuple[str, ...]) -> list[str]:
    """requires_grad only for parameters under the module prefixes `trains` (e.g. ("projector", "lm"))."""
    names = [n for n, _ in model.named_parameters()]
    for prefix in trains:
        if not any(n == prefix or n.startswith(prefix + ".") for n in names):
            raise ValueError(f"stage trains {prefix!r}, but the model has no parameters under it")
    trainable = []
    for name, p in model.named_parameters():
        p.requires_grad_(any(name == pre or name.startswith(pre + ".") for pre in trains))
        if p.requires_grad:
            trainable.append(name)
    return trainable


@contextlib.contextmanager
def stage(model: nn.Module, *trains: str):
    """Train only `trains` inside the block; on exit check the rest is bitwise unchanged, then unfreeze all.

        with stage(vlm, "projector"):          # stage 1
            train(vlm, get_batch, cfg, loss_fn=...)
    """
    set_trainable(model, tuple(trains))
    # snapshot on the CPU: the training loop may move the model to the GPU inside the block
    frozen = {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if not p.requires_grad}
    try:
        yield model
    finally:
        changed = [n for n, p in model.named_parameters() if n in frozen and not torch.equal(p.detach().cpu(), frozen[n])]
        for p in model.parameters():
            p.requires_grad_(True)
    if changed:
        raise RuntimeError(f"stage training {trains} changed frozen parameters: {changed[:5]}"
                           + (f" and {len(changed) - 5} more" if len(changed) > 5 else ""))


def load_state_strict(module: nn.Module, state: dict[str, torch.Tensor], what: str = "model") -> None:
    """load_state_dict that fails on missing or unexpected keys and on shape mismatches, naming them."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad_shape = [f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
                 if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or bad_shape:
        raise ValueError(f"{what} state dict does not fit: missing={missing[:8]}{'…' if len(missing) > 8 else ''} "
                         f"unexpected={unexpected[:8]}{'…' if len(unexpected) > 8 else ''} shape={bad_shape[:4]}")
    module.load_state_dict(state, strict=True)


@torch.no_grad()
def answer(model: VLM, pixels: torch.Tensor | None, ids: torch.Tensor, targets: torch.Tensor,
           batch_size: int = 512) -> torch.Tensor:
    """Greedy first reply token at the first target position of each row: (M,) predicted ids.

    `targets` marks where the reply starts (its first non -100 position); the prediction there is the answer
    word (every answer of the shapes data is one word).
    """
    first = (targets != -100).float().argmax(1)  # (M,)
    out = []
    for s in range(0, len(ids), batch_size):
        sl = slice(s, s + batch_size)
        logits, _ = model(None if pixels is None else pixels[sl], ids[sl])
        out.append(logits[torch.arange(logits.size(0)), first[sl]].argmax(-1))
    return torch.cat(out)


@torch.no_grad()
def accuracy_by_type(model: VLM, pixels: torch.Tensor | None, ids: torch.Tensor, targets: torch.Tensor,
                     types: list[str]) -> dict[str, float]:
    """Exact-match accuracy of the one-word answer, per question type (and "all")."""
    first = (targets != -100).float().argmax(1)
    gold = targets[torch.arange(len(targets)), first]
    ok = answer(model, pixels, ids, targets) == gold
    out = {t: ok[torch.tensor([q == t for q in types], device=ok.device)].float().mean().item()
           for t in dict.fromkeys(types)}
    out["all"] = ok.float().mean().item()
    return out
