#!/usr/bin/env bash
# The paper's evaluation with OpenCompass (opencompass_configs/): the benchmarks of the table in
# opencompass_configs/benchmarks.py for the rows of the paper's table, each at 32, 64, 128 and 256
# steps (gen length 256, block 256); a likelihood benchmark (arc_c, PPL mode) runs models.py's likelihood
# rows instead, one per checkpoint and estimator. OpenCompass fetches the benchmark data on first use.
#   usage: bash scripts/eval_opencompass.sh [BENCHMARK ...]   (default: the paper's five; arc_c by name)
#   environment (see opencompass_configs/models.py):
#     EVAL_ROWS   comma-separated rows of the table (default: the base rows, plus mdm-k0 /
#                 xdlm-k0.1 when MDM_CKPT / XDLM_CKPT is set)
#     EVAL_STEPS  comma-separated subset of 32,64,128,256 (default: all)
#     EVAL_CACHE, EVAL_THRESHOLD, EVAL_BLOCK_LENGTH: the faster, approximate sampler modes (not the
#                 paper's protocol; the rows' abbr names them)
#     LLADA_BASE (default GSAI-ML/LLaDA-8B-Base), MDM_CKPT, XDLM_CKPT: checkpoints of the rows run, each
#                 a model folder or a hub id (checked when the config loads, before any row runs)
#     EVAL_ESTIMATORS (default masked; or xdlm, or masked,xdlm), EVAL_CFG (default 0), EVAL_MC_NUM (default
#                 128): the likelihood rows' estimator settings (likelihood.py; checked when the config loads)
#     EVAL_BATCH_SIZE (default 8), EVAL_WORK_DIR (default outputs/opencompass)
#   e.g. one benchmark x one row x one step count:
#     EVAL_ROWS=xdlm-k0.1 EVAL_STEPS=32 XDLM_CKPT=./checkpoints bash scripts/eval_opencompass.sh mbpp
#   then the table and plot: python scripts/eval_report.py outputs/opencompass
# Exits non-zero when a task failed (OpenCompass itself exits 0), naming each; the other benchmarks run.
source "$(dirname "$0")/common.sh"
WORK=${EVAL_WORK_DIR:-outputs/opencompass}
# "NAME CONFIG" per benchmark asked for (the paper's by default); an unknown name is refused, naming the choices
listing=$("$PYTHON" opencompass_configs/benchmarks.py "$@")
mapfile -t benchmarks <<< "$listing"
# Every config loaded once before anything runs: a bad row, step count, sampler setting or checkpoint
# (models.py checks them) stops the whole run here, in one line, not in OpenCompass's traceback.
"$PYTHON" - "${benchmarks[@]#* }" > /dev/null <<'PYEOF'
import sys
from mmengine.config import Config

for config in sys.argv[1:]:
    try:
        Config.fromfile(config, format_python_code=False)
    except ValueError as e:
        sys.exit(f"{config}: {e}")
PYEOF
failed=()
for line in "${benchmarks[@]}"; do
  read -r name config <<< "$line"
  "${OPENCOMPASS[@]}" "$config" -w "$WORK/$name"
  "$PYTHON" scripts/eval_report.py --check "$WORK/$name" || failed+=("$name")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "eval_opencompass: tasks failed in ${failed[*]} (named above); their cells show as failed in eval_report.py" >&2
  exit 1
fi
