#!/usr/bin/env bash
# Chapters 5-7 on the H200 (helper ch57). Not run yet: device loans were paused in the session that wrote it.
#  1. benchmarks/moe_probe.py: ms/step and host syncs of chapter 6's full MoE model, old vs new expert counting,
#     sorted vs grouped dispatch (estimated 30-40 s) -> benchmarks/results/moe_probe.{md,json}
#  2. chapter 6 at full as a script (tools/run_full.py; four runs of 500 steps with grouped dispatch, estimated
#     2-3 minutes) -> benchmarks/results/06_moe_full.{md,json} + logs/06_moe_full.log
#  3. with CH57_ALL=1 also chapters 5 and 7 at full (one seed each; several minutes each: a call of its own)
# Check on a CPU first: NANOSEEK_GPU_SMOKE=1 bash benchmarks/gpu/ch57.sh (runs the probe at smoke size only).
set -u
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg NANOSEEK_CACHE=${NANOSEEK_CACHE:-/tmp/nanoseek-cache} OMP_NUM_THREADS=8
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
start=$(date +%s)
python3 benchmarks/moe_probe.py --steps 6
echo "probe: $(( $(date +%s) - start )) s"
if [ "${NANOSEEK_GPU_SMOKE:-0}" = 1 ]; then exit 0; fi
python3 tools/run_full.py notebooks/06_moe.py --timeout ${CH06_TIMEOUT:-240}
if [ "${CH57_ALL:-0}" = 1 ]; then
  python3 tools/run_full.py notebooks/05_mla.py --timeout 500
  python3 tools/run_full.py notebooks/07_mtp.py --timeout 500
fi
echo "total: $(( $(date +%s) - start )) s"
