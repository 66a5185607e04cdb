"""Checkpoints of llada_cpt.py: a run killed at any moment resumes from its last complete
checkpoint, and nothing is ever deleted but by the Trainer's save_total_limit.

A checkpoint is complete once its marker file is written, last, after every process has saved
its part. Output-folder preparation moves earlier or incomplete checkpoints aside (a rename);
the final model is written by save_final, or from a checkpoint that already reached --max_steps."""
import json
import logging
import os
import re
import time

import torch
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

logger = logging.getLogger(__name__)

CHECKPOINT_COMPLETE = "checkpoint_complete"  # written last, after every process has saved its part


def is_complete(checkpoint):
    return os.path.isfile(os.path.join(checkpoint, CHECKPOINT_COMPLETE))


def checkpoints_in(output_dir):
    """The checkpoint-<step> folders directly inside output_dir, lowest step first."""
    found = []
    for name in os.listdir(output_dir):
        match = re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)", name)
        if match and os.path.isdir(os.path.join(output_dir, name)):
            found.append((int(match.group(1)), os.path.join(output_dir, name)))
    return [path for _, path in sorted(found)]


def move_aside(paths, output_dir, prefix):
    """Move folders into a new output_dir/<prefix>-<time>/ (a rename: instant, nothing copied)."""
    dest = base = os.path.join(output_dir, f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while os.path.exists(dest):
        dest, n = f"{base}-{n}", n + 1
    os.makedirs(dest)
    for path in paths:
        os.rename(path, os.path.join(dest, os.path.basename(path)))
    return dest


def prepare_output_dir(training_args):
    """The checkpoint to resume from, or None. Deletes nothing: --overwrite_output_dir moves the
    earlier checkpoints to output_dir/previous-<time>/, and a checkpoint without its completion
    marker (the run died while writing it) goes to output_dir/incomplete-<time>/ unread."""
    resume = training_args.resume_from_checkpoint
    if resume and os.path.isdir(resume) and not is_complete(resume):
        raise ValueError(f"--resume_from_checkpoint {resume} is incomplete (no {CHECKPOINT_COMPLETE} file: "
                         "the run stopped while writing it); give an earlier checkpoint")
    out = training_args.output_dir
    if not (training_args.do_train and os.path.isdir(out)):
        return resume
    with training_args.main_process_first(local=False, desc="checking checkpoints"):
        if training_args.process_index == 0:
            found = checkpoints_in(out)
            incomplete = [c for c in found if not is_complete(c)]
            if training_args.overwrite_output_dir and found:
                logger.warning(f"--overwrite_output_dir: moved {len(found)} earlier checkpoints to {move_aside(found, out, 'previous')}")
            elif incomplete:
                logger.warning(f"{', '.join(incomplete)}: incomplete (no {CHECKPOINT_COMPLETE} file: the run stopped while "
                               f"writing), not loaded; moved to {move_aside(incomplete, out, 'incomplete')}")
    if resume or training_args.overwrite_output_dir:
        return resume
    complete = [c for c in checkpoints_in(out) if is_complete(c)]
    if complete:
        logger.info(f"Resuming from {complete[-1]} (--overwrite_output_dir starts afresh)")
    return complete[-1] if complete else None


def reached_max_steps(checkpoint, max_steps):
    if checkpoint is None or max_steps <= 0:
        return False
    with open(os.path.join(checkpoint, "trainer_state.json")) as f:
        return json.load(f)["global_step"] >= max_steps


class CheckpointingMixin:
    """What checkpointing needs of the Trainer, and the only code here that overrides or calls
    its private methods (_save_checkpoint, _get_output_dir, _save_rng_state, _load_rng_state,
    _load_from_checkpoint): checked against transformers 5.24.0. The class using it sets
    self.noise_generator, the training noise's generator, saved and restored per process."""

    def _save_checkpoint(self, model, trial):
        # The Trainer writes the model, optimizer, RNG states and trainer_state.json, then deletes
        # checkpoints beyond save_total_limit. Deleting waits here until the new checkpoint is
        # complete on every process and marked so: a kill at any moment leaves a complete one.
        limit, self.args.save_total_limit = self.args.save_total_limit, None
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            run_dir = self._get_output_dir(trial=trial)
            folder = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            with open(os.path.join(folder, CHECKPOINT_COMPLETE + ".tmp"), "w") as f:
                f.write(f"{self.state.global_step}\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(os.path.join(folder, CHECKPOINT_COMPLETE + ".tmp"), os.path.join(folder, CHECKPOINT_COMPLETE))
            rotate_checkpoints(output_dir=run_dir, save_total_limit=limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)

    def _save_rng_state(self, output_dir):
        super()._save_rng_state(output_dir)
        torch.save(self.noise_generator.get_state(), os.path.join(output_dir, f"noise_rng_state_{self.args.process_index}.pth"))

    def _load_rng_state(self, checkpoint):
        super()._load_rng_state(checkpoint)
        if checkpoint is None:
            return
        path = os.path.join(checkpoint, f"noise_rng_state_{self.args.process_index}.pth")
        if os.path.isfile(path):
            self.noise_generator.set_state(torch.load(path, weights_only=True))
        else:
            logger.warning(f"{path} not found (saved by another world size?): the noise continues from this "
                           "process's initial seed and differs from an uninterrupted run's")

    def train_and_save(self, checkpoint, with_lora, tokenizer):
        """Train from `checkpoint` (None: from the start) to --max_steps and write the final
        model; the train metrics, or None when the checkpoint had already reached --max_steps.
        The Trainer would take one optimizer step past --max_steps from such a checkpoint (a
        relaunch after the run finished, or after a crash during the final save), so its
        weights become the final model without a training step (and so without a DeepSpeed
        engine: ZeRO-2 checkpoints hold the full model)."""
        if not reached_max_steps(checkpoint, self.args.max_steps):
            metrics = self.train(resume_from_checkpoint=checkpoint).metrics
            self.save_final(with_lora, tokenizer)
            return metrics
        logger.warning(f"{checkpoint} already reached --max_steps {self.args.max_steps}: nothing is trained; "
                       "its model is written as the final model (raise --max_steps to train on)")
        self._load_from_checkpoint(checkpoint)
        out = self.args.output_dir
        if self.is_world_process_zero() and with_lora:
            self.model.save_pretrained(os.path.join(out, "adapter"))
            self._save_merged(self.model, tokenizer)
        elif self.is_world_process_zero():
            self.model.save_pretrained(out)
            tokenizer.save_pretrained(out)
        return None

    def save_final(self, with_lora, tokenizer):
        """output_dir gets a full model (safetensors) and the tokenizer; with LoRA the adapters are
        merged in, and the adapter alone goes to output_dir/adapter."""
        if not with_lora:
            self.save_model()
            return
        self.save_model(os.path.join(self.args.output_dir, "adapter"))
        if self.is_world_process_zero():
            self._save_merged(self.accelerator.unwrap_model(self.model), tokenizer)

    def _save_merged(self, lora_model, tokenizer):
        """The LoRA adapters merged into the base weights: a full model in output_dir."""
        lora_model.merge_and_unload().save_pretrained(self.args.output_dir)
        tokenizer.save_pretrained(self.args.output_dir)
