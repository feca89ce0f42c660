#!/usr/bin/env bash
# Chapter 10 at full scale on the H200. `bash benchmarks/gpu/ch10.sh kk` runs only the Knights-and-Knaves
# R1-Zero run (about 200 s: one warm-up, GRPO over 3 seeds, 5 people -> benchmarks/results/r1_zero_kk_full.*);
# with no argument it first reruns the sums' R1-Zero moment with GRPO and Kimi's long2short (about 4 minutes,
# r1_zero_full.*). NANOSEEK_GPU_SMOKE=1 runs a few steps of each on a CPU in seconds.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
mkdir -p benchmarks/results/logs
what=${1:-all}
if [ "${NANOSEEK_GPU_SMOKE:-0}" = 1 ]; then  # the full recipes are too slow for a CPU
  if [ "$what" != kk ]; then
    python3 benchmarks/r1_zero.py --scale tiny --device cpu --smoke --seeds 0 --variants grpo long2short
    rm -f benchmarks/results/r1_zero_smoke.*
  fi
  python3 benchmarks/r1_zero.py --task kk --scale tiny --device cpu --smoke --seeds 0 1 2
  rm -f benchmarks/results/r1_zero_kk_smoke.*
else
  if [ "$what" != kk ]; then
    timeout 300 python3 benchmarks/r1_zero.py --scale full --device cuda --variants grpo long2short
  fi
  timeout 300 python3 benchmarks/r1_zero.py --task kk --scale full --device cuda --seeds 0 1 2 \
    2>&1 | tee benchmarks/results/logs/r1_zero_kk_full.log
fi
