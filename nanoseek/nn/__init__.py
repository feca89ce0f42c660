"""Building blocks shared by every model in the book (chapters 4–7)."""
from nanoseek.nn.norm import RMSNorm
from nanoseek.nn.rope import apply_rope, apply_rope_full, interleave_permutation, rope_cos_sin, rope_full_tables
from nanoseek.nn.mlp import SwiGLU
from nanoseek.nn.attention import Attention, KVCache, kv_cache_bytes, repeat_kv

__all__ = ["RMSNorm", "apply_rope", "apply_rope_full", "interleave_permutation", "rope_cos_sin", "rope_full_tables", "SwiGLU",
           "Attention", "KVCache", "kv_cache_bytes", "repeat_kv"]
