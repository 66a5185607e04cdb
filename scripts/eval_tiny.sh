#!/usr/bin/env bash
# OpenCompass end to end, offline, on the tiny checkpoint (trained for 40 steps first if
# absent) and a small local dataset written here; prints OpenCompass's summary table.
#   usage: bash scripts/eval_tiny.sh [CHECKPOINT_DIR] [WORK_DIR]
source "$(dirname "$0")/common.sh"
CKPT=${1:-outputs/tiny}
WORK=${2:-outputs/eval_tiny}
tiny_setup
if [ ! -f "$CKPT/config.json" ]; then
  bash scripts/train_tiny.sh --max_steps 40 --output_dir "$CKPT" --do_eval False
fi
mkdir -p "$WORK"
export TINY_CKPT=$(cd "$CKPT" && pwd) TINY_EVAL_DATA=$(cd "$WORK" && pwd)/stdlib_next_line.jsonl

# 40 held-out examples: four lines of code as context, the next non-empty line as answer.
"$PYTHON" - "$TINY/valid.jsonl" "$TINY_EVAL_DATA" <<'PYEOF'
import json, sys
rows = []
for line in open(sys.argv[1]):
    code = [l for l in json.loads(line)["text"].splitlines() if l.strip()]
    for i in range(8, len(code) - 1, 37):
        rows.append({"context": "\n".join(code[i - 4:i]), "next_line": code[i].strip()})
with open(sys.argv[2], "w") as f:
    for row in rows[:40]:
        f.write(json.dumps(row) + "\n")
PYEOF

"${OPENCOMPASS[@]}" opencompass_configs/eval_tiny.py -w "$WORK" --debug 2>&1 | tee "$WORK/opencompass.log"
# OpenCompass exits 0 even when a task failed: every task must have its result.
"$PYTHON" scripts/eval_report.py --check "$WORK"
latest=$(ls -td -- "$WORK"/*/ | head -n 1)
echo "summary: $latest"summary
