#!/usr/bin/env bash
# The paper's evaluation: GSM8K, MATH, HumanEval, MBPP and BBH with OpenCompass, each
# comparing LLaDA-8B-Base (k = 0) with an XDLM checkpoint (k = 0.1) at 32 steps,
# gen length 256, block 256 (opencompass_configs/). OpenCompass fetches the benchmark
# data on first use.
#   LLADA_BASE=GSAI-ML/LLaDA-8B-Base XDLM_CKPT=./checkpoints bash scripts/eval_opencompass.sh [gsm8k math humaneval mbpp bbh]
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
benchmarks=("$@")
[ ${#benchmarks[@]} -gt 0 ] || benchmarks=(gsm8k math humaneval mbpp bbh)
for b in "${benchmarks[@]}"; do
  if [ ! -f "opencompass_configs/eval_$b.py" ]; then
    echo "unknown benchmark '$b': choose from gsm8k, math, humaneval, mbpp, bbh" >&2
    exit 2
  fi
done
for b in "${benchmarks[@]}"; do
  .venv/bin/opencompass "opencompass_configs/eval_$b.py" -w "outputs/opencompass/$b"
done
