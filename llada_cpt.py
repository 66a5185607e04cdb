#!/usr/bin/env python
"""Continual pretraining of LLaDA-class diffusion language models with the XDLM loss.

The flow of transformers' run_clm.py (argument dataclasses, datasets, packing into
blocks, Trainer) with LLaDA's loss swapped for a choice of:
  xdm  the XDLM loss (mask / uniform-noise mixture, ratio --xdlm_k),
  mdm  LLaDA's masked diffusion loss (XDLM at k = 0),
  ar   next-token cross-entropy with causal attention.
Launch with `deepspeed llada_cpt.py --deepspeed ds_zero2_bf16_config_simp.json ...`,
`torchrun`, or plain `python` for one process.
"""
import glob
import json
import logging
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from itertools import chain
from typing import Optional

import datasets
import numpy as np
import torch
import transformers
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    HfArgumentParser,
    PretrainedConfig,
    Trainer,
    TrainingArguments,
    default_data_collator,
    set_seed,
)
from transformers.dynamic_module_utils import get_class_from_dynamic_module
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

import modeling_llada  # noqa: F401  (registers model_type "llada" with the Auto classes)
from modeling_llada import LLaDAConfig, LLaDAModelLM
from xdlm_loss import (
    MASK_RATE_EPS,
    autoregressive_loss,
    corrupt,
    linear_xdlm_loss,
    loss_positions,
    sample_mask_rate,
    stratified_mask_rate,
    xdlm_loss,
)

logger = logging.getLogger(__name__)

TRAINING_METHODS = ("xdm", "mdm", "ar")
LLADA_MODULES = ("q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out")


@dataclass
class ModelArguments:
    model_name_or_path: Optional[str] = field(default=None, metadata={"help": "Checkpoint to continue from; omit to train from scratch (needs --config_name)."})
    config_name: Optional[str] = field(default=None, metadata={"help": "Config name or path, if not the model's."})
    tokenizer_name: Optional[str] = field(default=None, metadata={"help": "Tokenizer name or path, if not the model's."})
    cache_dir: Optional[str] = field(default=None, metadata={"help": "Where hub downloads are cached."})
    model_revision: str = field(default="main", metadata={"help": "Hub revision (branch, tag or commit)."})
    token: Optional[str] = field(default=None, metadata={"help": "Hub token for private models or datasets."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow hub code for tokenizers/configs of non-LLaDA models, and for --model_implementation remote."})
    model_implementation: str = field(default="native", metadata={"help": "'native': this repository's LLaDA model for model_type llada. 'remote': the checkpoint's own code (needs --trust_remote_code True)."})
    torch_dtype: Optional[str] = field(default=None, metadata={"help": "Load weights in this dtype: auto (the checkpoint's), bfloat16, float16 or float32. Default: float32, or bfloat16/float16 under DeepSpeed with --bf16/--fp16 (DeepSpeed keeps float32 master weights)."})
    with_lora: bool = field(default=False, metadata={"help": "Train LoRA adapters instead of all weights."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: str = field(default=",".join(LLADA_MODULES), metadata={"help": "Comma-separated LLaDA block modules that get adapters."})

    def __post_init__(self):
        if self.torch_dtype not in (None, "auto", "bfloat16", "float16", "float32"):
            raise ValueError(f"--torch_dtype must be auto, bfloat16, float16 or float32, got {self.torch_dtype!r}")
        if self.model_implementation not in ("native", "remote"):
            raise ValueError(f"--model_implementation must be 'native' or 'remote', got {self.model_implementation!r}")
        if self.model_implementation == "remote" and not self.trust_remote_code:
            raise ValueError("--model_implementation remote runs the checkpoint's own code: add --trust_remote_code True")
        if not (self.model_name_or_path or self.config_name):
            raise ValueError("give --model_name_or_path (continue a checkpoint) or --config_name (train from scratch)")
        if not (self.tokenizer_name or self.model_name_or_path):
            raise ValueError("give --tokenizer_name when training from scratch with --config_name")
        targets = [t.strip() for t in self.lora_target_modules.split(",") if t.strip()]
        unknown = sorted(set(targets) - set(LLADA_MODULES))
        if self.with_lora and (unknown or not targets):
            raise ValueError(f"--lora_target_modules must be a comma-separated subset of {', '.join(LLADA_MODULES)}, got {self.lora_target_modules!r}")


@dataclass
class DataTrainingArguments:
    dataset_name: Optional[str] = field(default=None, metadata={"help": "Hub dataset name or local dataset folder."})
    dataset_config_name: Optional[str] = field(default=None, metadata={"help": "Dataset configuration, e.g. sample-10BT."})
    train_file: Optional[str] = field(default=None, metadata={"help": "Local training file: .txt, .json, .jsonl or .parquet."})
    validation_file: Optional[str] = field(default=None, metadata={"help": "Local validation file, same formats."})
    validation_split_percentage: int = field(default=5, metadata={"help": "Percent of train used for validation when there is no validation split."})
    max_eval_samples: Optional[int] = field(default=None, metadata={"help": "Cap on validation blocks, a seeded random sample of them (streaming: texts held out from the stream's start, default 256)."})
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Cap on training blocks (non-streaming)."})
    streaming: bool = field(default=False, metadata={"help": "Stream the dataset instead of downloading it whole."})
    block_size: Optional[int] = field(default=None, metadata={"help": "Training sequence length; texts are packed into blocks of this many tokens. Default: min(model max, 4096)."})
    text_column: Optional[str] = field(default=None, metadata={"help": "Text column (default: 'text', else the only column)."})
    prompt_column: Optional[str] = field(default=None, metadata={"help": "Conditional data: the prompt column; prompt tokens are never noised and carry no loss."})
    answer_column: str = field(default="answer", metadata={"help": "Conditional data: the answer column."})
    preprocessing_num_workers: Optional[int] = field(default=None, metadata={"help": "Processes for tokenization (non-streaming; streamed data is tokenized in the dataloader workers)."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Recompute cached tokenization."})
    shuffle_buffer_size: Optional[int] = field(default=None, metadata={"help": "--streaming: the training blocks pass through a shuffle buffer of this many, seeded with --seed (default 10000; 1 keeps the stream's order). Other data is shuffled by the Trainer."})

    def __post_init__(self):
        if not (self.dataset_name or self.train_file):
            raise ValueError("give --dataset_name (hub or local dataset) or --train_file (local .txt/.json/.jsonl/.parquet)")
        for name in ("train_file", "validation_file"):
            path = getattr(self, name)
            if path is not None:
                if not os.path.exists(path):
                    raise ValueError(f"--{name} {path} does not exist")
                if _builder_for(path) is None:
                    raise ValueError(f"--{name} must end in .txt, .json, .jsonl or .parquet, got {path}")
        if self.block_size is not None and self.block_size < 2:
            raise ValueError(f"--block_size must be at least 2, got {self.block_size}")
        if self.shuffle_buffer_size is not None and not self.streaming:
            raise ValueError("--shuffle_buffer_size applies to --streaming only (other data is shuffled by the Trainer)")
        if self.streaming and self.shuffle_buffer_size is None:
            self.shuffle_buffer_size = 10000
        if self.streaming and self.shuffle_buffer_size < 1:
            raise ValueError(f"--shuffle_buffer_size must be at least 1, got {self.shuffle_buffer_size}")


@dataclass
class XDLMArguments:
    training_method: str = field(default="xdm", metadata={"help": "xdm (XDLM loss), mdm (LLaDA's masked loss) or ar (autoregressive)."})
    xdlm_k: Optional[float] = field(default=None, metadata={"help": "XDLM mixing ratio k in [0, 1] (default 0.1): 0 is masking only, 1 uniform noise only. xdm only."})
    mask_token_id: Optional[int] = field(default=None, metadata={"help": "Mask id; default: from the model config and tokenizer (LLaDA: 126336)."})
    fused_loss: Optional[bool] = field(default=None, metadata={"help": "xdm/mdm with the native model: compute the output head and the loss together in chunks, never holding the [B, L, N] logits (same loss, a fraction of the memory). Default: on wherever it applies."})
    stratified_t: bool = field(default=True, metadata={"help": "Spread the mask rates of each optimizer batch (all ranks and accumulation steps) evenly over [eps, 1] (lower loss variance, same expectation)."})
    eval_mask_rates: int = field(default=8, metadata={"help": "--do_eval estimates the NELBO on a fixed grid of this many mask rates."})
    plot_loss: bool = field(default=True, metadata={"help": "Write output_dir/loss_curve.png after training."})

    def __post_init__(self):
        if self.training_method not in TRAINING_METHODS:
            raise ValueError(f"--training_method must be one of {', '.join(TRAINING_METHODS)}, got {self.training_method!r}")
        if self.xdlm_k is not None and self.training_method != "xdm":
            raise ValueError(f"--xdlm_k applies to --training_method xdm only (mdm is k = 0), got --training_method {self.training_method}")
        if self.xdlm_k is None and self.training_method == "xdm":
            self.xdlm_k = 0.1
        if self.xdlm_k is not None and not 0.0 <= self.xdlm_k <= 1.0:
            raise ValueError(f"--xdlm_k must lie in [0, 1], got {self.xdlm_k}")
        if self.eval_mask_rates < 1:
            raise ValueError(f"--eval_mask_rates must be at least 1, got {self.eval_mask_rates}")


@dataclass
class XDLMTrainingArguments(TrainingArguments):
    """The Trainer's arguments, with this script's defaults and checks."""
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Start afresh: earlier checkpoint-* folders in output_dir are moved to output_dir/previous-<time>/ (nothing is deleted). Without it, training resumes from the last complete checkpoint."})
    use_cpu: Optional[bool] = field(default=None, metadata={"help": "Train on the CPU. Default: True when no GPU is visible (only then do DeepSpeed and the Trainer agree on the world size)."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Must stay False: the loss reads the prompt_mask data column."})

    def __post_init__(self):
        if self.use_cpu is None:
            self.use_cpu = not torch.cuda.is_available()
        if self.remove_unused_columns:
            raise ValueError("--remove_unused_columns must be False: the loss reads the prompt_mask data column")
        if self.overwrite_output_dir and not self.do_train:
            raise ValueError("--overwrite_output_dir only matters with --do_train")
        super().__post_init__()


class XDLMTrainer(Trainer):
    """Trainer whose loss is the XDLM / masked diffusion / autoregressive objective.

    Normalisation, as the paper's code: a micro-batch's loss is its summed loss over the
    batch's loss positions, batch x length for unconditional data (LLaDA's pretraining) and the
    answer tokens (their eos padding included) for conditional data. Validation reports the
    NELBO (ar: the NLL) per loss position over the whole validation set."""

    def __init__(self, *args, xdlm_args, mask_id, **kwargs):
        super().__init__(*args, **kwargs)
        self.xdlm_args = xdlm_args
        self.mask_id = mask_id
        self.k = {"xdm": xdlm_args.xdlm_k, "mdm": 0.0}.get(xdlm_args.training_method)
        self._eval_generator = None
        # Training noise (t and the corruption) comes from this process's own generator, seeded
        # by (seed, process index): ranks and accumulation micro-steps draw different noise. Its
        # state is saved in every checkpoint and restored on resume.
        self.noise_generator = seeded_generator(self.args.device, self.args.seed, 0, self.args.process_index)
        self._micro_step = (None, 0)  # (optimizer step, micro-batches drawn in it so far)
        if self.compute_metrics is None:
            self.compute_metrics = self.per_position_metrics
        # compute_loss normalises by itself and ignores num_items_in_batch: the Trainer must
        # divide by the accumulation steps even for a (remote) model whose forward takes **kwargs.
        self.model_accepts_loss_kwargs = False

    def diffusion_loss(self, model, input_ids, keep, p_mask, generator=None, per_sample=False):
        """Sum over positions of weight * h_t (prompt positions weigh 0): a scalar, or per
        sample [B] (no gradient then: validation)."""
        alpha = 1 - p_mask
        noisy = corrupt(input_ids, alpha, self.k, self.mask_id, self.vocab_size(model), generator=generator, keep=keep)
        weight = None if keep is None else (~keep).float()
        if not self.xdlm_args.fused_loss:
            h = xdlm_loss(model(input_ids=noisy).logits, noisy, input_ids, alpha, self.k, self.mask_id)
            h = h if weight is None else h * weight
            return h.sum(1) if per_sample else h.sum()
        native = native_model(self.accelerator.unwrap_model(model))
        hidden = native.scaled_hidden(model(input_ids=noisy, return_hidden=True).last_hidden_state)
        args = (hidden, native.output_head_weight, noisy, input_ids, alpha, self.k, self.mask_id, weight)
        return linear_xdlm_loss(*args, reduction="none").sum(1) if per_sample else linear_xdlm_loss(*args)

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

    def training_mask_rate(self, batch_size, device):
        """p_mask of one micro-batch. Stratified: each optimizer batch (world size x per-device
        batch x accumulation steps) shares one offset, drawn from (seed, step) so every rank
        agrees, and each sample takes its own stratum: the i-th sample of rank r at micro-step
        a is stratum (a x world size + r) x per-device batch + i."""
        step, micro = self._micro_step
        micro = micro if step == self.state.global_step else 0
        self._micro_step = (self.state.global_step, micro + 1)
        if not self.xdlm_args.stratified_t:
            return sample_mask_rate(batch_size, generator=self.noise_generator, device=device)
        args = self.args
        u = torch.rand(1, generator=seeded_generator("cpu", args.seed, 1, self.state.global_step)).to(device)
        first = (micro * args.world_size + args.process_index) * args.per_device_train_batch_size
        n_strata = args.world_size * args.per_device_train_batch_size * args.gradient_accumulation_steps
        return stratified_mask_rate(u, torch.arange(first, first + batch_size, device=device), n_strata)

    def vocab_size(self, model):
        return self.accelerator.unwrap_model(model).get_input_embeddings().num_embeddings

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        input_ids = inputs["input_ids"]
        keep = inputs["prompt_mask"].bool() if "prompt_mask" in inputs else None
        if not model.training:
            sums, positions = self.validation_sums(model, input_ids, keep)
            loss = sums.sum() / positions.sum()
        elif self.xdlm_args.training_method == "ar":
            weight = None if keep is None else (~keep).float()
            loss = autoregressive_loss(model(input_ids=input_ids).logits, input_ids, weight)
        else:
            p_mask = self.training_mask_rate(input_ids.shape[0], input_ids.device)
            weight = None if keep is None else ~keep
            loss = self.diffusion_loss(model, input_ids, keep, p_mask, generator=self.noise_generator)
            loss = loss / loss_positions(input_ids, weight).sum()
        return (loss, None) if return_outputs else loss

    def validation_sums(self, model, input_ids, keep):
        """Per sample [B]: the summed loss and its number of loss positions (answer tokens).
        Diffusion: the NELBO's integral over t on a fixed midpoint grid with fixed noise, so
        checkpoints are compared on the same estimate with low variance."""
        weight = None if keep is None else ~keep
        if self.xdlm_args.training_method == "ar":
            nll = autoregressive_loss(model(input_ids=input_ids).logits, input_ids, weight, reduction="none")
            return nll.sum(1), loss_positions(nll, None if weight is None else weight[:, 1:])
        G = self.xdlm_args.eval_mask_rates
        sums = 0
        for j in range(G):
            rate = (1 - MASK_RATE_EPS) * (j + 0.5) / G + MASK_RATE_EPS
            p_mask = torch.full((input_ids.shape[0],), rate, device=input_ids.device)
            sums = sums + self.diffusion_loss(model, input_ids, keep, p_mask, self._eval_generator, per_sample=True) / G
        return sums, loss_positions(input_ids, weight)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """The batch's loss, and per sample its summed loss and loss positions, which the Trainer
        gathers across processes (dropping the padding samples) for per_position_metrics."""
        inputs = self._prepare_inputs(inputs)
        keep = inputs["prompt_mask"].bool() if "prompt_mask" in inputs else None
        with torch.no_grad():
            sums, positions = self.validation_sums(model, inputs["input_ids"], keep)
        return (sums.sum() / positions.sum()).detach(), sums.detach().float(), positions

    def per_position_metrics(self, prediction):
        """The validation loss per loss position over the whole set (each position weighs the
        same, whatever the batch it fell in): the NELBO for diffusion, the NLL for ar."""
        value = float(prediction.predictions.astype("float64").sum() / prediction.label_ids.astype("float64").sum())
        if self.xdlm_args.training_method == "ar":
            return {"nll": value, "ppl": math.exp(min(value, 700))}
        return {"nelbo": value, "ppl_bound": math.exp(min(value, 700))}

    def evaluate(self, *args, **kwargs):
        device = self.args.device
        self._eval_generator = torch.Generator(device=device).manual_seed(self.args.seed)
        return super().evaluate(*args, **kwargs)

    def get_decay_parameter_names(self, model):
        """The Trainer's choice minus every parameter of a normalisation layer (whatever its
        name: LLaDA's final norm is ln_f) and every bias."""
        exempt = set()
        for module_name, module in model.named_modules():
            is_norm = isinstance(module, torch.nn.LayerNorm) or type(module).__name__.lower().endswith("norm")
            for name, _ in module.named_parameters(recurse=False):
                if is_norm or name == "bias":
                    exempt.add(f"{module_name}.{name}" if module_name else name)
        return [n for n in super().get_decay_parameter_names(model) if n not in exempt]


WANDB_DEFAULT_PROJECT = "xdlm-llada"  # the project a run logs to unless WANDB_PROJECT names another


def set_wandb_defaults(training_args):
    """--report_to wandb: runs go to WANDB_PROJECT (default xdlm-llada) under --run_name, their
    files to WANDB_DIR (default output_dir). Without a login (no WANDB_API_KEY, no netrc entry
    for the wandb host) and no WANDB_MODE, the run logs offline instead of stopping at a login
    prompt; `wandb sync` uploads it later. WANDB_MODE=online/offline/disabled decides explicitly."""
    if "wandb" not in (training_args.report_to or []):
        return
    import netrc
    from urllib.parse import urlparse

    os.environ.setdefault("WANDB_PROJECT", WANDB_DEFAULT_PROJECT)
    if "WANDB_DIR" not in os.environ:
        os.makedirs(training_args.output_dir, exist_ok=True)
        os.environ["WANDB_DIR"] = os.path.abspath(training_args.output_dir)
    if "WANDB_MODE" in os.environ or os.environ.get("WANDB_API_KEY"):
        return
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        logged_in = netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        logged_in = False
    if not logged_in:
        os.environ["WANDB_MODE"] = "offline"
        logger.warning(f"no wandb login for {host}: logging offline under {os.environ['WANDB_DIR']}/wandb "
                       "(upload later with `wandb sync`; set WANDB_MODE=online after `wandb login` to log live)")


def seeded_generator(device, *keys):
    """A torch generator seeded by a tuple of integers (numpy's SeedSequence mixes them)."""
    seed = int(np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator(device=device).manual_seed(seed)


def native_model(model):
    """The LLaDAModelLM inside a (PEFT-wrapped) model, else None."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model if isinstance(model, LLaDAModelLM) else None


# ---------------------------------------------------------------------------
# Checkpoints: a run killed at any moment resumes from its last complete one
# ---------------------------------------------------------------------------

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
        return None
    with training_args.main_process_first(local=False, desc="checking checkpoints"):
        if training_args.process_index == 0:
            found = checkpoints_in(out)
            incomplete = [c for c in found if not is_complete(c)]
            if training_args.overwrite_output_dir and found:
                logger.warning(f"--overwrite_output_dir: moved {len(found)} earlier checkpoints to {move_aside(found, out, 'previous')}")
            elif incomplete:
                logger.warning(f"{', '.join(incomplete)}: incomplete (no {CHECKPOINT_COMPLETE} file: the run stopped while "
                               f"writing), not loaded; moved to {move_aside(incomplete, out, 'incomplete')}")
    if training_args.overwrite_output_dir:
        return None
    complete = [c for c in checkpoints_in(out) if is_complete(c)]
    return complete[-1] if complete else None


# ---------------------------------------------------------------------------
# Arguments: everything that can be checked before loading data or weights
# ---------------------------------------------------------------------------

def parse_args(argv):
    """The four argument dataclasses from the command line or from one JSON file; each checks
    itself in __post_init__, and check_across checks what they only decide together."""
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, XDLMArguments, XDLMTrainingArguments))
    if len(argv) == 1 and argv[0].endswith(".json"):
        args = parser.parse_json_file(json_file=os.path.abspath(argv[0]))
    else:
        args = parser.parse_args_into_dataclasses(args=argv)
    check_across(*args)
    return args


def check_across(model_args, data_args, xdlm_args, training_args):
    native_loss = xdlm_args.training_method != "ar" and model_args.model_implementation == "native"
    if xdlm_args.fused_loss and not native_loss:
        raise ValueError("--fused_loss applies to --training_method xdm or mdm with --model_implementation native")
    if not native_loss:
        xdlm_args.fused_loss = False  # otherwise decided once the config is read (native LLaDA or not)
    if model_args.model_implementation == "remote" and xdlm_args.training_method == "ar":
        raise ValueError("--training_method ar needs causal attention, which only --model_implementation native provides")
    if data_args.streaming and training_args.do_train and training_args.max_steps <= 0:
        raise ValueError("--streaming has no length: set --max_steps")


def _builder_for(path):
    ext = path.rsplit(".", 1)[-1].lower()
    return {"txt": "text", "text": "text", "json": "json", "jsonl": "json", "parquet": "parquet"}.get(ext)


# ---------------------------------------------------------------------------
# Config, tokenizer, mask id
# ---------------------------------------------------------------------------

def load_config(model_args):
    name = model_args.config_name or model_args.model_name_or_path
    hub = dict(cache_dir=model_args.cache_dir, revision=model_args.model_revision, token=model_args.token)
    config_dict, _ = PretrainedConfig.get_config_dict(name, **hub)
    if config_dict.get("model_type") == "llada" and model_args.model_implementation == "native":
        # The auto_map pointers at LLaDA's own code files stay (see modeling_llada.LLADA_AUTO_MAP).
        return LLaDAConfig.from_pretrained(name, **hub)
    remote_config = config_dict.get("auto_map", {}).get("AutoConfig")
    if model_args.model_implementation == "remote" and remote_config:
        # AutoConfig would pick the class registered for the model type (ours, for llada) over the
        # checkpoint's code even with trust_remote_code; a config of the checkpoint's own class then
        # also makes AutoModel take the checkpoint's model code.
        config_class = get_class_from_dynamic_module(remote_config, name, **hub)
        return config_class.from_pretrained(name, **hub)
    return AutoConfig.from_pretrained(name, trust_remote_code=model_args.trust_remote_code, **hub)


def model_vocab_size(config):
    return getattr(config, "embedding_size", None) or config.vocab_size


def max_length(config):
    for name in ("max_sequence_length", "max_position_embeddings"):
        if getattr(config, name, None):
            return getattr(config, name)
    return None


def resolve_mask_id(config, tokenizer, override):
    """The mask id: the model config's and the tokenizer's must agree (and --mask_token_id with them)."""
    sources = {"model config mask_token_id": getattr(config, "mask_token_id", None),
               "tokenizer mask token": tokenizer.mask_token_id,
               "--mask_token_id": override}
    found = {k: v for k, v in sources.items() if v is not None}
    if not found:
        raise ValueError("no mask token id: the model config has no mask_token_id and the tokenizer no mask token; pass --mask_token_id")
    if len(set(found.values())) > 1:
        raise ValueError(f"mask token ids disagree: {found}")
    mask_id = next(iter(found.values()))
    N = model_vocab_size(config)
    if not 0 <= mask_id < N:
        raise ValueError(f"mask token id {mask_id} is outside the model's vocabulary [0, {N})")
    return mask_id


# ---------------------------------------------------------------------------
# Data: hub or local, streaming or not, packed text or (prompt, answer) pairs
# ---------------------------------------------------------------------------

LOCAL_DATASET_LAYOUTS = (
    "(1) a hub snapshot, as `hf download REPO --repo-type dataset --local-dir DIR` leaves it: "
    "a README.md whose YAML header lists `configs`, or data files (.parquet, .json, .jsonl, .txt) such as "
    "sample/10BT/*.parquet; (2) a `datasets` Arrow cache folder, as load_dataset leaves it in its cache "
    "(e.g. HuggingFaceFW___fineweb-edu): CONFIG/VERSION/HASH/dataset_info.json beside *.arrow files, "
    "with --dataset_config_name naming CONFIG")


def arrow_cache_files(folder, config_name):
    """{split: [.arrow files]} when `folder` is a `datasets` Arrow cache folder of a dataset
    (CONFIG/VERSION/HASH/ with dataset_info.json and NAME-SPLIT[-00000-of-0000N].arrow, what
    load_dataset leaves in HF_DATASETS_CACHE), else None. load_dataset cannot read that layout back
    by path: it treats the folder as data files of a config 'default'."""
    builds = [os.path.dirname(p) for p in glob.glob(os.path.join(glob.escape(folder), "*", "*", "*", "dataset_info.json"))
              if not p.split(os.sep)[-2].endswith(".incomplete")]  # an interrupted build
    if not builds:
        return None
    configs = sorted({b.split(os.sep)[-3] for b in builds})
    if config_name is None and len(configs) == 1:
        config_name = configs[0]
    if config_name not in configs:
        raise ValueError(f"--dataset_name {folder} is a `datasets` Arrow cache folder: set --dataset_config_name to "
                         f"one of its configs ({', '.join(configs)}), got {config_name!r}")
    builds = sorted((b for b in builds if b.split(os.sep)[-3] == config_name), key=os.path.getmtime)
    if len(builds) > 1:
        logger.warning(f"{len(builds)} cached builds of config {config_name!r} in {folder}; using the newest, {builds[-1]}")
    with open(os.path.join(builds[-1], "dataset_info.json")) as f:
        splits = json.load(f).get("splits") or {}
    files = {}
    for split in splits:
        shards = [os.path.join(glob.escape(builds[-1]), f"*-{split}{tail}") for tail in (".arrow", "-[0-9]*-of-[0-9]*.arrow")]
        files[split] = sorted(chain.from_iterable(glob.glob(pattern) for pattern in shards))
        if not files[split]:
            raise ValueError(f"the Arrow cache {builds[-1]} lists split {split!r} but holds no .arrow file of it")
    return files


def load_local_dataset(folder, data_args):
    """A local --dataset_name folder: an Arrow cache is memory-mapped in place (no copy; streamed
    from the same files with --streaming); a hub snapshot goes to load_dataset as a hub name would."""
    files = arrow_cache_files(folder, data_args.dataset_config_name)
    if files is not None:
        raw = datasets.DatasetDict({split: datasets.concatenate_datasets([datasets.Dataset.from_file(f) for f in shards])
                                    for split, shards in files.items()})
        if data_args.streaming:
            raw = datasets.IterableDatasetDict({split: ds.to_iterable_dataset(num_shards=len(files[split]))
                                                for split, ds in raw.items()})
        return raw
    if _readme_declares_configs(folder):
        return None  # load_dataset reads the configs (e.g. sample-10BT -> sample/10BT/*) from the README
    if not any(_builder_for(name) for _, _, names in os.walk(folder) for name in names):
        raise ValueError(f"--dataset_name {folder} is a local folder in neither layout accepted: {LOCAL_DATASET_LAYOUTS}")
    if data_args.dataset_config_name:
        # load_dataset would take every data file as one config 'default' and fail on the name
        raise ValueError(f"--dataset_name {folder} holds data files but no README.md whose YAML header lists `configs`, "
                         f"so no config {data_args.dataset_config_name!r}: download the dataset card with the data "
                         "(hf download ... --include README.md) or leave out --dataset_config_name")
    return None


def _readme_declares_configs(folder):
    readme = os.path.join(folder, "README.md")
    if not os.path.isfile(readme):
        return False
    with open(readme, encoding="utf-8", errors="replace") as f:
        text = f.read()
    header = text.split("---")[1] if text.startswith("---") else ""  # the YAML between the first two ---
    return any(line.startswith("configs:") for line in header.splitlines())


def load_raw_datasets(data_args, model_args, seed, need_validation):
    hub = dict(cache_dir=model_args.cache_dir, token=model_args.token, streaming=data_args.streaming)
    if data_args.dataset_name:
        raw = None
        if os.path.isdir(data_args.dataset_name):
            raw = load_local_dataset(data_args.dataset_name, data_args)
        if raw is None:
            raw = datasets.load_dataset(data_args.dataset_name, data_args.dataset_config_name, **hub)
    else:
        files = {"train": data_args.train_file}
        if data_args.validation_file:
            files["validation"] = data_args.validation_file
        builders = {_builder_for(f) for f in files.values()}
        if len(builders) > 1:
            raise ValueError(f"--train_file and --validation_file must have the same format, got {sorted(files.values())}")
        raw = datasets.load_dataset(builders.pop(), data_files=files, **hub)
    if "train" not in raw:
        raise ValueError(f"the dataset has no 'train' split (splits: {', '.join(raw.keys())})")
    if "validation" not in raw and need_validation:
        if data_args.streaming:
            # Hold out the first texts of the stream for validation.
            n = data_args.max_eval_samples or 256
            raw["validation"] = raw["train"].take(n)
            raw["train"] = raw["train"].skip(n)
        elif data_args.validation_split_percentage > 0 and len(raw["train"]) > 1:
            split = raw["train"].train_test_split(test_size=data_args.validation_split_percentage / 100, seed=seed)
            raw["train"], raw["validation"] = split["train"], split["test"]
    return raw


def first_row(ds, what):
    try:
        return next(iter(ds))
    except StopIteration:
        raise ValueError(f"the {what} data is empty") from None


def tokenize_and_pack(raw, tokenizer, data_args, block_size, training_args):
    """Text data: texts + eos, concatenated and cut into block_size blocks (remainder dropped).
    (prompt, answer) data: prompt + answer + eos, padded with eos to block_size (LLaDA's SFT
    format), with prompt_mask = 1 on prompt positions."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos token, needed to separate packed texts")
    out = {}
    for split, ds in raw.items():
        columns = list(first_row(ds, split).keys())
        if data_args.prompt_column:
            for col in (data_args.prompt_column, data_args.answer_column):
                if col not in columns:
                    raise ValueError(f"column {col!r} not in the {split} data (columns: {', '.join(columns)})")
            # Streamed batches are tokenized lazily in the dataloader workers: each batch logs its own drops.
            fn = lambda batch: _pairs(batch, tokenizer, data_args, block_size, eos, log_drops=data_args.streaming)  # noqa: E731
        else:
            col = data_args.text_column or ("text" if "text" in columns or len(columns) != 1 else columns[0])
            if col not in columns:
                raise ValueError(f"text column {col!r} not in the {split} data (columns: {', '.join(columns)}); set --text_column")
            fn = lambda batch, col=col: _pack(batch, tokenizer, col, block_size, eos)  # noqa: E731
        kwargs = dict(batched=True, remove_columns=columns)
        if not data_args.streaming:
            kwargs.update(num_proc=data_args.preprocessing_num_workers, load_from_cache_file=not data_args.overwrite_cache,
                          desc=f"Tokenizing and packing {split} into blocks of {block_size}")
        with training_args.main_process_first(desc="tokenizing"):
            out[split] = ds.map(fn, **kwargs)
        if data_args.prompt_column and not data_args.streaming:
            dropped = len(ds) - len(out[split])  # _pairs keeps one row per pair it does not drop
            log = logger.warning if dropped else logger.info
            log(f"{split}: dropped {dropped} of {len(ds)} (prompt, answer) pairs whose prompt fills --block_size {block_size}")
    return out


def _pack(batch, tokenizer, col, block_size, eos):
    ids = [t + [eos] for t in tokenizer(batch[col], add_special_tokens=False)["input_ids"]]
    flat = list(chain.from_iterable(ids))
    n = len(flat) // block_size * block_size
    return {"input_ids": [flat[i:i + block_size] for i in range(0, n, block_size)]}


def _pairs(batch, tokenizer, data_args, block_size, eos, log_drops=False):
    prompts = tokenizer(batch[data_args.prompt_column], add_special_tokens=False)["input_ids"]
    answers = tokenizer(batch[data_args.answer_column], add_special_tokens=False)["input_ids"]
    input_ids, prompt_mask = [], []
    for p, a in zip(prompts, answers):
        if len(p) >= block_size:  # no answer token fits, nothing to learn from: dropped (and counted)
            continue
        seq = (p + a + [eos])[:block_size]
        input_ids.append(seq + [eos] * (block_size - len(seq)))
        prompt_mask.append([1] * len(p) + [0] * (block_size - len(p)))
    dropped = len(prompts) - len(input_ids)
    if log_drops and dropped:
        logger.warning(f"dropped {dropped} of {len(prompts)} (prompt, answer) pairs of a batch whose prompt fills --block_size {block_size}")
    return {"input_ids": input_ids, "prompt_mask": prompt_mask}


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------

def default_dtype(training_args):
    """Without DeepSpeed, float32 weights: --bf16 autocasts, while training bf16 weights directly
    would lose small updates. DeepSpeed with bf16/fp16 keeps float32 master weights itself, so
    the weights load in half precision (an 8B model in float32 would take 32 GB of host memory
    in every process)."""
    if training_args.deepspeed and training_args.bf16:
        return "bfloat16"
    if training_args.deepspeed and training_args.fp16:
        return "float16"
    return "float32"


def load_model(model_args, config, training_method, training_args):
    native = isinstance(config, LLaDAConfig)
    if training_method == "ar":
        config.causal = True
    dtype = model_args.torch_dtype or default_dtype(training_args)
    dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    if model_args.model_name_or_path:
        kwargs = dict(config=config, dtype=dtype, cache_dir=model_args.cache_dir,
                      revision=model_args.model_revision, token=model_args.token)
        if native:
            model = LLaDAModelLM.from_pretrained(model_args.model_name_or_path, **kwargs)
        else:
            model = AutoModel.from_pretrained(model_args.model_name_or_path, trust_remote_code=model_args.trust_remote_code, **kwargs)
    else:
        model = LLaDAModelLM(config) if native else AutoModel.from_config(config, trust_remote_code=model_args.trust_remote_code)
        n = sum(p.numel() for p in model.parameters())
        logger.info(f"Training a new model from scratch: {n / 1e6:.2f}M parameters")
    if model_args.with_lora:
        from peft import LoraConfig, get_peft_model

        targets = [t.strip() for t in model_args.lora_target_modules.split(",") if t.strip()]
        # Only the blocks' projections: the output head is also called ff_out in LLaDA.
        pattern = r".*\.blocks\.\d+\.(" + "|".join(targets) + r")"
        lora = LoraConfig(r=model_args.lora_r, lora_alpha=model_args.lora_alpha, lora_dropout=model_args.lora_dropout,
                          target_modules=pattern, bias="none")
        model = get_peft_model(model, lora)
        model.print_trainable_parameters()
    return model


def plot_loss_curve(log_history, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(e["step"], e["loss"]) for e in log_history if "loss" in e]
    if not points:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(*zip(*points), marker=".")
    evals = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e]
    if evals:
        ax.plot(*zip(*evals), marker="o", label="validation")
        ax.legend()
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    model_args, data_args, xdlm_args, training_args = parse_args(argv)

    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S",
                        handlers=[logging.StreamHandler(sys.stdout)])
    if training_args.should_log:
        transformers.utils.logging.set_verbosity_info()
    log_level = training_args.get_process_log_level()
    logger.setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    set_wandb_defaults(training_args)
    logger.info(f"process {training_args.process_index}/{training_args.world_size}, device {training_args.device}, "
                f"bf16 {training_args.bf16}, method {xdlm_args.training_method}"
                + (f", k {xdlm_args.xdlm_k}" if xdlm_args.training_method == "xdm" else ""))
    if data_args.streaming and data_args.preprocessing_num_workers:
        logger.warning("--streaming tokenizes in the --dataloader_num_workers workers; --preprocessing_num_workers "
                       "applies to non-streaming data only")

    last_checkpoint = prepare_output_dir(training_args)
    if last_checkpoint and training_args.resume_from_checkpoint is None:
        logger.info(f"Resuming from {last_checkpoint} (--overwrite_output_dir starts afresh)")
    set_seed(training_args.seed)

    config = load_config(model_args)
    tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name or model_args.model_name_or_path,
                                              cache_dir=model_args.cache_dir, revision=model_args.model_revision,
                                              token=model_args.token, trust_remote_code=model_args.trust_remote_code)
    mask_id = resolve_mask_id(config, tokenizer, xdlm_args.mask_token_id)
    if xdlm_args.fused_loss and not isinstance(config, LLaDAConfig):
        raise ValueError(f"--fused_loss needs the native LLaDA model; {config.model_type!r} is not one")
    if xdlm_args.fused_loss is None:
        xdlm_args.fused_loss = isinstance(config, LLaDAConfig)
    model_max = max_length(config)
    block_size = data_args.block_size or min(model_max or 4096, 4096)
    if model_max and block_size > model_max:
        raise ValueError(f"--block_size {block_size} exceeds the model's maximum sequence length {model_max}")
    if len(tokenizer) > model_vocab_size(config):
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but the model only {model_vocab_size(config)} embeddings")

    raw = load_raw_datasets(data_args, model_args, training_args.seed, training_args.do_eval)
    if not training_args.do_eval:
        raw.pop("validation", None)
    lm = tokenize_and_pack(raw, tokenizer, data_args, block_size, training_args)
    train_dataset = eval_dataset = None
    if training_args.do_train:
        train_dataset = lm["train"]
        if data_args.max_train_samples is not None and not data_args.streaming:
            train_dataset = train_dataset.select(range(min(len(train_dataset), data_args.max_train_samples)))
        if data_args.streaming:  # the same seed gives a resumed run the same order of blocks
            train_dataset = train_dataset.shuffle(seed=training_args.seed, buffer_size=data_args.shuffle_buffer_size)
        first_row(train_dataset, f"training (no block of {block_size} tokens; texts too short for --block_size?)")
        if not data_args.streaming:
            logger.info(f"{len(train_dataset)} training blocks of {block_size} tokens (from {len(raw['train'])} rows)")
    if training_args.do_eval:
        if "validation" not in lm:
            raise ValueError("--do_eval needs a validation split, --validation_file or --validation_split_percentage > 0")
        eval_dataset = lm["validation"]
        if data_args.max_eval_samples is not None and not data_args.streaming:
            # A random sample, the same for every run (seed 0, not --seed): the first blocks
            # all come from the first validation texts.
            n = min(len(eval_dataset), data_args.max_eval_samples)
            eval_dataset = eval_dataset.shuffle(seed=0).select(range(n))
        first_row(eval_dataset, f"validation (no block of {block_size} tokens)")

    model = load_model(model_args, config, xdlm_args.training_method, training_args)
    if training_args.gradient_checkpointing and model_args.with_lora:
        model.enable_input_require_grads()

    trainer = XDLMTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=default_data_collator,
        xdlm_args=xdlm_args,
        mask_id=mask_id,
    )

    checkpoint = training_args.resume_from_checkpoint or last_checkpoint
    if training_args.do_train and reached_max_steps(checkpoint, training_args.max_steps):
        # The Trainer would take one optimizer step past --max_steps from such a checkpoint (a
        # relaunch after the run finished, or after a crash during the final save).
        logger.warning(f"{checkpoint} already reached --max_steps {training_args.max_steps}: nothing is trained; "
                       "its model is written as the final model (raise --max_steps to train on)")
        save_checkpoint_as_final(trainer, checkpoint, model_args, tokenizer)
    elif training_args.do_train:
        result = trainer.train(resume_from_checkpoint=checkpoint)
        save_final(trainer, model_args, tokenizer)
        trainer.log_metrics("train", result.metrics)
        trainer.save_metrics("train", result.metrics)
        trainer.save_state()
        if xdlm_args.plot_loss and trainer.is_world_process_zero():
            plot_loss_curve(trainer.state.log_history, os.path.join(training_args.output_dir, "loss_curve.png"))
    if training_args.do_eval:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
    return trainer


def reached_max_steps(checkpoint, max_steps):
    if checkpoint is None or max_steps <= 0:
        return False
    with open(os.path.join(checkpoint, "trainer_state.json")) as f:
        return json.load(f)["global_step"] >= max_steps


def save_checkpoint_as_final(trainer, checkpoint, model_args, tokenizer):
    """save_final's output from a checkpoint's weights, without a training step (and so without
    a DeepSpeed engine: ZeRO-2 checkpoints hold the full model)."""
    trainer._load_from_checkpoint(checkpoint)
    if not trainer.is_world_process_zero():
        return
    out, model = trainer.args.output_dir, trainer.model
    if model_args.with_lora:
        model.save_pretrained(os.path.join(out, "adapter"))
        model = model.merge_and_unload()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def save_final(trainer, model_args, tokenizer):
    """output_dir gets a full model (safetensors) and the tokenizer; with LoRA the adapters are
    merged in, and the adapter alone goes to output_dir/adapter."""
    out = trainer.args.output_dir
    if not model_args.with_lora:
        trainer.save_model()
        return
    trainer.save_model(os.path.join(out, "adapter"))
    if trainer.is_world_process_zero():
        merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
        merged.save_pretrained(out)
        tokenizer.save_pretrained(out)


if __name__ == "__main__":
    main()
