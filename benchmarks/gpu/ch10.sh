#!/usr/bin/env bash
# Chapter 10 at full scale on the H200 (about 4 minutes): the R1-Zero moment over 3 seeds with GRPO and
# Kimi's long2short (benchmarks/results/r1_zero_full.*). NANOSEEK_GPU_SMOKE=1 runs a few steps on a CPU.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
if [ "${NANOSEEK_GPU_SMOKE:-0}" = 1 ]; then
  python3 benchmarks/r1_zero.py --scale tiny --device cpu --smoke --seeds 0 --variants grpo long2short  # the full recipe is too slow for a CPU
  rm -f benchmarks/results/r1_zero_smoke.*
else
  timeout 300 python3 benchmarks/r1_zero.py --scale full --device cuda --variants grpo long2short
fi
