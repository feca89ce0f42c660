#!/usr/bin/env bash
# Chapter 8 on the H200. Measured 2026-12-02 with the GPU alone: the gemm stage 92 s (FP8 GEMM correctness,
# tests/test_fp8_gpu.py, ~20 s; the GEMM paths' TFLOP/s on DeepGEMM's shapes with the Triton variant sweep at
# 4096x7168x16384, benchmarks/fp8_gemm.py: 40 variants compiled by 4 probe processes at once, then timed). The
# train stage (bf16-vs-FP8 training at `full`, 3 seeds, after a check of the FP8 layer's three GEMMs on real
# activations, benchmarks/fp8_train.py --gpu) took ~60 s a seed at 150 steps; at 300 steps expect ~120 s a
# seed, ~6 minutes in all (it records after every seed): measured 496 s with 4 other jobs on the GPU. The chapter
# at `full` is its own stage (notebook): on 2026-12-02 it had not left the accumulation sweep (float64
# emulation of the 14-bit accumulator, K up to 16384) after 372 s on a GPU shared three ways.
# Stages: FP8_STAGES="gemm train" (default) or any of "gemm train notebook". On a CPU: NANOSEEK_GPU_SMOKE=1.
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg
STAGES=${FP8_STAGES:-"gemm train"}
mkdir -p benchmarks/results/logs
start=$(date +%s)
if [ "${NANOSEEK_GPU_SMOKE:-0}" = "1" ]; then
  python3 benchmarks/fp8_gemm.py && python3 benchmarks/fp8_train.py --gpu --smoke
  exit $?
fi
for stage in $STAGES; do
  t0=$(date +%s)
  case $stage in
    gemm)
      python3 -m pytest -q -p no:cacheprovider tests/test_fp8_gpu.py 2>&1 | tail -n 30 | tee benchmarks/results/logs/fp8_gpu_tests.log
      python3 benchmarks/fp8_gemm.py 2>&1 | tee benchmarks/results/logs/fp8_gemm.log ;;
    train)
      python3 benchmarks/fp8_train.py --gpu 2>&1 | grep -v "it/s" | tail -n 60 | tee benchmarks/results/logs/fp8_train_gpu.log ;;
    notebook)
      python3 tools/run_full.py notebooks/08_fp8.py --timeout 240 ;;
  esac
  echo "stage $stage: $(( $(date +%s) - t0 )) s"
done
echo "total: $(( $(date +%s) - start )) s"
