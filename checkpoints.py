"""Checkpoints of llada_cpt.py: a run killed at any moment resumes from its last complete
checkpoint, and nothing is ever deleted but by the Trainer's save_total_limit.

A checkpoint is complete once its marker file is written, last, after every process has saved
its part. Output-folder preparation moves earlier or incomplete checkpoints aside (a rename);
the final model is written by save_final, or from a checkpoint that already reached --max_steps.
Before anything loads, the output folder is checked (writable, not a folder the model is read
from, one run at a time, the settings of the run it holds) and so is the checkpoint to resume
from (complete, undamaged)."""
import errno
import fcntl
import json
import logging
import math
import os
import re
import shutil
import socket
import time
import zipfile
from contextlib import contextmanager

import torch
from safetensors import safe_open
from transformers import TrainerCallback
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


def check_output_dir(output_dir):
    """The output folder exists (made here) and takes a real write: root ignores mode bits, and a
    read-only mount shows only when written to. Fails before anything loads, not at the first save."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"--output_dir {output_dir} is a file; give a folder (new or existing)")
    probe = os.path.join(output_dir, f".write-test-{socket.gethostname()}-{os.getpid()}")
    try:
        os.makedirs(output_dir, exist_ok=True)
        with open(probe, "w") as f:
            f.write("x")
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"--output_dir {output_dir} is not writable ({e.strerror}): checkpoints and the final model "
                         "are written there; give a folder this user can write") from None


def check_source_is_not_destination(model_args, training_args):
    """Training writes checkpoints and the final model into --output_dir: it must not be, or
    contain, a folder the model, config or tokenizer is read from."""
    out = os.path.realpath(training_args.output_dir)
    for flag in ("model_name_or_path", "config_name", "tokenizer_name"):
        source = getattr(model_args, flag)
        if not (source and os.path.exists(source)):
            continue  # a hub name
        folder = os.path.realpath(source if os.path.isdir(source) else os.path.dirname(source))
        if folder == out or folder.startswith(out.rstrip(os.sep) + os.sep):
            raise ValueError(f"--output_dir {training_args.output_dir} {'is' if folder == out else 'contains'} the folder of "
                             f"--{flag} {source}: training would overwrite what it reads; give another --output_dir")


LOCK_FILE = "run.lock"  # held (flock) by process 0 of the run that trains into the folder


@contextmanager
def output_dir_claimed(training_args):
    """Checks the output folder, and with --do_train holds an exclusive lock on it while the
    block runs: one training run per output folder. The lock is the kernel's (flock on
    output_dir/run.lock), so it dies with its process, even under kill -9; the file itself only
    names the last holder (host, pid, start time)."""
    out = training_args.output_dir
    check_output_dir(out)
    if not (training_args.do_train and training_args.process_index == 0):
        yield
        return
    f = open(os.path.join(out, LOCK_FILE), "a+")
    locked = False
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        locked = True
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "a process that has not written its name yet"
        f.close()
        raise RuntimeError(f"--output_dir {out} is in use by another training run ({holder}); one run per output "
                           "folder: wait for it to end, stop it, or give another --output_dir") from None
    except OSError as e:  # e.g. Lustre mounted without flock support
        logger.warning(f"--output_dir {out}: its filesystem takes no locks ({e.strerror}), so nothing stops a second "
                       "run from training into it at the same time")
    try:
        f.seek(0)
        f.truncate()
        f.write(f"host {socket.gethostname()}, pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n")
        f.flush()
        yield
    finally:
        if locked:
            fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def prepare_output_dir(training_args, identity):
    """The checkpoint to resume from, or None, checked: complete, undamaged, and of the same run
    (identity: run_identity of the new command). Deletes nothing: --overwrite_output_dir moves the
    earlier checkpoints to output_dir/previous-<time>/, and a checkpoint without its completion
    marker (the run died while writing it) goes to output_dir/incomplete-<time>/ unread."""
    resume = training_args.resume_from_checkpoint
    if resume:
        if not os.path.isdir(resume):
            raise ValueError(f"--resume_from_checkpoint {resume} is not a folder; give a checkpoint-<step> folder")
        if not is_complete(resume):
            raise ValueError(f"--resume_from_checkpoint {resume} is incomplete (no {CHECKPOINT_COMPLETE} file: "
                             "the run stopped while writing it); give an earlier checkpoint")
    out = training_args.output_dir
    if not training_args.do_train:
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
    checkpoint = resume
    if not (resume or training_args.overwrite_output_dir):
        complete = [c for c in checkpoints_in(out) if is_complete(c)]
        checkpoint = complete[-1] if complete else None
    if checkpoint:
        check_undamaged(checkpoint, explicit=bool(resume))
        check_same_run(checkpoint, identity, training_args.world_size, explicit=bool(resume))
        if not resume:
            logger.info(f"Resuming from {checkpoint} (--overwrite_output_dir starts afresh)")
    return checkpoint


def check_undamaged(checkpoint, explicit):
    """Every weight, optimizer and state file of the checkpoint can be opened: safetensors and
    torch's zip files are checked by their headers and central directories (a truncated file
    fails), JSON files are parsed. Nothing is read in full."""
    for folder, _, names in os.walk(checkpoint):
        for name in sorted(names):
            path = os.path.join(folder, name)
            try:
                if name.endswith(".safetensors"):
                    with safe_open(path, "pt"):
                        pass
                elif name.endswith((".pt", ".pth", ".bin")) and not legacy_torch_file(path):
                    zipfile.ZipFile(path).close()
                elif name.endswith(".json"):
                    with open(path) as f:
                        json.load(f)
            except Exception as e:  # noqa: BLE001  (any failure to open is damage)
                raise ValueError(f"{path} is damaged ({type(e).__name__}: {e}), so {checkpoint} cannot be resumed. "
                                 f"{way_past(checkpoint, explicit)}") from None


def legacy_torch_file(path):
    """torch.save's pre-1.6 format (a bare pickle, no zip directory to check)."""
    with open(path, "rb") as f:
        return f.read(1) == b"\x80"


def way_past(checkpoint, explicit):
    """How to resume from the complete checkpoint before `checkpoint` (which cannot be used)."""
    out = os.path.dirname(os.path.abspath(checkpoint))
    step = re.search(r"-(\d+)$", checkpoint.rstrip(os.sep))
    step = int(step.group(1)) if step else math.inf
    earlier = [c for c in checkpoints_in(out) if is_complete(c) and int(c.rsplit("-", 1)[1]) < step]
    if explicit:
        return (f"Resume from the previous complete checkpoint with --resume_from_checkpoint {earlier[-1]}" if earlier
                else "There is no earlier complete checkpoint beside it: start afresh without --resume_from_checkpoint")
    aside = f"mv {checkpoint} {os.path.join(out, 'damaged-' + os.path.basename(checkpoint.rstrip(os.sep)))}"
    if earlier:
        return f"Move it aside (`{aside}`) and relaunch the same command: it resumes from {earlier[-1]}"
    return f"There is no earlier complete checkpoint: move it aside (`{aside}`) or add --overwrite_output_dir, and relaunch"


# ---------------------------------------------------------------------------
# Run identity: the settings that define a run, recorded in every checkpoint
# ---------------------------------------------------------------------------

RUN_FILE = "run_settings.json"  # in every checkpoint: run_identity of the run that wrote it


def _source(path):
    """A local path as an absolute real path (a relaunch may come from another folder), a hub name as given."""
    return os.path.realpath(path) if path and os.path.exists(path) else path


def run_identity(model_args, data_args, xdlm_args, training_args):
    """The settings that define a run: a checkpoint continued under other values would mix two
    runs (another loss, model, data, batch or optimizer trajectory). Not here, so free to change
    on resume: logging, save and evaluation cadence, dataloader workers, reporting, --max_steps
    for a schedule that does not depend on it (constant, constant_with_warmup: raise it to train
    on), precision flags and DeepSpeed's config. The world size is recorded but only warned about
    (the global batch changes; checkpoints are meant to survive it)."""
    identity = {
        "training_method": xdlm_args.training_method, "k": xdlm_args.k, "stratified_t": xdlm_args.stratified_t,
        "mask_token_id": xdlm_args.mask_token_id,
        "model_name_or_path": _source(model_args.model_name_or_path), "config_name": _source(model_args.config_name),
        "tokenizer_name": _source(model_args.tokenizer_name), "model_implementation": model_args.model_implementation,
        "dataset_name": _source(data_args.dataset_name), "dataset_config_name": data_args.dataset_config_name,
        "train_file": _source(data_args.train_file), "streaming": data_args.streaming,
        "text_column": data_args.text_column, "prompt_column": data_args.prompt_column,
        "answer_column": data_args.answer_column if data_args.prompt_column else None,
        "block_size": data_args.block_size, "max_train_samples": data_args.max_train_samples,
        "per_device_train_batch_size": training_args.per_device_train_batch_size,
        "gradient_accumulation_steps": training_args.gradient_accumulation_steps,
        "world_size": training_args.world_size, "seed": training_args.seed,
        "learning_rate": training_args.learning_rate, "weight_decay": training_args.weight_decay,
        "optim": str(getattr(training_args.optim, "value", training_args.optim)),
        "lr_scheduler_type": str(getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type)),
        "lr_scheduler_kwargs": training_args.lr_scheduler_kwargs or None, "warmup_steps": training_args.warmup_steps,
        "with_lora": model_args.with_lora,
    }
    if identity["lr_scheduler_type"] not in ("constant", "constant_with_warmup"):
        identity["max_steps"] = training_args.max_steps  # the schedule's length
    if model_args.with_lora:
        identity.update(lora_r=model_args.lora_r, lora_alpha=model_args.lora_alpha, lora_dropout=model_args.lora_dropout,
                        lora_target_modules=",".join(model_args.lora_targets))
    return identity


def check_same_run(checkpoint, identity, world_size, explicit):
    """Refuses to continue `checkpoint` under settings that define another run, listing each
    difference; a checkpoint from before run settings were recorded is checked for LoRA only."""
    is_lora = os.path.isfile(os.path.join(checkpoint, "adapter_config.json"))
    ways = ("drop --resume_from_checkpoint, or give the settings it was trained with (to start a new run from its "
            "weights, pass it as --model_name_or_path)" if explicit else
            "to start a new run instead, give a new --output_dir, or add --overwrite_output_dir (moves the "
            "checkpoints aside); to continue it, relaunch with its settings")
    path = os.path.join(checkpoint, RUN_FILE)
    if not os.path.isfile(path):
        if is_lora != identity["with_lora"]:
            raise ValueError(f"{checkpoint} holds {'LoRA adapters' if is_lora else 'full weights'} but this launch "
                             f"{'trains LoRA adapters (--with_lora)' if identity['with_lora'] else 'trains full weights'}: {ways}")
        logger.warning(f"{checkpoint} records no run settings (no {RUN_FILE}: an earlier version wrote it); not compared")
        return
    with open(path) as f:
        recorded = json.load(f)
    differ = [(key, recorded.get(key), value) for key, value in identity.items()
              if key != "world_size" and _differs(recorded.get(key), value) and (key in recorded or value is not None)]
    if differ:
        lines = "\n".join(f"  {key}: {old!r} in the checkpoint, {new!r} now" for key, old, new in differ)
        raise ValueError(f"{checkpoint} belongs to a run with other settings:\n{lines}\n{ways[0].upper() + ways[1:]}")
    if recorded.get("world_size") not in (None, world_size):
        logger.warning(f"{checkpoint} was written by {recorded['world_size']} processes, resumed by {world_size}: "
                       "the global batch (world size x per-device batch x accumulation steps) changes from here")


def _differs(old, new):
    if isinstance(old, (int, float)) and isinstance(new, (int, float)) and not isinstance(old, bool):
        return not math.isclose(old, new, rel_tol=1e-12, abs_tol=0.0)
    return json.loads(json.dumps(new)) != old  # compare as JSON: tuples are lists there


def is_out_of_space(error):
    """A full disk (or quota), as an OSError or as torch's zip writer reports it ("unexpected pos")."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "unexpected pos" in str(error) or "No space left" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def out_of_space_error(error, run_dir, doing):
    """For a full disk: an OSError that says so, with the numbers needed to make room; else None."""
    if not is_out_of_space(error):
        return None
    complete = [c for c in checkpoints_in(run_dir) if is_complete(c)]
    last = (f"the last checkpoint, {complete[-1]}, takes {folder_bytes(complete[-1])} bytes"
            if complete else "no checkpoint was saved before")
    return OSError(errno.ENOSPC, f"no space left on the device of {run_dir} while {doing}: "
                   f"{shutil.disk_usage(run_dir).free} bytes free; {last}. Make room (or lower --save_total_limit) "
                   "and relaunch the same command: it resumes from the last complete checkpoint")


def folder_bytes(folder):
    return sum(os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(folder) for n in names)


def reached_max_steps(checkpoint, max_steps):
    if checkpoint is None or max_steps <= 0:
        return False
    with open(os.path.join(checkpoint, "trainer_state.json")) as f:
        return json.load(f)["global_step"] >= max_steps


class NonFiniteTraining(RuntimeError):
    """Training stopped at a non-finite loss or gradient norm; nothing was saved from that state."""


class LastLoggedStep(TrainerCallback):
    """The optimizer step at which the training loss was last logged, or training (re)started:
    the loss the Trainer hands its logging hook is summed over the steps since."""
    step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.step = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.step = state.global_step


class CheckpointingMixin:
    """What checkpointing needs of the Trainer. The only code here that touches its private
    surface: it overrides _save_checkpoint and _maybe_log_save_evaluate, calls
    _load_from_checkpoint, and lowers args.save_total_limit around the Trainer's own save (whose
    rotation reads it); checked against transformers 5.24.0, and their signatures pinned by
    tests/test_resume.py. The class using it sets self.run_identity, written into every checkpoint."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.last_logged = LastLoggedStep()
        self.add_callback(self.last_logged)

    def _maybe_log_save_evaluate(self, tr_loss, grad_norm, *args, **kwargs):
        # Called after every optimizer step, before its logging and saving.
        self.stop_if_not_finite(tr_loss, grad_norm)
        super()._maybe_log_save_evaluate(tr_loss, grad_norm, *args, **kwargs)

    def stop_if_not_finite(self, tr_loss, grad_norm):
        """Raises NonFiniteTraining at the first optimizer step whose loss (summed since the last
        log) or gradient norm is nan or inf, before that step is logged or saved; every process
        decides alike. Under --fp16 an inf gradient norm is the loss scaler's skipped step, not
        divergence, so only the loss counts there."""
        norm = grad_norm.item() if isinstance(grad_norm, torch.Tensor) else grad_norm
        norm_ok = norm is None or math.isfinite(norm) or self.args.fp16
        bad = torch.tensor(float(not (norm_ok and bool(torch.isfinite(tr_loss).all()))), device=tr_loss.device)
        if self.args.world_size > 1:
            bad = self.accelerator.reduce(bad, reduction="sum")
        if not bad.item():
            return
        steps = self.state.global_step - self.last_logged.step
        self.log({"loss": tr_loss.sum().item() / max(steps, 1), "grad_norm": norm})  # as they are: nan shows as nan
        complete = [c for c in checkpoints_in(self.args.output_dir) if is_complete(c)]
        last = (f"the last complete checkpoint is {complete[-1]}: relaunching the same command resumes from it and "
                "repeats these steps exactly" if complete else "no complete checkpoint was written before it")
        raise NonFiniteTraining(
            f"training diverged at step {self.state.global_step}: loss {tr_loss.sum().item() / max(steps, 1):.4g}, "
            f"gradient norm {norm}. "
            f"Nothing from this state is saved (no checkpoint, no final model); {last}. A lower --learning_rate "
            f"(now {self.args.learning_rate:g}) or --max_grad_norm is a new run: give a new --output_dir or add "
            "--overwrite_output_dir")

    def _save_checkpoint(self, model, trial):
        # The Trainer writes the model, optimizer, RNG states and trainer_state.json, then deletes
        # checkpoints beyond save_total_limit. Deleting waits here until the new checkpoint is
        # complete on every process and marked so: a kill at any moment leaves a complete one.
        run_dir = self.args.output_dir
        folder = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        limit, self.args.save_total_limit = self.args.save_total_limit, None
        try:
            super()._save_checkpoint(model, trial)
            self.accelerator.wait_for_everyone()
            if self.args.should_save:
                with open(os.path.join(folder, RUN_FILE), "w") as f:
                    json.dump(self.run_identity, f, indent=1)
                with open(os.path.join(folder, CHECKPOINT_COMPLETE + ".tmp"), "w") as f:
                    f.write(f"{self.state.global_step}\n")
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(os.path.join(folder, CHECKPOINT_COMPLETE + ".tmp"), os.path.join(folder, CHECKPOINT_COMPLETE))
        except Exception as error:
            self._discard_unfinished_save(folder, error)
            raise out_of_space_error(error, run_dir, f"saving {folder}") or error
        finally:
            self.args.save_total_limit = limit
        if self.args.should_save:
            rotate_checkpoints(output_dir=run_dir, save_total_limit=limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)

    def _discard_unfinished_save(self, folder, error):
        """A save that failed is our own unfinished write, not a checkpoint: removed, so that a
        relaunch does not keep it (and, on a full disk, fill the disk again at its next save)."""
        if os.path.isdir(folder) and not is_complete(folder):
            shutil.rmtree(folder, ignore_errors=True)
            logger.error(f"removed {folder}: the save of step {self.state.global_step} failed ({type(error).__name__}), "
                         f"and a folder without its {CHECKPOINT_COMPLETE} file is our unfinished write, not a checkpoint")

    def train_and_save(self, checkpoint, with_lora, tokenizer):
        """Train from `checkpoint` (None: from the start) to --max_steps and write the final
        model; the train metrics, or None when the checkpoint had already reached --max_steps.
        The Trainer would take one optimizer step past --max_steps from such a checkpoint (a
        relaunch after the run finished, or after a crash during the final save), so its
        weights become the final model without a training step (and so without a DeepSpeed
        engine: ZeRO-2 checkpoints hold the full model)."""
        if not reached_max_steps(checkpoint, self.args.max_steps):
            metrics = self.train(resume_from_checkpoint=checkpoint).metrics
            try:
                self.save_final(with_lora, tokenizer)
            except Exception as error:
                raise out_of_space_error(error, self.args.output_dir, "writing the final model") or error
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
