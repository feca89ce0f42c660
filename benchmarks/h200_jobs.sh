#!/usr/bin/env bash
# The `full`-scale runs on the `device` tool's H200 machine (Python 3.12, torch 2.11+cu130, no network),
# one queue of jobs per GPU, every job stopped by a shared deadline so that the call returns its logs:
#   bash benchmarks/h200_jobs.sh OUTDIR DEADLINE_SECONDS "JOBS FOR GPU 0" ["JOBS FOR GPU 1"]
# e.g. bash benchmarks/h200_jobs.sh $OUT 560 "step_time ch07" "ch03"
# Notebooks run as their py:percent scripts (nbclient kernels do not start on that machine). Each job's
# output goes to OUTDIR/<job>.log; result files a job writes are copied to OUTDIR at the end.
set -u
OUT=${1:?usage: h200_jobs.sh OUTDIR DEADLINE "JOBS0" ["JOBS1"]}; DEADLINE=${2:?}; shift 2
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg NANOSEEK_CACHE=${NANOSEEK_CACHE:-/tmp/nanoseek-cache} OMP_NUM_THREADS=8
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
START=$(date +%s)
touch /tmp/h200_jobs.start
job() {  # the command of one job
  case $1 in
    step_time) echo "python3 benchmarks/step_time.py --device cuda" ;;
    moe_probe) echo "python3 benchmarks/moe_probe.py" ;;
    rl) echo "python3 benchmarks/rl.py --device cuda --skip-qwen" ;;
    mtp) echo "python3 benchmarks/mtp.py --device cuda" ;;
    sft) echo "python3 benchmarks/sft.py --device cuda --scale full" ;;
    moe_balance) echo "python3 benchmarks/moe_balance.py --scale full --device cuda --max-steps 2000 --dispatch grouped --log-dir $OUT" ;;
    ch*) echo "python3 tools/run_full.py $(ls notebooks/${1#ch}_*.py)" ;;
    *) echo "false unknown job $1" ;;
  esac
}
queue() {  # run the jobs of one GPU in order, each within what is left of the deadline
  local gpu=$1; shift
  for name in "$@"; do
    local left=$(( DEADLINE - ($(date +%s) - START) ))
    if [ "$left" -lt 30 ]; then echo "$name skipped (deadline)" | tee -a "$OUT/summary.txt"; continue; fi
    local s=$(date +%s) cmd; cmd=$(job "$name")
    echo "# $cmd  (GPU $gpu, $(date -u '+%Y-%m-%d %H:%M UTC'))" > "$OUT/$name.log"
    CUDA_VISIBLE_DEVICES=$gpu timeout "$left" $cmd >> "$OUT/$name.log" 2>&1
    echo "$name rc=$? $(( $(date +%s) - s ))s (GPU $gpu)" | tee -a "$OUT/summary.txt"
  done
}
nvidia-smi -L | tee "$OUT/summary.txt"
python3 -c 'from nanoseek.data import load_stories; [load_stories(l, s, scale="full") for l in ("en", "zh") for s in ("train", "val")]'
gpu=0
for jobs in "$@"; do queue $gpu $jobs & gpu=$((gpu + 1)); done
wait
find benchmarks/results -newer /tmp/h200_jobs.start -type f -exec cp {} "$OUT/" \;
echo "total $(( $(date +%s) - START ))s" | tee -a "$OUT/summary.txt"
