#!/usr/bin/env python
"""Continual pretraining of LLaDA-class diffusion language models with the XDLM loss.

The flow of transformers' run_clm.py (argument dataclasses, datasets, packing into
blocks, Trainer) with LLaDA's loss swapped for one of xdlm_trainer.OBJECTIVES (XDLM, LLaDA's
masked loss, autoregressive). Data loading lives in data.py, checkpointing in checkpoints.py.
Launch with `deepspeed llada_cpt.py --deepspeed ds_zero2_bf16_config_simp.json ...`,
`torchrun`, or plain `python` for one process.
"""
import logging
import os
import sys
from dataclasses import dataclass, field
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
    TrainingArguments,
    default_data_collator,
    set_seed,
)
from transformers.dynamic_module_utils import get_class_from_dynamic_module

import modeling_llada  # noqa: F401  (registers model_type "llada" with the Auto classes)
from checkpoints import prepare_output_dir
from data import LOCAL_FILE_FORMATS, builder_for, training_and_validation_blocks
from modeling_llada import LLaDAConfig, LLaDAModelLM
from xdlm_trainer import OBJECTIVES, XDLMTrainer

logger = logging.getLogger(__name__)

# LoRA adapters go on these projections of every LLaDA block (all of them by default).
LORA_MODULES = ("q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out")
LOSS_CURVE_WINDOW = 20  # logged training losses per point of loss_curve.png's running mean


def lora_target_pattern(modules):
    # Only the blocks' projections: the output head is also called ff_out in LLaDA.
    return r".*\.blocks\.\d+\.(" + "|".join(modules) + r")"


# ---------------------------------------------------------------------------
# Arguments: everything that can be checked before loading data or weights
# ---------------------------------------------------------------------------

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
    lora_target_modules: str = field(default=",".join(LORA_MODULES), metadata={"help": "Comma-separated LLaDA block modules that get adapters."})

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
        unknown = sorted(set(self.lora_targets) - set(LORA_MODULES))
        if self.with_lora and (unknown or not self.lora_targets):
            raise ValueError(f"--lora_target_modules must be a comma-separated subset of {', '.join(LORA_MODULES)}, got {self.lora_target_modules!r}")

    @property
    def lora_targets(self):
        return [t.strip() for t in self.lora_target_modules.split(",") if t.strip()]


@dataclass
class DataTrainingArguments:
    dataset_name: Optional[str] = field(default=None, metadata={"help": "Hub dataset name or local dataset folder."})
    dataset_config_name: Optional[str] = field(default=None, metadata={"help": "Dataset configuration, e.g. sample-10BT."})
    train_file: Optional[str] = field(default=None, metadata={"help": f"Local training file: {LOCAL_FILE_FORMATS}."})
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
            raise ValueError(f"give --dataset_name (hub or local dataset) or --train_file (local {LOCAL_FILE_FORMATS})")
        for name in ("train_file", "validation_file"):
            path = getattr(self, name)
            if path is not None:
                if not os.path.exists(path):
                    raise ValueError(f"--{name} {path} does not exist")
                if builder_for(path) is None:
                    raise ValueError(f"--{name} must end in one of {LOCAL_FILE_FORMATS}, got {path}")
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
    training_method: str = field(default="xdm", metadata={"help": "; ".join(f"{name}: {o.help}" for name, o in OBJECTIVES.items())})
    xdlm_k: Optional[float] = field(default=None, metadata={"help": "XDLM mixing ratio k in [0, 1] (default 0.1): 0 is masking only, 1 uniform noise only. xdm only."})
    mask_token_id: Optional[int] = field(default=None, metadata={"help": "Mask id; default: from the model config and tokenizer (LLaDA: 126336)."})
    fused_loss: Optional[bool] = field(default=None, metadata={"help": "xdm/mdm with the native model: compute the output head and the loss together in chunks, never holding the [B, L, N] logits (same loss, a fraction of the memory). Default: on wherever it applies."})
    stratified_t: bool = field(default=True, metadata={"help": "Spread the mask rates of each optimizer batch (all ranks and accumulation steps) evenly over [eps, 1] (lower loss variance, same expectation)."})
    eval_mask_rates: int = field(default=8, metadata={"help": "--do_eval estimates the NELBO on a fixed grid of this many mask rates."})
    plot_loss: bool = field(default=True, metadata={"help": f"Write output_dir/loss_curve.png after training: the logged losses, their running mean over {LOSS_CURVE_WINDOW} logged steps, and the validation loss with --do_eval."})

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


def parse_args(argv):
    """The four argument dataclasses from the command line or from one JSON file; each checks
    itself in __post_init__, and check_flag_combinations what they only decide together. Where
    the fused loss cannot apply, its default becomes False here."""
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, XDLMArguments, XDLMTrainingArguments))
    if len(argv) == 1 and argv[0].endswith(".json"):
        args = parser.parse_json_file(json_file=os.path.abspath(argv[0]))
    else:
        args = parser.parse_args_into_dataclasses(args=argv)
    check_flag_combinations(*args)
    model_args, _, xdlm_args, _ = args
    if not (xdlm_args.objective.fused_loss_applies and model_args.model_implementation == "native"):
        xdlm_args.fused_loss = False  # else decided once the config is read (native LLaDA or not)
    return args


def check_flag_combinations(model_args, data_args, xdlm_args, training_args):
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


def load_config_and_tokenizer(model_args, data_args, xdlm_args):
    """(config, tokenizer, mask id, block size), checked against each other; decides the fused
    loss's default (on wherever it applies: the native LLaDA model)."""
    config = load_config(model_args)
    tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name or model_args.model_name_or_path,
                                              cache_dir=model_args.cache_dir, revision=model_args.model_revision,
                                              token=model_args.token, trust_remote_code=model_args.trust_remote_code)
    mask_id = resolve_mask_id(config, tokenizer, xdlm_args.mask_token_id)
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
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but the model only {model_vocab_size(config)} embeddings")
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
            model = AutoModel.from_pretrained(model_args.model_name_or_path, trust_remote_code=model_args.trust_remote_code, **kwargs)
    else:
        model = LLaDAModelLM(config) if native else AutoModel.from_config(config, trust_remote_code=model_args.trust_remote_code)
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
# Logging: wandb defaults and the loss curve
# ---------------------------------------------------------------------------

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


def running_mean(values, window):
    """The mean of each value and the window - 1 before it (fewer at the start)."""
    sums = np.cumsum(np.concatenate([[0.0], np.asarray(values, dtype=np.float64)]))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def plot_loss_curve(log_history, path, eval_key, window=LOSS_CURVE_WINDOW):
    """The logged training losses as faint dots (diffusion's noise makes them a wide band), their
    running mean over `window` logged steps as the trend, and the validation loss `eval_key`
    (eval_nelbo, eval_nll) wherever it was evaluated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(e["step"], e["loss"]) for e in log_history if "loss" in e]
    if not points:
        return
    steps, losses = zip(*points)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, losses, ".", alpha=0.3, color="tab:blue", label="training loss (logged)")
    ax.plot(steps, running_mean(losses, window), color="tab:blue", label=f"running mean over {window} logged steps")
    evals = [(e["step"], e[eval_key]) for e in log_history if eval_key in e]
    if evals:
        ax.plot(*zip(*evals), "o-", color="tab:red", label=f"validation {eval_key[len('eval_'):]}")
    ax.legend()
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per loss position)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def setup_logging(training_args, xdlm_args):
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S",
                        handlers=[logging.StreamHandler(sys.stdout)])
    if training_args.should_log:
        transformers.utils.logging.set_verbosity_info()
    log_level = training_args.get_process_log_level()
    for module_logger in (logger, logging.getLogger("data"), logging.getLogger("checkpoints")):
        module_logger.setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level)
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
    checkpoint = prepare_output_dir(training_args)
    set_seed(training_args.seed)

    config, tokenizer, mask_id, block_size = load_config_and_tokenizer(model_args, data_args, xdlm_args)
    train_dataset, eval_dataset = training_and_validation_blocks(data_args, model_args, tokenizer, block_size, training_args)
    model = load_model(model_args, config, xdlm_args.training_method, training_args)
    trainer = XDLMTrainer(model=model, args=training_args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                          processing_class=tokenizer, data_collator=default_data_collator, xdlm_args=xdlm_args,
                          mask_id=mask_id)

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
