"""Fused GPU kernels (Triton), each with a plain PyTorch fallback that runs anywhere."""
