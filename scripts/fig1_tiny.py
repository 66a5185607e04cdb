"""The paper's small-model experiment (its Fig. 1) at CPU scale, on a language with exact likelihood.

The language is a seeded hidden-Markov "word" source (scripts/hmm_language.py). Each document
is block_size - 1 source tokens; the trainer packs text + eos, so every training or validation
block is exactly one independent document followed by its eos.

  part 2  from scratch: one row per k (0: MDLM, 0.1 and 0.5: XDLM, 1: uniform diffusion), each
          trained for --steps with the same data, shape, learning rate and --seeds seeds;
          validation NELBO under its own k (the trainer's fixed grid, experiment_common.validation_nelbo)
          and unconditional samples from the ancestral sampler at temperature 1 with each of
          --sample_steps: exact gen-NLL per token under the source and unigram entropy;
  part 3  continued pretraining: every k = 0 model of part 2 continued for --continue_steps with
          k = 0 (mdm) and k = 0.1 (xdm); completions of held-out noise-free prompts by the
          confidence sampler at temperature 0 (base at k = 0 and 0.1, mdm at k = 0, xdm at
          k = 0.1): the failure rate (completions the noise-free source cannot emit after their
          prompt) and exact gen-NLL; and the part-2 ancestral figures for mdm and xdm.

Every training is llada_cpt.py in a subprocess; --jobs stages run at once, each on its own
thread(s). Writes OUT/results.csv, OUT/results.md and OUT/fig1.png. A rerun reuses finished
stages and refuses an OUT made with other settings. The stage workers and trainers end with this
process, also under kill -9 (Linux), so the same command right after goes on where it stopped.
usage: python scripts/fig1_tiny.py [--out outputs/fig1_tiny] [--seeds 3] [--steps 1500] [--jobs 2] [...]
"""
import argparse
import json
import math
import multiprocessing
import os
import resource
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

import torch
from tqdm.auto import tqdm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from experiment_common import (CONTINUED_K, FINISHED_TRAINING, cached_nelbo, end_with_parent, finite_float,  # noqa: E402
                               float_grid, load_on_cpu, mean_spread, refuse_other_settings, require_at_least_one,
                               sample_entropy, step_grid, train_stage, write_csv, write_json, write_llada_config)
from generate import generate  # noqa: E402
from hmm_language import (SYMBOL_NAMES, completion_metrics, entropy_per_token, make_tokenizer, sample_metrics,  # noqa: E402
                          source_of, to_text)

# Literal seeds of the language's data streams.
TRAIN_DATA_SEED, VALID_DATA_SEED, PROMPT_SEED, ENTROPY_SEED = 101, 202, 303, 404
FIELDS = ("part", "model", "train_k", "sampler", "sampler_k", "steps", "metric", "mean", "spread", "seeds")


# ---------------------------------------------------------------------------
# The language's files and the model config
# ---------------------------------------------------------------------------

def row_name(k):
    return "MDLM (k=0)" if k == 0 else "UDLM (k=1)" if k == 1 else f"XDLM k={k:g}"


def make_language(args, source):
    """OUT/language: train.jsonl and valid.jsonl (one document of block_size - 1 tokens a line),
    model/ (tokenizer and a LLaDA-format config), prompts.json and floor.json. Reused if there."""
    lang = args.tiny_dir
    if os.path.exists(os.path.join(lang, "floor.json")):
        with open(os.path.join(lang, "floor.json")) as f:
            return json.load(f)
    os.makedirs(os.path.join(lang, "model"), exist_ok=True)
    doc = args.block_size - 1
    for name, n, seed in (("train", args.train_docs, TRAIN_DATA_SEED), ("valid", args.valid_docs, VALID_DATA_SEED)):
        docs = source.sample(n, doc, torch.Generator().manual_seed(seed))
        with open(os.path.join(lang, f"{name}.jsonl"), "w") as f:
            for row in docs:
                f.write(json.dumps({"text": to_text(row, args.symbols)}) + "\n")
    tokenizer = make_tokenizer(args.symbols)
    tokenizer.save_pretrained(os.path.join(lang, "model"))
    write_llada_config(os.path.join(lang, "model"), tokenizer, d_model=args.d_model, n_layers=args.n_layers,
                       n_heads=args.n_heads, n_kv_heads=args.n_heads, mlp_hidden_size=4 * args.d_model,
                       max_sequence_length=args.block_size,
                       embedding_size=len(tokenizer))  # no padded ids the samplers could write
    # Held-out prompts from the noise-free source: the starts of noise-free documents.
    prompts = source.sample(args.prompts, args.prompt_length, torch.Generator().manual_seed(PROMPT_SEED), noise=False)
    with open(os.path.join(lang, "prompts.json"), "w") as f:
        json.dump(prompts.tolist(), f)
    valid = source.sample(args.samples, doc, torch.Generator().manual_seed(VALID_DATA_SEED))
    h, se = entropy_per_token(source, doc, args.entropy_samples, torch.Generator().manual_seed(ENTROPY_SEED))
    floor = dict(doc_entropy=h, doc_entropy_se=se, block_entropy=h * doc / args.block_size,
                 block_entropy_se=se * doc / args.block_size, data_unigram_entropy=sample_entropy(valid))
    write_json(os.path.join(lang, "floor.json"), floor)
    return floor


# ---------------------------------------------------------------------------
# Stages (each run in a worker process)
# ---------------------------------------------------------------------------

def evaluate(args, name, model_dir, train_k, confidence_ks, seed):
    """NELBO under train_k, ancestral samples at temperature 1 with sampler k = train_k, and
    confidence-sampler completions at temperature 0 for each k in confidence_ks."""
    source = source_of(args)
    eos = args.symbols
    result = dict(nelbo=cached_nelbo(args, name, model_dir, train_k), ancestral={}, confidence={})
    model = load_on_cpu(model_dir)
    empty = torch.zeros(args.samples, 0, dtype=torch.long)
    for steps in args.sample_grid:
        torch.manual_seed(seed)
        blocks = generate(model, empty, steps=steps, gen_length=args.block_size, block_length=args.block_size,
                          k=train_k, temperature=1.0, sampler="ancestral")
        result["ancestral"][str(steps)] = sample_metrics(source, blocks, eos)
    with open(os.path.join(args.tiny_dir, "prompts.json")) as f:
        prompts = torch.tensor(json.load(f))
    for k in confidence_ks:
        for steps in args.completion_grid:
            out = generate(model, prompts, steps=steps, gen_length=args.completion_length,
                           block_length=args.completion_length, k=k, temperature=0.0)
            result["confidence"][f"{k}_{steps}"] = completion_metrics(source, prompts, out[:, prompts.shape[1]:], eos)
    return result


def cpu_seconds():
    """CPU time of this process and of its finished subprocesses (the trainer's)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def run_stage(args, stage, threads):
    """One stage in a worker: its output (and the trainer's progress bar) goes to OUT/logs/NAME.log.
    Returns its wall-clock and CPU seconds (on idle cores with one thread a stage, the wall time
    is about the CPU time)."""
    torch.set_num_threads(threads)
    os.makedirs(os.path.join(args.out, "logs"), exist_ok=True)
    with open(os.path.join(args.out, "logs", stage["name"] + ".log"), "a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        started, cpu = time.time(), cpu_seconds()
        if stage["kind"] == "train":
            train_stage(args, stage["name"], "mdm" if stage["k"] == 0 else "xdm", stage["steps"],
                        init=stage["init"], k=None if stage["k"] == 0 else stage["k"], seed=stage["seed"])
        else:
            result = evaluate(args, stage["model"], stage["model_dir"], stage["k"], stage["confidence_ks"],
                              stage["seed"])
            write_json(stage["result"], result)
        return dict(wall_s=round(time.time() - started, 1), cpu_s=round(cpu_seconds() - cpu, 1))


def stages(args):
    """Every stage in launch order (trainings first, the k = 0 bases earliest: the continued
    trainings wait for them), with what each needs and the file that shows it finished."""
    out, train, evals = args.out, [], []
    for seed in range(args.seeds):
        for k in args.k_values:
            name = f"scratch_k{k}_seed{seed}"
            train.append(dict(name=name, kind="train", k=k, steps=args.steps, init=None, seed=seed, needs=(),
                              done=os.path.join(out, name, FINISHED_TRAINING)))
            evals.append(dict(name="eval_" + name, kind="eval", k=k, model=name, model_dir=os.path.join(out, name),
                              seed=seed, confidence_ks=(0.0, 0.1) if k == 0 else (), needs=(name,),
                              result=os.path.join(out, f"result_{name}.json")))
    for seed in range(args.seeds):
        base = f"scratch_k0.0_seed{seed}"
        for method, k in CONTINUED_K.items():
            name = f"continued_{method}_seed{seed}"
            train.append(dict(name=name, kind="train", k=k, steps=args.continue_steps, init=os.path.join(out, base),
                              seed=seed, needs=(base,), done=os.path.join(out, name, FINISHED_TRAINING)))
            evals.append(dict(name="eval_" + name, kind="eval", k=k, model=name, model_dir=os.path.join(out, name),
                              seed=seed, confidence_ks=(k,), needs=(name,),
                              result=os.path.join(out, f"result_{name}.json")))
    train.sort(key=lambda s: (s["k"] != 0 or s["init"] is not None, s["init"] is not None))
    for s in evals:
        s["done"] = s["result"]
    return train + evals


def run_stages(args, todo):
    """Runs the stages not yet done, --jobs at a time, each when the stages it needs are done. The
    workers (and their trainers) end with this process, also under kill -9: none is left holding
    a stage's output folder, so a rerun right after goes on where this one stopped."""
    done = {s["name"] for s in todo if os.path.exists(s["done"])}
    pending = [s for s in todo if s["name"] not in done]
    if not pending:
        return
    threads = int(os.environ.get("OMP_NUM_THREADS") or max(1, (os.cpu_count() or 1) // args.jobs))
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)  # the trainer subprocesses too
    bar = tqdm(total=len(pending), desc=f"stages ({args.jobs} at a time; logs in {args.out}/logs)")
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"), initializer=end_with_parent,
                             initargs=(os.getpid(),)) as pool:
        running = {}
        while pending or running:
            for s in list(pending):
                if len(running) < args.jobs and all(n in done for n in s["needs"]):
                    running[pool.submit(run_stage, args, s, threads)] = s
                    pending.remove(s)
            if not running:
                sys.exit(f"stages {[s['name'] for s in pending]} wait for stages that did not finish")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                s = running.pop(future)
                try:
                    times = future.result()
                except BaseException as e:  # a worker's sys.exit or error: stop with its log's name
                    pool.shutdown(cancel_futures=True)
                    sys.exit(f"stage {s['name']} failed ({e!r}); see {args.out}/logs/{s['name']}.log")
                done.add(s["name"])
                with open(os.path.join(args.out, "stage_times.jsonl"), "a") as f:
                    f.write(json.dumps(dict(stage=s["name"], jobs=args.jobs, threads=threads, **times)) + "\n")
                bar.set_postfix_str(f"{s['name']} {times['wall_s']:.0f}s")
                bar.update(1)
    bar.close()


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

def collect(args, floor):
    """The rows of results.csv: one per (model, sampler, steps, metric), mean and spread over seeds."""
    results = {}
    for s in stages(args):
        if s["kind"] == "eval":
            with open(s["result"]) as f:
                results[s["name"][len("eval_"):]] = json.load(f)
    rows = []

    def add(part, model, train_k, sampler, sampler_k, steps, metric, values):
        mean, spread = mean_spread(values)
        rows.append(dict(part=part, model=model, train_k=train_k, sampler=sampler, sampler_k=sampler_k, steps=steps,
                         metric=metric, mean=mean, spread=spread, seeds=len(values)))

    seeds = range(args.seeds)
    add("source", "data", "", "", "", "", "nelbo_floor", [floor["block_entropy"]])
    add("source", "data", "", "", "", "", "gen_nll", [floor["doc_entropy"]])
    add("source", "data", "", "", "", "", "entropy", [floor["data_unigram_entropy"]])
    models = [("2", row_name(k), f"scratch_k{k}", k) for k in args.k_values]
    models += [("3", f"continued {m}", f"continued_{m}", k) for m, k in CONTINUED_K.items()]
    for part, model, prefix, k in models:
        res = [results[f"{prefix}_seed{seed}"] for seed in seeds]
        add(part, model, k, "", "", "", "nelbo", [r["nelbo"] for r in res])
        for steps in args.sample_grid:
            for metric in ("gen_nll", "entropy", "no_final_eos"):
                add(part, model, k, "ancestral", k, steps, metric, [r["ancestral"][str(steps)][metric] for r in res])
            add(part, model, k, "ancestral", k, steps, "gen_ppl",
                [math.exp(r["ancestral"][str(steps)]["gen_nll"]) for r in res])
        for ck in ([0.0, 0.1] if prefix == "scratch_k0.0" else [k] if part == "3" else []):
            name = "base" if part == "2" else model
            for steps in args.completion_grid:
                for metric in ("failure", "gen_nll"):
                    add("3", name, k, "confidence", ck, steps, metric,
                        [r["confidence"][f"{ck}_{steps}"][metric] for r in res])
    return rows


def cell(row, digits=3):
    return f"{row['mean']:.{digits}f} ± {row['spread']:.{digits}f}"


def write_outputs(args, rows, floor):
    write_csv(os.path.join(args.out, "results.csv"), FIELDS, rows)
    get = {(r["part"], r["model"], r["sampler"], r["sampler_k"], r["steps"], r["metric"]): r for r in rows}
    L = args.block_size
    lines = [f"Source: entropy of a document ({L - 1} tokens) per token {floor['doc_entropy']:.4f} ± "
             f"{floor['doc_entropy_se']:.4f} (Monte Carlo over {args.entropy_samples} documents, ± one standard "
             f"error); per block token (eos included) {floor['block_entropy']:.4f}, the floor of every NELBO. "
             f"Unigram entropy of data documents: {floor['data_unigram_entropy']:.3f} nats.",
             f"Cells: mean ± standard deviation over {args.seeds} training seed(s) (0 with one seed).", ""]

    def ancestral_table(part, models, metric, title):
        head = "| model | NELBO | " + " | ".join(f"{s} steps" for s in args.sample_grid) + " |"
        out = [title, "", head, "|" + " --- |" * (2 + len(args.sample_grid))]
        for m, k in models:
            cells = [cell(get[(part, m, "ancestral", k, s, metric)]) for s in args.sample_grid]
            out.append(f"| {m} | {cell(get[(part, m, '', '', '', 'nelbo')])} | " + " | ".join(cells) + " |")
        return out + [""]

    part2 = [(row_name(k), k) for k in args.k_values]
    part3 = [(f"continued {m}", k) for m, k in CONTINUED_K.items()]
    lines += ancestral_table("2", part2, "gen_nll", "Part 2, from scratch: ancestral sampler, temperature 1, "
                             f"{args.samples} unconditional samples: gen-NLL per token "
                             f"(data: {floor['doc_entropy']:.3f})")
    lines += ancestral_table("2", part2, "entropy", "Part 2: unigram entropy of the samples (nats; data: "
                             f"{floor['data_unigram_entropy']:.3f})")
    lines += ancestral_table("3", part3, "gen_nll", "Part 3, continued from each k = 0 model (its part-2 row is "
                             "MDLM): ancestral sampler, gen-NLL per token")
    head = ("| model | sampler k | " + " | ".join(f"failure {s} steps" for s in args.completion_grid) + " | "
            + " | ".join(f"gen-NLL {s} steps" for s in args.completion_grid) + " |")
    lines += [f"Part 3: confidence sampler, temperature 0, {args.prompts} noise-free prompts of {args.prompt_length} "
              f"tokens, {args.completion_length} generated tokens (the last is the block's eos slot): failure rate and "
              "gen-NLL per completion token", "", head, "|" + " --- |" * (2 + 2 * len(args.completion_grid))]
    for m, ck in [("base", 0.0), ("base", 0.1)] + [(f"continued {m}", k) for m, k in CONTINUED_K.items()]:
        cells = [cell(get[("3", m, "confidence", ck, s, "failure")]) for s in args.completion_grid]
        cells += [cell(get[("3", m, "confidence", ck, s, "gen_nll")]) for s in args.completion_grid]
        lines.append(f"| {m} | {ck} | " + " | ".join(cells) + " |")
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    plot(args, get, floor, part2)


def plot(args, get, floor, part2):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx, cx) = plt.subplots(1, 3, figsize=(15, 4.2))
    at = 32 if 32 in args.sample_grid else args.sample_grid[-1]
    for m, k in part2:
        nelbo = get[("2", m, "", "", "", "nelbo")]
        ppl = get[("2", m, "ancestral", k, at, "gen_ppl")]
        ax.errorbar(nelbo["mean"], ppl["mean"], xerr=nelbo["spread"], yerr=ppl["spread"], marker="o", capsize=3,
                    label=m)
        series = [get[("2", m, "ancestral", k, s, "gen_ppl")] for s in args.sample_grid]
        bx.errorbar(args.sample_grid, [r["mean"] for r in series], yerr=[r["spread"] for r in series], marker="o",
                    capsize=3, label=m)
    ax.axvline(floor["block_entropy"], color="gray", ls=":", label="source entropy (NELBO floor)")
    for a in (ax, bx):
        a.axhline(math.exp(floor["doc_entropy"]), color="gray", ls="--", label="data's own gen-PPL")
    ax.set_xlabel("validation NELBO (nats/token, own k), lower is better")
    ax.set_ylabel(f"gen-PPL at {at} steps (exact), lower is better")
    ax.set_title("from scratch (Fig. 1)")
    for a in (ax, bx):
        a.set_yscale("log")  # the data's own gen-PPL sits far below the models'
    bx.set_xscale("log", base=2)
    bx.set_xticks(args.sample_grid, [str(s) for s in args.sample_grid])
    bx.set_xlabel("sampling steps (ancestral, temperature 1)")
    bx.set_ylabel("gen-PPL (exact)")
    for m, ck in [("base", 0.0), ("base", 0.1)] + [(f"continued {m}", k) for m, k in CONTINUED_K.items()]:
        series = [get[("3", m, "confidence", ck, s, "failure")] for s in args.completion_grid]
        cx.errorbar(args.completion_grid, [r["mean"] for r in series], yerr=[r["spread"] for r in series], marker="o",
                    capsize=3, label=f"{m}, sampler k={ck}")
    cx.set_xscale("log", base=2)
    cx.set_xticks(args.completion_grid, [str(s) for s in args.completion_grid])
    cx.set_xlabel(f"sampling steps for {args.completion_length} tokens (confidence, temperature 0)")
    cx.set_ylabel("failure rate")
    cx.set_title("continued pretraining")
    for a in (ax, bx, cx):
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "fig1.png"), dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="outputs/fig1_tiny")
    ap.add_argument("--jobs", type=int, default=2, help="stages run at once (each with cores / jobs threads)")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per row (seeds 0 .. N-1)")
    ap.add_argument("--ks", default="0,0.1,0.5,1", help="part 2's rows: the k of each model trained from scratch "
                    "(0 must be among them: part 3 continues the k = 0 models)")
    g = ap.add_argument_group("language")
    g.add_argument("--language_seed", type=int, default=0)
    g.add_argument("--symbols", type=int, default=24, help=f"alphabet size (2 .. {len(SYMBOL_NAMES)})")
    g.add_argument("--words", type=int, default=24)
    g.add_argument("--word_min", type=int, default=3)
    g.add_argument("--word_max", type=int, default=6)
    g.add_argument("--successors", type=int, default=3, help="possible next words after each word")
    g.add_argument("--noise", type=finite_float, default=0.02, help="probability of a uniform replacement per token")
    g.add_argument("--train_docs", type=int, default=20000)
    g.add_argument("--valid_docs", type=int, default=1000)
    g.add_argument("--entropy_samples", type=int, default=20000, help="documents for the entropy estimate")
    g = ap.add_argument_group("model and training")
    g.add_argument("--block_size", type=int, default=64, help="one document of block_size - 1 tokens + eos")
    g.add_argument("--d_model", type=int, default=64)
    g.add_argument("--n_layers", type=int, default=2)
    g.add_argument("--n_heads", type=int, default=4)
    g.add_argument("--steps", type=int, default=1500, help="training steps from scratch")
    g.add_argument("--continue_steps", type=int, default=None, help="continued pretraining steps (default --steps)")
    g.add_argument("--batch_size", type=int, default=32)
    g.add_argument("--learning_rate", type=finite_float, default=2e-3)
    g.add_argument("--warmup_steps", type=int, default=50)
    g = ap.add_argument_group("evaluation")
    g.add_argument("--eval_blocks", type=int, default=256, help="random validation blocks for the NELBO")
    g.add_argument("--samples", type=int, default=256, help="unconditional samples per model and step count")
    g.add_argument("--sample_steps", default="4,8,16,32,64", help="ancestral sampler step counts")
    g.add_argument("--prompts", type=int, default=256)
    g.add_argument("--prompt_length", type=int, default=16)
    g.add_argument("--completion_length", type=int, default=48, help="generated tokens, the block's eos slot included")
    g.add_argument("--completion_steps", default="8,16,32", help="confidence sampler step counts")
    args = ap.parse_args(argv)
    if args.continue_steps is None:
        args.continue_steps = args.steps

    require_at_least_one(ap, args, ("jobs", "seeds", "words", "successors", "train_docs", "valid_docs",
                                    "entropy_samples", "d_model", "n_layers", "n_heads", "steps", "continue_steps",
                                    "batch_size", "eval_blocks", "samples", "prompts", "prompt_length",
                                    "completion_length"))
    if not 2 <= args.symbols <= len(SYMBOL_NAMES):
        ap.error(f"--symbols must lie in [2, {len(SYMBOL_NAMES)}], got {args.symbols}")
    if not 1 <= args.word_min <= args.word_max:
        ap.error(f"--word_min and --word_max must satisfy 1 <= word_min <= word_max, got {args.word_min}, "
                 f"{args.word_max}")
    if args.successors > args.words:
        ap.error(f"--successors ({args.successors}) cannot exceed --words ({args.words})")
    if args.words > args.symbols ** args.word_min:
        ap.error(f"--words {args.words} distinct words do not exist with {args.symbols} symbols and --word_min "
                 f"{args.word_min}")
    if not 0 < args.noise < 1:
        ap.error(f"--noise must lie in (0, 1) (above 0 so every sample has finite likelihood), got {args.noise}")
    if args.d_model % args.n_heads:
        ap.error(f"--d_model ({args.d_model}) must be a multiple of --n_heads ({args.n_heads})")
    if args.block_size < 3:
        ap.error(f"--block_size must be at least 3, got {args.block_size}")
    if args.prompt_length + args.completion_length != args.block_size:
        ap.error(f"--prompt_length + --completion_length ({args.prompt_length} + {args.completion_length}) must equal "
                 f"--block_size {args.block_size}: a prompt and its completion fill one training block")
    if args.completion_length < 2:
        ap.error(f"--completion_length must be at least 2 (a token and the eos slot), got {args.completion_length}")
    args.k_values = float_grid(ap, "ks", args.ks)
    if args.k_values[0] != 0 or args.k_values[-1] > 1:
        ap.error(f"--ks must lie in [0, 1] and include 0 (part 3 continues the k = 0 models), got {args.ks!r}")
    args.sample_grid = step_grid(ap, "sample_steps", args.sample_steps, args.block_size)
    args.completion_grid = step_grid(ap, "completion_steps", args.completion_steps, args.completion_length)
    args.tiny_dir = os.path.join(args.out, "language")  # the layout experiment_common's stages read
    refuse_other_settings(ap, args, ignore=("out", "jobs", "tiny_dir", "k_values", "sample_grid", "completion_grid"))

    started = time.time()
    source = source_of(args)
    floor = make_language(args, source)
    print(f"language: {args.words} words of {args.word_min}-{args.word_max} over {args.symbols} symbols, "
          f"{args.successors} successors per word, noise {args.noise} ({source.n_states} hidden states)")
    print(f"entropy of a {args.block_size}-token block per token (the NELBO floor; Monte Carlo over "
          f"{args.entropy_samples} documents): {floor['block_entropy']:.4f} ± {floor['block_entropy_se']:.4f}; "
          f"per document token: {floor['doc_entropy']:.4f}", flush=True)
    run_stages(args, stages(args))
    write_outputs(args, collect(args, floor), floor)
    with open(os.path.join(args.out, "results.md")) as f:
        print("\n" + f.read())
    print(f"written: {args.out}/results.csv, results.md, fig1.png ({(time.time() - started) / 60:.1f} min; "
          f"each stage's time in {args.out}/stage_times.jsonl)")


if __name__ == "__main__":
    main()
