#!/usr/bin/env bash
# Chapter 4's MHA / GQA / MQA comparison at `full` over 3 seeds (9 trainings of ~65 s each alone on the H200):
# one process per variant at once, each with a third of the CPU threads (these small models are bound by kernel
# launches, so three processes share the GPU well), then --merge the three records into ch04_gqa_seeds_full.
# 379 s on the H200 on 2026-12-02 (108-115 s a run, three at once). Smoke test on a CPU: NANOSEEK_GPU_SMOKE=1 bash benchmarks/gpu/ch04_seeds.sh
set -eu
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1 NANOSEEK_GPU_JOBS=3 OMP_NUM_THREADS=${OMP_NUM_THREADS:-5}
if [ "${NANOSEEK_GPU_SMOKE:-0}" = 1 ]; then scale=tiny; extra="--steps 2"; dev=cpu; out=ch04_gqa_seeds_smoke
else scale=full; extra=""; dev=cuda; out=ch04_gqa_seeds_full; fi
mkdir -p benchmarks/results/logs
pids=()
for v in MHA GQA MQA; do
  python3 benchmarks/ch04_gqa_seeds.py --scale $scale --device $dev $extra --variants $v --out "${out}_$v" \
    > "benchmarks/results/logs/${out}_$v.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
parts=(benchmarks/results/${out}_MHA.json benchmarks/results/${out}_GQA.json benchmarks/results/${out}_MQA.json)
python3 benchmarks/ch04_gqa_seeds.py --scale $scale $extra --out $out --merge "${parts[@]}" \
  > "benchmarks/results/logs/$out.log" 2>&1
rm -f "${parts[@]}" "${parts[@]/.json/.md}"
cat "benchmarks/results/logs/$out.log"
