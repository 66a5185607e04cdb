#!/usr/bin/env python
"""Continual pretraining of LLaDA-class diffusion language models with the XDLM loss.

The flow of transformers' run_clm.py (argument dataclasses, datasets, packing into
blocks, Trainer) with LLaDA's loss swapped for one of xdlm_trainer.OBJECTIVES (XDLM, LLaDA's
masked loss, autoregressive). Data loading lives in data.py, reading the model's config and
mask id in model_config.py, checkpointing and the output folder's checks in checkpoints.py,
the Trainer, wandb's defaults and the loss curve in xdlm_trainer.py.
Launch with `deepspeed llada_cpt.py --deepspeed ds_zero2_bf16_config_simp.json ...`,
`torchrun`, or plain `python` for one process.
"""
import dataclasses
import json
import logging
import math
import os
import sys
import types
import typing
from dataclasses import dataclass, field
from typing import Optional

import datasets
import torch
import transformers
from transformers import AutoModel, AutoTokenizer, HfArgumentParser, TrainingArguments, default_data_collator, set_seed

import modeling_llada  # noqa: F401  (registers model_type "llada" with the Auto classes)
from checkpoints import check_source_is_not_destination, output_dir_claimed, prepare_output_dir, run_identity
from data import LOCAL_FILE_FORMATS, STREAMED_VALIDATION_TEXTS, builder_for, training_and_validation_blocks
from model_config import config_file, load_config, max_length, model_vocab_size, resolve_mask_id
from modeling_llada import LLaDAConfig, LLaDAModelLM
from xdlm_trainer import LOSS_CURVE_WINDOW, OBJECTIVES, XDLMTrainer, plot_loss_curve, set_wandb_defaults

logger = logging.getLogger(__name__)
MODULE_LOGGERS = ("data", "model_config", "checkpoints", "xdlm_trainer")  # the modules whose logs the run shows

# LoRA adapters go on these projections of every LLaDA block (all of them by default).
LORA_MODULES = ("q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out")


def lora_target_pattern(modules):
    # Only the blocks' projections: the output head is also called ff_out in LLaDA.
    return r".*\.blocks\.\d+\.(" + "|".join(modules) + r")"


# ---------------------------------------------------------------------------
# Arguments: everything that can be checked before loading data or weights
# ---------------------------------------------------------------------------

def require(ok, flag, value, allowed):
    """A clear error for a flag whose value is out of range: the flag, the value and what is allowed."""
    if not ok:
        raise ValueError(f"--{flag} must be {allowed}, got {value!r}")


def finite(x):
    return isinstance(x, (int, float)) and math.isfinite(x)


@dataclass
class ModelArguments:
    model_name_or_path: Optional[str] = field(default=None, metadata={
        "help": "Checkpoint to continue from; omit to train from scratch (needs --config_name)."})
    config_name: Optional[str] = field(default=None, metadata={"help": "Config name or path, if not the model's."})
    tokenizer_name: Optional[str] = field(default=None, metadata={
        "help": "Tokenizer name or path, if not the model's."})
    cache_dir: Optional[str] = field(default=None, metadata={"help": "Where hub downloads are cached."})
    model_revision: str = field(default="main", metadata={"help": "Hub revision (branch, tag or commit)."})
    token: Optional[str] = field(default=None, metadata={"help": "Hub token for private models or datasets."})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "Allow hub code for tokenizers/configs of non-LLaDA models, and for --model_implementation remote."})
    model_implementation: str = field(default="native", metadata={
        "help": "'native': this repository's LLaDA model for model_type llada. "
                "'remote': the checkpoint's own code (needs --trust_remote_code True)."})
    torch_dtype: Optional[str] = field(default=None, metadata={
        "help": "Load weights in this dtype: auto (the checkpoint's), bfloat16, float16 or float32. Default: float32, "
                "or bfloat16/float16 under DeepSpeed with --bf16/--fp16 (DeepSpeed keeps float32 master weights)."})
    with_lora: bool = field(default=False, metadata={"help": "Train LoRA adapters instead of all weights."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: str = field(default=",".join(LORA_MODULES), metadata={
        "help": "Comma-separated LLaDA block modules that get adapters."})

    def __post_init__(self):
        if self.torch_dtype not in (None, "auto", "bfloat16", "float16", "float32"):
            raise ValueError(f"--torch_dtype must be auto, bfloat16, float16 or float32, got {self.torch_dtype!r}")
        if self.model_implementation not in ("native", "remote"):
            raise ValueError(f"--model_implementation must be 'native' or 'remote', got {self.model_implementation!r}")
        if self.model_implementation == "remote" and not self.trust_remote_code:
            raise ValueError("--model_implementation remote runs the checkpoint's own code: "
                             "add --trust_remote_code True")
        if not (self.model_name_or_path or self.config_name):
            raise ValueError("give --model_name_or_path (continue a checkpoint) or --config_name (train from scratch)")
        if not (self.tokenizer_name or self.model_name_or_path):
            raise ValueError("give --tokenizer_name when training from scratch with --config_name")
        require(self.lora_r >= 1, "lora_r", self.lora_r, "at least 1")
        require(finite(self.lora_alpha) and self.lora_alpha > 0, "lora_alpha", self.lora_alpha, "positive")
        require(finite(self.lora_dropout) and 0 <= self.lora_dropout < 1, "lora_dropout", self.lora_dropout,
                "in [0, 1)")
        unknown = sorted(set(self.lora_targets) - set(LORA_MODULES))
        if self.with_lora and (unknown or not self.lora_targets):
            raise ValueError(f"--lora_target_modules must be a comma-separated subset of {', '.join(LORA_MODULES)}, "
                             f"got {self.lora_target_modules!r}")

    @property
    def lora_targets(self):
        return [t.strip() for t in self.lora_target_modules.split(",") if t.strip()]


@dataclass
class DataTrainingArguments:
    dataset_name: Optional[str] = field(default=None, metadata={"help": "Hub dataset name or local dataset folder."})
    dataset_config_name: Optional[str] = field(default=None, metadata={
        "help": "Dataset configuration, e.g. sample-10BT."})
    train_file: Optional[str] = field(default=None, metadata={"help": f"Local training file: {LOCAL_FILE_FORMATS}."})
    validation_file: Optional[str] = field(default=None, metadata={"help": "Local validation file, same formats."})
    validation_split_percentage: int = field(default=5, metadata={
        "help": "Percent of train cut out for validation when there is no validation split, with or without "
                "--do_eval, so that the training data does not depend on it (streaming: --max_eval_samples texts "
                "are held out instead); 0: none."})
    max_eval_samples: Optional[int] = field(default=None, metadata={
        "help": "Cap on validation blocks, a seeded random sample of them (streaming without a validation split: "
                "the texts held out from the stream's start, with or without --do_eval, "
                f"default {STREAMED_VALIDATION_TEXTS})."})
    max_train_samples: Optional[int] = field(default=None, metadata={
        "help": "Cap on training blocks (non-streaming)."})
    streaming: bool = field(default=False, metadata={"help": "Stream the dataset instead of downloading it whole."})
    block_size: Optional[int] = field(default=None, metadata={
        "help": "Training sequence length; texts are packed into blocks of this many tokens. "
                "Default: min(model max, 4096)."})
    text_column: Optional[str] = field(default=None, metadata={
        "help": "Text column (default: 'text', else the only column)."})
    prompt_column: Optional[str] = field(default=None, metadata={
        "help": "Conditional data: the prompt column; prompt tokens are never noised and carry no loss."})
    answer_column: str = field(default="answer", metadata={"help": "Conditional data: the answer column."})
    preprocessing_num_workers: Optional[int] = field(default=None, metadata={
        "help": "Processes for tokenization (non-streaming; streamed data is tokenized in the dataloader workers)."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Recompute cached tokenization."})
    shuffle_buffer_size: Optional[int] = field(default=None, metadata={
        "help": "--streaming: the training blocks pass through a shuffle buffer of this many, seeded with --seed "
                "(default 10000; 1 keeps the stream's order). Other data is shuffled by the Trainer."})

    def __post_init__(self):
        if not (self.dataset_name or self.train_file):
            raise ValueError(f"give --dataset_name (hub or local dataset) or --train_file (local {LOCAL_FILE_FORMATS})")
        for name in ("train_file", "validation_file"):
            path = getattr(self, name)
            if path is not None:
                if not os.path.exists(path):
                    raise ValueError(f"--{name} {path} does not exist")
                if builder_for(path) is None:
                    raise ValueError(f"--{name} must end in one of {LOCAL_FILE_FORMATS}, got {path}")
                if os.path.isfile(path) and os.path.getsize(path) == 0:
                    raise ValueError(f"--{name} {path} is empty: it must hold at least one text")
        for name in ("max_train_samples", "max_eval_samples", "preprocessing_num_workers"):
            value = getattr(self, name)
            require(value is None or value >= 1, name, value, "at least 1 (or left out)")
        require(0 <= self.validation_split_percentage <= 100, "validation_split_percentage",
                self.validation_split_percentage, "in [0, 100]")
        if self.block_size is not None and self.block_size < 2:
            raise ValueError(f"--block_size must be at least 2, got {self.block_size}")
        if self.shuffle_buffer_size is not None and not self.streaming:
            raise ValueError("--shuffle_buffer_size applies to --streaming only "
                             "(other data is shuffled by the Trainer)")
        if self.streaming and self.shuffle_buffer_size is None:
            self.shuffle_buffer_size = 10000
        if self.streaming and self.shuffle_buffer_size < 1:
            raise ValueError(f"--shuffle_buffer_size must be at least 1, got {self.shuffle_buffer_size}")


@dataclass
class XDLMArguments:
    training_method: str = field(default="xdm", metadata={
        "help": "; ".join(f"{name}: {o.help}" for name, o in OBJECTIVES.items())})
    xdlm_k: Optional[float] = field(default=None, metadata={
        "help": "XDLM mixing ratio k in [0, 1] (default 0.1): 0 is masking only, 1 uniform noise only. xdm only."})
    mask_token_id: Optional[int] = field(default=None, metadata={
        "help": "Mask id; default: from the model config and tokenizer (LLaDA: 126336)."})
    fused_loss: Optional[bool] = field(default=None, metadata={
        "help": "/".join(n for n, o in OBJECTIVES.items() if o.fused_loss_applies)
                + " with the native model: compute the output head and the loss together in chunks, never holding "
                  "the [B, L, N] logits (same loss, a fraction of the memory). Default: on wherever it applies."})
    stratified_t: bool = field(default=True, metadata={
        "help": "Spread the mask rates of each optimizer batch (all ranks and accumulation steps) evenly over "
                "[eps, 1] (lower loss variance, same expectation)."})
    eval_mask_rates: int = field(default=8, metadata={
        "help": "--do_eval estimates the NELBO on a fixed grid of this many mask rates."})
    plot_loss: bool = field(default=True, metadata={
        "help": "Write output_dir/loss_curve.png after training: the logged losses, their running mean over "
                f"{LOSS_CURVE_WINDOW} logged steps, and the validation loss with --do_eval."})

    def __post_init__(self):
        if self.training_method not in OBJECTIVES:
            raise ValueError(f"--training_method must be one of {', '.join(OBJECTIVES)}, got {self.training_method!r}")
        takes_k = [name for name, o in OBJECTIVES.items() if o.k_from_flag]
        if self.xdlm_k is not None and not self.objective.k_from_flag:
            raise ValueError(f"--xdlm_k applies to --training_method {' or '.join(takes_k)} only (mdm is k = 0), "
                             f"got --training_method {self.training_method}")
        if self.xdlm_k is None and self.objective.k_from_flag:
            self.xdlm_k = self.objective.k
        if self.xdlm_k is not None and not 0.0 <= self.xdlm_k <= 1.0:
            raise ValueError(f"--xdlm_k must lie in [0, 1], got {self.xdlm_k}")
        if self.eval_mask_rates < 1:
            raise ValueError(f"--eval_mask_rates must be at least 1, got {self.eval_mask_rates}")

    @property
    def objective(self):
        return OBJECTIVES[self.training_method]

    @property
    def k(self):
        """The mixing ratio the loss uses (None: no noise, ar)."""
        return self.xdlm_k if self.objective.k_from_flag else self.objective.k


@dataclass
class XDLMTrainingArguments(TrainingArguments):
    """The Trainer's arguments, with this script's defaults and checks."""
    overwrite_output_dir: bool = field(default=False, metadata={
        "help": "Start afresh: the previous run in output_dir (its checkpoint-* folders, final model and records) is "
                "moved to output_dir/previous-<time>/ before anything trains (nothing is deleted). Without it, "
                "training resumes from the last complete checkpoint."})
    use_cpu: Optional[bool] = field(default=None, metadata={
        "help": "Train on the CPU. Default: True when no GPU is visible (only then do DeepSpeed and the Trainer "
                "agree on the world size)."})
    remove_unused_columns: bool = field(default=False, metadata={
        "help": "Must stay False: the loss reads the prompt_mask data column."})
    logging_nan_inf_filter: bool = field(default=False, metadata={
        "help": "Must stay False: losses are logged as they are, and training stops at the first non-finite loss "
                "or gradient norm."})

    def __post_init__(self):
        if self.use_cpu is None:
            self.use_cpu = not torch.cuda.is_available()
        if self.remove_unused_columns:
            raise ValueError("--remove_unused_columns must be False: the loss reads the prompt_mask data column")
        if self.logging_nan_inf_filter:
            raise ValueError("--logging_nan_inf_filter must be False: "
                             "a non-finite loss stops the run instead of being hidden")
        if self.overwrite_output_dir and not self.do_train:
            raise ValueError("--overwrite_output_dir only matters with --do_train")
        if self.label_smoothing_factor != 0:
            raise ValueError(f"--label_smoothing_factor must be 0, got {self.label_smoothing_factor}: the diffusion "
                             "and autoregressive losses here have no label smoothing")
        self.check_ranges()
        super().__post_init__()

    def check_ranges(self):
        """The numeric settings the Trainer would accept silently or fail on late (max_steps 0 trains
        one step, a negative one trains whole epochs, nan turns clipping off)."""
        require(self.max_steps == -1 or self.max_steps >= 1, "max_steps", self.max_steps,
                "a positive number of optimizer steps, "
                "or -1 (the Trainer's value for 'train --num_train_epochs epochs')")
        if self.max_steps == -1:
            require(finite(self.num_train_epochs) and self.num_train_epochs > 0, "num_train_epochs",
                    self.num_train_epochs, "positive when --max_steps is -1")
        require(finite(self.learning_rate) and self.learning_rate > 0, "learning_rate", self.learning_rate,
                "a positive number")
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            require(getattr(self, name) >= 1, name, getattr(self, name), "at least 1")
        require(finite(self.max_grad_norm) and self.max_grad_norm >= 0, "max_grad_norm", self.max_grad_norm,
                "a number >= 0 (0: no clipping)")
        require(finite(self.weight_decay) and self.weight_decay >= 0, "weight_decay", self.weight_decay,
                "a number >= 0")
        require(finite(self.warmup_steps) and self.warmup_steps >= 0, "warmup_steps", self.warmup_steps,
                "a number >= 0 (below 1: a fraction of the steps)")
        for name in ("adam_beta1", "adam_beta2"):
            require(finite(getattr(self, name)) and 0 <= getattr(self, name) < 1, name, getattr(self, name),
                    "in [0, 1)")
        require(finite(self.adam_epsilon) and self.adam_epsilon > 0, "adam_epsilon", self.adam_epsilon,
                "a positive number")
        for name in ("logging_steps", "save_steps", "eval_steps"):
            value = getattr(self, name)
            require(value is None or (finite(value) and value > 0), name, value,
                    "positive (below 1: a fraction of the steps)")
        require(self.dataloader_num_workers >= 0, "dataloader_num_workers", self.dataloader_num_workers, "at least 0")
        require(self.save_total_limit is None or self.save_total_limit >= 1, "save_total_limit", self.save_total_limit,
                "at least 1 (or left out: keep every checkpoint)")


def parse_args(argv):
    """The four argument dataclasses from the command line or from one JSON file; each checks
    itself in __post_init__, and check_flag_combinations what they only decide together."""
    dataclass_types = (ModelArguments, DataTrainingArguments, XDLMArguments, XDLMTrainingArguments)
    parser = HfArgumentParser(dataclass_types)
    if len(argv) == 1 and argv[0].endswith(".json"):
        with open(argv[0]) as f:
            values = json.load(f)
        check_json_types(values, dataclass_types, argv[0])
        args = parser.parse_dict(values)
    else:
        args = parser.parse_args_into_dataclasses(args=argv)
    check_flag_combinations(*args)
    return args


def check_json_types(values, dataclass_types, path):
    """A JSON file's values take the command line's types: a bool is a JSON bool ("false" is a
    string, and a non-empty string would count as true), an int an int, a float a number, a
    string a string; null only where the flag may be left out. Flags of other types (lists,
    dicts, unions) are left to the parser."""
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold one JSON object of flag names and values")
    flag_types = {}
    for cls in dataclass_types:
        hints = typing.get_type_hints(cls)
        flag_types.update({f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init})
    json_names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    for key, value in values.items():
        expected = flag_types.get(key)
        union = typing.get_origin(expected) in (typing.Union, types.UnionType)
        options = set(typing.get_args(expected)) if union else {expected}
        optional = type(None) in options
        options.discard(type(None))
        if len(options) != 1 or next(iter(options)) not in json_names or (value is None and optional):
            continue
        kind = next(iter(options))
        ok = {bool: isinstance(value, bool),
              int: isinstance(value, int) and not isinstance(value, bool),
              float: isinstance(value, (int, float)) and not isinstance(value, bool),
              str: isinstance(value, str)}[kind]
        if not ok:
            allowed = json_names[kind] + (" or null" if optional else "")
            raise ValueError(f"{path}: \"{key}\" must be {allowed} (as on the command line), got {json.dumps(value)}")


def check_flag_combinations(model_args, data_args, xdlm_args, training_args):
    if training_args.do_train:
        check_source_is_not_destination(model_args, training_args)
    if model_args.torch_dtype == "auto" and not model_args.model_name_or_path:
        raise ValueError("--torch_dtype auto takes the checkpoint's dtype, and training from scratch (no "
                         "--model_name_or_path) has none: give bfloat16, float16 or float32")
    objective = xdlm_args.objective
    if xdlm_args.fused_loss and not (objective.fused_loss_applies and model_args.model_implementation == "native"):
        applies = " or ".join(name for name, o in OBJECTIVES.items() if o.fused_loss_applies)
        raise ValueError(f"--fused_loss applies to --training_method {applies} with --model_implementation native")
    if model_args.model_implementation == "remote" and objective.causal:
        raise ValueError(f"--training_method {xdlm_args.training_method} needs causal attention, which only "
                         "--model_implementation native provides")
    if data_args.streaming and training_args.do_train and training_args.max_steps <= 0:
        raise ValueError("--streaming has no length: set --max_steps")


# ---------------------------------------------------------------------------
# Config, tokenizer, mask id, model
# ---------------------------------------------------------------------------

def load_config_and_tokenizer(model_args, data_args, xdlm_args):
    """(config, tokenizer, mask id, block size), checked against each other. Decides the fused
    loss's default, the one place it is decided: on wherever it applies (a method whose objective
    takes it, on this repository's LLaDA model, which a remote implementation is not)."""
    name, config_dict = config_file(model_args)
    config = load_config(model_args, config_dict)
    layers = getattr(config, "n_layers", getattr(config, "num_hidden_layers", None))
    if layers is not None and layers < 1:
        raise ValueError(f"the model config {name} has {layers} layers: a model needs at least one")
    tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name or model_args.model_name_or_path, config=config,
                                              cache_dir=model_args.cache_dir, revision=model_args.model_revision,
                                              token=model_args.token, trust_remote_code=model_args.trust_remote_code)
    if "mask_token_id" not in config_dict:
        config.mask_token_id = None  # a class default (LLaDAConfig: 126336) was never given
    mask_id = resolve_mask_id(config, tokenizer, xdlm_args.mask_token_id)
    config.mask_token_id = mask_id  # the saved model says which id it was trained with
    native = isinstance(config, LLaDAConfig)
    if xdlm_args.fused_loss and not native:
        raise ValueError(f"--fused_loss needs the native LLaDA model; {config.model_type!r} is not one")
    if xdlm_args.fused_loss is None:
        xdlm_args.fused_loss = native and xdlm_args.objective.fused_loss_applies
    model_max = max_length(config)
    block_size = data_args.block_size or min(model_max or 4096, 4096)
    if model_max and block_size > model_max:
        raise ValueError(f"--block_size {block_size} exceeds the model's maximum sequence length {model_max}")
    if len(tokenizer) > model_vocab_size(config):
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens "
                         f"but the model only {model_vocab_size(config)} embeddings")
    return config, tokenizer, mask_id, block_size


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
    if OBJECTIVES[training_method].causal:
        config.causal = True
    dtype = model_args.torch_dtype or default_dtype(training_args)
    dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    if model_args.model_name_or_path:
        kwargs = dict(config=config, dtype=dtype, cache_dir=model_args.cache_dir,
                      revision=model_args.model_revision, token=model_args.token)
        if native:
            model = LLaDAModelLM.from_pretrained(model_args.model_name_or_path, **kwargs)
        else:
            model = AutoModel.from_pretrained(model_args.model_name_or_path,
                                              trust_remote_code=model_args.trust_remote_code, **kwargs)
    else:
        model = (LLaDAModelLM(config) if native
                 else AutoModel.from_config(config, trust_remote_code=model_args.trust_remote_code))
        if model_args.torch_dtype:  # ("auto" is refused from scratch: check_flag_combinations)
            model = model.to(dtype)
        n = sum(p.numel() for p in model.parameters())
        logger.info(f"Training a new model from scratch: {n / 1e6:.2f}M parameters")
    if model_args.with_lora:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=model_args.lora_r, lora_alpha=model_args.lora_alpha, lora_dropout=model_args.lora_dropout,
                          target_modules=lora_target_pattern(model_args.lora_targets), bias="none")
        model = get_peft_model(model, lora)
        model.print_trainable_parameters()
        if training_args.gradient_checkpointing:
            model.enable_input_require_grads()
    return model


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def setup_logging(training_args, xdlm_args):
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S",
                        handlers=[logging.StreamHandler(sys.stdout)])
    if training_args.should_log:
        transformers.utils.logging.set_verbosity_info()
    log_level = training_args.get_process_log_level()
    for name in (__name__, *MODULE_LOGGERS):
        logging.getLogger(name).setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    datasets.utils.logging.disable_propagation()  # it prints with its own handler, as transformers does: each line once
    transformers.utils.logging.set_verbosity(log_level)
    set_wandb_defaults(training_args)
    logger.info(f"process {training_args.process_index}/{training_args.world_size}, device {training_args.device}, "
                f"bf16 {training_args.bf16}, method {xdlm_args.training_method}"
                + (f", k {xdlm_args.k}" if xdlm_args.k is not None else ""))


def main(argv=None):
    model_args, data_args, xdlm_args, training_args = parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging(training_args, xdlm_args)
    if data_args.streaming and data_args.preprocessing_num_workers:
        logger.warning("--streaming tokenizes in the --dataloader_num_workers workers; --preprocessing_num_workers "
                       "applies to non-streaming data only")
    with output_dir_claimed(training_args):  # checked writable; with --do_train, locked until the run ends
        return train_and_evaluate(model_args, data_args, xdlm_args, training_args)


def train_and_evaluate(model_args, data_args, xdlm_args, training_args):
    identity = run_identity(model_args, data_args, xdlm_args, training_args)
    checkpoint = prepare_output_dir(training_args, identity)
    set_seed(training_args.seed)

    config, tokenizer, mask_id, block_size = load_config_and_tokenizer(model_args, data_args, xdlm_args)
    train_dataset, eval_dataset = training_and_validation_blocks(data_args, model_args, tokenizer, block_size,
                                                                 training_args)
    model = load_model(model_args, config, xdlm_args.training_method, training_args)
    trainer = XDLMTrainer(model=model, args=training_args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                          processing_class=tokenizer, data_collator=default_data_collator, xdlm_args=xdlm_args,
                          mask_id=mask_id, run_identity=identity)

    trained = None
    if training_args.do_train:
        trained = trainer.train_and_save(checkpoint, model_args.with_lora, tokenizer)
    if trained is not None:
        trainer.log_metrics("train", trained)
        trainer.save_metrics("train", trained)
        trainer.save_state()
    if training_args.do_eval:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
    if trained is not None and xdlm_args.plot_loss and trainer.is_world_process_zero():
        plot_loss_curve(trainer.state.log_history, os.path.join(training_args.output_dir, "loss_curve.png"),
                        eval_key="eval_" + xdlm_args.objective.metric_names[0])
    return trainer


if __name__ == "__main__":
    main()
