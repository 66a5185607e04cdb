#!/usr/bin/env bash
# The paper's run: LLaDA-8B-Base continued for 1000 steps with XDLM (k = 0.1) on
# FineWeb-Edu sample-10BT, ZeRO-2 bf16.
#   LLADA=/path/or/hub/id  OUT=./checkpoints  bash scripts/train_llada_xdlm.sh [extra flags]
# Relaunching the same command after a crash resumes from the last complete checkpoint in
# $OUT (the last 3 are kept). Add --overwrite_output_dir to start afresh: earlier checkpoints
# are then moved to $OUT/previous-<time>/, never deleted. Another row of the paper (e.g.
# --training_method mdm) needs its own OUT: a relaunch whose run-defining settings differ
# from the checkpoint's is refused, listing the differences.
# Machines: every GPU of this node by default; NUM_GPUS (per node), NUM_NODES and HOSTFILE
# (DeepSpeed's hostfile, one "host slots=N" line per node) go to the deepspeed launcher.
source "$(dirname "$0")/common.sh"
LLADA=${LLADA:-GSAI-ML/LLaDA-8B-Base}
DATA=${DATA:-HuggingFaceFW/fineweb-edu}
OUT=${OUT:-./checkpoints}
LAUNCH=()
if [[ -n "${NUM_NODES:-}" ]]; then LAUNCH+=(--num_nodes "$NUM_NODES"); fi
if [[ -n "${NUM_GPUS:-}" ]]; then LAUNCH+=(--num_gpus "$NUM_GPUS"); fi
if [[ -n "${HOSTFILE:-}" ]]; then LAUNCH+=(--hostfile "$HOSTFILE"); fi
if [[ -n "${MASTER_PORT:-}" ]]; then LAUNCH+=(--master_port "$MASTER_PORT"); fi
exec "${DEEPSPEED[@]}" "${LAUNCH[@]}" llada_cpt.py --deepspeed ds_zero2_bf16_config_simp.json \
  --config_name "$LLADA" --tokenizer_name "$LLADA" --model_name_or_path "$LLADA" \
  --dataset_name "$DATA" --dataset_config_name sample-10BT --streaming \
  --block_size 4096 --per_device_train_batch_size 1 --do_train --output_dir "$OUT" \
  --bf16 --gradient_accumulation_steps 64 --lr_scheduler_type constant_with_warmup --learning_rate 2e-5 \
  --weight_decay 0.1 --max_grad_norm 1.0 --warmup_steps 100 --logging_steps 2 --save_steps 100 --save_total_limit 3 \
  --max_steps 1000 --dataloader_num_workers 4 --report_to wandb \
  --remove_unused_columns False --ddp_find_unused_parameters False --load_best_model_at_end False \
  --training_method xdm --trust_remote_code True "$@"
