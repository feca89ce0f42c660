"""Random windows of a token stream: the batches every language-model chapter trains on. (Chapter 1.)"""
from __future__ import annotations

from typing import Callable

import torch


def window_batcher(
    train_ids: torch.Tensor, val_ids: torch.Tensor, block_size: int, batch_size: int
) -> Callable[[str, torch.Generator], tuple[torch.Tensor, torch.Tensor]]:
    """get_batch(split, generator) -> (x, y), each (batch_size, block_size); y is x shifted by one token."""
    if block_size < 1 or batch_size < 1:
        raise ValueError(f"block_size and batch_size must be >= 1, got block_size={block_size}, batch_size={batch_size}")
    streams = {"train": train_ids.long(), "val": val_ids.long()}
    for split, ids in streams.items():
        if ids.dim() != 1 or len(ids) <= block_size:
            raise ValueError(f"the {split} stream needs more than block_size={block_size} tokens, has {len(ids)}")
    offsets = torch.arange(block_size)

    def get_batch(split: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in streams:
            raise ValueError(f"split={split!r} is not one of {sorted(streams)}")
        ids = streams[split]
        starts = torch.randint(len(ids) - block_size, (batch_size,), generator=generator)
        idx = starts[:, None] + offsets  # (B, T)
        return ids[idx], ids[idx + 1]

    return get_batch
