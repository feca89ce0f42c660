"""Advantages: the group baseline of GRPO / Dr. GRPO / REINFORCE, and GAE for PPO. (Chapter 10.)

Sign convention everywhere in `nanoseek.rl`: an advantage is positive when the sampled response was
*better* than the baseline, and the losses *minimise* ``-advantage * ratio`` (i.e. maximise the objective).
"""
from __future__ import annotations

import torch


def group_advantages(rewards: torch.Tensor, group_size: int, normalize_by_std: bool = True,
                     eps: float = 1e-6) -> torch.Tensor:
    """Outcome advantages from groups of `group_size` responses to the same prompt.

    `rewards` is (N,) with N = n_prompts * group_size, the G responses of one prompt contiguous. For each
    group, A_i = (r_i - mean(r)) / (std(r) + eps) as in DeepSeekMath's GRPO, or A_i = r_i - mean(r) with
    `normalize_by_std=False` (Dr. GRPO; also REINFORCE with a group-mean baseline). `std` is the unbiased
    sample standard deviation (Bessel's correction), as TRL computes it. A group whose rewards are all equal
    gets advantage 0 for every member: it carries no learning signal. Returns (N,) float32.
    """
    if not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size={group_size!r} must be a positive int")
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards of shape {tuple(rewards.shape)} is not (N,) with N a multiple of "
                         f"group_size={group_size}")
    r = rewards.float().view(-1, group_size)  # (n_prompts, G)
    adv = r - r.mean(dim=1, keepdim=True)
    if normalize_by_std:
        std = r.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(r[:, :1])
        denom = std + eps
        # an all-equal group has adv == 0 exactly; keep it 0 even when eps = 0 (no 0/0)
        adv = torch.where(denom > 0, adv / denom.clamp(min=torch.finfo(adv.dtype).tiny), torch.zeros_like(adv))
    return adv.view(-1)


def leave_one_out_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """RLOO: A_i = r_i - mean of the *other* G-1 rewards of the group (an unbiased baseline).
    Equals G/(G-1) * (r_i - mean(r)). Returns (N,) float32."""
    if not isinstance(group_size, int) or group_size < 2:
        raise ValueError(f"group_size={group_size!r} must be an int >= 2 for a leave-one-out baseline")
    return group_advantages(rewards, group_size, normalize_by_std=False) * group_size / (group_size - 1)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al., 2016) over response tokens.

    rewards, values, mask: (B, T), one entry per response token (mask 1 on real tokens, a contiguous prefix,
    0 on padding). The state after the last real token is terminal (its value is 0).
    delta_t = r_t + gamma * V_{t+1} - V_t;  A_t = delta_t + gamma * lam * A_{t+1};  returns R_t = A_t + V_t.
    Entries at masked positions are 0. Returns (advantages, returns), both (B, T) float32.
    """
    if not (rewards.shape == values.shape == mask.shape) or rewards.dim() != 2:
        raise ValueError(f"rewards {tuple(rewards.shape)}, values {tuple(values.shape)} and mask "
                         f"{tuple(mask.shape)} must all be the same (B, T)")
    m = mask.float()
    r, v = rewards.float() * m, values.float() * m
    B, T = r.shape
    adv = torch.zeros_like(r)
    next_value = torch.zeros(B, dtype=r.dtype, device=r.device)
    next_adv = torch.zeros(B, dtype=r.dtype, device=r.device)
    for t in range(T - 1, -1, -1):
        delta = r[:, t] + gamma * next_value - v[:, t]
        next_adv = (delta + gamma * lam * next_adv) * m[:, t]
        adv[:, t] = next_adv
        next_value = v[:, t]  # masked positions have v = 0, which makes the last real token terminal
    return adv, (adv + v) * m
