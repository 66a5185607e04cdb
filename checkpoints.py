"""Checkpoints of llada_cpt.py: a run killed at any moment resumes from its last complete
checkpoint, and nothing is ever deleted but by the Trainer's save_total_limit.

A checkpoint is complete once its marker file is written, last, after every process has saved
its part. Output-folder preparation moves the previous run (--overwrite_output_dir) or incomplete
checkpoints aside (a rename); the final model is written by save_final, or from a checkpoint that
already reached --max_steps.
Before anything loads, the output folder is checked (writable, not a folder the model is read
from, one run at a time, the settings of the run it holds) and so is the checkpoint to resume
from (complete, undamaged)."""
import errno
import fcntl
import glob
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

from model_config import code_files

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


# What a run writes at the top of output_dir besides its checkpoints: the final model (weights, possibly
# sharded; config; the tokenizer's files; the code files its config's auto_map names) and the run's records
# (state, results, the loss curve, the LoRA adapter, the Trainer's arguments, and the folders tensorboard and
# wandb default to). --overwrite_output_dir moves them aside with the checkpoints, so that the folder never loads
# as the previous run's model; tests/test_resume.py checks the list against what real runs write.
RUN_OUTPUTS = ("model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json", "pytorch_model*.bin",
               "pytorch_model.bin.index.json", "config.json", "generation_config.json", "tokenizer*",
               "special_tokens_map.json", "added_tokens.json", "chat_template.jinja", "vocab.*", "merges.txt",
               "training_args.bin", "trainer_state.json", "all_results.json", "train_results.json",
               "eval_results.json", "loss_curve.png", "adapter", "runs", "wandb")


def run_outputs_in(output_dir):
    """The paths in output_dir that a run writes besides its checkpoints (RUN_OUTPUTS, and the code
    files named by the auto_map of its config.json)."""
    found = {p for pattern in RUN_OUTPUTS for p in glob.glob(os.path.join(glob.escape(output_dir), pattern))}
    config = os.path.join(output_dir, "config.json")
    try:
        with open(config) as f:
            auto_map = json.load(f).get("auto_map") or {}
    except (OSError, ValueError, AttributeError):
        auto_map = {}
    found.update(p for p in (os.path.join(output_dir, name) for name in code_files(auto_map)) if os.path.isfile(p))
    return sorted(found)


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
            raise ValueError(f"--output_dir {training_args.output_dir} {'is' if folder == out else 'contains'} "
                             f"the folder of --{flag} {source}: training would overwrite what it reads; "
                             "give another --output_dir")


LOCK_FILE = "run.lock"  # held (flock) by process 0 of the run that trains into the folder


def holder_of(lock):
    """Who holds the lock file `lock` (open) by its own account: the host, pid and start time it wrote."""
    lock.seek(0)
    return lock.read().strip() or "a process that has not written its name yet"


@contextmanager
def output_dir_claimed(training_args):
    """Checks the output folder, and with --do_train holds an exclusive lock on it while the
    block runs: one training run per output folder. The lock is the kernel's (flock on
    output_dir/run.lock), so it dies with its process, even under kill -9; the file itself only
    names the last holder (host, pid, start time). An evaluation alone is refused a training run's
    folder (check_no_training_run)."""
    out = training_args.output_dir
    check_output_dir(out)
    if training_args.do_eval and not training_args.do_train:
        check_no_training_run(out)
    if not (training_args.do_train and training_args.process_index == 0):
        yield
        return
    f = open(os.path.join(out, LOCK_FILE), "a+")
    locked = False
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        locked = True
    except BlockingIOError:
        holder = holder_of(f)
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


TRAINING_RECORDS = ("trainer_state.json", "train_results.json")  # at the top of a folder a training run finished in


def check_no_training_run(output_dir):
    """An evaluation alone (--do_eval without --do_train) writes eval_results.json and all_results.json
    into its --output_dir, and a training run reads all_results.json back when it ends: refused in a
    folder that holds a training run (its checkpoints or final records) or that one is training into
    now (it holds the lock), so that the two runs' numbers never mix. Checked before anything loads."""
    found = [name for name in TRAINING_RECORDS if os.path.isfile(os.path.join(output_dir, name))]
    found += [os.path.basename(c) for c in checkpoints_in(output_dir)]
    lock = os.path.join(output_dir, LOCK_FILE)
    if not found and os.path.isfile(lock):
        with open(lock) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(f, fcntl.LOCK_UN)
            except BlockingIOError:
                found = [f"{LOCK_FILE}, held by the run training into it ({holder_of(f)})"]
            except OSError:
                pass  # a filesystem without locks: nothing to tell
    if found:
        raise ValueError(f"--output_dir {output_dir} holds a training run ({', '.join(found[:4])}): an evaluation "
                         "alone (--do_eval without --do_train) would write its results among that run's records; "
                         "give it an --output_dir of its own (a new folder, or one inside this one)")


def prepare_output_dir(training_args, identity):
    """The checkpoint to resume from, or None, checked: complete, undamaged, and of the same run
    (identity: run_identity of the new command). Deletes nothing: --overwrite_output_dir moves the
    previous run, its checkpoints, final model and records (run_outputs_in), to
    output_dir/previous-<time>/ before anything trains, and a checkpoint without its completion
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
            previous = found + run_outputs_in(out) if training_args.overwrite_output_dir else []
            if previous:
                moved = move_aside(previous, out, "previous")
                logger.warning(f"--overwrite_output_dir: moved the previous run ({len(found)} checkpoints, "
                               f"{len(previous) - len(found)} other files and folders) to {moved}")
            elif incomplete:
                logger.warning(f"{', '.join(incomplete)}: incomplete (no {CHECKPOINT_COMPLETE} file: "
                               "the run stopped while writing), not loaded; "
                               f"moved to {move_aside(incomplete, out, 'incomplete')}")
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
    return (f"There is no earlier complete checkpoint: move it aside (`{aside}`) or add --overwrite_output_dir, "
            "and relaunch")


# ---------------------------------------------------------------------------
# Run identity: the settings that define a run, recorded in every checkpoint
# ---------------------------------------------------------------------------

RUN_FILE = "run_settings.json"  # in every checkpoint: run_identity of the run that wrote it


def _source(path):
    """A local path as an absolute real path (a relaunch may come from another folder), a hub name as given."""
    return os.path.realpath(path) if path and os.path.exists(path) else path


def _name(value):
    return str(getattr(value, "value", value))  # an enum's value (optim, lr_scheduler_type, ...)


def run_identity(model_args, data_args, xdlm_args, training_args):
    """The settings that define a run: the loss and its noise, the model, the training data and
    its order, the batch, the optimizer and its schedule. A checkpoint continued under other values
    would mix two runs. Every key is always recorded (None where it does not apply in this run);
    k is --xdlm_k as the loss uses it, world_size is recorded but only warned about (the global
    batch changes; checkpoints are meant to survive it). Every flag of the four argument
    dataclasses is either recorded here or named in FREE_ON_RESUME (tests/test_run_safety.py checks)."""
    t, d = training_args, data_args
    schedule = _name(t.lr_scheduler_type)
    # The schedule's length matters where the rate decays over it or the warmup is a fraction of it.
    length_matters = schedule not in ("constant", "constant_with_warmup") or 0 < t.warmup_steps < 1
    lora = model_args.with_lora
    return {
        "training_method": xdlm_args.training_method, "k": xdlm_args.k, "stratified_t": xdlm_args.stratified_t,
        "mask_token_id": xdlm_args.mask_token_id,
        "model_name_or_path": _source(model_args.model_name_or_path),
        "config_name": _source(model_args.config_name), "tokenizer_name": _source(model_args.tokenizer_name),
        "model_revision": model_args.model_revision,
        "model_implementation": model_args.model_implementation,
        "dataset_name": _source(d.dataset_name), "dataset_config_name": d.dataset_config_name,
        "train_file": _source(d.train_file), "streaming": d.streaming,
        # Without a validation split of its own, the training data gives up one (data.load_raw_datasets):
        # non-streamed, this percentage; streamed, the first --max_eval_samples texts (none at percentage 0).
        "validation_file": _source(d.validation_file),
        "validation_split_percentage": d.validation_split_percentage,
        "max_eval_samples": d.max_eval_samples if d.streaming else None,
        "text_column": d.text_column, "prompt_column": d.prompt_column,
        "answer_column": d.answer_column if d.prompt_column else None,
        "block_size": d.block_size, "max_train_samples": d.max_train_samples,
        # Packing works per batch of texts, and each tokenizing process starts its own batches.
        "preprocessing_num_workers": None if d.streaming else d.preprocessing_num_workers,
        "shuffle_buffer_size": d.shuffle_buffer_size, "seed": t.seed, "data_seed": t.data_seed,
        "train_sampling_strategy": t.train_sampling_strategy, "length_column_name": t.length_column_name,
        "dataloader_drop_last": t.dataloader_drop_last, "ignore_data_skip": t.ignore_data_skip,
        # A stream's shards are spread over the dataloader workers, whose batches then interleave.
        "dataloader_num_workers": t.dataloader_num_workers if d.streaming else None,
        "dataloader_in_order": t.dataloader_in_order if d.streaming else None,
        "accelerator_config": t.accelerator_config.to_dict() if hasattr(t.accelerator_config, "to_dict")
        else t.accelerator_config,
        "per_device_train_batch_size": t.per_device_train_batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation_steps, "auto_find_batch_size": t.auto_find_batch_size,
        "world_size": t.world_size,
        "learning_rate": t.learning_rate, "weight_decay": t.weight_decay, "adam_beta1": t.adam_beta1,
        "adam_beta2": t.adam_beta2, "adam_epsilon": t.adam_epsilon, "max_grad_norm": t.max_grad_norm,
        "optim": _name(t.optim), "optim_args": t.optim_args, "optim_target_modules": t.optim_target_modules,
        "neftune_noise_alpha": t.neftune_noise_alpha,
        "lr_scheduler_type": schedule, "lr_scheduler_kwargs": t.lr_scheduler_kwargs or None,
        "warmup_steps": t.warmup_steps, "max_steps": t.max_steps if length_matters else None,
        "num_train_epochs": t.num_train_epochs if length_matters and t.max_steps <= 0 else None,
        "with_lora": lora, "lora_r": model_args.lora_r if lora else None,
        "lora_alpha": model_args.lora_alpha if lora else None,
        "lora_dropout": model_args.lora_dropout if lora else None,
        "lora_target_modules": ",".join(model_args.lora_targets) if lora else None,
    }


# Every other flag: free to change on resume, because it changes what is observed or saved, how fast or
# on what hardware the same run is computed (precision included), or nothing in this run.
FREE_ON_RESUME = frozenset({
    # model loading and caches
    "cache_dir", "token", "trust_remote_code", "torch_dtype", "overwrite_cache",
    # the loss's implementation and what is evaluated or plotted
    "fused_loss", "eval_mask_rates", "plot_loss",
    # the output folder and what to do
    "output_dir", "overwrite_output_dir", "resume_from_checkpoint", "do_train", "do_eval", "do_predict", "local_rank",
    # logging and reporting
    "logging_strategy", "logging_steps", "logging_first_step", "log_on_each_node", "logging_nan_inf_filter",
    "include_num_input_tokens_seen", "log_level", "log_level_replica", "disable_tqdm", "report_to", "run_name",
    "project", "trackio_space_id", "trackio_bucket_id", "trackio_static_space_id", "skip_memory_metrics", "debug",
    # evaluation (its own data, its own noise) and the choice of a best checkpoint
    "eval_strategy", "eval_steps", "eval_delay", "per_device_eval_batch_size", "prediction_loss_only", "eval_on_start",
    "eval_do_concat_batches", "eval_use_gather_object", "eval_accumulation_steps", "include_for_metrics",
    "batch_eval_metrics", "bf16_full_eval", "fp16_full_eval", "label_names", "metric_for_best_model",
    "greater_is_better", "load_best_model_at_end",
    # saving and the hub
    "save_only_model", "save_strategy", "save_steps", "save_on_each_node", "save_total_limit", "enable_jit_checkpoint",
    "restore_callback_states_from_checkpoint", "push_to_hub", "hub_token", "hub_private_repo", "hub_model_id",
    "hub_strategy", "hub_always_push", "hub_revision",
    # precision, kernels, memory and speed
    "bf16", "fp16", "tf32", "full_determinism", "use_cpu", "torch_compile", "torch_compile_backend",
    "torch_compile_mode", "use_liger_kernel", "liger_kernel_config", "use_cache", "activation_checkpointing",
    "activation_checkpointing_kwargs", "gradient_checkpointing", "gradient_checkpointing_kwargs",
    "torch_empty_cache_steps", "dataloader_pin_memory", "dataloader_persistent_workers", "dataloader_prefetch_factor",
    "dataloader_multiprocessing_context",
    # how the processes share the work (the world size itself is recorded and warned about)
    "deepspeed", "fsdp", "fsdp_config", "parallelism_config", "ddp_find_unused_parameters", "ddp_bucket_cap_mb",
    "ddp_broadcast_buffers", "ddp_static_graph", "ddp_backend", "ddp_timeout",
    # only the default accepted (label smoothing 0, the data column kept) or no effect (the loss normalises itself)
    "label_smoothing_factor", "average_tokens_across_devices", "remove_unused_columns",
})


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
            launch = "trains LoRA adapters (--with_lora)" if identity["with_lora"] else "trains full weights"
            raise ValueError(f"{checkpoint} holds {'LoRA adapters' if is_lora else 'full weights'} but this launch "
                             f"{launch}: {ways}")
        logger.warning(f"{checkpoint} records no run settings (no {RUN_FILE}: an earlier version wrote it); "
                       "not compared")
        return
    with open(path) as f:
        recorded = json.load(f)
    differ = [(key, recorded[key], value) for key, value in identity.items()
              if key != "world_size" and key in recorded and _differs(recorded[key], value)]
    if differ:
        lines = "\n".join(f"  {key}: {old!r} in the checkpoint, {new!r} now" for key, old, new in differ)
        raise ValueError(f"{checkpoint} belongs to a run with other settings:\n{lines}\n{ways[0].upper() + ways[1:]}")
    unrecorded = [key for key in identity if key not in recorded]
    if unrecorded:
        logger.warning(f"{checkpoint} does not record {', '.join(unrecorded)} (an earlier version wrote its "
                       f"{RUN_FILE}): not compared")
    if recorded.get("world_size") not in (None, world_size):
        logger.warning(f"{checkpoint} was written by {recorded['world_size']} processes, resumed by {world_size}: "
                       "the global batch (world size x per-device batch x accumulation steps) and the training noise "
                       "change from here")


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


def raise_if_out_of_space(error, run_dir, doing):
    """For a full disk: raises an OSError that says so, with the numbers needed to make room (the
    disk's error as its cause); else returns, and the caller re-raises the error."""
    if not is_out_of_space(error):
        return
    complete = [c for c in checkpoints_in(run_dir) if is_complete(c)]
    last = (f"the last checkpoint, {complete[-1]}, takes {folder_bytes(complete[-1])} bytes"
            if complete else "no checkpoint was saved before")
    raise OSError(errno.ENOSPC, f"no space left on the device of {run_dir} while {doing}: "
                  f"{shutil.disk_usage(run_dir).free} bytes free; {last}. Make room (or lower --save_total_limit) "
                  "and relaunch the same command: it resumes from the last complete checkpoint") from error


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
    surface: it overrides _save_checkpoint, _maybe_log_save_evaluate, _save_rng_state and
    _load_rng_state, calls _load_from_checkpoint, and lowers args.save_total_limit around the
    Trainer's own save (whose rotation reads it); checked against transformers 5.24.0, and their
    signatures pinned by tests/test_resume.py. The class using it sets self.run_identity, written
    into every checkpoint, and self.noise_generator, the training noise's generator, saved and
    restored per process."""

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
                os.replace(os.path.join(folder, CHECKPOINT_COMPLETE + ".tmp"),
                           os.path.join(folder, CHECKPOINT_COMPLETE))
        except Exception as error:
            self._discard_unfinished_save(folder, error)
            raise_if_out_of_space(error, run_dir, f"saving {folder}")
            raise
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
            logger.error(f"removed {folder}: the save of step {self.state.global_step} failed "
                         f"({type(error).__name__}), and a folder without its {CHECKPOINT_COMPLETE} file "
                         "is our unfinished write, not a checkpoint")

    def _save_rng_state(self, output_dir):
        super()._save_rng_state(output_dir)
        torch.save(self.noise_generator.get_state(),
                   os.path.join(output_dir, f"noise_rng_state_{self.args.process_index}.pth"))

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
            try:
                self.save_final(with_lora, tokenizer)
            except Exception as error:
                raise_if_out_of_space(error, self.args.output_dir, "writing the final model")
                raise
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
