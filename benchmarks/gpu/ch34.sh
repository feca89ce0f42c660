#!/usr/bin/env bash
# Chapters 3 and 4 at `full` on one H200 (helper ch34). Measures: chapter 3 end to end (pretraining, SFT masked /
# unmasked, exact answer scoring with intervals on 1,200 held-out rows, packing check) and chapter 4 end to end
# (cache read intensity, MHA/GQA/MQA decode speed and memory-budget batch, training on Shakespeare), each timed
# into benchmarks/results/NN_x_full.json for the budget tables; then chapter 4's MHA / GQA / MQA comparison over
# 3 seeds at full (benchmarks/results/ch04_gqa_seeds_full.json), which the notebook reads.
# Needs about 3 + 5 + 9 x 1.2 = 19 minutes of device time at the previous H200 runs' speed (chapter 3: 171 s,
# chapter 4: 258 s for three trainings and uptraining): more than one call's 10 minutes, so run it as separate
# calls: STEP=ch03, STEP=ch04, then STEP=seeds VARIANTS=MHA, VARIANTS=GQA, VARIANTS=MQA (each merges into
# benchmarks/results/ch04_gqa_seeds_full.json).
# Measured 2026-12-02: chapter 3 finished in 532 s with 5 other jobs on the GPU; chapter 4 with 2 other jobs
# was at step 651 of 3,000 of its first training when its 375 s ran out. Run chapter 4 with the GPU alone.
# On a CPU: NANOSEEK_GPU_SMOKE=1 bash benchmarks/gpu/ch34.sh  (tiny sizes, a few steps, nothing recorded at full).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD" MPLBACKEND=Agg
STEP="${STEP:-all}"
if [[ "${NANOSEEK_GPU_SMOKE:-0}" == "1" ]]; then
  NANOSEEK_SCALE=tiny python3 benchmarks/ch04_gqa_seeds.py --scale tiny --steps 2 --seeds 2 --variants MHA,MQA
  NANOSEEK_SCALE=tiny python3 benchmarks/ch04_gqa_seeds.py --scale tiny --steps 2 --seeds 2 --variants GQA
  python3 -c "import json; d = json.load(open('benchmarks/results/ch04_gqa_seeds_tiny_smoke.json'))['data']; \
assert sorted(d['val_loss']) == ['GQA', 'MHA', 'MQA'], d"
  rm -f benchmarks/results/ch04_gqa_seeds_tiny_smoke.md benchmarks/results/ch04_gqa_seeds_tiny_smoke.json
  python3 -c "import ast, sys; [ast.parse(open(f).read()) for f in sys.argv[1:]]" \
    notebooks/03_pretrain_sft.py notebooks/04_attention_kv_cache.py tools/run_full.py
  echo "smoke ok"
  exit 0
fi
if [[ "$STEP" == all || "$STEP" == ch03 ]]; then python3 tools/run_full.py notebooks/03_pretrain_sft.py --timeout 560; fi
if [[ "$STEP" == all || "$STEP" == ch04 ]]; then python3 tools/run_full.py notebooks/04_attention_kv_cache.py --timeout 560; fi
if [[ "$STEP" == all || "$STEP" == seeds ]]; then
  mkdir -p benchmarks/results/logs
  python3 benchmarks/ch04_gqa_seeds.py --scale full --device cuda --seeds 3 ${VARIANTS:+--variants "$VARIANTS"} \
    2>&1 | tee -a benchmarks/results/logs/ch04_gqa_seeds_full.log
fi
