#!/usr/bin/env bash
# Several GPU jobs at once on the one H200, each a shell command given as an argument; all are stopped at
# DEADLINE seconds (default 570) and benchmarks/results/ is packed into $OUT/results.tgz (the device tool brings
# back at most 8 files). Why together: the chapters' `full` runs train small models whose steps are bound by
# kernel launches, leaving most of the H200 idle, while device time is the scarce thing. Their wall times are
# then upper bounds: run chapters with `tools/run_full.py --shared-gpu N`, which records that.
#   bash benchmarks/gpu/together.sh "python3 tools/run_full.py notebooks/06_moe.py --shared-gpu 2" "..."
# On a CPU: NANOSEEK_GPU_SMOKE=1 bash benchmarks/gpu/together.sh "echo a" "sleep 1; echo b"  (a second)
set -u
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD" MPLBACKEND=Agg PYTHONUNBUFFERED=1 TQDM_MININTERVAL=${TQDM_MININTERVAL:-5}
export NANOSEEK_GPU_JOBS=$#  # nanoseek.benchmarking.machine() writes it into every record made here
DEADLINE=${DEADLINE:-570}
OUT=${OUT:-/tmp/together_out}
mkdir -p "$OUT" benchmarks/results/logs
start=$(date +%s)
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv > "$OUT/gpu.txt" 2>&1 || true
i=0
for job in "$@"; do
  i=$((i + 1))
  ( export NANOSEEK_CACHE=/tmp/nanoseek-cache-$i
    timeout "$DEADLINE" bash -c "$job" > "benchmarks/results/logs/together_$i.log" 2>&1
    echo "job $i rc=$? after $(( $(date +%s) - start )) s: $job" >> "$OUT/jobs.txt" ) &
done
wait
echo "all done after $(( $(date +%s) - start )) s" >> "$OUT/jobs.txt"
tar czf "$OUT/results.tgz" benchmarks/results
cat "$OUT/jobs.txt"
