"""Random windows of a token stream: the batches every language-model chapter trains on. (Chapter 1.)"""
from __future__ import annotations

from typing import Callable

import torch

from nanoseek import validate as V


def window_batcher(
    train_ids: torch.Tensor, val_ids: torch.Tensor, block_size: int, batch_size: int
) -> Callable[[str, torch.Generator], tuple[torch.Tensor, torch.Tensor]]:
    """get_batch(split, generator) -> (x, y), each (batch_size, block_size); y is x shifted by one token."""
    V.integer(block_size, "block_size", "window_batcher", minimum=1)
    V.integer(batch_size, "batch_size", "window_batcher", minimum=1)
    streams = {}
    for split, ids in (("train", train_ids), ("val", val_ids)):
        if not isinstance(ids, torch.Tensor):
            raise ValueError(f"the {split} stream must be a 1-D tensor of token ids, got {type(ids).__name__}")
        if ids.dim() != 1:
            raise ValueError(f"the {split} stream must be one 1-D token stream (N,), got shape {tuple(ids.shape)}; "
                             "flatten it (ids.flatten()) or concatenate the documents first")
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise ValueError(f"the {split} stream must hold integer token ids, got dtype {ids.dtype}")
        if len(ids) <= block_size:
            raise ValueError(f"the {split} stream needs more than block_size={block_size} tokens, has {len(ids)}")
        V.check_token_tensor(ids, None, f"the {split} stream")
        streams[split] = ids.long()
    offsets = torch.arange(block_size)

    def get_batch(split: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in streams:
            raise ValueError(f"split={split!r} is not one of {sorted(streams)}")
        ids = streams[split]
        starts = torch.randint(len(ids) - block_size, (batch_size,), generator=generator)
        idx = starts[:, None] + offsets  # (B, T)
        return ids[idx], ids[idx + 1]

    return get_batch
