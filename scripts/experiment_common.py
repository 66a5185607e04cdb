"""What the experiments under scripts/ share, so that none imports another.

  command line   checked flags (finite floats, step and k grids, counts of at least 1), and the
                 settings of an output folder, recorded once and compared on every rerun;
  stages         a training stage through llada_cpt.py in a subprocess that ends with its parent,
                 cached results written whole, the validation NELBO (the trainer's own evaluation);
  models, data   the LLaDA-format config and special tokens of the tiny models, loading a model
                 on the CPU, held-out prompts, the sampler's named modes;
  results        sample entropy, mean and spread over seeds, the CSV writer.

torch, the trainer (llada_cpt) and the sampler (generate) are imported inside the functions that
use them: make_tiny.py imports this module for the token names and the config alone, and stays
quick to start.
"""
import argparse
import csv
import ctypes
import json
import math
import os
import signal
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# LLaDA's special tokens, by name (the tiny default's tokenizer and the Fig. 1 language's).
MASK, EOS, PAD = "<|mdm_mask|>", "<|endoftext|>", "<|pad|>"

# Random-weight model shapes for the benchmarks: the tiny default's (scripts/make_tiny.py, vocabulary
# 512) and LLaDA-8B's.
RANDOM_SHAPES = {
    "tiny": dict(d_model=192, n_layers=4, n_heads=6, n_kv_heads=6, mlp_hidden_size=512, vocab_size=512,
                 embedding_size=512, mask_token_id=2, rope_theta=10000.0),
    "8b": dict(d_model=4096, n_layers=32, n_heads=32, n_kv_heads=32, mlp_hidden_size=12288, vocab_size=126464,
               embedding_size=126464, mask_token_id=126336, rope_theta=500000.0),
}

# The sampler's named modes: generate()'s cache and threshold for each (the rest are its
# defaults). "exact" (the defaults) is the reference every ratio and agreement is taken against.
# 0.9 is Fast-dLLM's threshold; the tiny model is rarely that confident, so 0.1 shows the rule at work.
SAMPLER_MODES = {"exact": dict(cache="none"), "prefix": dict(cache="prefix"), "dual": dict(cache="dual"),
                 "prefix-t0.9": dict(cache="prefix", threshold=0.9), "dual-t0.9": dict(cache="dual", threshold=0.9),
                 "dual-t0.1": dict(cache="dual", threshold=0.1)}

# Fig. 1's continued pretraining: each k = 0 model continued with k = 0 ("mdm") and with k = 0.1
# ("xdm") into OUT/continued_<name>_seed<seed> (fig1_tiny.py writes them, fast_sampling_quality.py reads them).
CONTINUED_K = {"mdm": 0.0, "xdm": 0.1}


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def finite_float(text):
    """argparse type of a float flag: nan and inf are refused (argparse names the flag)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def require_at_least_one(ap, args, names):
    """Stops with the first flag of `names` below 1 (a flag left at None is not checked)."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            ap.error(f"--{name} must be at least 1, got {value}")


def step_grid(ap, flag, text, most, most_flag=None):
    """The sorted distinct step counts of a comma-separated flag, each in [1, most] (most_flag:
    the flag `most` comes from, named in the error)."""
    try:
        grid = sorted({int(s) for s in text.split(",")})
    except ValueError:
        ap.error(f"--{flag} must be comma-separated integers, got {text!r}")
    if not grid or grid[0] < 1 or grid[-1] > most:
        bound = f"--{most_flag} = {most}" if most_flag else most
        ap.error(f"--{flag} must lie in [1, {bound}], got {text!r}")
    return grid


def float_grid(ap, flag, text):
    """The sorted distinct finite numbers of a comma-separated flag."""
    try:
        values = sorted({float(s) for s in text.split(",")})
    except ValueError:
        ap.error(f"--{flag} must be comma-separated numbers, got {text!r}")
    if not all(math.isfinite(v) for v in values):
        ap.error(f"--{flag} must be comma-separated finite numbers, got {text!r}")
    return values


def refuse_other_settings(ap, args, ignore=("out",)):
    """Finished stages in args.out are reused, so they must have been made with these settings:
    records them in args.out/settings.json, or stops with the flags that changed. Call it after
    every other check: a refused command line must not leave its settings behind."""
    os.makedirs(args.out, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k not in ignore}
    settings_file = os.path.join(args.out, "settings.json")
    if os.path.exists(settings_file):
        with open(settings_file) as f:
            before = json.load(f)
        if before != settings:
            changed = ", ".join(f"--{k} {before.get(k)} -> {v}" for k, v in settings.items() if before.get(k) != v)
            ap.error(f"{args.out} holds stages made with other settings ({changed}): use another --out or delete it")
    write_json(settings_file, settings, indent=1)


# ---------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------

# A training stage's folder holds a whole model once it holds this file: llada_cpt.py writes it after
# the model and its tokenizer, so a folder whose model.safetensors a kill cut short does not count.
FINISHED_TRAINING = "trainer_state.json"


def trained(model_dir):
    """Whether a training stage finished in model_dir."""
    return os.path.isfile(os.path.join(model_dir, FINISHED_TRAINING))


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Resolved here, in the parent: a forked child must not load libraries before it execs (preexec_fn).
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def end_with_parent(parent_pid):
    """Called in a child process (a stage worker's initializer, a trainer's preexec_fn): the
    kernel kills it when its parent ends, also under kill -9 of the parent, which no handler can
    catch; it ends at once if the parent is already gone. Linux only (prctl PR_SET_PDEATHSIG);
    elsewhere, or where prctl is refused, the child runs on as before."""
    if _PRCTL is None or _PRCTL(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), 0, 0, 0) != 0:
        return
    if os.getppid() != parent_pid:  # the parent ended before the signal was armed
        os._exit(1)


def train_stage(args, name, method, steps, init=None, k=None, seed=0):
    """llada_cpt.py in a subprocess, into args.out/name (its output in args.out/name.log), on the
    data and tokenizer of args.tiny_dir; a finished stage is skipped, an interrupted one resumes
    from its last checkpoint. The trainer ends with this process."""
    out = os.path.join(args.out, name)
    if trained(out):
        return out
    tiny = args.tiny_dir
    cmd = [sys.executable, os.path.join(ROOT, "llada_cpt.py"), "--tokenizer_name", os.path.join(tiny, "model"),
           "--train_file", os.path.join(tiny, "train.jsonl"),
           # its own validation file: the trainer then cuts no validation split out of train.jsonl
           "--validation_file", os.path.join(tiny, "valid.jsonl"), "--training_method", method,
           "--block_size", str(args.block_size), "--per_device_train_batch_size", str(args.batch_size),
           "--learning_rate", str(args.learning_rate), "--weight_decay", "0.0", "--max_grad_norm", "1.0",
           "--lr_scheduler_type", "constant_with_warmup", "--warmup_steps", str(min(args.warmup_steps, steps)),
           "--max_steps", str(steps), "--logging_steps", "10", "--save_steps", "200", "--save_total_limit", "1",
           "--do_train", "--output_dir", out, "--report_to", "none", "--dataloader_num_workers", "0",
           "--seed", str(seed), "--logging_first_step", "True"]
    cmd += ["--model_name_or_path", init] if init else ["--config_name", os.path.join(tiny, "model")]
    if k is not None:
        cmd += ["--xdlm_k", str(k)]
    print(f"\n=== training {name}: {method}{'' if k is None else f' k={k}'}, {steps} steps"
          f"{' from ' + init if init else ' from scratch'} ===", flush=True)
    parent = os.getpid()
    with open(os.path.join(args.out, f"{name}.log"), "w") as log:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=None, preexec_fn=lambda: end_with_parent(parent))
    if proc.returncode:
        sys.exit(f"training {name} failed (exit {proc.returncode}); see {args.out}/{name}.log")
    return out


def write_json(path, value, **dump_options):
    """path holds all of value or, if the process is killed while writing, what it held before
    (a file that marks a finished stage is never half written)."""
    with open(path + ".tmp", "w") as f:
        json.dump(value, f, **dump_options)
    os.replace(path + ".tmp", path)


def cached(path, compute):
    """The JSON value in path, or compute()'s, written there."""
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    value = compute()
    write_json(path, value)
    return value


def validation_nelbo(model_dir, tiny_dir, out_dir, training_method="xdm", block_size=64, max_eval_samples=256,
                     eval_batch_size=64, extra=()):
    """(metrics, trainer) of llada_cpt.py --do_eval on model_dir (the trainer's fixed grid of mask
    rates and fixed noise, on a seeded random sample of max_eval_samples validation blocks);
    trainer.eval_dataset holds the blocks."""
    import llada_cpt

    argv = ["--model_name_or_path", model_dir, "--train_file", os.path.join(tiny_dir, "train.jsonl"),
            "--validation_file", os.path.join(tiny_dir, "valid.jsonl"), "--training_method", training_method,
            "--block_size", str(block_size), "--max_eval_samples", str(max_eval_samples),
            "--per_device_eval_batch_size", str(eval_batch_size), "--do_eval", "--output_dir", out_dir,
            "--report_to", "none", "--dataloader_num_workers", "0", "--seed", "0", "--disable_tqdm", "True", *extra]
    trainer = llada_cpt.main(argv)
    with open(os.path.join(out_dir, "eval_results.json")) as f:
        return json.load(f), trainer


def cached_nelbo(args, name, model_dir, k):
    """The validation NELBO of model_dir under its own k (0: LLaDA's masked loss) on args.eval_blocks
    blocks of args.block_size, kept in args.out/nelbo_NAME.json."""
    def compute():
        method, extra = ("mdm", ()) if k == 0 else ("xdm", ("--xdlm_k", str(k)))
        metrics, _ = validation_nelbo(model_dir, args.tiny_dir, os.path.join(args.out, f"eval_{name}"), method,
                                      args.block_size, args.eval_blocks, extra=extra)
        return metrics["eval_nelbo"]
    return cached(os.path.join(args.out, f"nelbo_{name}.json"), compute)


# ---------------------------------------------------------------------------
# Models and data
# ---------------------------------------------------------------------------

def write_llada_config(model_dir, tokenizer, **shape):
    """model_dir/config.json: LLaDA's architecture and field names for tokenizer's ids, with the
    model shape `shape` (d_model, n_layers, n_heads, n_kv_heads, mlp_hidden_size,
    max_sequence_length; embedding_size, by default the tokenizer's size rounded up to a multiple
    of 64, as LLaDA also pads its embedding past the tokenizer)."""
    n = len(tokenizer)
    config = dict(
        architectures=["LLaDAModelLM"], model_type="llada", vocab_size=n, embedding_size=(n + 63) // 64 * 64,
        mlp_ratio=4, rope_theta=10000.0, rms_norm_eps=1e-5, weight_tying=False, include_bias=False,
        include_qkv_bias=False, block_type="llama", activation_type="silu", layer_norm_type="rms", rope=True,
        alibi=False, scale_logits=False, init_std=0.02, use_cache=False,
        mask_token_id=tokenizer.mask_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    config.update(shape)
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


def load_on_cpu(model_dir):
    """The model of model_dir in float32 on the CPU, in eval mode."""
    from generate import load_model

    return load_model(model_dir, dtype="float32", device="cpu")[0]


def held_out_prompts(tokenizer, tiny_dir, n, length):
    """n prompts of `length` tokens: the starts of n evenly spaced lines of the held-out texts
    that have at least that many tokens after them (deterministic)."""
    import torch

    with open(os.path.join(tiny_dir, "valid.jsonl"), encoding="utf-8") as f:
        text = "".join(json.loads(line)["text"] for line in f)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    starts = torch.linspace(0, len(ids) - length - 1, n).long().tolist()
    if len(ids) < length + n:
        raise ValueError(f"the held-out text has {len(ids)} tokens, too few for {n} prompts of {length}")
    return torch.tensor([ids[s:s + length] for s in starts])


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------

def sample_entropy(completion_ids):
    """Mean over rows of the entropy (nats) of the row's token frequencies: low for a sample
    that repeats a few tokens."""
    import torch

    total = 0.0
    for row in completion_ids:
        counts = torch.bincount(row).double()
        p = counts[counts > 0] / row.numel()
        total += float(-(p * p.log()).sum())
    return total / completion_ids.shape[0]


def mean_spread(values):
    """Mean and sample standard deviation over seeds (0 with one seed)."""
    mean = sum(values) / len(values)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, spread


def write_csv(path, fields, rows):
    """rows (dicts with the keys `fields`) as a CSV file with a header."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
