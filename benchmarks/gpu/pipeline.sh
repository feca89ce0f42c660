#!/usr/bin/env bash
# Issue 13: chapter 9's executor (nanoseek.parallel.executor) with NCCL, one GPU per pipeline rank: 1F1B,
# ZB1P, DualPipe, DualPipeV (and GPipe) on chapter 4's decoder, one 2048-wide block per stage (a few ms per
# chunk, so compute dominates), PP = 8 and 20 micro-batches as in the DualPipe repository's example (4 or 2
# GPUs: 2x as many micro-batches as ranks). Records step time, per-rank idle time, the simulator's prediction
# from the run's own chunk durations and from their medians, and the gradient check, into
# benchmarks/results/pipeline_gpu.{md,json}; log in benchmarks/results/logs/pipeline_gpu.log.
# Needs about 3 minutes on an 8-GPU H200 host (model build, reference step on rank 0, 4 steps x 5 schedules).
# NANOSEEK_GPU_SMOKE=1: 2 CPU processes with gloo and tiny sizes (record pipeline_gpu_smoke), under a minute.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # NVLink multicast off
mkdir -p benchmarks/results/logs
if [[ "${NANOSEEK_GPU_SMOKE:-0}" == 1 ]]; then
  python3 benchmarks/pipeline_bench.py --part gpu --backend gloo --world 2 --n-micro 4 --n-embd 32 --seq-len 8 \
    --record pipeline_gpu_smoke 2>&1 | tee benchmarks/results/logs/pipeline_gpu_smoke.log
  exit 0
fi
NGPU=$(python3 -c "import torch; print(torch.cuda.device_count())")
if (( NGPU >= 8 )); then WORLD=8; NMICRO=20; elif (( NGPU >= 4 )); then WORLD=4; NMICRO=8; else WORLD=2; NMICRO=4; fi
python3 benchmarks/pipeline_bench.py --part gpu --world "$WORLD" --n-micro "$NMICRO" --n-embd 2048 \
  --seq-len 1024 --micro-batch 2 --dtype float32 --timeout 560 2>&1 | tee benchmarks/results/logs/pipeline_gpu.log
