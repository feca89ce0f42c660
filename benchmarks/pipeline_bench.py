"""Chapter 9's pipeline benchmarks.

    python benchmarks/pipeline_bench.py --part sim          # simulator vs DualPipe's table over the grid
    python benchmarks/pipeline_bench.py --part cpu          # real runs on 2 and 4 gloo CPU processes
    python benchmarks/pipeline_bench.py --part gpu --world 8 --n-micro 20   # NCCL, one GPU per rank (issue 13)

`sim` writes benchmarks/results/pipeline_sim.{md,json}; `cpu` pipeline_cpu; `gpu` pipeline_gpu. The real
runs measure the step time and each rank's idle time and set them beside the simulator fed with the run's
own chunk durations (replay) and with their medians (uniform costs), and beside the table's formula.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nanoseek.benchmarking import machine, write_result  # noqa: E402
from nanoseek.parallel import schedules as S  # noqa: E402
from nanoseek.parallel.executor import PipeConfig, compare_with_simulator, launch  # noqa: E402
from nanoseek.parallel.simulator import Costs, formula_bubble, simulate  # noqa: E402

NAMES = ["1f1b", "zb1p", "dualpipe", "dualpipev"]


def part_sim() -> None:
    settings = {"F=B=W=1, F&B=3 (no overlap)": Costs(1, 1, 1, fb=3), "F=B=W=1, F&B=2.5": Costs(1, 1, 1, fb=2.5),
                "F=B=W=1, F&B=2": Costs(1, 1, 1, fb=2), "F=2, B=1.5, W=1, F&B=3": Costs(2, 1.5, 1, fb=3),
                "F=1, B=2, W=0.5, F&B=3": Costs(1, 2, 0.5, fb=3)}
    rows, lines = [], ["| PP ranks | micro-batches | costs | schedule | simulated bubble | formula | equal | peak act. | stages/rank |",
                       "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for P in (4, 8, 16):
        for M in (2 * P, 4 * P):
            for label, c in settings.items():
                for name in NAMES:
                    s = S.make(name, P, M)
                    r = simulate(s, c)
                    f = formula_bubble(name, s.n_stages, c)
                    ok = abs(r.max_bubble - f) < 1e-9
                    rows.append(dict(P=P, M=M, costs=label, schedule=s.name, simulated=r.max_bubble, formula=f,
                                     equal=ok, peak_activations=max(r.peak_activations),
                                     param_stages=max(r.param_stages)))
                    lines.append(f"| {P} | {M} | {label} | {s.name} | {r.max_bubble:g} | {f:g} | {'yes' if ok else 'no'} "
                                 f"| {max(r.peak_activations)} | {max(r.param_stages)} |")
    body = ("Simulated bubble (the most idle rank's idle time, cost units) against DualPipe's README table, in "
            "the zero-bubble paper's notation (B = input gradient). The table's formula holds where its "
            "assumptions hold: 1F1B always, ZB1P for W <= min(F, B), DualPipe/DualPipeV for F = B = W with "
            "F+B <= F&B <= F+B+W.\n\n" + "\n".join(lines))
    write_result("pipeline_sim", body, data={"rows": rows})


def part_real(name: str, worlds: list[int], backend: str, cfg_over: dict, timeout: float) -> None:
    rows, lines = [], ["| ranks | schedule | measured step (ms) | simulator, measured chunks (ms) | simulator, median costs (ms) | measured / replay | mean idle per rank, measured (ms) | simulated (ms) | loss equal | max calc_diff |",
                       "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for world in worlds:
        base = dict(schedules=["gpipe"] + NAMES, n_micro=2 * world, micro_batch=2, seq_len=32, vocab_size=256,
                    n_embd=64, n_head=4, intermediate_size=128, steps=3)
        if "n_embd" in cfg_over:
            base.update(intermediate_size=2 * cfg_over["n_embd"])
        cfg = PipeConfig(**{**base, **cfg_over})
        cfg.n_micro = max(cfg.n_micro, 2 * world)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.time()
            out = launch(world, cfg, os.path.join(tmp, "run.json"), backend=backend, timeout=timeout)
            print(f"world {world}: {time.time() - t0:.0f} s", flush=True)
        for rec in out["records"]:
            cmp = compare_with_simulator(rec)
            meas_idle = sum(cmp["measured_idle_s"]) / world
            sim_idle = sum(cmp["replay_idle_s"]) / world
            row = dict(world=world, schedule=rec["schedule"], n_micro=rec["n_micro"],
                       measured_step_s=cmp["measured_step_s"], replay_step_s=cmp["replay_step_s"],
                       uniform_step_s=cmp["uniform_step_s"], measured_idle_s=cmp["measured_idle_s"],
                       replay_idle_s=cmp["replay_idle_s"], costs_s=cmp["costs_s"],
                       median_step_s=rec["step_s"], loss_equal=rec["loss_equal"],
                       max_calc_diff=rec["max_calc_diff"], step_s_all=[g["step_s"] for g in rec["ranks"]])
            rows.append(row)
            lines.append(f"| {world} | {rec['schedule']} | {1e3 * cmp['measured_step_s']:.1f} | {1e3 * cmp['replay_step_s']:.1f} "
                         f"| {1e3 * cmp['uniform_step_s']:.1f} | {cmp['measured_step_s'] / cmp['replay_step_s']:.2f} "
                         f"| {1e3 * meas_idle:.1f} | {1e3 * sim_idle:.1f} | {rec['loss_equal']} | {rec['max_calc_diff']:.1e} |")
    cfg_text = ", ".join(f"{k}={v}" for k, v in asdict(cfg).items() if k not in ("schedules", "check"))
    body = (f"Real pipeline steps ({backend}), chapter 4's decoder cut into one block per stage ({cfg_text}); "
            "one warm-up step, three timed steps, the last one's chunks recorded. 'simulator, measured chunks' "
            "runs the schedule in the simulator with every chunk's measured duration, so the gap to the measured "
            "step is communication and bookkeeping; 'median costs' uses one F, B, W, B+W, F&B cost for all "
            "chunks.\n\n" + "\n".join(lines))
    write_result(name, body, data={"rows": rows, "backend": backend, "machine": machine(), "config": asdict(cfg)})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["sim", "cpu", "gpu"], required=True)
    ap.add_argument("--world", type=int, nargs="*", default=None)
    ap.add_argument("--n-micro", type=int, default=None)
    ap.add_argument("--n-embd", type=int, default=None)
    ap.add_argument("--seq-len", type=int, default=None)
    ap.add_argument("--micro-batch", type=int, default=None)
    ap.add_argument("--layers-per-stage", type=int, default=None)
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--timeout", type=float, default=500)
    ap.add_argument("--backend", default=None, help="gpu part: nccl (default) or gloo for a CPU smoke run")
    ap.add_argument("--record", default=None, help="record name (default pipeline_<part>)")
    a = ap.parse_args()
    over = {k: v for k, v in dict(n_micro=a.n_micro, n_embd=a.n_embd, seq_len=a.seq_len, micro_batch=a.micro_batch,
                                  layers_per_stage=a.layers_per_stage, dtype=a.dtype).items() if v is not None}
    if a.part == "sim":
        part_sim()
    elif a.part == "cpu":
        part_real(a.record or "pipeline_cpu", a.world or [2, 4], "gloo", over, a.timeout)
    else:
        if "n_embd" in over:
            over.setdefault("intermediate_size", 4 * over["n_embd"])
            over.setdefault("n_head", max(1, over["n_embd"] // 64))
            over.setdefault("vocab_size", 1024)
        part_real(a.record or "pipeline_gpu", a.world or [8], a.backend or "nccl", over, a.timeout)


if __name__ == "__main__":
    main()
