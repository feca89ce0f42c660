#!/usr/bin/env bash
# Chapter 5's fused MLA decode kernel on the H200 (issue 21), about 150-170 s (estimate, not yet run): the
# Triton tests (tests/test_mla_triton.py, ~40 s; MLA_TESTS=0 skips them), then benchmarks/mla_decode.py --tune
# (~120 s): copy bandwidth and the bf16 matmul peak of this run; a sweep of the kernel's settings at batch 32
# and batch 1, context 32K (31 settings, pointer and TMA kernels, compiled by 4 probe processes, then timed
# and checked against float32 einsums, split
# settings for the best three, three ablations of the best); the step-time, bandwidth and roofline tables with
# the best settings -> benchmarks/results/mla_decode.{md,json}, log in benchmarks/results/logs/mla_decode.log.
# On a CPU: NANOSEEK_GPU_SMOKE=1 bash benchmarks/gpu/mla.sh (seconds; add TRITON_INTERPRET=1 with Triton
# importable to run the sweep harness on the interpreter too, about two minutes).
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MPLBACKEND=Agg
mkdir -p benchmarks/results/logs
start=$(date +%s)
if [ "${NANOSEEK_GPU_SMOKE:-0}" = "1" ]; then
  python3 benchmarks/mla_decode.py --tune 2>&1 | tail -n 20
  exit ${PIPESTATUS[0]}
fi
if [ "${MLA_TESTS:-1}" = "1" ]; then
  python3 -m pytest -q -p no:cacheprovider tests/test_mla_triton.py 2>&1 | tail -n 20 | tee benchmarks/results/logs/mla_triton_tests.log
  echo "tests: $(( $(date +%s) - start )) s"
fi
python3 benchmarks/mla_decode.py --device cuda --tune 2>&1 | tee benchmarks/results/logs/mla_decode.log
echo "total: $(( $(date +%s) - start )) s"
