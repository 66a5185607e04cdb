#!/usr/bin/env bash
# Checks scripts/plan.py against measurement on one device and prints one table (see
# scripts/gpu_check.py): a few minutes on one H200 with the ~1.1B shape and random weights.
#   bash scripts/gpu_check.sh                        # on a GPU
#   bash scripts/gpu_check.sh --device cpu --tiny    # a smoke run on CPU
source "$(dirname "$0")/common.sh"
# CPU: large freed tensors go straight back to the OS, so the peak resident size follows
# the live tensors (glibc would otherwise keep some of them in its heap).
export MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-65536}
exec "$PYTHON" scripts/gpu_check.py "$@"
