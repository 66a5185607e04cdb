# Sourced by the other scripts: strict mode, the repository root as the working directory, and
# the Python that runs everything ($PYTHON, default .venv/bin/python; DeepSpeed's and
# OpenCompass's launchers run as its modules, so one variable picks the environment).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
export PYTHON=${PYTHON:-.venv/bin/python}  # exported: scripts that call scripts use the same one
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
DEEPSPEED=("$PYTHON" -m deepspeed.launcher.runner)
# Where DeepSpeed keeps the ops it compiles (without a GPU: a shared-memory op, built by setup.sh).
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-$ROOT/.torch_extensions}
OPENCOMPASS=("$PYTHON" -m opencompass.cli.main)

# The tiny default's training flags (scripts/train_tiny.sh; flags given after them override).
TINY_TRAIN_FLAGS=(
  --training_method xdm --block_size 64 --per_device_train_batch_size 32
  --learning_rate 1e-3 --weight_decay 0.0 --max_grad_norm 1.0
  --lr_scheduler_type constant_with_warmup --warmup_steps 20 --max_steps 1500
  --logging_steps 1 --save_strategy no
  --do_train --overwrite_output_dir --report_to none --dataloader_num_workers 0 --seed 0
)

# The CPU experiments run offline: nothing from a hub, wandb (if asked for) logs locally.
offline_setup() {
  export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
  export WANDB_MODE=${WANDB_MODE:-offline}
}

# The tiny runs: offline, on the tiny model and data in $TINY (made once by make_tiny.py).
tiny_setup() {
  offline_setup
  TINY=${TINY_DIR:-.tiny}
  "$PYTHON" scripts/make_tiny.py --out "$TINY"
}
