#!/usr/bin/env bash
# Chapter 12 at full scale on the H200: about 150 s there (estimated: ~6,600 small steps plus generating 24k
# images; never measured yet). benchmarks/vlm.py --scale full, one seed: contrastive SigLIP pretraining with the
# dense patch auxiliary, blind LM, stage 1, stage 2, and stage 2 alone; accuracy per question type and stage-2
# throughput -> benchmarks/results/vlm_full.{md,json}.
# CPU check: NANOSEEK_GPU_SMOKE=1 bash benchmarks/gpu/vlm.sh (add VLM_SCALE=full for the full config, 4 steps each)
set -euo pipefail
export PYTHONPATH="$PWD" MPLBACKEND=Agg NANOSEEK_CACHE="${NANOSEEK_CACHE:-/tmp/nanoseek_cache}"
mkdir -p benchmarks/results/logs
name=vlm_full scale="${VLM_SCALE:-full}"
# smoke: 4 steps a training, tiny data (seconds); VLM_SCALE=full checks the full config's shapes on the CPU (minutes)
if [ "${NANOSEEK_GPU_SMOKE:-0}" = "1" ]; then name=vlm_full_smoke scale="${VLM_SCALE:-tiny}"; fi
python3 benchmarks/vlm.py --scale "$scale" --seeds 0 --name "$name" 2>&1 | tee benchmarks/results/logs/$name.log
if [ -n "${OUT:-}" ]; then cp benchmarks/results/$name.md benchmarks/results/$name.json benchmarks/results/logs/$name.log "$OUT"/; fi
