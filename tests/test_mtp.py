"""Multi-token prediction (chapter 7): alignment on hand cases, gradients, config checks, depth 0 == plain."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from nanoseek.nn.mtp import MTPModule, MultiTokenPrediction, combine_losses

V = C = 8


def _hand_mtp(depth: int, take: str) -> tuple[MultiTokenPrediction, nn.Embedding, nn.Linear]:
    """Identity blocks, one-hot embeddings, a head that maps token v to v+1; eh_proj reads one half only."""
    mtp = MultiTokenPrediction(C, depth, make_block=lambda k: nn.Identity())
    embed = nn.Embedding(V, C)
    head = nn.Linear(C, V, bias=False)
    with torch.no_grad():
        embed.weight.copy_(torch.eye(V))
        head.weight.copy_(20 * torch.roll(torch.eye(V), 1, dims=0))  # logits[v+1] = 20 x[v]
        for m in mtp.depths:
            eye, zero = torch.eye(C), torch.zeros(C, C)
            m.eh_proj.weight.copy_(torch.cat([eye, zero] if take == "emb" else [zero, eye], dim=1))
    return mtp, embed, head


@pytest.mark.parametrize("depth", [1, 2])
def test_depth_k_reads_token_t_plus_k_and_predicts_t_plus_k_plus_1(depth):
    idx = torch.tensor([[0, 1, 2, 3, 4, 5]])
    targets = torch.tensor([[1, 2, 3, 4, 5, 6]])
    mtp, embed, head = _hand_mtp(depth, take="emb")
    h0 = torch.randn(1, 6, C)
    logits, losses = mtp(h0, idx, embed, head, targets)
    assert [tuple(lg.shape) for lg in logits] == [(1, 6 - k, V) for k in range(1, depth + 1)]
    for k, lg in enumerate(logits, start=1):
        # the embedding path: depth k at position i sees t_{i+k} = idx[i+k], says idx[i+k]+1 = t_{i+k+1}
        assert lg.argmax(-1).tolist() == [[i + k + 1 for i in range(6 - k)]]
        assert losses[k - 1].item() < 1e-3
    # shifting the targets by one breaks every depth's loss: the alignment is not a coincidence
    _, bad = mtp(h0, idx, embed, head, torch.roll(targets, 1, dims=1))
    assert all(b.item() > 10 for b in bad)


@pytest.mark.parametrize("depth", [1, 2])
def test_hidden_state_chain_is_aligned_by_position(depth):
    """Reading only h^{k-1}: every depth at position i still talks about position i (h0 = embedding of t_i)."""
    idx = torch.tensor([[3, 1, 4, 1, 5, 2, 6]])
    mtp, embed, head = _hand_mtp(depth, take="h")
    h0 = embed(idx)
    logits, losses = mtp(h0, idx, embed, head)
    assert losses is None
    for k, lg in enumerate(logits, start=1):
        assert lg.argmax(-1)[0].tolist() == [(t + 1) % V for t in idx[0, : 7 - k].tolist()]


def test_targets_minus_100_are_ignored():
    idx = torch.tensor([[0, 1, 2, 3, 4]])
    targets = torch.tensor([[1, 2, 3, -100, -100]])
    mtp, embed, head = _hand_mtp(1, take="emb")
    logits, losses = mtp(torch.zeros(1, 5, C), idx, embed, head, targets)
    assert logits[0].shape == (1, 4, V)
    assert losses[0].item() < 1e-3  # positions 0, 1 have targets 2, 3; the rest are ignored


def test_gradients_reach_every_parameter_and_the_shared_embedding_and_head():
    torch.manual_seed(0)
    block = lambda k: nn.Sequential(nn.Linear(C, C), nn.GELU())  # noqa: E731
    mtp = MultiTokenPrediction(C, 2, block)
    embed, head = nn.Embedding(V, C), nn.Linear(C, V, bias=False)
    h0 = torch.randn(2, 6, C, requires_grad=True)
    idx = torch.randint(0, V, (2, 6))
    _, losses = mtp(h0, idx, embed, head, torch.randint(0, V, (2, 6)))
    combine_losses(torch.zeros(()), losses, 0.3).backward()
    for name, p in [*mtp.named_parameters(), ("embed", embed.weight), ("head", head.weight), ("h0", h0)]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_combine_losses_is_main_plus_lambda_times_mean():
    main, mtp = torch.tensor(2.0), [torch.tensor(3.0), torch.tensor(5.0)]
    assert combine_losses(main, mtp, 0.3).item() == pytest.approx(2.0 + 0.3 * 4.0)
    assert combine_losses(main, [], 0.3) is main


def test_bad_inputs_name_the_field_and_value():
    with pytest.raises(ValueError, match="depth=0"):
        MultiTokenPrediction(C, 0, lambda k: nn.Identity())
    with pytest.raises(ValueError, match="dim=0"):
        MTPModule(0, nn.Identity())
    mtp, embed, head = _hand_mtp(2, take="emb")
    with pytest.raises(ValueError, match="T=2"):
        mtp(torch.zeros(1, 2, C), torch.zeros(1, 2, dtype=torch.long), embed, head)
    with pytest.raises(ValueError, match="targets="):
        mtp(torch.zeros(1, 4, C), torch.zeros(1, 4, dtype=torch.long), embed, head, torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="emb_next="):
        mtp.depths[0](torch.zeros(1, 4, C), torch.zeros(1, 3, C))
