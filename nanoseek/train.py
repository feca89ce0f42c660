"""The one training loop every chapter uses. (Chapter 1.)

AdamW with decoupled weight decay on matrices only, linear warmup then cosine decay, gradient clipping,
periodic evaluation on fixed validation batches, a `tqdm.auto` progress bar with the loss on it, atomic
safetensors checkpoints, and resume that continues a run exactly.

Exact resume rests on one rule: all randomness of step `s` is drawn from generators seeded by
(`seed`, `s`): the batch (`get_batch(split, generator)`) and dropout (`torch.manual_seed`). A resumed run
therefore replays the same steps as an uninterrupted one, given the same weights and optimizer state.
"""
from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from nanoseek import validate as V
from nanoseek.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from nanoseek.env import device as default_device

Batch = tuple[torch.Tensor, ...]
GetBatch = Callable[[str, torch.Generator], Batch]
LossFn = Callable[[nn.Module, Batch], "torch.Tensor | tuple[torch.Tensor, dict[str, float]]"]


@dataclass
class TrainConfig:
    max_steps: int = 1000
    lr: float = 1e-3
    min_lr: float | None = None  # end of the cosine; default lr / 10
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0 disables clipping
    eval_every: int = 100
    eval_batches: int = 20
    ckpt_every: int = 0  # 0: only a final checkpoint (when ckpt_dir is given)
    seed: int = 1337
    device: str | None = None  # None: nanoseek.device()
    precision: str = "auto"  # "auto": bf16 autocast on GPUs with bf16 tensor cores, else fp32; or "fp32", "bf16"
    progress: bool = True

    def __post_init__(self):
        for name in ("max_steps", "eval_every", "eval_batches"):
            setattr(self, name, V.integer(getattr(self, name), name, "TrainConfig", minimum=1))
        for name in ("warmup_steps", "ckpt_every", "seed"):
            setattr(self, name, V.integer(getattr(self, name), name, "TrainConfig", minimum=0))
        V.positive(self.lr, "lr", "TrainConfig")
        for name in ("weight_decay", "grad_clip"):
            V.number(getattr(self, name), name, "TrainConfig", minimum=0)
        for name in ("beta1", "beta2"):
            V.probability(getattr(self, name), name, "TrainConfig", max_open=True)
        V.number(self.min_lr, "min_lr", "TrainConfig", minimum=0, maximum=self.lr, optional=True)
        V.choice(self.precision, "precision", ("auto", "fp32", "bf16"), "TrainConfig")
        V.flag(self.progress, "progress", "TrainConfig")
        if self.device is not None and not isinstance(self.device, str):
            raise ValueError(f"TrainConfig.device must be a str such as 'cpu' or 'cuda', or None, "
                             f"got device={self.device!r}")


def autocast(dev: torch.device, precision: str = "auto"):
    """The mixed-precision context of a training step (nanoGPT's recipe): matmuls in bf16, weights,
    gradients and optimizer state in fp32. "auto" uses it only on GPUs with bf16 tensor cores (compute
    capability 8.0+: A100, L4, H100...); on a CPU or a T4 it stays fp32, so CPU runs are bit-exact."""
    use_bf16 = precision == "bf16" or (
        precision == "auto" and dev.type == "cuda" and torch.cuda.get_device_capability(dev)[0] >= 8)
    if not use_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=dev.type, dtype=torch.bfloat16)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to `lr` over `warmup_steps`, then cosine decay to `min_lr` at `max_steps`."""
    min_lr = cfg.lr / 10 if cfg.min_lr is None else cfg.min_lr
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))) * (cfg.lr - min_lr)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices and embeddings (dim >= 2), none on biases and norm gains."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator that draws step `step`'s batch: a pure function of (seed, step)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def default_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    x, y = batch[0], batch[1]
    _, loss = model(x, y)
    return loss


def _split_loss(out) -> tuple[torch.Tensor, dict[str, float]]:
    if isinstance(out, tuple):
        return out[0], dict(out[1])
    return out, {}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    get_batch: GetBatch,
    n_batches: int = 20,
    *,
    split: str = "val",
    seed: int = 0,
    loss_fn: LossFn = default_loss,
    device: torch.device | str | None = None,
) -> float:
    """Mean loss over `n_batches` fixed batches (the same batches every call, so evaluations compare)."""
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    total = 0.0
    for i in range(n_batches):
        batch = tuple(t.to(dev) for t in get_batch(split, step_generator(seed + 7919, i)))
        total += _split_loss(loss_fn(model, batch))[0].item()
    model.train(was_training)
    return total / n_batches


@dataclass
class TrainResult:
    """What a run measured; `train` returns it and stores it in every checkpoint."""

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    tokens: int = 0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else float("nan")

    @property
    def final_val_loss(self) -> float:
        return self.val_loss[-1]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainResult":
        return cls(**d)

    def plot(self, ax=None, label: str = "", smooth: int = 10):
        """Train loss (smoothed) and validation loss against steps."""
        import matplotlib.pyplot as plt

        ax = ax or plt.gca()
        k = max(1, min(smooth, len(self.train_loss)))
        kernel = torch.ones(k) / k
        smoothed = torch.conv1d(torch.tensor(self.train_loss)[None, None], kernel[None, None]).flatten()
        ax.plot(self.steps[k - 1 :], smoothed.tolist(), alpha=0.6, label=f"{label} train".strip())
        ax.plot(self.eval_steps, self.val_loss, "o-", label=f"{label} val".strip())
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats/token)")
        ax.legend()
        return ax


# TrainConfig fields that decide what a step computes: resuming with other values would not continue the run
# (the batches, the learning rates or the updates would differ from the stored run's), so it is refused.
RESUME_MUST_MATCH = ("seed", "lr", "min_lr", "warmup_steps", "weight_decay", "beta1", "beta2", "grad_clip")


def _resume_state(state: dict, cfg: TrainConfig, ckpt_dir) -> tuple[int, TrainResult]:
    """The step and history to continue from, after checking that `state.json` describes a run that `cfg`
    can continue: ValueError names what is wrong (a step outside 0..max_steps, a history of another length,
    a seed or learning rate that differs from the stored training config)."""
    where = f"checkpoint in {str(ckpt_dir)!r}"
    step = state.get("step")
    if not V.is_int(step) or step < 0:
        raise ValueError(f"{where}: state.json has step={step!r}, not an int >= 0")
    if step > cfg.max_steps:
        raise ValueError(f"{where}: state.json has step={step}, past max_steps={cfg.max_steps}; "
                         f"raise max_steps to continue it or use a new ckpt_dir")
    extra = state.get("extra")
    if not isinstance(extra, dict) or not isinstance(extra.get("result"), dict):
        raise ValueError(f"{where}: state.json has no training history (extra.result); it was not written by train()")
    try:
        result = TrainResult.from_dict(extra["result"])
    except TypeError as err:
        raise ValueError(f"{where}: the training history in state.json is malformed ({err})") from None
    for name in ("steps", "train_loss", "lr", "grad_norm"):
        values = getattr(result, name)
        if not isinstance(values, list) or len(values) != step:
            n = len(values) if isinstance(values, list) else values
            raise ValueError(f"{where}: history {name} has {n} entries for step={step}; state.json is inconsistent")
    if result.steps != list(range(1, step + 1)):
        raise ValueError(f"{where}: history steps are not 1..{step}; state.json is inconsistent")
    if len(result.eval_steps) != len(result.val_loss) or any(not V.is_int(s) or not 0 <= s <= step
                                                             for s in result.eval_steps):
        raise ValueError(f"{where}: history eval_steps/val_loss do not fit step={step}; state.json is inconsistent")
    for key, values in result.metrics.items():
        if not isinstance(values, list) or len(values) > step:
            raise ValueError(f"{where}: history metric {key!r} has more entries than step={step}")
    stored = extra.get("train_config")
    if isinstance(stored, dict):
        for name in RESUME_MUST_MATCH:
            if name in stored and stored[name] != getattr(cfg, name):
                raise ValueError(
                    f"{where}: the run was trained with {name}={stored[name]!r}, this TrainConfig has "
                    f"{name}={getattr(cfg, name)!r}; resuming would not continue that run. Use the stored value "
                    f"or a new ckpt_dir")
        if stored.get("max_steps", cfg.max_steps) != cfg.max_steps:
            warnings.warn(f"resuming a run planned for max_steps={stored['max_steps']} with max_steps="
                          f"{cfg.max_steps}: the cosine schedule changes from step {step} on", stacklevel=3)
    return step, result


def train(
    model: nn.Module,
    get_batch: GetBatch,
    cfg: TrainConfig,
    *,
    loss_fn: LossFn = default_loss,
    on_step: Callable[[int, nn.Module, dict[str, float]], None] | None = None,
    ckpt_dir: str | Path | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train `model` for `cfg.max_steps` steps; return what was measured.

    get_batch(split, generator) -> batch of CPU tensors, all randomness from `generator`.
    loss_fn(model, batch) -> loss or (loss, metrics); metrics are recorded per step.
    on_step(step, model, metrics) runs after each optimizer step (e.g. MoE bias updates).
    With `ckpt_dir`, checkpoints are written every `cfg.ckpt_every` steps and at the end; with
    `resume=True` the run continues from the latest checkpoint there, exactly.
    """
    dev = torch.device(cfg.device) if cfg.device else default_device()
    model.to(dev)
    optimizer = make_optimizer(model, cfg)
    result, start = TrainResult(), 0
    if resume:
        if ckpt_dir is None:
            raise ValueError("resume=True needs a ckpt_dir to resume from")
        if latest_checkpoint(ckpt_dir) is not None:
            state = load_checkpoint(ckpt_dir, model, optimizer)
            start, result = _resume_state(state, cfg, ckpt_dir)

    def checkpoint(step: int) -> None:
        save_checkpoint(
            ckpt_dir, model, step=step, optimizer=optimizer,
            config=getattr(model, "config", None),
            extra={"result": result.to_dict(), "train_config": asdict(cfg)},
        )

    def run_eval(step: int) -> None:
        result.eval_steps.append(step)
        with autocast(dev, cfg.precision):
            result.val_loss.append(evaluate(model, get_batch, cfg.eval_batches, seed=cfg.seed, loss_fn=loss_fn))

    if start == 0:
        run_eval(0)
    model.train()
    bar = tqdm(range(start, cfg.max_steps), initial=start, total=cfg.max_steps, disable=not cfg.progress,
               desc="train", dynamic_ncols=True)
    t0 = time.perf_counter()
    for step in bar:
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = tuple(t.to(dev) for t in get_batch("train", step_generator(cfg.seed, step)))
        torch.manual_seed(cfg.seed + step)  # dropout and any sampling inside the model
        with autocast(dev, cfg.precision):
            loss, metrics = _split_loss(loss_fn(model, batch))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip).item()
        else:
            norm = float("nan")
        optimizer.step()
        if on_step is not None:
            on_step(step, model, metrics)

        result.steps.append(step + 1)
        result.train_loss.append(loss.item())
        result.lr.append(lr)
        result.grad_norm.append(norm)
        for key, value in metrics.items():
            result.metrics.setdefault(key, []).append(float(value))
        result.tokens += batch[0].numel()
        done = step + 1
        if done % cfg.eval_every == 0 or done == cfg.max_steps:
            result.seconds += time.perf_counter() - t0
            run_eval(done)
            t0 = time.perf_counter()
        if cfg.progress:
            # refresh=False: one redraw per step would flood a notebook's output channel (nbval drops messages)
            bar.set_postfix(loss=f"{loss.item():.3f}", val=f"{result.val_loss[-1]:.3f}", lr=f"{lr:.1e}", refresh=False)
        if ckpt_dir is not None and ((cfg.ckpt_every and done % cfg.ckpt_every == 0) or done == cfg.max_steps):
            result.seconds += time.perf_counter() - t0
            checkpoint(done)
            t0 = time.perf_counter()
    result.seconds += time.perf_counter() - t0
    bar.close()
    model.eval()
    return result
