"""DeepSeekMoE: fine-grained routed experts, always-on shared experts, the V3 router and load balancing. (Chapter 6.)

The pieces, in the order chapter 6 builds them:

- `RoutedExperts`: `E` small SwiGLU experts stored as two 3-D tensors, laid out exactly as transformers 5.x
  stores DeepSeek-V3's routed experts (`gate_up_proj` (E, 2I, C), `down_proj` (E, C, I)), so checkpoints map
  one to one. Tokens are dispatched by *sorting* them by expert (one `argsort`, contiguous slices, one
  `index_add_` back), not by a Python loop over tokens.
- `Router`: DeepSeek-V3's gate (sigmoid affinities; a per-expert bias `e_score_correction_bias` that only
  *chooses* experts; group-limited top-k over `n_group` groups keeping `topk_group`; normalized top-k weights
  times `routed_scaling_factor`), or DeepSeek-V2's softmax gate as an option.
- `MoE`: routed experts + shared experts; after each forward it exposes `aux_loss` (or None) and
  `last_counts` (tokens per expert of that batch).
- Balancing: `load_balance_loss` (Switch-style batch-wise, or DeepSeek-V3's sequence-wise), `max_violation`
  (MaxVio) and the auxiliary-loss-free bias update `update_router_bias` / `BiasUpdateHook` (a training
  `on_step` hook).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from nanoseek import validate as V
from nanoseek.nn.mlp import SwiGLU

SCORING_FUNCS = ("sigmoid", "softmax")
AUX_LOSSES = ("none", "switch", "seq")
DISPATCHES = ("sorted", "loop", "grouped")


@dataclass
class MoEConfig:
    """Sizes and routing of one DeepSeekMoE layer. Field names follow transformers' `DeepseekV3Config`.

    dim: model width C. n_routed_experts: E. num_experts_per_tok: K (routed experts per token).
    moe_intermediate_size: I, the hidden width of one routed expert. n_shared_experts: shared experts, each of
    width I (stored as one SwiGLU of width n_shared_experts * I, as transformers does).
    n_group / topk_group: experts are split into n_group groups; a token may only pick experts from its
    topk_group best groups (DeepSeek-V3: 8 groups, 4 kept, so at most 4 nodes per token).
    scoring_func: "sigmoid" (V3) or "softmax" (V2). norm_topk_prob: divide the K weights by their sum.
    routed_scaling_factor: multiplies the routed output (V3: 2.5).
    aux_loss: "none", "switch" (batch-wise f·P loss) or "seq" (DeepSeek-V3's sequence-wise loss), weighted by
    aux_loss_alpha. bias_update_speed: gamma of the auxiliary-loss-free bias update (0 turns it off).
    dispatch: "sorted" (argsort + contiguous slices), "loop" (a boolean mask per expert, as transformers'
    eager path) or "grouped" (argsort + one `grouped_mm`, where this torch has it).
    """

    dim: int
    n_routed_experts: int = 8
    num_experts_per_tok: int = 2
    moe_intermediate_size: int = 64
    n_shared_experts: int = 1
    n_group: int = 1
    topk_group: int = 1
    scoring_func: str = "sigmoid"
    norm_topk_prob: bool = True
    routed_scaling_factor: float = 1.0
    aux_loss: str = "none"
    aux_loss_alpha: float = 0.0
    bias_update_speed: float = 0.0
    dispatch: str = "sorted"

    def __post_init__(self) -> None:
        def positive(name: str, minimum: int = 1) -> None:
            setattr(self, name, V.integer(getattr(self, name), name, "MoEConfig", minimum=minimum))

        for name in ("dim", "n_routed_experts", "num_experts_per_tok", "moe_intermediate_size", "n_group",
                     "topk_group"):
            positive(name)
        positive("n_shared_experts", 0)
        E, K = self.n_routed_experts, self.num_experts_per_tok
        if K > E:
            raise ValueError(f"MoEConfig.num_experts_per_tok={K} exceeds n_routed_experts={E}")
        if E % self.n_group != 0:
            raise ValueError(f"MoEConfig.n_routed_experts={E} is not divisible by n_group={self.n_group}")
        if self.topk_group > self.n_group:
            raise ValueError(f"MoEConfig.topk_group={self.topk_group} exceeds n_group={self.n_group}")
        if K > self.topk_group * (E // self.n_group):
            raise ValueError(
                f"MoEConfig.num_experts_per_tok={K} exceeds the {self.topk_group * (E // self.n_group)} experts "
                f"that topk_group={self.topk_group} groups of {E // self.n_group} hold"
            )
        V.choice(self.scoring_func, "scoring_func", SCORING_FUNCS, "MoEConfig")
        V.choice(self.aux_loss, "aux_loss", AUX_LOSSES, "MoEConfig")
        V.choice(self.dispatch, "dispatch", DISPATCHES, "MoEConfig")
        for name in ("aux_loss_alpha", "bias_update_speed"):
            V.number(getattr(self, name), name, "MoEConfig", minimum=0)
        V.positive(self.routed_scaling_factor, "routed_scaling_factor", "MoEConfig")
        V.flag(self.norm_topk_prob, "norm_topk_prob", "MoEConfig")

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------------------------------------
# Parameter counts (chapter 6 compares designs by them)


def moe_param_counts(cfg: MoEConfig) -> dict[str, int]:
    """Parameters of one MoE layer: `total` stored, `active` used per token (router included in both)."""
    per_expert = 3 * cfg.dim * cfg.moe_intermediate_size  # gate, up, down of one SwiGLU expert
    router = cfg.n_routed_experts * cfg.dim
    shared = cfg.n_shared_experts * per_expert
    return {
        "total": cfg.n_routed_experts * per_expert + shared + router,
        "active": cfg.num_experts_per_tok * per_expert + shared + router,
    }


# ----------------------------------------------------------------------------------------------------------
# Routing


def route(
    logits: torch.Tensor,
    k: int,
    *,
    bias: torch.Tensor | None = None,
    n_group: int = 1,
    topk_group: int = 1,
    scoring_func: str = "sigmoid",
    norm_topk_prob: bool = True,
    routed_scaling_factor: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Choose K experts per token and their weights from router logits (N, E).

    Returns `(weights (N, K), indices (N, K), scores (N, E))`, scores being the affinities (sigmoid or
    softmax of the logits) before any bias. The bias only changes which experts are *chosen*; the weights
    are gathered from the unbiased scores. With n_group > 1 a token first keeps its `topk_group` best groups
    (a group scored by the sum of its two best biased scores under sigmoid as in V3, by its best score
    under softmax as V2's `group_limited_greedy`), then picks its K experts inside them.
    """
    if scoring_func not in SCORING_FUNCS:
        raise ValueError(f"scoring_func={scoring_func!r}; expected one of {SCORING_FUNCS}")
    N, E = logits.shape
    logits = logits.float()
    scores = logits.sigmoid() if scoring_func == "sigmoid" else logits.softmax(dim=-1)  # (N, E)
    choice = scores if bias is None else scores + bias.float()  # (N, E) used only to choose
    if n_group > 1:
        grouped = choice.view(N, n_group, E // n_group)  # (N, G, E/G)
        if scoring_func == "sigmoid":
            group_scores = grouped.topk(min(2, E // n_group), dim=-1).values.sum(dim=-1)  # (N, G)
        else:
            group_scores = grouped.amax(dim=-1)  # (N, G)
        keep = group_scores.topk(topk_group, dim=-1).indices  # (N, topk_group)
        group_mask = torch.zeros_like(group_scores, dtype=torch.bool).scatter_(1, keep, True)  # (N, G)
        expert_mask = group_mask.repeat_interleave(E // n_group, dim=1)  # (N, E)
        choice = choice.masked_fill(~expert_mask, float("-inf"))
    indices = choice.topk(k, dim=-1).indices  # (N, K)
    weights = scores.gather(1, indices)  # (N, K) from the unbiased scores
    if norm_topk_prob:
        weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
    return weights * routed_scaling_factor, indices, scores


class Router(nn.Module):
    """The gate: a (E, C) weight (kept in float32), and the `e_score_correction_bias` buffer of loss-free
    balancing. Names and shapes match transformers' `DeepseekV3TopkRouter`."""

    def __init__(self, cfg: MoEConfig):
        super().__init__()
        self.cfg = cfg
        self.weight = nn.Parameter(torch.empty(cfg.n_routed_experts, cfg.dim))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Linear's default
        self.register_buffer("e_score_correction_bias", torch.zeros(cfg.n_routed_experts))

    def _apply(self, fn, recurse=True):
        """Moves follow the model, but dtype casts do not: the router stays float32 (as transformers keeps it),
        so that small bias steps are not rounded away in bf16."""
        super()._apply(fn, recurse)
        if self.weight.is_floating_point() and self.weight.dtype != torch.float32:
            self.weight.data = self.weight.data.float()
        if self.e_score_correction_bias.dtype != torch.float32:
            self.e_score_correction_bias = self.e_score_correction_bias.float()
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # x (N, C)
        c = self.cfg
        logits = F.linear(x.float(), self.weight.float())  # (N, E)
        return route(
            logits,
            c.num_experts_per_tok,
            bias=self.e_score_correction_bias,
            n_group=c.n_group,
            topk_group=c.topk_group,
            scoring_func=c.scoring_func,
            norm_topk_prob=c.norm_topk_prob,
            routed_scaling_factor=c.routed_scaling_factor,
        )


# ----------------------------------------------------------------------------------------------------------
# Experts and dispatch


def expert_counts(indices: torch.Tensor, n_experts: int) -> torch.Tensor:
    """(E,) int64 number of (token, slot) pairs routed to each expert, from indices (N, K).

    The same as `torch.bincount(indices.flatten(), minlength=E)`, without its host sync: on a GPU bincount
    reads the largest index back to the CPU to size its output, which stalls the launch queue once per call
    (chapter 6's `full` training was bound by such stalls and by kernel launches)."""
    flat = indices.reshape(-1)
    return torch.zeros(n_experts, dtype=torch.long, device=indices.device).scatter_add_(
        0, flat, torch.ones_like(flat, dtype=torch.long))


def _grouped_mm():
    fn = getattr(F, "grouped_mm", None) or getattr(torch, "_grouped_mm", None)
    if fn is None:
        raise RuntimeError(f"dispatch='grouped' needs torch.nn.functional.grouped_mm; torch {torch.__version__} has none")
    return fn


class RoutedExperts(nn.Module):
    """E SwiGLU experts in two 3-D tensors: expert e computes `down[e] @ (silu(g) * u)` with
    `g, u = (gate_up[e] @ x).chunk(2)`, the same function as `SwiGLU` with gate_proj = gate_up[e][:I],
    up_proj = gate_up[e][I:], down_proj = down[e]."""

    def __init__(self, n_experts: int, dim: int, hidden_dim: int, dispatch: str = "sorted"):
        super().__init__()
        if dispatch not in DISPATCHES:
            raise ValueError(f"dispatch={dispatch!r}; expected one of {DISPATCHES}")
        self.n_experts, self.dim, self.hidden_dim, self.dispatch = n_experts, dim, hidden_dim, dispatch
        self.gate_up_proj = nn.Parameter(torch.empty(n_experts, 2 * hidden_dim, dim))  # (E, 2I, C)
        self.down_proj = nn.Parameter(torch.empty(n_experts, dim, hidden_dim))  # (E, C, I)
        bound_in, bound_hidden = 1 / math.sqrt(dim), 1 / math.sqrt(hidden_dim)  # nn.Linear's default range
        nn.init.uniform_(self.gate_up_proj, -bound_in, bound_in)
        nn.init.uniform_(self.down_proj, -bound_hidden, bound_hidden)

    def expert(self, e: int) -> SwiGLU:
        """Expert `e` as a stand-alone `SwiGLU` (a copy of its weights), for inspection and teaching."""
        if not 0 <= e < self.n_experts:
            raise KeyError(f"expert index e={e} outside 0..{self.n_experts - 1}")
        I = self.hidden_dim
        mlp = SwiGLU(self.dim, I).to(self.gate_up_proj.device, self.gate_up_proj.dtype)
        with torch.no_grad():
            mlp.gate_proj.weight.copy_(self.gate_up_proj[e, :I])
            mlp.up_proj.weight.copy_(self.gate_up_proj[e, I:])
            mlp.down_proj.weight.copy_(self.down_proj[e])
        return mlp

    def _ffn(self, x: torch.Tensor, e: int) -> torch.Tensor:  # x (n, C) -> (n, C) through expert e
        gate, up = F.linear(x, self.gate_up_proj[e]).chunk(2, dim=-1)  # (n, I) each
        return F.linear(F.silu(gate) * up, self.down_proj[e])

    def forward(self, x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor,
                counts: torch.Tensor | None = None) -> torch.Tensor:
        """x (N, C), indices (N, K) expert ids, weights (N, K) -> (N, C) = Σ_k weights[:, k] · expert_k(x).
        `counts` (E,): tokens per expert, when the caller has them already (`expert_counts(indices, E)`)."""
        N, K = indices.shape
        out = torch.zeros_like(x)  # (N, C)
        weights = weights.to(x.dtype)
        if self.dispatch == "loop":  # the baseline: every expert scans the whole (N, K) assignment
            for e in range(self.n_experts):
                token, slot = torch.where(indices == e)  # (n_e,), (n_e,)
                if token.numel() == 0:
                    continue
                y = self._ffn(x[token], e) * weights[token, slot, None]  # (n_e, C)
                out.index_add_(0, token, y)
            return out
        flat = indices.reshape(-1)  # (N*K,) expert of each (token, slot) pair
        order = flat.argsort(stable=True)  # (N*K,) pairs grouped by expert
        token = order // K  # (N*K,) token of each sorted pair
        xs = x[token]  # (N*K, C) tokens, contiguous per expert
        if counts is None:
            counts = expert_counts(indices, self.n_experts)  # (E,)
        if self.dispatch == "grouped":
            offs = counts.cumsum(0).to(torch.int32)  # (E,) end offset of each expert's rows
            gu = _grouped_mm()(xs, self.gate_up_proj.transpose(-2, -1), offs=offs)  # (N*K, 2I)
            gate, up = gu.chunk(2, dim=-1)
            ys = _grouped_mm()((F.silu(gate) * up).contiguous(), self.down_proj.transpose(-2, -1), offs=offs)
        else:  # "sorted": one matmul per expert on a contiguous slice
            chunks = xs.split(counts.tolist())  # E views
            ys = torch.cat([self._ffn(c, e) if c.shape[0] else c for e, c in enumerate(chunks)])  # (N*K, C)
        ys = ys * weights.reshape(-1)[order, None]  # (N*K, C) scaled by each pair's gate weight
        return out.index_add_(0, token, ys)


# ----------------------------------------------------------------------------------------------------------
# Balancing


def load_balance_loss(
    scores: torch.Tensor, indices: torch.Tensor, n_experts: int, *, per_sequence: bool = False, batch: int = 1
) -> torch.Tensor:
    """Σ_i f_i · P_i over experts (multiply by alpha yourself), as Switch (batch-wise) or DeepSeek-V3 (per sequence).

    scores (N, E) affinities, indices (N, K) chosen experts, N = batch * T tokens in sequence order.
    f_i = E / (K T) · #{tokens choosing i}: 1 for every expert under perfect balance.
    P_i = mean over tokens of s'_i, the scores normalized to sum to 1 per token (a no-op for softmax).
    With `per_sequence`, f and P are computed within each of the `batch` sequences and the loss averaged,
    which is DeepSeek-V3's complementary sequence-wise loss; otherwise over all N tokens (Switch-style).
    Its minimum, when routing is uniform, is 1 (Switch's form with E·Σ f_i P_i and f summing to 1).
    """
    N, K = indices.shape
    groups = batch if per_sequence else 1
    if N % groups != 0:
        raise ValueError(f"{N} tokens do not split into batch={batch} sequences")
    T = N // groups
    probs = scores.float() / scores.float().sum(dim=-1, keepdim=True)  # (N, E) rows sum to 1
    P = probs.view(groups, T, n_experts).mean(dim=1)  # (G, E)
    counts = torch.zeros(groups, n_experts, device=scores.device)
    counts.scatter_add_(1, indices.view(groups, T * K), torch.ones(groups, T * K, device=scores.device))
    f = counts * n_experts / (K * T)  # (G, E), no gradient: counting is not differentiable
    return (f * P).sum(dim=-1).mean()


def max_violation(counts: torch.Tensor) -> float:
    """MaxVio = (max load − mean load) / mean load, over the per-expert token counts (..., E) of a batch.

    0 means perfect balance; 1 means the busiest expert has twice the mean. Leading dims are summed first.
    """
    load = counts.reshape(-1, counts.shape[-1]).sum(0).float()  # (E,)
    mean = load.mean()
    if mean <= 0:
        raise ValueError("max_violation needs at least one routed token; got all-zero counts")
    return float((load.max() - mean) / mean)


def bias_update(bias: torch.Tensor, counts: torch.Tensor, gamma: float) -> torch.Tensor:
    """One auxiliary-loss-free step: b_i + γ · sign(mean load − load_i). Overloaded experts go down."""
    load = counts.float()
    return bias + gamma * torch.sign(load.mean() - load)


# ----------------------------------------------------------------------------------------------------------
# The layer


class MoE(nn.Module):
    """DeepSeekMoE: y = Σ_{i in top-K} g_i · expert_i(x) + Σ_shared expert_s(x).

    forward(x (B, T, C)) -> (B, T, C). After a forward: `aux_loss` (scalar tensor when training with an
    aux loss, else None), `last_counts` (E,) tokens routed to each expert in that batch, and (training only)
    `load_accum` (E,) counts summed since the last bias update.
    Submodule names match transformers' `DeepseekV3MoE`: `gate`, `experts`, `shared_experts`.
    """

    def __init__(self, cfg: MoEConfig):
        super().__init__()
        if not isinstance(cfg, MoEConfig):
            raise TypeError(f"MoE needs a MoEConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.gate = Router(cfg)
        self.experts = RoutedExperts(cfg.n_routed_experts, cfg.dim, cfg.moe_intermediate_size, cfg.dispatch)
        self.shared_experts = (
            SwiGLU(cfg.dim, cfg.n_shared_experts * cfg.moe_intermediate_size) if cfg.n_shared_experts else None
        )
        # int64: token counts must stay exact when the model is cast to bf16 (integer buffers are never cast)
        self.register_buffer("load_accum", torch.zeros(cfg.n_routed_experts, dtype=torch.long), persistent=False)
        self.aux_loss: torch.Tensor | None = None
        self.last_counts: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, T, C)
        if x.dim() != 3 or x.shape[-1] != self.cfg.dim:
            raise ValueError(f"MoE expects (B, T, {self.cfg.dim}), got shape {tuple(x.shape)}")
        B, T, C = x.shape
        xf = x.reshape(B * T, C)  # (N, C)
        weights, indices, scores = self.gate(xf)  # (N, K), (N, K), (N, E)
        counts = expert_counts(indices, self.cfg.n_routed_experts)  # (E,), no host sync
        y = self.experts(xf, indices, weights, counts)  # (N, C)
        if self.shared_experts is not None:
            y = y + self.shared_experts(xf)
        self.last_counts = counts.detach()
        if self.training:
            self.load_accum += counts
        self.aux_loss = None
        if self.training and self.cfg.aux_loss != "none" and self.cfg.aux_loss_alpha > 0:
            self.aux_loss = self.cfg.aux_loss_alpha * load_balance_loss(
                scores, indices, self.cfg.n_routed_experts, per_sequence=self.cfg.aux_loss == "seq", batch=B
            )
        return y.view(B, T, C)


def moe_layers(model: nn.Module) -> Iterator[MoE]:
    """Every `MoE` inside a model, in module order."""
    return (m for m in model.modules() if isinstance(m, MoE))


@torch.no_grad()
def update_router_bias(model: nn.Module, gamma: float | None = None) -> list[float]:
    """Apply the loss-free bias update to every MoE layer from the load accumulated since the last call.

    gamma defaults to each layer's `cfg.bias_update_speed`. Returns each layer's MaxVio over that load (the
    layers with no routed tokens since the last call are skipped). Resets the accumulators.
    All layers are updated on the device and read back once (one host sync a step, not two per layer).
    """
    layers = list(moe_layers(model))
    if not layers:
        return []
    loads = [m.load_accum.float() for m in layers]  # (E,) each
    for m, load in zip(layers, loads):
        g = m.cfg.bias_update_speed if gamma is None else gamma
        if g > 0:  # a layer with no tokens has load == mean == 0: sign(0) = 0 leaves its bias alone
            bias = m.gate.e_score_correction_bias
            bias.copy_(bias_update(bias, load, g))
        m.load_accum.zero_()
    stats = torch.stack([torch.stack([load.sum(), load.max(), load.mean()]) for load in loads]).tolist()
    return [(mx - mean) / mean for total, mx, mean in stats if total > 0]


class BiasUpdateHook:
    """A training `on_step(step, model, metrics)` hook: updates the router biases (when gamma > 0) and records
    MaxVio per layer of the training batches in `history` as (step, [maxvio per MoE layer]).

    Use it with gamma=0 to only measure MaxVio (for runs without loss-free balancing).
    """

    def __init__(self, gamma: float | None = None):
        if gamma is not None and (not math.isfinite(gamma) or gamma < 0):
            raise ValueError(f"BiasUpdateHook gamma must be >= 0, got gamma={gamma!r}")
        self.gamma = gamma
        self.history: list[tuple[int, list[float]]] = []

    def __call__(self, step: int, model: nn.Module, metrics: dict | None = None) -> None:
        vios = update_router_bias(model, self.gamma)
        if vios:
            self.history.append((step, vios))
            if isinstance(metrics, dict):
                metrics["maxvio"] = max(vios)


def count_params(model: nn.Module) -> dict[str, int]:
    """`total` parameters stored (shared tensors counted once) and `active` per token: the total minus the
    routed experts a token does not use ((E − K) experts in every MoE layer). Works on the meta device."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    idle = 0
    for m in moe_layers(model):
        per_expert = m.experts.gate_up_proj[0].numel() + m.experts.down_proj[0].numel()
        idle += (m.cfg.n_routed_experts - m.cfg.num_experts_per_tok) * per_expert
    return {"total": total, "active": total - idle}


@torch.no_grad()
def expert_load(model: nn.Module, batches) -> torch.Tensor:
    """(L, E) tokens routed to each expert of each MoE layer over `batches` (token-id tensors (B, T)), in eval
    mode; MaxVio over a whole data set (the papers' MaxVio_global) is `max_violation` of a row of it."""
    was_training = model.training
    model.eval()
    layers = list(moe_layers(model))
    if not layers:
        raise ValueError(f"{type(model).__name__} has no MoE layer")
    total = torch.zeros(len(layers), layers[0].cfg.n_routed_experts)
    dev = next(model.parameters()).device
    for idx in batches:
        model(idx.to(dev))
        total += torch.stack([m.last_counts.float().cpu() for m in layers])
    model.train(was_training)
    return total
