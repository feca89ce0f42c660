"""Chapter 10's task plumbing: R1-style prompts and demonstrations, and `Task` builders. (Chapter 10.)

The tiny experiment warm-starts a small policy by SFT on demonstrations of the answer format
``<think>…</think><answer>…</answer>``. For addition the demonstration thinks column by column, least
significant digit first: ``46+35=`` → ``<think>6+5+0=11,4+3+1=08</think><answer>81</answer>``
(each column: digit + digit + carry-in = two-digit sum). A *sloppy teacher* (`carry=False`) writes the same
trace but always carries 0 and drops the final carry, so its answers are right only when no column
overflows; mixing it into the SFT data gives a policy that starts low but not at zero, which is what RL with
a verifiable reward can fix.
"""
from __future__ import annotations

import random
from typing import Callable

import torch

from minids.reasoning import arithmetic
from nanoseek.rl.rewards import arithmetic_reward, r1_reward
from nanoseek.rl.trainer import Task
from nanoseek.rl.vocab import TaskVocab

ADDITION_ALPHABET = "0123456789+-=,"


def addition_trace(a: int, b: int, carry: bool = True) -> tuple[str, str]:
    """(think, answer) for a + b (a, b >= 0): the column-by-column trace, and the answer it implies.
    With carry=False every carry-in is 0 and the top carry is dropped (the sloppy teacher)."""
    if a < 0 or b < 0:
        raise ValueError(f"addition_trace needs non-negative operands, got a={a}, b={b}")
    da, db = str(a)[::-1], str(b)[::-1]
    c, cols, digits = 0, [], []
    for i in range(max(len(da), len(db))):
        x, y = int(da[i]) if i < len(da) else 0, int(db[i]) if i < len(db) else 0
        s = x + y + c
        cols.append(f"{x}+{y}+{c}={s:02d}")
        digits.append(str(s % 10))
        c = s // 10 if carry else 0
    if c:
        digits.append(str(c))
    answer = "".join(reversed(digits)).lstrip("0") or "0"
    return ",".join(cols), answer


def addition_demo(row: dict, carry: bool = True) -> str:
    """The R1-format response a (careful or sloppy) teacher writes for an addition row."""
    think, answer = addition_trace(row["a"], row["b"], carry)
    return f"<think>{think}</think><answer>{answer}</answer>"


def direct_demo(row: dict) -> str:
    """The R1-format response that answers at once, with an empty think block: ``<think></think><answer>81</answer>``."""
    return f"<think></think><answer>{row['a'] + row['b']}</answer>"


def worked(completion: str) -> bool:
    """The book's rule for "this response shows its work": the think block holds at least one column
    ``x+y+c=s`` (an ``=`` inside ``<think>…</think>``). Text without a complete think block does not count."""
    start, end = completion.find("<think>"), completion.find("</think>")
    return 0 <= start < end and "=" in completion[start:end]


def mixture_examples(rows: list[dict], vocab: TaskVocab, p_trace: float, seed: int = 0,
                     worked_demo: Callable[[dict], str] | None = None,
                     direct: Callable[[dict], str] | None = None) -> tuple[list[list[int]], list[int]]:
    """Warm-up data for the R1-Zero experiment: each row answered directly (empty think block) or, with
    probability `p_trace`, with the careful column-by-column trace. Returns (sequences, prompt lengths).
    Another task passes its own `worked_demo(row)` and `direct(row)` (Knights and Knaves: `nanoseek.rl.knights`)."""
    if not 0.0 <= p_trace <= 1.0:
        raise ValueError(f"p_trace={p_trace!r} must be in [0, 1]")
    worked_demo = worked_demo or (lambda row: addition_demo(row, carry=True))
    direct = direct or direct_demo
    rng = random.Random(seed)
    seqs, prompt_lens = [], []
    for row in rows:
        prompt = vocab.encode(row["prompt"])
        demo = worked_demo(row) if rng.random() < p_trace else direct(row)
        seqs.append(prompt + vocab.encode(demo) + [vocab.eos_id])
        prompt_lens.append(len(prompt))
    return seqs, prompt_lens


def warm_up(model: torch.nn.Module, seqs: list[list[int]], prompt_lens: list[int], pad_id: int, steps: int,
            batch_size: int, lr: float, seed: int = 0, progress: bool = True) -> dict:
    """SFT on demonstrations with the loss on the response tokens only (the prompt is context), with the
    book's one training loop. Returns {"sft_loss": [...]}, the JSON-able info `nanoseek.zoo` caches."""
    from nanoseek.train import TrainConfig, train

    L = max(map(len, seqs))
    X = torch.full((len(seqs), L), pad_id)
    Y = torch.full((len(seqs), L), -100)  # -100: no loss on the prompt and the padding
    for i, (seq, p) in enumerate(zip(seqs, prompt_lens)):
        X[i, :len(seq)] = torch.tensor(seq)
        Y[i, p - 1:len(seq) - 1] = torch.tensor(seq[p:])

    def get_batch(split: str, gen: torch.Generator):
        ix = torch.randint(0, len(seqs), (batch_size,), generator=gen)
        return X[ix], Y[ix]

    result = train(model, get_batch, TrainConfig(max_steps=steps, lr=lr, warmup_steps=20, weight_decay=0.0,
                                                 eval_every=steps, eval_batches=1, seed=seed,
                                                 progress=progress))
    return {"sft_loss": result.train_loss}


@torch.no_grad()
def trace_stats(model: torch.nn.Module, rows: list[dict], task: Task, max_new_tokens: int, samples: int = 4,
                temperature: float = 1.0, seed: int = 0,
                worked_fn: Callable[[str], bool] | None = None,
                rules: dict[str, Callable[[str], bool]] | None = None) -> dict[str, float]:
    """What R1-Zero's plots show, on sampled responses to held-out rows: accuracy, mean length (tokens), the
    share of responses that show their work (`worked`, or another task's rule `worked_fn`), the accuracy of
    worked and of direct responses, and tokens spent per correct answer. Each of `rules` ({name: rule})
    adds ``name + "_share"``, the share of responses for which the rule holds (a re-check, say)."""
    from nanoseek.rl.rollout import rollout

    worked_fn = worked_fn or worked
    rules = rules or {}
    counts = {name: 0 for name in rules}

    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    right = {True: [], False: []}
    lengths = []
    for ro in rollout(model, rows, task.prompt_fn, task.encode, task.decode, samples, max_new_tokens,
                      task.eos_id, task.pad_id, None, temperature, None, gen):
        for text, row, n in zip(ro.texts, ro.rows, ro.lengths.tolist()):
            right[worked_fn(text)].append(task.accuracy_fn(text, row))
            lengths.append(n)
            for name, rule in rules.items():
                counts[name] += bool(rule(text))
    n = len(lengths)
    correct = sum(right[True]) + sum(right[False])
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    return {"accuracy": correct / n, "length": sum(lengths) / n, "worked_share": len(right[True]) / n,
            "acc_worked": mean(right[True]), "acc_direct": mean(right[False]),
            "tokens_per_correct": sum(lengths) / correct if correct else float("inf"),
            "n_worked": float(len(right[True])), "n_direct": float(len(right[False])),
            **{f"{name}_share": c / n for name, c in counts.items()}}


def sft_examples(rows: list[dict], vocab: TaskVocab, p_careful: float, seed: int = 0
                 ) -> tuple[list[list[int]], list[int]]:
    """Token sequences prompt + demo + <eos> (careful with probability p_careful), and each prompt's length."""
    if not 0.0 <= p_careful <= 1.0:
        raise ValueError(f"p_careful={p_careful!r} must be in [0, 1]")
    rng = random.Random(seed)
    seqs, prompt_lens = [], []
    for row in rows:
        prompt = vocab.encode(row["prompt"])
        demo = vocab.encode(addition_demo(row, carry=rng.random() < p_careful))
        seqs.append(prompt + demo + [vocab.eos_id])
        prompt_lens.append(len(prompt))
    return seqs, prompt_lens


def addition_task(vocab: TaskVocab, digits: int = 2, format_weight: float = 0.1) -> Task:
    """The RL task: prompts ``a+b=`` from minids' train split, reward accuracy + format_weight * format."""
    reward: Callable[[str, dict], float] = lambda text, row: r1_reward(text, row, format_weight)  # noqa: E731
    return Task(train_rows=lambda n, seed: arithmetic("train", n, seed, digits=digits, ops="+"),
                prompt_fn=lambda row: row["prompt"], reward_fn=reward, accuracy_fn=arithmetic_reward,
                encode=vocab.encode, decode=vocab.decode, eos_id=vocab.eos_id, pad_id=vocab.pad_id)


# ---------------------------------------------------------------------------------------------------------
# The `full` path: the same loop on a real instruct model with its own tokenizer and chat template.
# ---------------------------------------------------------------------------------------------------------
R1_SYSTEM = ("You are a helpful assistant. You first think about the reasoning process in the mind and then "
             "provide the user with the answer.")
R1_INSTRUCTION = ("Show your work in <think> </think> tags, and return the final answer in <answer> </answer> "
                  "tags, for example <answer> {example} </answer>.")
ASSISTANT_START = "Let me solve this step by step.\n<think>"
EXAMPLES = {"arithmetic": "1234", "countdown": "(1 + 2) / 3", "knights_knaves": "Alice is a knight, Bob is a knave"}


def r1_question(row: dict) -> str:
    """The user message for a minids reasoning row, with R1-Zero's format instruction."""
    task = row.get("task")
    if task not in EXAMPLES:
        raise KeyError(f"row task={task!r} is not one of {tuple(EXAMPLES)}")
    question = f"What is {row['prompt'].rstrip('=')}?" if task == "arithmetic" else row["prompt"]
    return f"{question} {R1_INSTRUCTION.format(example=EXAMPLES[task])}"


def r1_chat_prompt(tokenizer, row: dict) -> str:
    """System + user turn through the tokenizer's chat template, then the assistant's turn opened with
    ``<think>`` (as TinyZero does), so the response continues inside the thinking block."""
    messages = [{"role": "system", "content": R1_SYSTEM}, {"role": "user", "content": r1_question(row)}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return text + ASSISTANT_START


def hf_task(tokenizer, task: str = "countdown", format_weight: float = 0.1, **task_options) -> Task:
    """A `Task` for a transformers tokenizer (Qwen2.5-Instruct on Colab; a tiny local one in the tests).
    The prompt ends with ``<think>``, so rewards see ``"<think>" + response``."""
    from minids.reasoning import generate

    from nanoseek.rl.rewards import accuracy_reward

    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    if eos is None:
        raise ValueError("the tokenizer has no eos_token_id; set tokenizer.eos_token first")
    return Task(
        train_rows=lambda n, seed: generate("train", n, seed, task=task, **task_options),
        prompt_fn=lambda row: r1_chat_prompt(tokenizer, row),
        reward_fn=lambda text, row: r1_reward("<think>" + text, row, format_weight),
        accuracy_fn=lambda text, row: accuracy_reward("<think>" + text, row),
        encode=lambda text: tokenizer.encode(text, add_special_tokens=False),
        decode=lambda ids: tokenizer.decode(ids, skip_special_tokens=True),
        eos_id=eos, pad_id=pad)
