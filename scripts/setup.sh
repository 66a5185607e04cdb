#!/usr/bin/env bash
# Creates .venv in the repository root with everything training, sampling, evaluation
# and the tests need (CPU or GPU: the pinned torch picks the right build).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
# DeepSpeed installs as pure Python; its ops are built on first use.
DS_BUILD_OPS=0 .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
