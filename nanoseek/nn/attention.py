"""Causal self-attention with `n_kv_head` key/value heads, rotary positions and a KV cache. (Chapter 4.)

One module covers the three classic settings:

- **MHA** (multi-head attention): ``n_kv_head == n_head``, every query head has its own key/value head;
- **GQA** (grouped-query attention): ``1 < n_kv_head < n_head``, each key/value head serves a group of
  ``n_head // n_kv_head`` query heads;
- **MQA** (multi-query attention): ``n_kv_head == 1``, one key/value head for all query heads.

The contract every attention of the book follows (MLA in chapter 5 has the same shape):

- ``attn(x, cache=None)``: x is (B, T, C), the result is (B, T, C). Without a cache the T tokens are
  positions 0..T-1. With a cache, they are positions ``cache.pos .. cache.pos + T - 1``: the module reads its
  start position from the cache, writes the new keys/values into it, and attends over everything cached.
- ``attn.new_cache(batch_size, max_len, device, dtype)`` returns an empty cache for this layer.

The module owns its rotary tables (float32, built lazily per device, so casting the model to bf16 never
rounds them).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nanoseek.nn.rope import LAYOUTS, apply_rope_full, rope_cos_sin, rope_full_tables


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, n_kv, T, D) -> (B, n_kv * n_rep, T, D): key/value head j serves query heads j*n_rep .. j*n_rep+n_rep-1."""
    if n_rep < 1:
        raise ValueError(f"repeat_kv needs n_rep >= 1, got n_rep={n_rep}")
    if n_rep == 1:
        return x
    B, n_kv, T, D = x.shape
    return x[:, :, None, :, :].expand(B, n_kv, n_rep, T, D).reshape(B, n_kv * n_rep, T, D)


def kv_cache_bytes(n_layer: int, batch_size: int, n_kv_head: int, head_dim: int, seq_len: int,
                   dtype_bytes: int) -> int:
    """Bytes a K and V cache holds: 2 (K and V) · layers · batch · kv heads · head dim · tokens · bytes/element."""
    for name, value in dict(n_layer=n_layer, batch_size=batch_size, n_kv_head=n_kv_head, head_dim=head_dim,
                            seq_len=seq_len, dtype_bytes=dtype_bytes).items():
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"kv_cache_bytes: {name} must be a non-negative int, got {name}={value!r}")
    return 2 * n_layer * batch_size * n_kv_head * head_dim * seq_len * dtype_bytes


class KVCache:
    """One layer's key/value cache: preallocated k and v of shape (B, n_kv, max_len, D) and a position counter.

    `update(k, v)` writes T new positions at `pos`, advances `pos` and returns the keys/values of positions
    0 .. pos-1 (views, no copy). Writing past `max_len` is a ValueError naming the length.
    """

    def __init__(self, batch_size: int, n_kv_head: int, max_len: int, head_dim: int,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32):
        if batch_size < 1 or n_kv_head < 1 or max_len < 1 or head_dim < 1:
            raise ValueError(
                f"KVCache sizes must be >= 1, got batch_size={batch_size}, n_kv_head={n_kv_head}, "
                f"max_len={max_len}, head_dim={head_dim}")
        shape = (batch_size, n_kv_head, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.pos = 0

    @property
    def max_len(self) -> int:
        return self.k.shape[2]

    @property
    def nbytes(self) -> int:
        """Bytes held by the preallocated k and v tensors."""
        return self.k.numel() * self.k.element_size() + self.v.numel() * self.v.element_size()

    def reset(self) -> None:
        self.pos = 0

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append k, v (B, n_kv, T, D) at `pos`; return all cached (B, n_kv, pos + T, D)."""
        T = k.shape[2]
        end = self.pos + T
        if end > self.max_len:
            raise ValueError(
                f"KV cache overflow: {self.pos} cached + {T} new = {end} tokens > max_len={self.max_len}")
        self.k[:, :, self.pos:end] = k
        self.v[:, :, self.pos:end] = v
        self.pos = end
        return self.k[:, :, :end], self.v[:, :, :end]

    def __repr__(self) -> str:
        B, H, L, D = self.k.shape
        return f"KVCache(batch={B}, n_kv_head={H}, max_len={L}, head_dim={D}, pos={self.pos}, dtype={self.k.dtype})"


_SDPA_HAS_GQA = tuple(int(p) for p in torch.__version__.split(".")[:2]) >= (2, 5)  # enable_gqa= (torch 2.5+)
_ROPE_TABLES: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}  # (head_dim, max_len, theta, device) -> tables


class Attention(nn.Module):
    """Causal self-attention with `n_head` query heads and `n_kv_head` key/value heads, RoPE and a KV cache.

    Weight names match transformers' Llama/Qwen2 (`q_proj`, `k_proj`, `v_proj`, `o_proj`). `qkv_bias` adds
    biases to q/k/v (Qwen2 has them); the output projection never has one.
    """

    def __init__(self, n_embd: int, n_head: int, n_kv_head: int | None = None, head_dim: int | None = None,
                 max_seq_len: int = 2048, rope_theta: float = 10000.0, rope_layout: str = "half",
                 qkv_bias: bool = False):
        super().__init__()
        n_kv_head = n_head if n_kv_head is None else n_kv_head
        if n_head < 1 or n_kv_head < 1:
            raise ValueError(f"need n_head >= 1 and n_kv_head >= 1, got n_head={n_head}, n_kv_head={n_kv_head}")
        if n_head % n_kv_head:
            raise ValueError(f"n_kv_head={n_kv_head} must divide n_head={n_head}")
        head_dim = n_embd // n_head if head_dim is None else head_dim
        if head_dim < 2 or head_dim % 2:
            raise ValueError(f"head_dim must be even and >= 2 for rotary embeddings, got head_dim={head_dim}")
        if rope_layout not in LAYOUTS:
            raise ValueError(f"rope_layout={rope_layout!r} is not one of {LAYOUTS}")
        if max_seq_len < 1:
            raise ValueError(f"max_seq_len must be >= 1, got max_seq_len={max_seq_len}")
        self.n_head, self.n_kv_head, self.head_dim = n_head, n_kv_head, head_dim
        self.n_rep = n_head // n_kv_head
        self.max_seq_len, self.rope_theta, self.rope_layout = max_seq_len, rope_theta, rope_layout
        self.q_proj = nn.Linear(n_embd, n_head * head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(n_embd, n_kv_head * head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(n_embd, n_kv_head * head_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(n_head * head_dim, n_embd, bias=False)
        self._rope: tuple[torch.Tensor, torch.Tensor] | None = None

    def rope_tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin (max_seq_len, head_dim) in float32 on `device`, laid out by `rope_full_tables` for this
        module's layout; built once and shared by all layers with the same shape."""
        if self._rope is None or self._rope[0].device != device:
            key = (self.head_dim, self.max_seq_len, float(self.rope_theta), self.rope_layout, str(device))
            if key not in _ROPE_TABLES:
                cos, sin = rope_cos_sin(self.head_dim, self.max_seq_len, self.rope_theta, device=device)
                _ROPE_TABLES[key] = rope_full_tables(cos, sin, self.rope_layout)
            self._rope = _ROPE_TABLES[key]
        return self._rope

    def new_cache(self, batch_size: int, max_len: int | None = None, device: torch.device | str | None = None,
                  dtype: torch.dtype | None = None) -> KVCache:
        """An empty KVCache for this layer (defaults: the module's context length, device and dtype)."""
        max_len = self.max_seq_len if max_len is None else max_len
        if max_len > self.max_seq_len:
            raise ValueError(f"cache max_len={max_len} exceeds the attention's max_seq_len={self.max_seq_len}")
        w = self.k_proj.weight
        return KVCache(batch_size, self.n_kv_head, max_len, self.head_dim,
                       device=w.device if device is None else device, dtype=w.dtype if dtype is None else dtype)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        start = 0 if cache is None else cache.pos
        if start + T > self.max_seq_len:
            raise ValueError(
                f"sequence length {start + T} (start {start} + {T} new) exceeds max_seq_len={self.max_seq_len}")
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)     # (B, H, T, D)
        k = self.k_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        v = self.v_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        cos, sin = self.rope_tables(x.device)
        cos, sin = cos[start:start + T], sin[start:start + T]                          # (T, D)
        qk = apply_rope_full(torch.cat((q, k), dim=1), cos, sin, self.rope_layout)    # q and k in one go
        q, k = qk.split((self.n_head, self.n_kv_head), dim=1)
        if cache is not None:
            k, v = cache.update(k, v)                                                  # (B, Hkv, S, D), S = start+T
        # Query head h reads kv head h // n_rep. SDPA's enable_gqa does that without materializing
        # repeat_kv(k, n_rep) (a copy of the whole cache at every decoding step); both give the same result.
        gqa = {}
        if self.n_rep > 1:
            if _SDPA_HAS_GQA:
                gqa = {"enable_gqa": True}
            else:
                k, v = repeat_kv(k, self.n_rep), repeat_kv(v, self.n_rep)              # (B, H, S, D)
        S = k.shape[2]
        if T == 1:  # one new token sees every cached position: no mask needed
            y = F.scaled_dot_product_attention(q, k, v, **gqa)
        elif S == T:  # no past: plain causal
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, **gqa)
        else:  # T new tokens after S - T cached ones: query i sees keys 0 .. S - T + i
            mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(diagonal=S - T)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, **gqa)
        y = y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)               # (B, T, H*D)
        return self.o_proj(y)

    def extra_repr(self) -> str:
        return (f"n_head={self.n_head}, n_kv_head={self.n_kv_head}, head_dim={self.head_dim}, "
                f"rope_layout={self.rope_layout!r}, rope_theta={self.rope_theta}")
