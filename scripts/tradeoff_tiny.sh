#!/usr/bin/env bash
# XDLM's understanding / generation trade-off at tiny scale, on CPU (about 7 minutes on 2
# idle cores): a masked-diffusion base, continued with the masked loss and with XDLM
# (k = 0.1 and 0.5), an autoregressive judge; NELBO and generation at 4-64 steps. Writes
# outputs/tradeoff_tiny/results.csv, results.md and tradeoff.png; a rerun reuses finished stages.
# Extra flags go to scripts/tradeoff_tiny.py, e.g. --out DIR --base_steps 800.
source "$(dirname "$0")/common.sh"
tiny_setup
"$PYTHON" scripts/tradeoff_tiny.py --tiny_dir "$TINY" "$@"
