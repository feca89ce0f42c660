"""Building blocks shared by every model in the book (chapters 4–7)."""
from nanoseek.nn.norm import RMSNorm
from nanoseek.nn.rope import apply_rope, interleave_permutation, rope_cos_sin
from nanoseek.nn.mlp import SwiGLU
from nanoseek.nn.attention import Attention, KVCache, kv_cache_bytes, repeat_kv

__all__ = ["RMSNorm", "apply_rope", "interleave_permutation", "rope_cos_sin", "SwiGLU",
           "Attention", "KVCache", "kv_cache_bytes", "repeat_kv"]
