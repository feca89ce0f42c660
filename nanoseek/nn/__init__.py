"""Building blocks shared by every model in the book (chapters 4–7)."""
from nanoseek.nn.norm import RMSNorm
from nanoseek.nn.rope import apply_rope, rope_cos_sin
from nanoseek.nn.mlp import SwiGLU

__all__ = ["RMSNorm", "apply_rope", "rope_cos_sin", "SwiGLU"]
