#!/usr/bin/env bash
# Chapters 5-7 on the H200 (helper ch57), about 200 s there:
#  1. benchmarks/moe_probe.py: ms/step and host syncs of chapter 6's full MoE model, old vs new expert counting,
#     sorted vs grouped dispatch (~30 s) -> benchmarks/results/moe_probe.{md,json}
#  2. chapter 6 at full as a script (tools/run_full.py) -> benchmarks/results/06_moe_full.{md,json} + log
# Check on a CPU first: NANOSEEK_GPU_SMOKE=1 bash benchmarks/gpu/ch57.sh (runs the probe at smoke size only).
set -u
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg NANOSEEK_CACHE=${NANOSEEK_CACHE:-/tmp/nanoseek-cache} OMP_NUM_THREADS=8
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
start=$(date +%s)
python3 benchmarks/moe_probe.py --steps 10
echo "probe: $(( $(date +%s) - start )) s"
if [ "${NANOSEEK_GPU_SMOKE:-0}" = 1 ]; then exit 0; fi
python3 tools/run_full.py notebooks/06_moe.py --timeout ${CH06_TIMEOUT:-400}
echo "total: $(( $(date +%s) - start )) s"
