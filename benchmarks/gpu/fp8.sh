#!/usr/bin/env bash
# Chapter 8 on the H200: FP8 GEMM correctness (tests/test_fp8_gpu.py), the four GEMM paths' TFLOP/s on
# DeepGEMM's shapes (benchmarks/fp8_gemm.py), the bf16-vs-FP8 training run at `full`
# (benchmarks/fp8_train.py --gpu), and the chapter at `full` (tools/run_full.py). Measured there: the gemm
# stage about 120 s (Triton autotuning included), train about 35 s a seed (bf16 + FP8); notebook not yet run.
# Stages: FP8_STAGES="gemm train notebook" (default: all). On a CPU: NANOSEEK_GPU_SMOKE=1 (seconds).
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
STAGES=${FP8_STAGES:-"gemm train notebook"}
mkdir -p benchmarks/results/logs
if [ "${NANOSEEK_GPU_SMOKE:-0}" = "1" ]; then
  python3 benchmarks/fp8_gemm.py && python3 benchmarks/fp8_train.py --gpu --smoke
  exit $?
fi
for stage in $STAGES; do
  case $stage in
    gemm)
      python3 -m pytest -q -x -p no:cacheprovider tests/test_fp8_gpu.py 2>&1 | tail -n 30 | tee benchmarks/results/logs/fp8_gpu_tests.log
      python3 benchmarks/fp8_gemm.py 2>&1 | tee benchmarks/results/logs/fp8_gemm.log ;;
    train)
      python3 benchmarks/fp8_train.py --gpu 2>&1 | tail -n 40 | tee benchmarks/results/logs/fp8_train_gpu.log ;;
    notebook)
      python3 tools/run_full.py notebooks/08_fp8.py --timeout 240 ;;
  esac
done
