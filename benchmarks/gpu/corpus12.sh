#!/usr/bin/env bash
# Chapter 1 at full on one H200 (about 130 s estimated: 5,000 training steps took 73 s there before), then
# chapter 1's block ablation over 3 seeds at full (benchmarks/ch01_ablation.py --scale full, 68 s measured)
# if it is not recorded yet and the command's own budget allows.
#   bash benchmarks/gpu/corpus12.sh OUTDIR [BUDGET_SECONDS]
# With NANOSEEK_GPU_SMOKE=1 (on a CPU): only the ablation script, shrunk to a few steps; the notebook is skipped.
set -u
OUT=${1:?usage: corpus12.sh OUTDIR [BUDGET_SECONDS]}; BUDGET=${2:-170}
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg NANOSEEK_CACHE=${NANOSEEK_CACHE:-/tmp/nanoseek-cache} OMP_NUM_THREADS=8
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
START=$(date +%s)
mkdir -p "$OUT"
if [ "${NANOSEEK_GPU_SMOKE:-0}" != 1 ]; then
  python3 tools/run_full.py notebooks/01_nanogpt.py --timeout $((BUDGET - 10))
fi
LEFT=$((BUDGET - ($(date +%s) - START)))
if [ "$LEFT" -gt 80 ] && [ ! -f benchmarks/results/ch01_ablation_full.json ]; then
  timeout $((LEFT - 5)) python3 benchmarks/ch01_ablation.py --scale full > benchmarks/results/logs/ch01_ablation_full.log 2>&1 \
    || echo "ch01_ablation --scale full: stopped or failed (left ${LEFT} s)" >> benchmarks/results/logs/ch01_ablation_full.log
fi
cd benchmarks/results && tar czf "$OUT/results.tgz" $(ls 01_nanogpt_full.* ch01_train_full.* ch01_ablation_full.* 2>/dev/null) \
  logs/01_nanogpt_full.log $(ls logs/ch01_ablation_full.log 2>/dev/null)
echo "corpus12.sh: $(( $(date +%s) - START )) s"
