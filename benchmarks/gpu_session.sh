#!/usr/bin/env bash
# The GPU measurements of the book, in one call on one H200 (the `device` tool's machine: Python 3.12,
# torch 2.11+cu130, transformers 5.17, triton 3.6, no network). Run from the repository root:
#   bash benchmarks/gpu_session.sh OUTDIR
# It runs the speed benchmarks one at a time, so each has the GPU to itself. The full-scale learning runs
# are benchmarks/h200_jobs.sh (side by side on one GPU they ran out of time).
# Notebook tooling (nbclient, ipykernel, ipywidgets, jupytext) travels as wheels in .whl/ when absent.
set -u
OUT=${1:?usage: gpu_session.sh OUTDIR}
mkdir -p "$OUT/logs" "$OUT/full"
export PYTHONUNBUFFERED=1 NANOSEEK_CACHE=${NANOSEEK_CACHE:-/tmp/nanoseek-cache}
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
# generate the full-scale stories once, before the parallel runs (a few seconds)
python3 -c 'from nanoseek.data import load_stories; [load_stories(l, s, scale="full") for l in ("en", "zh") for s in ("train", "val")]'
nvidia-smi -L; python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
t0=$(date +%s)
run() { local name=$1 limit=$2; shift 2; local s=$(date +%s)
  timeout "$limit" "$@" > "$OUT/logs/$name.log" 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s ))s" | tee -a "$OUT/logs/summary.txt"; }

# speed, one at a time
run train_throughput 100 python3 benchmarks/train_throughput.py --config full --device cuda --steps 300
run decode 120 python3 benchmarks/decode.py --device cuda
run moe_dispatch 80 python3 benchmarks/moe_dispatch.py --device cuda

# The full-scale learning runs: benchmarks/h200_jobs.sh, one queue per GPU (results in h200_full_runs.md)
echo "total $(( $(date +%s) - t0 ))s" | tee -a "$OUT/logs/summary.txt"
cp -r benchmarks/results "$OUT/results"
