"""Multi-head latent attention (MLA) of DeepSeek-V2/V3, with its three ways of decoding. (Chapter 5.)

MLA compresses the keys and values of every token into one small **latent** vector ``c_kv`` of
``kv_lora_rank`` numbers (normalized by an RMSNorm), plus one small **decoupled RoPE key** ``k_pe`` of
``qk_rope_head_dim`` numbers shared by all heads. Per head ``h``:

    k_h = [ W_UK[h] c_kv ; rope(k_pe) ]          (qk_nope_head_dim + qk_rope_head_dim)
    v_h =   W_UV[h] c_kv                          (v_head_dim)
    q_h = [ q_nope_h ; rope(q_pe_h) ]             from x directly, or through a low-rank q latent
    score_h(t, s) = q_h(t) . k_h(s) * softmax_scale,   softmax_scale = (nope + rope) ** -0.5

The same weights can run in three ways, chosen by ``MLAConfig.mode`` (or the ``mode`` attribute):

- ``"naive"``: decompress per-head keys and values and cache *them* (what an MHA cache would hold);
- ``"reexpand"``: cache only the latent and the rotated RoPE key, but decompress the whole cache into
  per-head keys and values at every step (small cache, a lot of recomputation);
- ``"absorbed"``: cache only the latent and the rotated RoPE key, and never decompress: ``W_UK`` is folded
  into the query (``q_nope_h^T W_UK[h]`` is a query in latent space) and ``W_UV`` is applied after
  attention, to the attention-weighted latent. This is what DeepSeek runs at decode time.

All three compute the same function (``tests/test_mla.py`` checks it to 1e-5 in float32).
The parameter names follow transformers' ``DeepseekV3Attention`` so that ``nanoseek.interop`` stays readable.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nanoseek import validate as V
from nanoseek.nn.norm import RMSNorm
from nanoseek.nn.rope import LAYOUTS, apply_rope, rope_cos_sin, yarn_cos_sin, yarn_softmax_multiplier

MODES = ("naive", "reexpand", "absorbed")


@dataclass
class MLAConfig:
    """Shapes of one MLA layer. DeepSeek-V3: dim=7168, n_heads=128, q_lora_rank=1536, kv_lora_rank=512,
    qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128."""

    dim: int = 256
    n_heads: int = 4
    kv_lora_rank: int = 64
    qk_nope_head_dim: int = 32
    qk_rope_head_dim: int = 16
    v_head_dim: int = 32
    q_lora_rank: int | None = None  # None: q = W_Q x directly (DeepSeek-V2-Lite); else through a latent
    max_seq_len: int = 1024  # length of the RoPE tables
    rope_theta: float = 10000.0
    rope_layout: str = "half"  # "half" or "interleaved" (see nanoseek.nn.rope)
    norm_eps: float = 1e-6
    softmax_scale: float | None = None  # None: (qk_nope_head_dim + qk_rope_head_dim) ** -0.5
    attention_bias: bool = False  # biases on q_a_proj, kv_a_proj and o_proj, as transformers' option
    mode: str = "naive"  # "naive" | "reexpand" | "absorbed"
    decode_backend: str = "einsum"  # absorbed one-token steps: "einsum", "triton" or "auto" (see kernels)
    # YaRN context extension (DeepSeek-V2/V3): None, or a dict with `factor`, `original_max_position_embeddings`
    # and optionally beta_fast, beta_slow, mscale, mscale_all_dim (the keys of transformers' rope_parameters)
    rope_scaling: dict | None = None

    def __post_init__(self) -> None:
        for name in ("dim", "n_heads", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
                     "max_seq_len"):
            setattr(self, name, V.integer(getattr(self, name), name, "MLAConfig", minimum=1))
        if self.qk_rope_head_dim % 2:
            raise ValueError(f"MLAConfig.qk_rope_head_dim must be even, got qk_rope_head_dim={self.qk_rope_head_dim}")
        self.q_lora_rank = V.integer(self.q_lora_rank, "q_lora_rank", "MLAConfig", minimum=1, optional=True)
        V.choice(self.rope_layout, "rope_layout", LAYOUTS, "MLAConfig")
        V.choice(self.mode, "mode", MODES, "MLAConfig")
        V.choice(self.decode_backend, "decode_backend", ("einsum", "triton", "auto"), "MLAConfig")
        V.positive(self.softmax_scale, "softmax_scale", "MLAConfig", optional=True)
        for name in ("rope_theta", "norm_eps"):
            V.positive(getattr(self, name), name, "MLAConfig")
        V.flag(self.attention_bias, "attention_bias", "MLAConfig")
        if self.rope_scaling is not None:
            allowed = {"factor", "original_max_position_embeddings", "beta_fast", "beta_slow", "mscale",
                       "mscale_all_dim"}
            if not isinstance(self.rope_scaling, dict) or not {"factor", "original_max_position_embeddings"} <= set(
                    self.rope_scaling) or set(self.rope_scaling) - allowed:
                raise ValueError(f"MLAConfig.rope_scaling must be None or a dict with factor and "
                                 f"original_max_position_embeddings (and only {sorted(allowed)}), "
                                 f"got rope_scaling={self.rope_scaling!r}")

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    def kv_cache_elements_per_token(self, mode: str | None = None) -> int:
        """Cached numbers per token per layer: per-head K and V (naive) or latent + RoPE key (the others)."""
        mode = self.mode if mode is None else mode
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is not one of {MODES}")
        if mode == "naive":
            return self.n_heads * (self.qk_head_dim + self.v_head_dim)
        return self.kv_lora_rank + self.qk_rope_head_dim


class MLACache:
    """One layer's preallocated decode cache. ``pos`` tokens are filled; ``append`` writes the next ones.

    ``kind == "kv"`` (mode naive): ``k`` (B, H, L, nope+rope) and ``v`` (B, H, L, v_head_dim).
    ``kind == "latent"`` (modes reexpand, absorbed): ``c_kv`` (B, L, kv_lora_rank) and ``k_pe`` (B, L, rope).
    """

    def __init__(self, kind: str, tensors: dict[str, torch.Tensor]):
        if kind not in ("kv", "latent"):
            raise ValueError(f"MLACache kind={kind!r} is not 'kv' or 'latent'")
        self.kind = kind
        self.tensors = tensors
        self.pos = 0
        self.max_len = next(iter(tensors.values())).shape[-2 if kind == "kv" else 1]

    def __getattr__(self, name: str) -> torch.Tensor:
        tensors = self.__dict__.get("tensors", {})
        if name in tensors:
            return tensors[name]
        raise AttributeError(name)

    def append(self, **new: torch.Tensor) -> dict[str, torch.Tensor]:
        """Write T new tokens after the filled ones; return views of everything filled so far."""
        T = next(iter(new.values())).shape[-2 if self.kind == "kv" else 1]
        if self.pos + T > self.max_len:
            raise ValueError(f"MLACache overflow: {self.pos} cached + {T} new tokens > max_len={self.max_len}")
        start, end = self.pos, self.pos + T
        out = {}
        for name, value in new.items():
            buf = self.tensors[name]
            if self.kind == "kv":
                buf[:, :, start:end] = value
                out[name] = buf[:, :, :end]
            else:
                buf[:, start:end] = value
                out[name] = buf[:, :end]
        self.pos = end
        return out

    def reset(self) -> None:
        self.pos = 0

    def nbytes(self) -> int:
        """Bytes the filled part of the cache holds."""
        per_token = sum(t[0].numel() // self.max_len * t.element_size() for t in self.tensors.values())
        batch = next(iter(self.tensors.values())).shape[0]
        return per_token * batch * self.pos

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={tuple(v.shape)}" for k, v in self.tensors.items())
        return f"MLACache(kind={self.kind!r}, {shapes}, pos={self.pos})"


def _causal_mask(T: int, S: int, device: torch.device) -> torch.Tensor:
    """(T, S) bool, True where query t (at absolute position S - T + t) may look at key s."""
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)


class MLA(nn.Module):
    """Multi-head latent attention: ``y = mla(x, cache=None)`` with x (B, T, dim)."""

    def __init__(self, cfg: MLAConfig):
        super().__init__()
        if not isinstance(cfg, MLAConfig):
            raise TypeError(f"MLA expects an MLAConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        H, c, r = cfg.n_heads, cfg.kv_lora_rank, cfg.qk_rope_head_dim
        bias = cfg.attention_bias
        if cfg.q_lora_rank is None:
            self.q_proj = nn.Linear(cfg.dim, H * cfg.qk_head_dim, bias=False)
        else:
            self.q_a_proj = nn.Linear(cfg.dim, cfg.q_lora_rank, bias=bias)
            self.q_a_norm = RMSNorm(cfg.q_lora_rank, eps=cfg.norm_eps)
            self.q_b_proj = nn.Linear(cfg.q_lora_rank, H * cfg.qk_head_dim, bias=False)
        self.kv_a_proj = nn.Linear(cfg.dim, c + r, bias=bias)  # -> [latent ; shared rope key]
        self.kv_a_norm = RMSNorm(c, eps=cfg.norm_eps)
        self.kv_b_proj = nn.Linear(c, H * (cfg.qk_nope_head_dim + cfg.v_head_dim), bias=False)  # W_UK, W_UV
        self.o_proj = nn.Linear(H * cfg.v_head_dim, cfg.dim, bias=bias)
        self.softmax_scale = cfg.softmax_scale if cfg.softmax_scale is not None else cfg.qk_head_dim ** -0.5
        # float32 RoPE tables (max_seq_len, rope/2), kept out of the state dict and out of .to(dtype)
        if cfg.rope_scaling is None:
            self.set_rope_tables(*rope_cos_sin(r, cfg.max_seq_len, cfg.rope_theta))
        else:  # YaRN: new frequencies, cos/sin scaled by mscale, and the softmax scale by mscale_all_dim²
            self.set_rope_tables(*yarn_cos_sin(r, cfg.max_seq_len, cfg.rope_theta, **cfg.rope_scaling))
            if cfg.softmax_scale is None:
                self.softmax_scale *= yarn_softmax_multiplier(cfg.rope_scaling["factor"],
                                                              cfg.rope_scaling.get("mscale_all_dim", 0.0))
        self.mode = cfg.mode

    # ----------------------------------------------------------------------------------------- pieces
    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"MLA mode={value!r} is not one of {MODES}")
        self._mode = value

    def w_uk_uv(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The up-projections as per-head matrices: W_UK (H, nope, c) and W_UV (H, v, c)."""
        cfg = self.cfg
        w = self.kv_b_proj.weight.view(cfg.n_heads, cfg.qk_nope_head_dim + cfg.v_head_dim, cfg.kv_lora_rank)
        return w[:, : cfg.qk_nope_head_dim], w[:, cfg.qk_nope_head_dim:]

    def queries(self, x: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """q_nope (B, T, H, nope) and rotated q_pe (B, T, H, rope) for tokens at positions start.."""
        cfg = self.cfg
        B, T, _ = x.shape
        q = self.q_proj(x) if cfg.q_lora_rank is None else self.q_b_proj(self.q_a_norm(self.q_a_proj(x)))
        q = q.view(B, T, cfg.n_heads, cfg.qk_head_dim)
        q_nope, q_pe = q.split([cfg.qk_nope_head_dim, cfg.qk_rope_head_dim], dim=-1)
        cos, sin = self._rope_tables(start, T, x.device)
        q_pe = apply_rope(q_pe.transpose(1, 2), cos, sin, cfg.rope_layout).transpose(1, 2)
        return q_nope, q_pe

    def latents(self, x: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized latent c_kv (B, T, c) and rotated shared key k_pe (B, T, rope): what MLA caches."""
        cfg = self.cfg
        c_kv, k_pe = self.kv_a_proj(x).split([cfg.kv_lora_rank, cfg.qk_rope_head_dim], dim=-1)
        cos, sin = self._rope_tables(start, x.shape[1], x.device)
        return self.kv_a_norm(c_kv), apply_rope(k_pe, cos, sin, cfg.rope_layout)

    def expand(self, c_kv: torch.Tensor, k_pe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decompress latents (B, S, c), (B, S, rope) into per-head k (B, H, S, nope+rope), v (B, H, S, v)."""
        cfg = self.cfg
        B, S, _ = c_kv.shape
        kv = self.kv_b_proj(c_kv).view(B, S, cfg.n_heads, cfg.qk_nope_head_dim + cfg.v_head_dim)
        k_nope, v = kv.transpose(1, 2).split([cfg.qk_nope_head_dim, cfg.v_head_dim], dim=-1)
        k = torch.cat([k_nope, k_pe[:, None].expand(B, cfg.n_heads, S, cfg.qk_rope_head_dim)], dim=-1)
        return k, v

    def set_rope_tables(self, cos: torch.Tensor, sin: torch.Tensor) -> None:
        """Replace the RoPE tables (e.g. by transformers' YaRN tables); both (max_seq_len, rope/2)."""
        want = (self.cfg.max_seq_len, self.cfg.qk_rope_head_dim // 2)
        if tuple(cos.shape) != want or tuple(sin.shape) != want:
            raise ValueError(f"rope tables must be {want}, got cos {tuple(cos.shape)}, sin {tuple(sin.shape)}")
        self._rope = {"cpu": (cos.detach().float().cpu(), sin.detach().float().cpu())}

    def _rope_tables(self, start: int, T: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if start + T > self.cfg.max_seq_len:
            raise ValueError(f"position {start + T} (start {start} + {T} new) exceeds "
                             f"MLAConfig.max_seq_len={self.cfg.max_seq_len}")
        key = str(device)
        if key not in self._rope:
            self._rope[key] = tuple(t.to(device) for t in self._rope["cpu"])
        cos, sin = self._rope[key]
        return cos[start:start + T], sin[start:start + T]

    # ----------------------------------------------------------------------------------------- cache
    def new_cache(self, batch_size: int, max_len: int | None = None, device: torch.device | str | None = None,
                  dtype: torch.dtype | None = None) -> MLACache:
        """An empty cache for this layer's current mode (per-head K/V for naive, latents otherwise)."""
        cfg = self.cfg
        max_len = cfg.max_seq_len if max_len is None else max_len
        if max_len > cfg.max_seq_len:
            raise ValueError(f"cache max_len={max_len} exceeds MLAConfig.max_seq_len={cfg.max_seq_len}")
        if batch_size < 1 or max_len < 1:
            raise ValueError(f"new_cache needs batch_size >= 1 and max_len >= 1, got {batch_size}, {max_len}")
        device = self.kv_b_proj.weight.device if device is None else device
        dtype = self.kv_b_proj.weight.dtype if dtype is None else dtype
        kw = dict(device=device, dtype=dtype)
        if self.mode == "naive":
            return MLACache("kv", {
                "k": torch.zeros(batch_size, cfg.n_heads, max_len, cfg.qk_head_dim, **kw),
                "v": torch.zeros(batch_size, cfg.n_heads, max_len, cfg.v_head_dim, **kw),
            })
        return MLACache("latent", {
            "c_kv": torch.zeros(batch_size, max_len, cfg.kv_lora_rank, **kw),
            "k_pe": torch.zeros(batch_size, max_len, cfg.qk_rope_head_dim, **kw),
        })

    # ----------------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, cache: MLACache | None = None) -> torch.Tensor:  # (B, T, C) -> (B, T, C)
        if x.dim() != 3 or x.shape[-1] != self.cfg.dim:
            raise ValueError(f"MLA expects x of shape (B, T, {self.cfg.dim}), got {tuple(x.shape)}")
        want = "kv" if self.mode == "naive" else "latent"
        if cache is not None and cache.kind != want:
            raise ValueError(f"cache kind {cache.kind!r} does not fit mode {self.mode!r} (needs {want!r})")
        start = 0 if cache is None else cache.pos
        q_nope, q_pe = self.queries(x, start)  # (B, T, H, nope), (B, T, H, rope)
        c_kv, k_pe = self.latents(x, start)  # (B, T, c), (B, T, rope)
        if self.mode == "naive":
            k, v = self.expand(c_kv, k_pe)  # cache the decompressed per-head keys and values
            if cache is not None:
                k, v = cache.append(k=k, v=v).values()
            y = self._attend_heads(q_nope, q_pe, k, v)
        else:
            if cache is not None:
                c_kv, k_pe = cache.append(c_kv=c_kv, k_pe=k_pe).values()
            if self.mode == "reexpand":
                y = self._attend_heads(q_nope, q_pe, *self.expand(c_kv, k_pe))
            else:
                y = self._attend_absorbed(q_nope, q_pe, c_kv, k_pe)
        return self.o_proj(y.flatten(2))

    def _attend_heads(self, q_nope, q_pe, k, v) -> torch.Tensor:
        """Plain attention over per-head keys (B, H, S, nope+rope) and values; returns (B, T, H, v)."""
        q = torch.cat([q_nope, q_pe], dim=-1).transpose(1, 2)  # (B, H, T, nope+rope)
        T, S = q.shape[2], k.shape[2]
        mask = None if T == 1 else _causal_mask(T, S, q.device)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.softmax_scale)
        return y.transpose(1, 2)

    def _attend_absorbed(self, q_nope, q_pe, c_kv, k_pe) -> torch.Tensor:
        """Attention in latent space: W_UK folded into the query, W_UV applied after. Returns (B, T, H, v)."""
        w_uk, w_uv = self.w_uk_uv()  # (H, nope, c), (H, v, c)
        q_lat = torch.einsum("bthn,hnc->bthc", q_nope, w_uk)  # the query, moved into latent space
        if q_lat.shape[1] == 1 and self.cfg.decode_backend != "einsum":  # one new token: the fused kernel
            from nanoseek.kernels.mla_decode import mla_decode

            o_lat = mla_decode(q_lat[:, 0], q_pe[:, 0], c_kv, k_pe, self.softmax_scale,
                               backend=self.cfg.decode_backend)[:, None]  # (B, 1, H, c)
            return torch.einsum("bthc,hvc->bthv", o_lat, w_uv)
        scores = (torch.einsum("bthc,bsc->bhts", q_lat, c_kv)
                  + torch.einsum("bthr,bsr->bhts", q_pe, k_pe)) * self.softmax_scale  # (B, H, T, S)
        T, S = scores.shape[-2:]
        if T > 1:
            scores = scores.masked_fill(~_causal_mask(T, S, scores.device), float("-inf"))
        p = scores.float().softmax(dim=-1).to(c_kv.dtype)
        o_lat = torch.einsum("bhts,bsc->bthc", p, c_kv)  # attention-weighted latent (B, T, H, c)
        return torch.einsum("bthc,hvc->bthv", o_lat, w_uv)  # W_UV, per head
