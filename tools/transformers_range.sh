#!/usr/bin/env bash
# Run the transformers parity tests against the oldest and the newest transformers that pyproject.toml allows
# (`transformers>=5.0,<6`), each in a fresh minimal venv (no system site-packages):
#   bash tools/transformers_range.sh [OLDEST [NEWEST]]      # defaults: 5.0.0 and the newest 5.x on the index
# Writes benchmarks/results/transformers_range.md (+ .json). Takes a few minutes per version (the installs);
# not part of `make test` (about 6 minutes of tests per version on a busy 2-core machine, plus a few minutes
# of installs the first time). torch==2.13.0 installs from the machine's local wheel (requirements.txt).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OLDEST=${1:-5.0.0}
NEWEST=${2:-$(pip index versions transformers 2>/dev/null | sed -n 's/^transformers (\(5\.[0-9.]*\)).*/\1/p')}
NEWEST=${NEWEST:-5.24.0}
WORK=${TRANSFORMERS_RANGE_DIR:-/tmp/transformers_range}
TESTS="tests/test_deepseek_v3.py tests/test_interop_gpt2.py tests/test_interop_qwen2.py tests/test_mla.py tests/test_moe.py tests/test_mtp.py tests/test_rl_qwen_path.py tests/test_tokenizer.py tests/test_chat.py tests/test_yarn.py"
mkdir -p "$WORK"
SUMMARY="$WORK/summary.tsv"; : > "$SUMMARY"
for v in $OLDEST $NEWEST; do
  venv="$WORK/tf-$v"; start=$(date +%s)
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || exit 1
    "$venv/bin/pip" install -q torch==2.13.0 "transformers==$v" "tokenizers>=0.20" safetensors numpy tqdm matplotlib \
      ipywidgets regex pytest hypothesis > "$WORK/install-$v.log" 2>&1 || { echo "install of $v failed"; tail "$WORK/install-$v.log"; }
  fi
  installed=$(date +%s)
  (cd "$ROOT" && PYTHONPATH="$ROOT" OMP_NUM_THREADS=1 NANOSEEK_SCALE=tiny NANOSEEK_CACHE="$WORK/cache" MPLBACKEND=Agg \
     "$venv/bin/python" -m pytest -p no:cacheprovider $TESTS > "$WORK/pytest-$v.log" 2>&1)
  rc=$?
  got=$("$venv/bin/python" -c 'import transformers; print(transformers.__version__)' 2>/dev/null)
  line=$(grep -E "passed|failed|error" "$WORK/pytest-$v.log" | tail -1)
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$v" "$got" "$rc" "$line" "$((installed - start))" "$(( $(date +%s) - installed ))" >> "$SUMMARY"
  echo "transformers $v ($got): rc=$rc $line"
done
cd "$ROOT" && PYTHONPATH="$ROOT" "$WORK/tf-$NEWEST/bin/python" - "$SUMMARY" "$TESTS" <<'PY'
import sys
from nanoseek.benchmarking import write_result
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
body = ["Parity and interop tests in a fresh venv per transformers version (torch 2.13.0 CPU):", "",
        "`" + sys.argv[2] + "`", "",
        "| transformers asked | installed | pytest rc | result | install s | tests s |", "| --- | --- | --- | --- | --- | --- |"]
body += ["| " + " | ".join(r) + " |" for r in rows]
write_result("transformers_range", "\n".join(body), data={"runs": [dict(zip(
    ["asked", "installed", "rc", "result", "install_s", "tests_s"], r)) for r in rows]})
PY
