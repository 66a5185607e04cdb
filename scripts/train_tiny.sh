#!/usr/bin/env bash
# The embedded tiny default: XDLM (k = 0.1) training of a few-million-parameter LLaDA-
# architecture model from scratch on the Python standard library's source, on CPU,
# offline, in a few minutes (1500 steps: well past the point where it starts to use context).
# Extra flags pass through to llada_cpt.py and override. A few-minute run keeps no
# checkpoints, so a rerun trains afresh and leaves no previous-<time>/ copies behind.
#   usage: bash scripts/train_tiny.sh [--max_steps 40] [--output_dir DIR] [...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
TINY=${TINY_DIR:-.tiny}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=${WANDB_MODE:-offline}

"$PY" scripts/make_tiny.py --out "$TINY"

OUT=outputs/tiny
args=("$@")
for i in "${!args[@]}"; do
  case "${args[$i]}" in
    --output_dir) OUT=${args[$((i + 1))]} ;;
    --output_dir=*) OUT=${args[$i]#--output_dir=} ;;
  esac
done

"$PY" llada_cpt.py \
  --config_name "$TINY/model" --tokenizer_name "$TINY/model" \
  --train_file "$TINY/train.jsonl" --training_method xdm \
  --block_size 64 --per_device_train_batch_size 32 \
  --learning_rate 1e-3 --weight_decay 0.0 --max_grad_norm 1.0 \
  --lr_scheduler_type constant_with_warmup --warmup_steps 20 --max_steps 1500 \
  --logging_steps 1 --save_strategy no \
  --do_train --output_dir "$OUT" --overwrite_output_dir --report_to none \
  --dataloader_num_workers 0 --seed 0 \
  "$@"

# A 32-step completion of the start of a function from the held-out files.
PROMPT=$("$PY" - "$TINY/valid.jsonl" <<'PYEOF'
import json, sys
text = [json.loads(line)["text"] for line in open(sys.argv[1])][1]
start = text.find("\ndef ") + 1
print(text[start:start + 120])
PYEOF
)
printf '\n--- prompt (held-out) ---\n%s\n--- 32-step XDLM completion (k = 0.1) ---\n' "$PROMPT"
printf '(a few CPU minutes of a 2M-parameter diffusion model: expect code-like fragments, not working code)\n'

"$PY" generate.py --model_name_or_path "$OUT" --prompt "$PROMPT" --steps 32 --gen_length 128 --block_length 128 --k 0.1

# The trainer's validation NELBO beside a unigram model's cross-entropy, on the same 256
# random validation blocks: a model that only learned token frequencies gets a ratio near 1.
"$PY" scripts/tiny_report.py --model_dir "$OUT" --tiny_dir "$TINY"
