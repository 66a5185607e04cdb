#!/usr/bin/env bash
# LLaDA's likelihood benchmarks through lm-evaluation-harness (lm_eval_llada.py, model xdlm_llada):
# the tasks of LLaDA's eval_llada_lm_eval.sh with its settings (few-shot count, mc_num, batch,
# seed 1234, cfg; the table in opencompass_configs/benchmarks.py) for the rows
#   base        LLADA_BASE (default GSAI-ML/LLaDA-8B-Base), LLaDA's masked estimator
#   mdm         MDM_CKPT, LLaDA's masked estimator
#   xdlm        XDLM_CKPT, LLaDA's masked estimator
#   xdlm-bound  XDLM_CKPT, the model's own XDLM bound at k = 0.1 (not comparable with LLaDA's numbers)
# one lm-eval run per row and task. lm-eval fetches each task's data from the hub on first use.
#   usage: bash scripts/eval_lm_eval.sh [--dry_run] [TASK ...]   (default: every task of the table)
#     --dry_run   check everything and print each command, run nothing
#   environment:
#     LM_EVAL_ROWS      comma-separated rows (default: base, plus mdm when MDM_CKPT is set, plus xdlm and
#                       xdlm-bound when XDLM_CKPT is set)
#     LM_EVAL_CFG       llada (default: LLaDA's script, with CFG on ARC-C, HellaSwag, PIQA, GPQA,
#                       TruthfulQA) or none (no CFG anywhere: the paper's Table 1)
#     LM_EVAL_DEVICE    default cuda (one process, one device: run rows on several GPUs as separate
#                       launches with CUDA_VISIBLE_DEVICES and LM_EVAL_ROWS); cpu without a GPU
#     LM_EVAL_WORK_DIR  default outputs/lm_eval: ROW/TASK/cfgCFG/<time>/ per run (command, log, results)
#     LM_EVAL_LIMIT     items per task (a subset, for a quick look; not comparable with LLaDA's numbers)
#     LM_EVAL_MODEL_ARGS  extra model_args for every run, e.g. draws_per_forward=32,dtype=bfloat16
#     LM_EVAL_INCLUDE_PATH  a folder of your own lm-eval task YAMLs; its tasks run 0-shot without CFG
#   e.g. LM_EVAL_ROWS=base bash scripts/eval_lm_eval.sh arc_challenge hellaswag
#   then the table beside LLaDA's numbers: python scripts/lm_eval_report.py outputs/lm_eval
# Rows, tasks, settings and checkpoints are checked before anything runs (one line saying what is
# wrong). Exits non-zero naming each failed run; the other runs still go.
source "$(dirname "$0")/common.sh"
WORK=${LM_EVAL_WORK_DIR:-outputs/lm_eval}
dry_run=
for arg in "$@"; do [ "$arg" = --dry_run ] && dry_run=1; done
# "ROW TASK CFG ARGS" per run (ARGS shell-quoted); a bad row, task, setting or checkpoint stops here
listing=$("$PYTHON" opencompass_configs/benchmarks.py --likelihood "$@")
mapfile -t runs <<< "$listing"
failed=()
for line in "${runs[@]}"; do
  read -r row task cfg quoted <<< "$line"
  eval "args=($quoted)"  # ARGS were quoted by shlex.join
  folder=$WORK/$row/$task/cfg$cfg
  if [ -n "$dry_run" ]; then
    echo "$row $task: $PYTHON lm_eval_llada.py $quoted --output_path $folder/<time>/results.json"
    continue
  fi
  out=$folder/$(date +%Y%m%d_%H%M%S_%N)
  mkdir -p "$out"
  { printf '%q ' "$PYTHON" lm_eval_llada.py "${args[@]}" --output_path "$out/results.json"; echo; } > "$out/command.sh"
  echo "== $row $task (cfg $cfg): $out"
  if ! "$PYTHON" lm_eval_llada.py "${args[@]}" --output_path "$out/results.json" 2>&1 | tee "$out/lm_eval.log"; then
    echo "lm_eval_llada.py exited with ${PIPESTATUS[0]}; see lm_eval.log" > "$out/failed"
    failed+=("$row/$task (see $out/lm_eval.log)")
  fi
done
[ -n "$dry_run" ] && exit 0
if [ ${#failed[@]} -gt 0 ]; then
  echo "eval_lm_eval: ${#failed[@]} of ${#runs[@]} runs failed: ${failed[*]}" >&2
  exit 1
fi
echo "eval_lm_eval: all ${#runs[@]} runs have results; the table: $PYTHON scripts/lm_eval_report.py $WORK"
