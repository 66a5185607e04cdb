#!/usr/bin/env bash
# The paper's evaluation with OpenCompass: the benchmarks of opencompass_configs/benchmarks.py
# (GSM8K, MATH, HumanEval, MBPP, BBH) for the rows of the paper's table, each at 32, 64, 128 and
# 256 steps (gen length 256, block 256). OpenCompass fetches the benchmark data on first use.
#   usage: bash scripts/eval_opencompass.sh [BENCHMARK ...]    (default: every benchmark of the table)
#   environment (see opencompass_configs/models.py):
#     EVAL_ROWS   comma-separated subset of base-k0,base-k0.1,mdm-k0,xdlm-k0.1 (default: the base
#                 rows, plus mdm-k0 / xdlm-k0.1 when MDM_CKPT / XDLM_CKPT is set)
#     EVAL_STEPS  comma-separated subset of 32,64,128,256 (default: all)
#     EVAL_CACHE, EVAL_THRESHOLD, EVAL_BLOCK_LENGTH: the faster, approximate sampler modes (not the
#                 paper's protocol; the rows' abbr names them)
#     LLADA_BASE (default GSAI-ML/LLaDA-8B-Base), MDM_CKPT, XDLM_CKPT: checkpoints of the rows run, each
#                 a model folder or a hub id (owner/name), checked before anything runs
#     EVAL_BATCH_SIZE (default 8), EVAL_WORK_DIR (default outputs/opencompass)
#   e.g. one benchmark x one row x one step count:
#     EVAL_ROWS=xdlm-k0.1 EVAL_STEPS=32 XDLM_CKPT=./checkpoints bash scripts/eval_opencompass.sh mbpp
#   then the table and plot: python scripts/eval_report.py outputs/opencompass
# Exits non-zero, naming them, when a task of any benchmark failed (OpenCompass itself exits 0 then).
source "$(dirname "$0")/common.sh"
WORK=${EVAL_WORK_DIR:-outputs/opencompass}
names=() configs=()
listing=$("$PYTHON" opencompass_configs/benchmarks.py "$@")  # "NAME CONFIG" lines; refuses an unknown name
while read -r name config; do names+=("$name"); configs+=("$config"); done <<< "$listing"

# Every config loaded once before anything runs: a bad row, step count, sampler setting or checkpoint
# (models.py checks them) stops the whole run here, in one line.
"$PYTHON" - "${configs[@]}" > /dev/null <<'PYEOF'
import sys
from mmengine.config import Config

for config in sys.argv[1:]:
    try:
        Config.fromfile(config, format_python_code=False)
    except ValueError as e:
        sys.exit(f"{config}: {e}")
PYEOF

failed=()
for i in "${!names[@]}"; do
  "${OPENCOMPASS[@]}" "${configs[$i]}" -w "$WORK/${names[$i]}"
  "$PYTHON" scripts/eval_report.py --check "$WORK/${names[$i]}" || failed+=("${names[$i]}")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "eval_opencompass: tasks failed in ${failed[*]} (named above); their cells show as failed in eval_report.py" >&2
  exit 1
fi
