"""Multi-token prediction (MTP) as DeepSeek-V3 trains it (§2.2 of the report). (Chapter 7.)

The main model reads tokens t_1..t_T and its output head predicts t_{i+1} at every position i. MTP adds D
sequential modules. Module k (depth k = 1..D) looks one token further than module k-1:

    h'_i^k = M_k [ RMSNorm(Emb(t_{i+k})) ; RMSNorm(h_i^{k-1}) ]      concatenation (2C) then projection to C
    h^k    = TRM_k(h'^k)                                             one transformer block, causal over i
    P^k_{i+k+1} = OutHead(h_i^k)                                      depth k at position i predicts t_{i+k+1}

h^0 is the main model's representation (what its output head reads), `Emb` and `OutHead` are the main
model's embedding table and output projection, shared (not copied); each depth owns its two input norms,
the projection M_k (`eh_proj`), its block, and the RMSNorm in front of the shared head (`shared_head.norm` in
the released checkpoint). Depth k only has positions i = 1..T-k: later ones would need tokens beyond the
sequence. The training loss is

    L = L_main + λ / D · Σ_k L_MTP^k,

where L_MTP^k is the cross-entropy of depth k against t_{i+k+1}. At inference the MTP modules can be dropped,
or used as a draft model for self-speculative decoding (`nanoseek.generate.generate_speculative_mtp`).

The concatenation puts the embedding first, as the released DeepSeek-V3 weights expect (`eh_proj` of
vLLM/SGLang's `DeepSeekMultiTokenPredictorLayer`); the report's equation writes the two halves the other
way round, which only permutes the columns of M_k. Unlike the report, which divides each depth's summed
cross-entropy by T, we average over the positions that have a target (the usual `ignore_index=-100` mean),
so a depth's loss is on the same per-token scale as the main loss.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nanoseek.nn.norm import RMSNorm

# How a depth runs its transformer block: run_block(block, x) -> x, (B, T_k, C) -> (B, T_k, C). The model
# that owns the MTP modules supplies it (it knows the block's extra arguments: rotary tables, cache, ...).
RunBlock = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def _plain_run_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return block(x)


class MTPModule(nn.Module):
    """One MTP depth: (h^{k-1}, Emb(t_{i+k})) -> h^k, the representation that predicts t_{i+k+1}.

    Parameter names follow the released DeepSeek-V3 checkpoint (`enorm`, `hnorm`, `eh_proj`, the block,
    `norm` for `shared_head.norm`), so a state dict maps over name by name.
    """

    def __init__(self, dim: int, block: nn.Module, eps: float = 1e-6):
        super().__init__()
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"MTPModule dim must be an integer >= 1, got dim={dim!r}")
        self.enorm = RMSNorm(dim, eps)  # normalizes the embedding of token t_{i+k}
        self.hnorm = RMSNorm(dim, eps)  # normalizes the previous depth's representation h^{k-1}_i
        self.eh_proj = nn.Linear(2 * dim, dim, bias=False)  # M_k: 2C -> C
        self.block = block  # TRM_k: one block of the main model's kind
        self.norm = RMSNorm(dim, eps)  # in front of the shared output head

    def forward(
        self,
        h_prev: torch.Tensor,
        emb_next: torch.Tensor,
        run_block: RunBlock = _plain_run_block,
    ) -> torch.Tensor:
        """h_prev (B, T_k, C), emb_next (B, T_k, C) -> h^k (B, T_k, C), already normalized for the head."""
        if h_prev.shape != emb_next.shape:
            raise ValueError(
                f"MTPModule needs h_prev and emb_next of one shape, got h_prev={tuple(h_prev.shape)} and "
                f"emb_next={tuple(emb_next.shape)}"
            )
        x = self.eh_proj(torch.cat([self.enorm(emb_next), self.hnorm(h_prev)], dim=-1))  # (B, T_k, C)
        return self.norm(run_block(self.block, x))


class MultiTokenPrediction(nn.Module):
    """D sequential MTP modules on top of a main model that lends them its embedding and output head."""

    def __init__(self, dim: int, depth: int, make_block: Callable[[int], nn.Module], eps: float = 1e-6):
        super().__init__()
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"MultiTokenPrediction depth must be an integer >= 1, got depth={depth!r}")
        # make_block(k) builds the block of depth k (k = 1..D); a fresh block each, never a shared one.
        self.depths = nn.ModuleList(MTPModule(dim, make_block(k), eps) for k in range(1, depth + 1))

    @property
    def depth(self) -> int:
        return len(self.depths)

    def forward(
        self,
        h0: torch.Tensor,
        idx: torch.Tensor,
        embed: nn.Module,
        head: nn.Module,
        targets: torch.Tensor | None = None,
        run_block: RunBlock = _plain_run_block,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """All depths over a training sequence.

        h0 (B, T, C): the main model's representation; idx (B, T) its input tokens; targets (B, T) the main
        model's targets (targets[:, i] is t_{i+1}, -100 where there is no loss). Depth k returns logits
        (B, T-k, V) whose row i predicts t_{i+k+1} = targets[:, i+k]. Returns (logits per depth, loss per
        depth or None when targets is None).
        """
        B, T, C = h0.shape
        if idx.shape != (B, T):
            raise ValueError(f"MTP needs idx of shape {(B, T)} to match h0, got idx={tuple(idx.shape)}")
        if T <= self.depth:
            raise ValueError(
                f"MTP with depth={self.depth} needs sequences longer than {self.depth} tokens, got T={T}"
            )
        if targets is not None and targets.shape != (B, T):
            raise ValueError(f"MTP needs targets of shape {(B, T)}, got targets={tuple(targets.shape)}")
        all_logits: list[torch.Tensor] = []
        losses: list[torch.Tensor] = []
        h = h0
        for k, module in enumerate(self.depths, start=1):
            # positions i = 0..T-1-k: h^{k-1}_i and the embedding of t_{i+k} = idx[:, i+k]
            h = module(h[:, : T - k], embed(idx[:, k:]), run_block)  # (B, T-k, C)
            logits = head(h)  # (B, T-k, V)
            all_logits.append(logits)
            if targets is not None:
                tgt = targets[:, k:]  # t_{i+k+1}, (B, T-k)
                losses.append(F.cross_entropy(logits.flatten(0, 1).float(), tgt.flatten(), ignore_index=-100))
        return all_logits, (losses if targets is not None else None)


def combine_losses(main: torch.Tensor, mtp: list[torch.Tensor], lam: float) -> torch.Tensor:
    """DeepSeek-V3's total loss: L_main + λ · mean_k L_MTP^k (λ = 0.3, later 0.1, in the report)."""
    if not mtp:
        return main
    return main + lam * torch.stack(mtp).mean()




def mtp_loss_fn(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict[str, float]]:
    """`loss_fn` for `nanoseek.train.train` that trains on the total loss and evaluates the main head only.

    In training mode: (L_main + λ · mean_k L_MTP^k, {"main": ..., "mtp_1": ..., ...}), the parts recorded as
    metrics. In eval mode (what `nanoseek.train.evaluate` sets): the main head's cross-entropy, so a run's
    validation curve is the same quantity with and without MTP.
    """
    if not model.training:
        return main_loss_fn(model, batch), {}
    x, y = batch[0], batch[1]
    _, loss = model(x, y)
    return loss, {name: float(value) for name, value in getattr(model, "last_losses", {}).items()}


def main_loss_fn(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Cross-entropy of the main output head only: the one number that compares models with and without MTP."""
    x, y = batch[0], batch[1]
    logits, _ = model(x)  # (B, T, V); no targets, so no MTP work
    return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=-100)


__all__ = ["MTPModule", "MultiTokenPrediction", "combine_losses", "mtp_loss_fn", "main_loss_fn", "RunBlock"]
