#!/usr/bin/env bash
# Chapter 11 on the H200: peak memory of the chunked vs unchunked KD losses at Qwen2.5's 151,936-token vocabulary
# (4,096 positions, bf16 logits; about 15 s there), then, with DISTILL_FULL=1, the `full`-scale comparisons of
# benchmarks/distill.py (text KD and the R1 toy; minutes: not run in the 150 s allotment of issue 14) and the
# chapter at `full` through tools/run_full.py.
# CPU check: NANOSEEK_GPU_SMOKE=1 bash benchmarks/gpu/distill.sh   (tiny sizes, a few seconds)
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p benchmarks/results/logs
if [ "${NANOSEEK_GPU_SMOKE:-0}" = "1" ]; then
  python3 benchmarks/distill_memory.py --positions 8 --vocab 2000 --chunk 4 --kinds forward_kl,jsd --name distill_memory_smoke
  rm -f benchmarks/results/distill_memory_smoke.md benchmarks/results/distill_memory_smoke.json
  exit 0
fi
python3 benchmarks/distill_memory.py --positions 4096 --dtype bf16 --chunk 256 2>&1 | tee benchmarks/results/logs/distill_memory_cuda.log
if [ "${DISTILL_FULL:-0}" = "1" ]; then
  NANOSEEK_SCALE=full python3 benchmarks/distill.py --part all 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" \
    | tee benchmarks/results/logs/distill_full.log
  python3 tools/run_full.py notebooks/11_distillation.py
fi
