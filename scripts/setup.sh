#!/usr/bin/env bash
# Creates .venv in the repository root with everything training, sampling, evaluation
# and the tests need (CPU or GPU: the pinned torch picks the right build).
# With $PYTHON set, installs into that Python's environment instead.
source "$(dirname "$0")/common.sh"
if [ "$PYTHON" = .venv/bin/python ] && [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
# DeepSpeed installs as pure Python; its ops are built on first use.
DS_BUILD_OPS=0 "$PYTHON" -m pip install -q --disable-pip-version-check -r requirements.txt
