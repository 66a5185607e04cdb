#!/usr/bin/env bash
# The embedded tiny default: XDLM (k = 0.1) training of a few-million-parameter LLaDA-
# architecture model from scratch on the Python standard library's source, on CPU,
# offline, in a few minutes (1500 steps: well past the point where it starts to use context).
# Extra flags pass through to llada_cpt.py and override. A few-minute run keeps no
# checkpoints: a rerun trains afresh and moves the previous model and its records into
# $OUT/previous-<time>/ (--overwrite_output_dir). The held-out files are the validation
# file, so the whole of train.jsonl is trained on (with or without --do_eval).
#   usage: bash scripts/train_tiny.sh [--max_steps 40] [--output_dir DIR] [...]
source "$(dirname "$0")/common.sh"
tiny_setup

OUT=outputs/tiny
args=("$@")
for i in "${!args[@]}"; do
  case "${args[$i]}" in
    --output_dir) OUT=${args[$((i + 1))]} ;;
    --output_dir=*) OUT=${args[$i]#--output_dir=} ;;
  esac
done

"$PYTHON" llada_cpt.py \
  --config_name "$TINY/model" --tokenizer_name "$TINY/model" --train_file "$TINY/train.jsonl" --validation_file "$TINY/valid.jsonl" \
  "${TINY_TRAIN_FLAGS[@]}" --output_dir "$OUT" "$@"

# A 32-step completion of the start of a function from the held-out files.
PROMPT=$("$PYTHON" - "$TINY/valid.jsonl" <<'PYEOF'
import json, sys
text = [json.loads(line)["text"] for line in open(sys.argv[1])][1]
start = text.find("\ndef ") + 1
print(text[start:start + 120])
PYEOF
)
printf '\n--- prompt (held-out) ---\n%s\n--- 32-step XDLM completion (k = 0.1) ---\n' "$PROMPT"
printf '(a few CPU minutes of a 2M-parameter diffusion model: expect code-like fragments, not working code)\n'

"$PYTHON" generate.py --model_name_or_path "$OUT" --prompt "$PROMPT" --steps 32 --gen_length 128 --block_length 128 --k 0.1

# The trainer's validation NELBO beside a unigram model's cross-entropy, on the same 256
# random validation blocks: a model that only learned token frequencies gets a ratio near 1.
"$PYTHON" scripts/tiny_report.py --model_dir "$OUT" --tiny_dir "$TINY"
