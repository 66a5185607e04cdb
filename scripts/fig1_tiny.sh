#!/usr/bin/env bash
# The paper's small-model experiment (Fig. 1) at CPU scale, on a synthetic language whose
# likelihood is exact: MDLM, XDLM (k = 0.1, 0.5) and uniform diffusion trained from scratch,
# 3 seeds each, NELBO and exact gen-NLL of ancestral samples at 4-64 steps; then the k = 0
# models continued with k = 0 and k = 0.1 and scored on noise-free prompts (failure rate); every
# model also answers a multiple-choice task from the language through lm_eval_llada.py
# (understanding: accuracy and the likelihood bound beside the exact source's).
# Writes outputs/fig1_tiny/results.csv, results.md and fig1.png; a rerun reuses finished
# stages. Extra flags go to scripts/fig1_tiny.py, e.g. --out DIR --seeds 5 --steps 1500.
source "$(dirname "$0")/common.sh"
offline_setup

"$PYTHON" scripts/fig1_tiny.py "$@"
