"""What the TMA kernels of `fp8_gemm` and `mla_decode` share: the host-side scratch allocator."""
from __future__ import annotations

import torch

_ALLOCATOR_SET = False


def set_allocator(device: torch.device) -> None:
    """Device-side TMA descriptors need scratch memory from the host: hand Triton torch's allocator (once)."""
    global _ALLOCATOR_SET
    if not _ALLOCATOR_SET:
        import triton

        triton.set_allocator(lambda size, alignment, stream: torch.empty(size, device=device, dtype=torch.int8))
        _ALLOCATOR_SET = True
