"""A vision transformer as SigLIP builds it, SigLIP's text tower, pixel shuffle, and image–text losses. (Chapter 12.)

- `VisionTower`: patch embedding (a strided convolution: one linear map per non-overlapping patch), learned
  position embeddings, pre-norm encoder layers (LayerNorm, attention with biases, LayerNorm, GELU MLP), a
  final LayerNorm, and optionally SigLIP's **attention-pooling head** (one learned probe query attends over
  the patches). Module names follow transformers' `SiglipVisionModel`, so `nanoseek.interop.siglip` moves
  weights by name.
- `TextTower`: SigLIP's text tower (token + position embeddings, the same encoder layers, final LayerNorm,
  the last position pooled through a linear head).
- `pixel_shuffle` / `pixel_unshuffle`: nanoVLM's token reduction, s×s neighbouring patches folded into one
  token s² times wider (and back).
- `PatchClassifier`: a linear head on the patch tokens with one softmax per attribute (here colour and
  shape of the object a patch holds) — a **dense auxiliary** loss beside the contrastive one, in the spirit of
  SigLIP 2's local objectives: the pooled contrastive loss alone teaches a tiny tower mostly colour.
- `sigmoid_loss` (SigLIP: every image–text pair is a binary problem; summed over pairs, divided by the batch
  size) and `softmax_loss` (CLIP's symmetric InfoNCE), and `ImageTextLoss`, which holds the learnable
  temperature t' and bias b with SigLIP's initialization t' = log 10, b = −10.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class VisionConfig:
    image_size: int = 24
    patch_size: int = 4
    num_channels: int = 3
    hidden_size: int = 64
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    layer_norm_eps: float = 1e-6
    use_head: bool = True  # SigLIP's attention-pooling head (needed for the contrastive loss, not by a VLM)
    projection_size: int | None = None  # unused by the vision tower; kept for symmetry with TextConfig

    def __post_init__(self):
        for name in ("image_size", "patch_size", "num_channels", "hidden_size", "intermediate_size",
                     "num_hidden_layers", "num_attention_heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"VisionConfig.{name} must be an integer >= 1, got {name}={value!r}")
        if self.image_size % self.patch_size:
            raise ValueError(f"VisionConfig.image_size={self.image_size} is not a multiple of "
                             f"patch_size={self.patch_size}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"VisionConfig.hidden_size={self.hidden_size} is not divisible by "
                             f"num_attention_heads={self.num_attention_heads}")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid ** 2


@dataclass
class TextConfig:
    vocab_size: int = 64
    max_position_embeddings: int = 16
    hidden_size: int = 64
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    layer_norm_eps: float = 1e-6
    projection_size: int | None = None  # None: hidden_size (SigLIP's head keeps the width)

    def __post_init__(self):
        for name in ("vocab_size", "max_position_embeddings", "hidden_size", "intermediate_size",
                     "num_hidden_layers", "num_attention_heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TextConfig.{name} must be an integer >= 1, got {name}={value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"TextConfig.hidden_size={self.hidden_size} is not divisible by "
                             f"num_attention_heads={self.num_attention_heads}")
        if self.projection_size is None:
            self.projection_size = self.hidden_size


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C·p·p): patches in row-major order, each flattened channel-first like a conv kernel."""
    B, C, H, W = images.shape
    p = patch_size
    if H % p or W % p:
        raise ValueError(f"image size {H}x{W} is not a multiple of patch_size={p}")
    x = images.reshape(B, C, H // p, p, W // p, p)  # (B, C, gh, p, gw, p)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(B, (H // p) * (W // p), C * p * p)


def pixel_shuffle(x: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, N, D) patch tokens on a g×g grid -> (B, N/s², D·s²): each s×s block of neighbours becomes one token."""
    B, N, D = x.shape
    g = math.isqrt(N)
    if g * g != N or g % factor:
        raise ValueError(f"pixel_shuffle needs a square grid divisible by factor={factor}, got N={N} tokens")
    s = factor
    x = x.reshape(B, g // s, s, g // s, s, D)  # (B, row block, row in block, col block, col in block, D)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(B, (g // s) ** 2, s * s * D)


def pixel_unshuffle(x: torch.Tensor, factor: int) -> torch.Tensor:
    """The inverse of `pixel_shuffle`: (B, N/s², D·s²) -> (B, N, D)."""
    B, M, E = x.shape
    s = factor
    h = math.isqrt(M)
    if h * h != M or E % (s * s):
        raise ValueError(f"pixel_unshuffle needs a square grid and a width divisible by {s * s}, got {M}x{E}")
    D = E // (s * s)
    x = x.reshape(B, h, h, s, s, D).permute(0, 1, 3, 2, 4, 5)  # (B, row block, row in block, col block, col, D)
    return x.reshape(B, (h * s) ** 2, D)


class SelfAttention(nn.Module):
    """Bidirectional multi-head attention with q/k/v/out biases (SigLIP's `SiglipAttention`)."""

    def __init__(self, dim: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, T, C)
        B, T, C = x.shape
        q, k, v = (proj(x).view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        y = F.scaled_dot_product_attention(q, k, v)  # (B, h, T, hd); no mask: every patch sees every patch
        return self.out_proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))  # SigLIP: gelu_pytorch_tanh


class EncoderLayer(nn.Module):
    """Pre-norm: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, dim: int, hidden: int, n_head: int, eps: float):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(dim, eps=eps)
        self.self_attn = SelfAttention(dim, n_head)
        self.layer_norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = MLP(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class Encoder(nn.Module):
    def __init__(self, dim: int, hidden: int, n_head: int, n_layer: int, eps: float):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(dim, hidden, n_head, eps) for _ in range(n_layer))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class AttentionPoolingHead(nn.Module):
    """SigLIP's MAP head: a learned probe attends over the tokens, then a residual MLP. (B, N, D) -> (B, D)."""

    def __init__(self, dim: int, hidden: int, n_head: int, eps: float):
        super().__init__()
        self.probe = nn.Parameter(torch.randn(1, 1, dim))
        self.attention = nn.MultiheadAttention(dim, n_head, batch_first=True)
        self.layernorm = nn.LayerNorm(dim, eps=eps)
        self.mlp = MLP(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.attention(self.probe.expand(x.size(0), -1, -1), x, x, need_weights=False)[0]  # (B, 1, D)
        h = h + self.mlp(self.layernorm(h))
        return h[:, 0]


class VisionEmbeddings(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.patch_embedding = nn.Conv2d(cfg.num_channels, cfg.hidden_size, cfg.patch_size, stride=cfg.patch_size)
        self.position_embedding = nn.Embedding(cfg.num_patches, cfg.hidden_size)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, N, D)
        x = self.patch_embedding(pixels).flatten(2).transpose(1, 2)  # same as patchify(pixels) @ W.T + b
        return x + self.position_embedding.weight


class VisionTower(nn.Module):
    """SigLIP's ViT. forward(pixels (B, 3, H, W)) -> (patch tokens (B, N, D), pooled (B, D) or None)."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.config = config
        c = config
        self.embeddings = VisionEmbeddings(c)
        self.encoder = Encoder(c.hidden_size, c.intermediate_size, c.num_attention_heads, c.num_hidden_layers,
                               c.layer_norm_eps)
        self.post_layernorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.head = (AttentionPoolingHead(c.hidden_size, c.intermediate_size, c.num_attention_heads,
                                          c.layer_norm_eps) if c.use_head else None)
        init_weights(self)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if pixels.dim() != 4 or pixels.shape[1:] != (self.config.num_channels, self.config.image_size,
                                                     self.config.image_size):
            c = self.config
            raise ValueError(f"pixels must be (B, {c.num_channels}, {c.image_size}, {c.image_size}), "
                             f"got {tuple(pixels.shape)}")
        h = self.post_layernorm(self.encoder(self.embeddings(pixels)))  # (B, N, D)
        return h, (self.head(h) if self.head is not None else None)


class TextTower(nn.Module):
    """SigLIP's text tower. forward(ids (B, T)) -> (tokens (B, T, D), pooled (B, P)): the last position, projected."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.config = config
        c = config
        self.embeddings = nn.Module()
        self.embeddings.token_embedding = nn.Embedding(c.vocab_size, c.hidden_size)
        self.embeddings.position_embedding = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.encoder = Encoder(c.hidden_size, c.intermediate_size, c.num_attention_heads, c.num_hidden_layers,
                               c.layer_norm_eps)
        self.final_layer_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.head = nn.Linear(c.hidden_size, c.projection_size)
        init_weights(self)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        T = ids.size(1)
        if T > self.config.max_position_embeddings:
            raise ValueError(f"text of {T} tokens is longer than max_position_embeddings="
                             f"{self.config.max_position_embeddings}")
        x = self.embeddings.token_embedding(ids) + self.embeddings.position_embedding.weight[:T]
        h = self.final_layer_norm(self.encoder(x))  # (B, T, D)
        return h, self.head(h[:, -1])  # SigLIP pools the last position (texts padded to a fixed length)


@torch.no_grad()
def init_weights(module: nn.Module) -> None:
    """big_vision's ViT init, which SigLIP uses: Xavier-uniform dense layers, LeCun-normal patch embedding,
    position embeddings and probe normal with std 1/sqrt(width), zero biases, unit LayerNorms.

    (The 0.02 normal of the decoders is too small here: the pooled embeddings of all images start almost
    identical — most patches are background — and the contrastive loss then has nothing to pull apart.)"""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, 1.0 / math.sqrt(m.weight[0].numel()))
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 1.0 / math.sqrt(m.weight.size(1)))
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, AttentionPoolingHead):
            nn.init.normal_(m.probe, 0.0, 1.0 / math.sqrt(m.probe.size(-1)))
            nn.init.xavier_uniform_(m.attention.in_proj_weight)
            nn.init.zeros_(m.attention.in_proj_bias)


class PatchClassifier(nn.Module):
    """Linear heads on patch tokens, one per attribute: tokens (B, N, D) -> {name: logits (B, N, classes)}.

    `loss(tokens, labels)` is the mean over attributes of the per-patch cross-entropy; labels are (B, N) class
    ids (class 0 can stand for "no object"). It trains beside the contrastive loss and is dropped afterwards:
    only the tower it shaped goes into the VLM.
    """

    def __init__(self, dim: int, classes: dict[str, int]):
        super().__init__()
        if not classes or any(isinstance(n, bool) or not isinstance(n, int) or n < 2 for n in classes.values()):
            raise ValueError(f"PatchClassifier needs at least one attribute with >= 2 classes, got classes={classes!r}")
        self.heads = nn.ModuleDict({name: nn.Linear(dim, n) for name, n in classes.items()})

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: head(tokens) for name, head in self.heads.items()}

    def loss(self, tokens: torch.Tensor, labels: dict[str, torch.Tensor]) -> torch.Tensor:
        if set(labels) != set(self.heads):
            raise ValueError(f"labels for {sorted(labels)}, heads for {sorted(self.heads)}: they must match")
        logits = self(tokens)
        return torch.stack([F.cross_entropy(logits[k].flatten(0, -2), labels[k].reshape(-1)) for k in self.heads]).mean()


# ---- image–text losses ---------------------------------------------------------------------------------

def sigmoid_loss(img: torch.Tensor, txt: torch.Tensor, t_prime: torch.Tensor | float,
                 b: torch.Tensor | float) -> torch.Tensor:
    """SigLIP's loss. img, txt: (B, D) embeddings of B matching pairs (row i of each belongs together).

    logits_ij = exp(t') · <img_i, txt_j> / (|img_i| |txt_j|) + b; label z_ij = +1 on the diagonal, −1 off it;
    loss = −(1/B) Σ_i Σ_j log σ(z_ij · logits_ij).
    """
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    t_prime = torch.as_tensor(t_prime, dtype=img.dtype, device=img.device)
    logits = img @ txt.T * t_prime.exp() + b  # (B, B)
    labels = 2 * torch.eye(len(img), device=img.device, dtype=img.dtype) - 1
    return -F.logsigmoid(labels * logits).sum() / len(img)


def softmax_loss(img: torch.Tensor, txt: torch.Tensor, t_prime: torch.Tensor | float) -> torch.Tensor:
    """CLIP's InfoNCE: cross-entropy over texts for each image and over images for each text, averaged."""
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    t_prime = torch.as_tensor(t_prime, dtype=img.dtype, device=img.device)
    logits = img @ txt.T * t_prime.exp()  # (B, B)
    target = torch.arange(len(img), device=img.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


class ImageTextLoss(nn.Module):
    """The learnable temperature t' (and, for "sigmoid", bias b) of a contrastive loss, with the papers' init.

    sigmoid: t' = log 10, b = −10 (SigLIP); softmax: t' = log(1/0.07) (CLIP), no bias.
    """

    def __init__(self, kind: str = "sigmoid", t_prime: float | None = None, bias: float | None = None):
        super().__init__()
        if kind not in ("sigmoid", "softmax"):
            raise ValueError(f"kind={kind!r} is not one of ('sigmoid', 'softmax')")
        self.kind = kind
        default_t = math.log(10.0) if kind == "sigmoid" else math.log(1 / 0.07)
        self.t_prime = nn.Parameter(torch.tensor(float(default_t if t_prime is None else t_prime)))
        self.bias = nn.Parameter(torch.tensor(float(-10.0 if bias is None else bias))) if kind == "sigmoid" else None

    def forward(self, img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
        if self.kind == "sigmoid":
            return sigmoid_loss(img, txt, self.t_prime, self.bias)
        return softmax_loss(img, txt, self.t_prime)

    def logits(self, img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
        """(B_img, B_txt) scores used for retrieval and zero-shot classification."""
        s = F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T * self.t_prime.exp()
        return s + self.bias if self.bias is not None else s


class DualEncoder(nn.Module):
    """A SigLIP model: vision tower (with pooling head), text tower and the loss's t' and b."""

    def __init__(self, vision: VisionConfig, text: TextConfig, kind: str = "sigmoid"):
        super().__init__()
        if not vision.use_head:
            raise ValueError("DualEncoder needs VisionConfig.use_head=True (the pooled image embedding)")
        if vision.hidden_size != text.projection_size:
            raise ValueError(f"image embeddings are {vision.hidden_size} wide, text embeddings "
                             f"projection_size={text.projection_size}: they must match")
        self.vision = VisionTower(vision)
        self.text = TextTower(text)
        self.loss_fn = ImageTextLoss(kind)

    def embed(self, pixels: torch.Tensor | None = None, ids: torch.Tensor | None = None):
        img = self.vision(pixels)[1] if pixels is not None else None
        txt = self.text(ids)[1] if ids is not None else None
        return img, txt

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        img, txt = self.embed(pixels, ids)
        return self.loss_fn(img, txt)
