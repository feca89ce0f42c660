"""PPO's extra parts: a critic (value model) and the per-token KL-shaped reward. (Chapter 10.)

In the InstructGPT / MOSS-RLHF recipe the critic is a second network as large as the policy, initialised
from it, with the vocabulary head replaced by a scalar head: V(q, o_<t) estimates the return from token t.
That second model is what GRPO removes: it doubles the parameters, the optimiser state and the forward and
backward passes, and at LLM scale it is hard to train because only the last token gets a reward.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class ValueModel(nn.Module):
    """A critic built from a copy of a policy whose `lm_head` (C -> V) becomes a scalar head (C -> 1).

    forward(idx (B, T)) -> values (B, T): V at each position, the value of the state ending with idx[:, t].
    """

    def __init__(self, policy: nn.Module):
        super().__init__()
        head = getattr(policy, "lm_head", None)
        if not isinstance(head, nn.Linear):
            raise TypeError(f"ValueModel needs a policy with an nn.Linear `lm_head`, got {type(head).__name__}")
        self.body = copy.deepcopy(policy)
        self.body.lm_head = nn.Linear(head.in_features, 1, bias=True)
        nn.init.zeros_(self.body.lm_head.weight)
        nn.init.zeros_(self.body.lm_head.bias)
        self.body.lm_head.to(device=head.weight.device, dtype=head.weight.dtype)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        out = self.body(idx)
        out = out[0] if isinstance(out, tuple) else out
        return out[..., 0].float()  # (B, T, 1) -> (B, T)


def response_values(critic: ValueModel, prompt: torch.Tensor, response: torch.Tensor) -> torch.Tensor:
    """V(q, o_<t) for each response token t, (B, T): the critic's output at the position that predicts o_t."""
    P = prompt.shape[1]
    idx = torch.cat([prompt, response], dim=1)[:, :-1]
    return critic(idx)[:, P - 1:]


def kl_shaped_rewards(outcome: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor,
                      kl_coef: float) -> torch.Tensor:
    """Per-token rewards (B, T) of RLHF-style PPO: -kl_coef * (log pi - log pi_ref) at every response token
    (the k1 KL estimate as a penalty), plus the outcome reward (B,) at the last real token."""
    m = mask.float()
    rewards = -kl_coef * (logp - ref_logp) * m
    last = (m.sum(1).long() - 1).clamp(min=0)  # index of the last real token (mask is a prefix)
    rewards[torch.arange(len(last)), last] += outcome.float() * (m.sum(1) > 0)
    return rewards
