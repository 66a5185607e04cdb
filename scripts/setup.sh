#!/usr/bin/env bash
# Creates .venv in the repository root with everything training, sampling, evaluation
# and the tests need (CPU or GPU: the pinned torch picks the right build).
# With $PYTHON set, installs into that Python's environment instead.
source "$(dirname "$0")/common.sh"
if [ "$PYTHON" = .venv/bin/python ] && [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
# DeepSpeed installs as pure Python; its ops are compiled when first needed.
DS_BUILD_OPS=0 "$PYTHON" -m pip install -q --disable-pip-version-check -r requirements.txt
# Without a GPU, DeepSpeed compiles its shared-memory communication op (g++, about a minute)
# the first time two processes train: build it once here, into $TORCH_EXTENSIONS_DIR.
if "$PYTHON" -c "import sys, torch; sys.exit(torch.cuda.is_available())"; then
  "$PYTHON" -c "from deepspeed.accelerator import get_accelerator
get_accelerator().create_op_builder('ShareMemCommBuilder').load(verbose=False)" > /dev/null ||
    echo "setup.sh: DeepSpeed's CPU communication op did not compile (see above; it needs a C++ compiler);" \
      "everything else is installed, and DeepSpeed will try again at its first two-process CPU launch" >&2
fi
