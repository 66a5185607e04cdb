"""What the faster sampler modes cost in quality, measured exactly on the Fig. 1 experiment's language.

The continued models of `scripts/fig1_tiny.sh` (each k = 0 model continued with k = 0, "mdm",
and with k = 0.1, "xdm") complete its held-out noise-free prompts with the confidence sampler at
temperature 0 (mdm at k = 0, xdm at k = 0.1), in blocks of --block_length so that the cache has
earlier blocks to hold, once per mode at equal requested steps: the exact sampler
(cache="none"), the prefix and dual caches, and the dual cache with a confidence threshold.
Every completion is scored under the source itself (hmm_language.completion_metrics): the failure
rate (the noise-free source cannot emit prompt + completion, or the block's eos slot is not
the eos) and the gen-NLL per completion token. Beside them: the steps a mode actually took and
the fraction of completion tokens identical to the exact sampler's. Mean and spread over the
experiment's training seeds.

Writes FIG1_DIR/fast_sampling.csv and fast_sampling.md.
usage: python scripts/fast_sampling_quality.py [--fig1_dir outputs/fig1_tiny] [--block_length 16] [--steps 12,24,48]
"""
import argparse
import json
import os
import sys
import types

import torch
from tqdm.auto import tqdm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from experiment_common import (  # noqa: E402
    CONTINUED_K,
    SAMPLER_MODES,
    load_on_cpu,
    mean_spread,
    require_at_least_one,
    step_grid,
    trained,
    write_csv,
)
from generate import generate  # noqa: E402
from hmm_language import completion_metrics, source_of  # noqa: E402

# The sampler's named modes at Fast-dLLM's threshold
MODES = {name: SAMPLER_MODES[name] for name in ("exact", "prefix", "dual", "dual-t0.9")}
FIELDS = ("model", "sampler_k", "mode", "steps", "metric", "mean", "spread", "seeds")
# What this script reads of a fig1_tiny.py run's settings.json (the language, the prompts, the seeds)
FIG1_SETTINGS = ("language_seed", "symbols", "words", "word_min", "word_max", "successors", "noise", "seeds",
                 "prompt_length", "completion_length")


def complete(model, prompts, k, steps, completion_length, block_length, mode):
    stats = {}
    out = generate(model, prompts, steps=steps, gen_length=completion_length, block_length=block_length, k=k,
                   temperature=0.0, stats=stats, **MODES[mode])
    return out[:, prompts.shape[1]:], stats["steps"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fig1_dir", default="outputs/fig1_tiny", help="the output folder of a finished fig1_tiny.sh run")
    ap.add_argument("--block_length", type=int, default=16, help="must divide the experiment's completion length")
    ap.add_argument("--steps", default="12,24,48", help="requested steps, each a multiple of the number of blocks")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's own choice)")
    args = ap.parse_args(argv)
    require_at_least_one(ap, args, ("threads",))
    settings_file = os.path.join(args.fig1_dir, "settings.json")
    if not os.path.isfile(settings_file):
        ap.error(f"--fig1_dir {args.fig1_dir!r} has no settings.json: run scripts/fig1_tiny.sh first")
    try:
        with open(settings_file) as f:
            settings = json.load(f)
    except (OSError, ValueError) as e:
        ap.error(f"--fig1_dir {args.fig1_dir!r}: its settings.json cannot be read ({e})")
    missing = [key for key in FIG1_SETTINGS if not isinstance(settings, dict) or key not in settings]
    if missing:
        ap.error(f"--fig1_dir {args.fig1_dir!r} is not the output folder of a fig1_tiny.py run (its settings.json "
                 f"lacks {', '.join(missing)}): give the folder scripts/fig1_tiny.sh wrote")
    fig1 = types.SimpleNamespace(**settings)
    length = fig1.completion_length
    if args.block_length < 1 or length % args.block_length:
        ap.error(f"--block_length must divide the completion length {length}, got {args.block_length}")
    blocks = length // args.block_length
    steps_grid = step_grid(ap, "steps", args.steps, length)
    if any(s % blocks for s in steps_grid):
        ap.error(f"--steps must be multiples of the number of blocks ({length} / {args.block_length} = {blocks}), "
                 f"got {args.steps}")
    models = [(method, seed, k, os.path.join(args.fig1_dir, f"continued_{method}_seed{seed}"))
              for method, k in CONTINUED_K.items() for seed in range(fig1.seeds)]
    missing = [d for *_, d in models if not trained(d)]
    if missing:
        ap.error(f"{args.fig1_dir} lacks the continued models {', '.join(missing)}: let fig1_tiny.sh finish first")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    source, eos = source_of(fig1), fig1.symbols
    with open(os.path.join(args.fig1_dir, "language", "prompts.json")) as f:
        prompts = torch.tensor(json.load(f))
    values = {}  # (method, k, mode, steps, metric) -> one value per seed
    bar = tqdm(total=len(models) * len(steps_grid) * len(MODES), desc="completions")
    for method, _seed, k, model_dir in models:
        model = load_on_cpu(model_dir)
        for steps in steps_grid:
            exact = None
            for mode in MODES:
                completions, taken = complete(model, prompts, k, steps, length, args.block_length, mode)
                exact = completions if mode == "exact" else exact
                metrics = completion_metrics(source, prompts, completions, eos)
                metrics.update(steps_taken=float(taken), identical_tokens=float((completions == exact).double().mean()))
                for metric, value in metrics.items():
                    values.setdefault((method, k, mode, steps, metric), []).append(value)
                bar.update(1)
    bar.close()

    rows = []
    for (method, k, mode, steps, metric), vals in values.items():
        mean, spread = mean_spread(vals)
        rows.append(dict(model=method, sampler_k=k, mode=mode, steps=steps, metric=metric, mean=mean, spread=spread,
                         seeds=len(vals)))
    write_csv(os.path.join(args.fig1_dir, "fast_sampling.csv"), FIELDS, rows)

    def cell(method, k, mode, steps, metric):
        mean, spread = mean_spread(values[(method, k, mode, steps, metric)])
        return f"{mean:.3f} ± {spread:.3f}"

    lines = [f"Completions of {len(prompts)} noise-free prompts ({fig1.prompt_length} tokens) with {length} tokens in "
             f"blocks of {args.block_length}, confidence sampler at temperature 0; mean ± spread over {fig1.seeds} "
             "training seeds.", "",
             "| model | mode | steps | failure rate | gen-NLL | steps taken | identical tokens vs exact |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for method, k in CONTINUED_K.items():
        for steps in steps_grid:
            for mode in MODES:
                cells = [cell(method, k, mode, steps, metric)
                         for metric in ("failure", "gen_nll", "steps_taken", "identical_tokens")]
                lines.append(f"| {method} (k={k:g}) | {mode} | {steps} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    with open(os.path.join(args.fig1_dir, "fast_sampling.md"), "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    main()
