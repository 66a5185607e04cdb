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
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from itertools import chain
from typing import Optional

import datasets
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
from transformers.trainer_utils import get_last_checkpoint

import modeling_llada  # noqa: F401  (registers model_type "llada" with the Auto classes)
from modeling_llada import LLaDAConfig, LLaDAModelLM
from xdlm_loss import (
    MASK_RATE_EPS,
    autoregressive_loss,
    corrupt,
    diffusion_objective,
    linear_xdlm_loss,
    sample_mask_rate,
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


@dataclass
class XDLMArguments:
    training_method: str = field(default="xdm", metadata={"help": "xdm (XDLM loss), mdm (LLaDA's masked loss) or ar (autoregressive)."})
    xdlm_k: float = field(default=0.1, metadata={"help": "XDLM mixing ratio k in [0, 1]: 0 is masking only, 1 uniform noise only."})
    mask_token_id: Optional[int] = field(default=None, metadata={"help": "Mask id; default: from the model config and tokenizer (LLaDA: 126336)."})
    fused_loss: bool = field(default=True, metadata={"help": "xdm/mdm with the native model: compute the output head and the loss together in chunks, never holding the [B, L, N] logits (same loss, a fraction of the memory)."})
    stratified_t: bool = field(default=True, metadata={"help": "Spread the batch's mask rates evenly over [eps, 1] (lower loss variance, same expectation)."})
    eval_mask_rates: int = field(default=8, metadata={"help": "--do_eval estimates the NELBO on a fixed grid of this many mask rates."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Start afresh even if output_dir holds checkpoints (otherwise training resumes from the last one)."})
    plot_loss: bool = field(default=True, metadata={"help": "Write output_dir/loss_curve.png after training."})


class XDLMTrainer(Trainer):
    """Trainer whose loss is the XDLM / masked diffusion / autoregressive objective."""

    def __init__(self, *args, xdlm_args, mask_id, **kwargs):
        super().__init__(*args, **kwargs)
        self.xdlm_args = xdlm_args
        self.mask_id = mask_id
        self.k = {"xdm": xdlm_args.xdlm_k, "mdm": 0.0}.get(xdlm_args.training_method)
        self._eval_generator = None

    def diffusion_loss(self, model, input_ids, keep, p_mask, generator=None):
        alpha = 1 - p_mask
        noisy = corrupt(input_ids, alpha, self.k, self.mask_id, self.vocab_size(model), generator=generator, keep=keep)
        weight = None if keep is None else (~keep).float()
        if not self.xdlm_args.fused_loss:
            logits = model(input_ids=noisy).logits
            return diffusion_objective(xdlm_loss(logits, noisy, input_ids, alpha, self.k, self.mask_id), weight)
        native = native_model(self.accelerator.unwrap_model(model))
        hidden = model(input_ids=noisy, return_hidden=True).last_hidden_state
        if native.config.scale_logits:
            hidden = hidden * (1 / math.sqrt(native.config.d_model))
        total = linear_xdlm_loss(hidden, native.output_head_weight, noisy, input_ids, alpha, self.k, self.mask_id, weight)
        return total / noisy.numel()  # the normalisation of diffusion_objective

    def vocab_size(self, model):
        return self.accelerator.unwrap_model(model).get_input_embeddings().num_embeddings

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        input_ids = inputs["input_ids"]
        keep = inputs["prompt_mask"].bool() if "prompt_mask" in inputs else None
        if self.xdlm_args.training_method == "ar":
            weight = None if keep is None else (~keep).float()
            loss = autoregressive_loss(model(input_ids=input_ids).logits, input_ids, weight)
        elif model.training:
            p_mask = sample_mask_rate(input_ids.shape[0], stratified=self.xdlm_args.stratified_t, device=input_ids.device)
            loss = self.diffusion_loss(model, input_ids, keep, p_mask)
        else:
            # Validation NELBO: the integral over t on a fixed midpoint grid with fixed noise,
            # so checkpoints are compared on the same estimate with low variance.
            G = self.xdlm_args.eval_mask_rates
            losses = []
            for j in range(G):
                rate = (1 - MASK_RATE_EPS) * (j + 0.5) / G + MASK_RATE_EPS
                p_mask = torch.full((input_ids.shape[0],), rate, device=input_ids.device)
                losses.append(self.diffusion_loss(model, input_ids, keep, p_mask, generator=self._eval_generator))
            loss = torch.stack(losses).mean()
        return (loss, None) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def evaluate(self, *args, **kwargs):
        device = self.args.device
        self._eval_generator = torch.Generator(device=device).manual_seed(self.args.seed)
        metrics = super().evaluate(*args, **kwargs)
        prefix = kwargs.get("metric_key_prefix", "eval")
        loss = metrics.get(f"{prefix}_loss")
        if loss is not None:
            name = "nll" if self.xdlm_args.training_method == "ar" else "nelbo"
            metrics[f"{prefix}_{name}"] = loss
            metrics[f"{prefix}_ppl_bound" if name == "nelbo" else f"{prefix}_ppl"] = math.exp(min(loss, 700))
            self.log({f"{prefix}_{name}": loss})
        return metrics


def native_model(model):
    """The LLaDAModelLM inside a (PEFT-wrapped) model, else None."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model if isinstance(model, LLaDAModelLM) else None


# ---------------------------------------------------------------------------
# Arguments: everything that can be checked before loading data or weights
# ---------------------------------------------------------------------------

def parse_args(argv):
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, XDLMArguments, TrainingArguments))
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(json_file=os.path.abspath(argv[0]))
    given = {a.split("=")[0] for a in argv if a.startswith("--")}
    # Without a GPU, HF Trainer and DeepSpeed only agree on the world size with use_cpu.
    if not torch.cuda.is_available() and "--use_cpu" not in given:
        argv = list(argv) + ["--use_cpu", "True"]
    model_args, data_args, xdlm_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    check_args(model_args, data_args, xdlm_args, training_args, given)
    return model_args, data_args, xdlm_args, training_args


def check_args(model_args, data_args, xdlm_args, training_args, given):
    if xdlm_args.training_method not in TRAINING_METHODS:
        raise ValueError(f"--training_method must be one of {', '.join(TRAINING_METHODS)}, got {xdlm_args.training_method!r}")
    if not 0.0 <= xdlm_args.xdlm_k <= 1.0:
        raise ValueError(f"--xdlm_k must lie in [0, 1], got {xdlm_args.xdlm_k}")
    if "--xdlm_k" in given and xdlm_args.training_method != "xdm":
        raise ValueError(f"--xdlm_k applies to --training_method xdm only (mdm is k = 0), got --training_method {xdlm_args.training_method}")
    if "--fused_loss" in given and xdlm_args.fused_loss and (
            xdlm_args.training_method == "ar" or model_args.model_implementation == "remote"):
        raise ValueError("--fused_loss applies to --training_method xdm or mdm with --model_implementation native")
    if xdlm_args.training_method == "ar" or model_args.model_implementation == "remote":
        xdlm_args.fused_loss = False
    if xdlm_args.eval_mask_rates < 1:
        raise ValueError(f"--eval_mask_rates must be at least 1, got {xdlm_args.eval_mask_rates}")
    if model_args.torch_dtype not in (None, "auto", "bfloat16", "float16", "float32"):
        raise ValueError(f"--torch_dtype must be auto, bfloat16, float16 or float32, got {model_args.torch_dtype!r}")
    if model_args.model_implementation not in ("native", "remote"):
        raise ValueError(f"--model_implementation must be 'native' or 'remote', got {model_args.model_implementation!r}")
    if model_args.model_implementation == "remote" and not model_args.trust_remote_code:
        raise ValueError("--model_implementation remote runs the checkpoint's own code: add --trust_remote_code True")
    if model_args.model_implementation == "remote" and xdlm_args.training_method == "ar":
        raise ValueError("--training_method ar needs causal attention, which only --model_implementation native provides")
    if not (model_args.model_name_or_path or model_args.config_name):
        raise ValueError("give --model_name_or_path (continue a checkpoint) or --config_name (train from scratch)")
    if not (model_args.tokenizer_name or model_args.model_name_or_path):
        raise ValueError("give --tokenizer_name when training from scratch with --config_name")
    if not (data_args.dataset_name or data_args.train_file):
        raise ValueError("give --dataset_name (hub or local dataset) or --train_file (local .txt/.json/.jsonl/.parquet)")
    for name in ("train_file", "validation_file"):
        path = getattr(data_args, name)
        if path is not None:
            if not os.path.exists(path):
                raise ValueError(f"--{name} {path} does not exist")
            if _builder_for(path) is None:
                raise ValueError(f"--{name} must end in .txt, .json, .jsonl or .parquet, got {path}")
    if data_args.block_size is not None and data_args.block_size < 2:
        raise ValueError(f"--block_size must be at least 2, got {data_args.block_size}")
    if data_args.streaming and training_args.do_train and training_args.max_steps <= 0:
        raise ValueError("--streaming has no length: set --max_steps")
    targets = [t.strip() for t in model_args.lora_target_modules.split(",") if t.strip()]
    unknown = sorted(set(targets) - set(LLADA_MODULES))
    if model_args.with_lora and (unknown or not targets):
        raise ValueError(f"--lora_target_modules must be a comma-separated subset of {', '.join(LLADA_MODULES)}, got {model_args.lora_target_modules!r}")
    if "--remove_unused_columns" in given and training_args.remove_unused_columns:
        raise ValueError("--remove_unused_columns must be False: the loss reads the prompt_mask data column")
    training_args.remove_unused_columns = False
    if "--overwrite_output_dir" in given and not training_args.do_train:
        raise ValueError("--overwrite_output_dir only matters with --do_train")


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
        config = LLaDAConfig.from_pretrained(name, **hub)
        if hasattr(config, "auto_map"):  # checkpoints we write load with this repository's model, not hub code
            del config.auto_map
        return config
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

def load_raw_datasets(data_args, model_args, seed, need_validation):
    hub = dict(cache_dir=model_args.cache_dir, token=model_args.token, streaming=data_args.streaming)
    if data_args.dataset_name:
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
            fn = lambda batch: _pairs(batch, tokenizer, data_args, block_size, eos)  # noqa: E731
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
    return out


def _pack(batch, tokenizer, col, block_size, eos):
    ids = [t + [eos] for t in tokenizer(batch[col], add_special_tokens=False)["input_ids"]]
    flat = list(chain.from_iterable(ids))
    n = len(flat) // block_size * block_size
    return {"input_ids": [flat[i:i + block_size] for i in range(0, n, block_size)]}


def _pairs(batch, tokenizer, data_args, block_size, eos):
    prompts = tokenizer(batch[data_args.prompt_column], add_special_tokens=False)["input_ids"]
    answers = tokenizer(batch[data_args.answer_column], add_special_tokens=False)["input_ids"]
    input_ids, prompt_mask = [], []
    for p, a in zip(prompts, answers):
        if len(p) >= block_size:  # nothing left to learn from: skip, counted in the log
            continue
        seq = (p + a + [eos])[:block_size]
        input_ids.append(seq + [eos] * (block_size - len(seq)))
        prompt_mask.append([1] * len(p) + [0] * (block_size - len(p)))
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
    logger.info(f"process {training_args.process_index}/{training_args.world_size}, device {training_args.device}, "
                f"bf16 {training_args.bf16}, method {xdlm_args.training_method}"
                + (f", k {xdlm_args.xdlm_k}" if xdlm_args.training_method == "xdm" else ""))
    if data_args.streaming and data_args.preprocessing_num_workers:
        logger.warning("--streaming tokenizes in the --dataloader_num_workers workers; --preprocessing_num_workers "
                       "applies to non-streaming data only")

    last_checkpoint = None
    if training_args.do_train and os.path.isdir(training_args.output_dir):
        if xdlm_args.overwrite_output_dir:
            with training_args.main_process_first(desc="clearing old checkpoints"):
                if training_args.should_save:
                    import shutil

                    for name in os.listdir(training_args.output_dir):
                        if name.startswith("checkpoint-"):
                            shutil.rmtree(os.path.join(training_args.output_dir, name))
        else:
            last_checkpoint = get_last_checkpoint(training_args.output_dir)
            if last_checkpoint and training_args.resume_from_checkpoint is None:
                logger.info(f"Resuming from {last_checkpoint} (--overwrite_output_dir starts afresh)")
    set_seed(training_args.seed)

    config = load_config(model_args)
    tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name or model_args.model_name_or_path,
                                              cache_dir=model_args.cache_dir, revision=model_args.model_revision,
                                              token=model_args.token, trust_remote_code=model_args.trust_remote_code)
    mask_id = resolve_mask_id(config, tokenizer, xdlm_args.mask_token_id)
    if xdlm_args.fused_loss and not isinstance(config, LLaDAConfig):
        if any(a.split("=")[0] == "--fused_loss" for a in argv):
            raise ValueError(f"--fused_loss needs the native LLaDA model; {config.model_type!r} is not one")
        xdlm_args.fused_loss = False
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

    if training_args.do_train:
        result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint or last_checkpoint)
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
