"""One RL loop for GRPO, REINFORCE and PPO on rule-rewarded tasks. (Chapter 10.)

Each step: draw `prompts_per_step` prompts, sample `group_size` responses to each (`rollout`), score them
with a rule reward, compute advantages (group baseline, or GAE with a critic for PPO), then take
`inner_epochs` passes of gradient steps on that batch (DeepSeekMath's mu; ratios start at 1 and the clip keeps
the policy near the one that sampled). The algorithms share everything but the advantage and the loss:

| algo        | advantage                          | loss                              | inner epochs |
| ----------- | ---------------------------------- | --------------------------------- | ------------ |
| `grpo`      | (r - mean_group) / (std_group+eps) | clipped ratio + beta * k3 KL      | `inner_epochs` |
| `reinforce` | r - mean_group                     | -A log pi                         | 1            |
| `ppo`       | GAE over KL-shaped token rewards   | clipped ratio, and a critic's loss | `inner_epochs` |
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import torch

from nanoseek import validate as V
from nanoseek.rl.advantages import gae, group_advantages
from nanoseek.rl.losses import AGGREGATIONS, grpo_loss, masked_mean, reinforce_loss, value_loss
from nanoseek.rl.ppo import ValueModel, kl_shaped_rewards, response_values
from nanoseek.rl.rollout import Rollout, rollout, sequence_logprobs

ALGOS = ("grpo", "reinforce", "ppo")


@dataclass
class RLConfig:
    """Settings of `train_rl`. Defaults are DeepSeekMath's GRPO where it states them (beta 0.04, eps 0.2)."""

    algo: str = "grpo"
    steps: int = 50
    prompts_per_step: int = 16
    group_size: int = 8
    max_new_tokens: int = 32
    temperature: float = 1.0
    lr: float = 1e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    inner_epochs: int = 2
    minibatches: int = 1
    clip_low: float = 0.2
    clip_high: float = 0.2  # DAPO's clip-higher: 0.28
    beta: float = 0.04
    agg: str = "seq"  # "seq" (GRPO), "token" (DAPO), "constant" (Dr. GRPO)
    normalize_by_std: bool = True  # False: Dr. GRPO
    eps: float = 1e-6
    gamma: float = 1.0  # PPO
    lam: float = 0.95  # PPO
    critic_lr: float = 1e-3  # PPO
    value_clip: float | None = 0.2  # PPO
    eval_every: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        V.choice(self.algo, "algo", ALGOS, "RLConfig")
        V.choice(self.agg, "agg", AGGREGATIONS, "RLConfig")
        for name in ("steps", "prompts_per_step", "group_size", "max_new_tokens", "inner_epochs", "minibatches",
                     "eval_every", "seed"):
            minimum = 0 if name in ("steps", "eval_every", "seed") else 1  # eval_every=0: no evaluation
            setattr(self, name, V.integer(getattr(self, name), name, "RLConfig", minimum=minimum))
        for name in ("lr", "critic_lr", "eps"):
            V.positive(getattr(self, name), name, "RLConfig")
        for name in ("temperature", "weight_decay", "grad_clip", "clip_low", "clip_high", "beta"):
            V.number(getattr(self, name), name, "RLConfig", minimum=0)
        for name in ("gamma", "lam"):
            V.probability(getattr(self, name), name, "RLConfig")
        V.number(self.value_clip, "value_clip", "RLConfig", minimum=0, optional=True)
        V.flag(self.normalize_by_std, "normalize_by_std", "RLConfig")
        if self.algo == "grpo" and self.group_size < 2:
            raise ValueError(f"group_size={self.group_size} must be >= 2 for a group baseline")


@dataclass
class Task:
    """What the loop needs to know about a task and a tokenizer."""

    train_rows: Callable[[int, int], list[dict]]  # (n, seed) -> rows
    prompt_fn: Callable[[dict], str]
    reward_fn: Callable[[str, dict], float]
    accuracy_fn: Callable[[str, dict], float]
    encode: Callable[[str], list[int]]
    decode: Callable[[list[int]], str]
    eos_id: int
    pad_id: int


@dataclass
class History:
    """Per-step metrics (lists aligned with `step`) and held-out evaluations (aligned with `eval_step`)."""

    step: list[int] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    eval_step: list[int] = field(default_factory=list)
    eval: dict[str, list[float]] = field(default_factory=dict)

    def log(self, step: int, **values: float) -> None:
        self.step.append(step)
        for k, v in values.items():
            self.metrics.setdefault(k, []).append(float(v))

    def log_eval(self, step: int, **values: float) -> None:
        self.eval_step.append(step)
        for k, v in values.items():
            self.eval.setdefault(k, []).append(float(v))


@torch.no_grad()
def evaluate(model: torch.nn.Module, rows: Sequence[dict], task: Task, max_new_tokens: int,
             temperature: float = 0.0, samples: int = 1, seed: int = 0, batch_size: int = 256) -> dict[str, float]:
    """Held-out accuracy, format rate, reward and mean response length (greedy when temperature is 0)."""
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    acc, rew, lengths = [], [], []
    for i in range(0, len(rows), batch_size):
        for ro in rollout(model, rows[i:i + batch_size], task.prompt_fn, task.encode, task.decode, samples,
                          max_new_tokens, task.eos_id, task.pad_id, None, temperature, None, gen):
            acc += [task.accuracy_fn(t, r) for t, r in zip(ro.texts, ro.rows)]
            rew += [task.reward_fn(t, r) for t, r in zip(ro.texts, ro.rows)]
            lengths += ro.lengths.tolist()
    n = max(len(acc), 1)
    return {"accuracy": sum(acc) / n, "reward": sum(rew) / n, "length": sum(lengths) / n}


def _advantages(cfg: RLConfig, ro: Rollout) -> torch.Tensor:
    if cfg.algo == "grpo":
        return group_advantages(ro.rewards, cfg.group_size, cfg.normalize_by_std, cfg.eps)
    return group_advantages(ro.rewards, cfg.group_size, normalize_by_std=False)  # REINFORCE baseline


def train_rl(policy: torch.nn.Module, task: Task, cfg: RLConfig, eval_rows: Sequence[dict] = (),
             reference: torch.nn.Module | None = None, progress: bool = True,
             on_step: Callable[[int, torch.nn.Module, dict], None] | None = None) -> History:
    """Train `policy` in place with `cfg.algo` and return the `History` of metrics and held-out evaluations."""
    from tqdm.auto import tqdm

    dev = next(policy.parameters()).device
    gen = torch.Generator(device=dev).manual_seed(cfg.seed)
    ref = reference
    if ref is None and (cfg.beta != 0.0 or cfg.algo == "ppo"):
        ref = copy.deepcopy(policy)
    if ref is not None:
        ref.eval().requires_grad_(False)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    critic = critic_opt = None
    if cfg.algo == "ppo":
        critic = ValueModel(policy).to(dev)
        critic_opt = torch.optim.AdamW(critic.parameters(), lr=cfg.critic_lr, weight_decay=0.0)
    hist = History()

    def run_eval(step: int) -> None:
        if eval_rows:
            hist.log_eval(step, **evaluate(policy, list(eval_rows), task, cfg.max_new_tokens, seed=cfg.seed))

    run_eval(0)
    bar = tqdm(range(1, cfg.steps + 1), desc=cfg.algo, disable=not progress)
    for step in bar:
        t0 = time.perf_counter()
        rows = task.train_rows(cfg.prompts_per_step, cfg.seed * 100_003 + step)
        batches = rollout(policy, rows, task.prompt_fn, task.encode, task.decode, cfg.group_size,
                          cfg.max_new_tokens, task.eos_id, task.pad_id, task.reward_fn, cfg.temperature,
                          None, gen)
        t_rollout = time.perf_counter() - t0
        # Fixed quantities of this batch: old and reference log-probs, advantages (and values for PPO),
        # computed in the same minibatches as the updates (full-vocabulary logits of a whole batch can be
        # larger than the model).
        for ro in batches:
            chunks = list(torch.arange(ro.response.shape[0], device=dev).chunk(cfg.minibatches))
            with torch.no_grad():
                ro.extras["old_logp"] = torch.cat([sequence_logprobs(policy, ro.prompt[c], ro.response[c],
                                                                     cfg.temperature) for c in chunks])
                ro.extras["ref_logp"] = (torch.cat([sequence_logprobs(ref, ro.prompt[c], ro.response[c],
                                                                      cfg.temperature) for c in chunks])
                                         if ref is not None else None)
                if cfg.algo == "ppo":
                    values = torch.cat([response_values(critic, ro.prompt[c], ro.response[c]) for c in chunks])
                    tok_rewards = kl_shaped_rewards(ro.rewards.to(dev), ro.extras["old_logp"],
                                                    ro.extras["ref_logp"], ro.mask, cfg.beta)
                    adv, returns = gae(tok_rewards, values, ro.mask, cfg.gamma, cfg.lam)
                    mu = masked_mean(adv, ro.mask)
                    sd = masked_mean((adv - mu) ** 2, ro.mask).sqrt()
                    ro.extras.update(adv=(adv - mu) / (sd + 1e-8) * ro.mask, returns=returns, values=values)
                else:
                    ro.extras["adv"] = _advantages(cfg, ro).to(dev)
        stats: dict[str, list[float]] = {}
        epochs = 1 if cfg.algo == "reinforce" else cfg.inner_epochs
        policy.train()
        for _ in range(epochs):
            for ro in batches:
                for idx in torch.arange(ro.response.shape[0], device=dev).chunk(cfg.minibatches):
                    prompt, response, mask = ro.prompt[idx], ro.response[idx], ro.mask[idx]
                    logp = sequence_logprobs(policy, prompt, response, cfg.temperature)
                    adv = ro.extras["adv"][idx]
                    if cfg.algo == "reinforce":
                        loss, st = reinforce_loss(logp, adv, mask, cfg.agg, cfg.max_new_tokens)
                    else:
                        ref_logp = ro.extras["ref_logp"][idx] if ro.extras["ref_logp"] is not None else None
                        beta = 0.0 if cfg.algo == "ppo" else cfg.beta  # PPO puts the KL in the reward
                        loss, st = grpo_loss(logp, ro.extras["old_logp"][idx], ref_logp, adv, mask,
                                             cfg.clip_low, cfg.clip_high, beta, cfg.agg, cfg.max_new_tokens)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
                    opt.step()
                    st["loss"] = float(loss.detach())
                    if critic is not None:
                        v = response_values(critic, prompt, response)
                        vloss, vst = value_loss(v, ro.extras["values"][idx], ro.extras["returns"][idx], mask,
                                                cfg.value_clip)
                        critic_opt.zero_grad(set_to_none=True)
                        vloss.backward()
                        torch.nn.utils.clip_grad_norm_(critic.parameters(), cfg.grad_clip)
                        critic_opt.step()
                        st.update(vst)
                    for k, v in st.items():
                        stats.setdefault(k, []).append(v)
        rewards = torch.cat([ro.rewards for ro in batches])
        accs = [task.accuracy_fn(t, r) for ro in batches for t, r in zip(ro.texts, ro.rows)]
        lengths = torch.cat([ro.lengths for ro in batches])
        # fraction of groups whose rewards are all equal: they give zero advantage (no signal) in GRPO
        flat = rewards.view(-1, cfg.group_size)
        metrics = {"reward": float(rewards.mean()), "accuracy": sum(accs) / len(accs),
                   "length": float(lengths.float().mean()),
                   "zero_adv_groups": float((flat.max(1).values == flat.min(1).values).float().mean()),
                   "time_rollout": t_rollout, "time_step": time.perf_counter() - t0,
                   "tokens": float(lengths.sum())}
        metrics.update({k: sum(v) / len(v) for k, v in stats.items()})
        hist.log(step, **metrics)
        bar.set_postfix(reward=f"{metrics['reward']:.2f}", len=f"{metrics['length']:.1f}")
        if on_step is not None:
            on_step(step, policy, metrics)
        if cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps):
            run_eval(step)
    return hist
