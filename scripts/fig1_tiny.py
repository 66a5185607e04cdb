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
          prompt) and exact gen-NLL; and the part-2 ancestral figures for mdm and xdm;
  understanding  every model of parts 2 and 3 on a multiple-choice task built from the language
          (hmm_language.choice_task: a noise-free context, the source's continuation of it and
          --mc_choices - 1 continuations the noise-free source cannot emit after it; context,
          continuation and eos fill one block), written as a local lm-eval task and scored through
          lm_eval_llada.py with LLaDA's masked estimator and the XDLM bound at the model's own k:
          accuracy and the mean bound of the right answers, beside the exact source's accuracy (the
          oracle) and the right answers' exact NLL.

Every training is llada_cpt.py in a subprocess; --jobs stages run at once, each on its own
thread(s). Writes OUT/results.csv, OUT/results.md (first both sides of the trade-off in one row per
model) and OUT/fig1.png. A rerun reuses finished stages and refuses an OUT made with other settings.
The stage workers and trainers end with this process, also under kill -9 (Linux), so the same
command right after goes on where it stopped.
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
from experiment_common import (  # noqa: E402
    CONTINUED_K,
    FINISHED_TRAINING,
    cached_nelbo,
    end_with_parent,
    finite_float,
    float_grid,
    load_on_cpu,
    mean_spread,
    refuse_other_settings,
    require_at_least_one,
    sample_entropy,
    step_grid,
    train_stage,
    write_csv,
    write_json,
    write_llada_config,
)
from generate import generate  # noqa: E402
from hmm_language import (  # noqa: E402
    SYMBOL_NAMES,
    choice_log_probs,
    choice_task,
    completion_metrics,
    entropy_per_token,
    make_tokenizer,
    oracle_accuracy,
    sample_metrics,
    source_of,
    to_text,
)

# Literal seeds of the language's data streams, of the multiple-choice task and of its estimates.
TRAIN_DATA_SEED, VALID_DATA_SEED, PROMPT_SEED, ENTROPY_SEED, CHOICE_TASK_SEED = 101, 202, 303, 404, 505
ESTIMATE_SEED = 1234  # LLaDA's
CHOICE_TASK = "fig1_mc"  # the lm-eval task's name (OUT/language/understanding/fig1_mc.yaml)
FIELDS = ("part", "model", "train_k", "sampler", "sampler_k", "steps", "estimator", "metric", "mean", "spread",
          "seeds")


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
                 block_entropy_se=se * doc / args.block_size, data_unigram_entropy=sample_entropy(valid),
                 **write_choice_task(args, source))
    write_json(os.path.join(lang, "floor.json"), floor)
    return floor


def choice_task_dir(args):
    return os.path.join(args.tiny_dir, "understanding")


def write_choice_task(args, source):
    """The understanding part's lm-eval task: OUT/language/understanding/fig1_mc.jsonl (one item a
    line: the context, the choices and the gold index as the language's text, and each choice's
    exact log p given the context) and fig1_mc.yaml (a multiple_choice task over it: lm-eval scores
    " " + choice after the context, which the tokenizer reads as exactly the context's and the
    choice's tokens). A context is the first block_size - 1 - mc_answer tokens of a document and
    every choice ends with the block's eos: an item fills one training block, as a prompt and its
    completion do (a model trained on whole blocks only, scored on a shorter sequence, scores its
    last token as if it were the eos: on one such model the bound came out 2.5-2.8 nats per answer
    token on 10 or 15 of its 16 positions against 0.95 on all 16). The source writes the eos after a
    document's last token with probability 1, so a choice's exact log p is that of its symbols.
    Returns the exact source's figures: the oracle's accuracy (the choice of highest exact log p,
    ties split) and the right answers' exact NLL per token, with standard errors over the items."""
    contexts, choices, gold = choice_task(source, args.mc_items, args.mc_context, args.mc_answer,
                                          torch.Generator().manual_seed(CHOICE_TASK_SEED), args.mc_choices)
    log_p = choice_log_probs(source, contexts, choices)
    folder = choice_task_dir(args)
    os.makedirs(folder, exist_ok=True)
    data = os.path.abspath(os.path.join(folder, CHOICE_TASK + ".jsonl"))
    eos = args.symbols
    with open(data, "w") as f:
        for c, options, g, lp in zip(contexts, choices, gold.tolist(), log_p.tolist()):
            texts = [to_text(torch.cat([o, torch.tensor([eos])]), args.symbols) for o in options]
            item = dict(context=to_text(c, args.symbols), choices=texts, gold=g, exact_log_p=lp)
            f.write(json.dumps(item) + "\n")
    with open(os.path.join(folder, CHOICE_TASK + ".yaml"), "w") as f:
        f.write(f"""# Fig. 1's understanding part, {args.mc_items} items (written by scripts/fig1_tiny.py)
task: {CHOICE_TASK}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {json.dumps(data)}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: choices
doc_to_target: gold
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
""")
    oracle = oracle_accuracy(log_p, gold)
    nll = -log_p.gather(1, gold[:, None]).squeeze(1) / args.mc_answer
    return dict(mc_oracle_acc=float(oracle.mean()), mc_oracle_acc_se=standard_error(oracle),
                mc_exact_nll=float(nll.mean()), mc_exact_nll_se=standard_error(nll))


def standard_error(values):
    """The standard error of the mean of values (a 1-D tensor or list; NaN with one value)."""
    values = torch.as_tensor(values, dtype=torch.float64)
    return float(values.std() / math.sqrt(len(values))) if len(values) > 1 else math.nan


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


def understand(args, model_dir, k):
    """The multiple-choice task (write_choice_task) through lm-eval and lm_eval_llada.py's model, in
    this process: per estimator (LLaDA's masked one, and at k > 0 the XDLM bound at k; at k = 0 the
    two are the same bound, so it runs once), lm-eval's accuracy and, from its per-item
    log-likelihoods, the mean bound of the right answers per token (minus their log-likelihood
    estimate, the eos's included, / mc_answer) and its gap to their exact NLL, with standard errors
    over the items; and every item's log-likelihood estimates (one per choice, in the file's order).
    Every model's estimates use the same seed: a request's draws depend only on it and the request's
    tokens, so models are compared on the same corruptions."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    import lm_eval_llada  # registers the model xdlm_llada

    result = {}
    # The adapter's k is also its sampler's, and its default (confidence) sampler refuses k = 1; no
    # generation runs here, so the ancestral one, which takes every k, stands in.
    settings = dict(pretrained=model_dir, k=k, mc_num=args.mc_num, seed=ESTIMATE_SEED, sampler="ancestral")
    for estimator in ("masked", "xdlm") if k > 0 else ("masked",):
        out = lm_eval.simple_evaluate(
            model=lm_eval_llada.MODEL_NAME, tasks=[CHOICE_TASK], batch_size=args.mc_batch, device="cpu",
            model_args=dict(settings, estimator=estimator),
            task_manager=TaskManager(include_path=choice_task_dir(args), include_defaults=False), log_samples=True,
            bootstrap_iters=0)
        samples = sorted(out["samples"][CHOICE_TASK], key=lambda s: s["doc_id"])  # the items' order
        log_likelihood = [[resp[0] for resp in s["filtered_resps"]] for s in samples]
        gold = [s["doc"]["gold"] for s in samples]
        bound = [-ll[g] / args.mc_answer for ll, g in zip(log_likelihood, gold)]
        gap = [b + s["doc"]["exact_log_p"][g] / args.mc_answer for b, s, g in zip(bound, samples, gold)]
        correct = [s["acc"] for s in samples]
        result[estimator] = dict(acc=out["results"][CHOICE_TASK]["acc,none"], acc_se=standard_error(correct),
                                 bound=sum(bound) / len(bound), bound_se=standard_error(bound),
                                 gap=sum(gap) / len(gap), gap_se=standard_error(gap), log_likelihood=log_likelihood)
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
        elif stage["kind"] == "understand":
            write_json(stage["result"], understand(args, stage["model_dir"], stage["k"]))
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
    understands = [dict(s, name="understand_" + s["model"], kind="understand",
                        result=os.path.join(out, f"understanding_{s['model']}.json")) for s in evals]
    for s in evals + understands:
        s["done"] = s["result"]
    return train + evals + understands


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
        if s["kind"] != "train":
            with open(s["result"]) as f:
                results.setdefault(s["model"], {})[s["kind"]] = json.load(f)
    rows = []

    def add(part, model, train_k, sampler, sampler_k, steps, metric, values, estimator=""):
        mean, spread = mean_spread(values)
        rows.append(dict(part=part, model=model, train_k=train_k, sampler=sampler, sampler_k=sampler_k, steps=steps,
                         estimator=estimator, metric=metric, mean=mean, spread=spread, seeds=len(values)))

    seeds = range(args.seeds)
    add("source", "data", "", "", "", "", "nelbo_floor", [floor["block_entropy"]])
    add("source", "data", "", "", "", "", "gen_nll", [floor["doc_entropy"]])
    add("source", "data", "", "", "", "", "entropy", [floor["data_unigram_entropy"]])
    add("source", "data", "", "", "", "", "mc_acc", [floor["mc_oracle_acc"]], estimator="exact")
    add("source", "data", "", "", "", "", "mc_acc_se", [floor["mc_oracle_acc_se"]], estimator="exact")
    add("source", "data", "", "", "", "", "mc_nll", [floor["mc_exact_nll"]], estimator="exact")
    add("source", "data", "", "", "", "", "mc_nll_se", [floor["mc_exact_nll_se"]], estimator="exact")
    models = [("2", row_name(k), f"scratch_k{k}", k) for k in args.k_values]
    models += [("3", f"continued {m}", f"continued_{m}", k) for m, k in CONTINUED_K.items()]
    for part, model, prefix, k in models:
        res = [results[f"{prefix}_seed{seed}"]["eval"] for seed in seeds]
        add(part, model, k, "", "", "", "nelbo", [r["nelbo"] for r in res])
        understood = [results[f"{prefix}_seed{seed}"]["understand"] for seed in seeds]
        for estimator in understood[0]:  # masked, and xdlm at k > 0
            for metric, key in (("mc_acc", "acc"), ("mc_acc_se", "acc_se"), ("mc_bound", "bound"),
                                ("mc_gap_se", "gap_se")):
                add(part, model, k, "", "", "", metric, [u[estimator][key] for u in understood], estimator=estimator)
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
    get = {(r["part"], r["model"], r["sampler"], r["sampler_k"], r["steps"], r["metric"]): r for r in rows
           if not r["estimator"]}
    L = args.block_size
    lines = [f"Source: entropy of a document ({L - 1} tokens) per token {floor['doc_entropy']:.4f} ± "
             f"{floor['doc_entropy_se']:.4f} (Monte Carlo over {args.entropy_samples} documents, ± one standard "
             f"error); per block token (eos included) {floor['block_entropy']:.4f}, the floor of every NELBO. "
             f"Unigram entropy of data documents: {floor['data_unigram_entropy']:.3f} nats.",
             f"Cells: mean ± standard deviation over {args.seeds} training seed(s) (0 with one seed).", ""]
    lines += tradeoff_tables(args, rows, get, floor)

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


def tradeoff_tables(args, rows, get, floor):
    """results.md's first tables: per model, its NELBO and gen-NLL (generation) beside its accuracy
    and bound on the multiple-choice task (understanding), under a row of the exact source's own."""
    mc = {(r["part"], r["model"], r["estimator"], r["metric"]): r for r in rows if r["estimator"]}
    at = 32 if 32 in args.sample_grid else args.sample_grid[-1]
    gen_steps = sorted({args.sample_grid[0], at})
    most = args.completion_grid[-1]
    item_se = {metric: max(r["mean"] for r in rows if r["metric"] == metric and r["estimator"] != "exact")
               for metric in ("mc_acc_se", "mc_gap_se")}
    lines = [f"Both sides of the trade-off, one row per model. Generation: validation NELBO (own k) and gen-NLL per "
             f"token of {args.samples} ancestral samples (temperature 1, own k). Understanding: {args.mc_items} "
             f"multiple-choice items built from the language (a noise-free context of {args.mc_context} tokens; "
             f"{args.mc_choices} continuations of {args.mc_answer} tokens and the block's eos: the source's own, "
             f"noise included, and {args.mc_choices - 1} the noise-free source cannot emit after the context; chance "
             f"{1 / args.mc_choices:.2f}), scored through lm-eval (lm_eval_llada.py, mc_num {args.mc_num}, batch "
             f"{args.mc_batch}, seed {ESTIMATE_SEED}): accuracy, and the bound: minus the estimated log-likelihood of "
             "the right answer per answer token, averaged over the items; in expectation at least the model's NLL of "
             "the right answers, and so at least their exact NLL under the source (its row). masked: LLaDA's "
             "estimator (the masked process the network defines; comparable with LLaDA's numbers); XDLM: the XDLM "
             "bound at the model's own k (the model's own objective; at k = 0 it is the masked one, computed once: "
             f"\"= masked\"). Standard error over the items within one model: at most {item_se['mc_acc_se']:.3f} for "
             f"accuracy and {item_se['mc_gap_se']:.3f} for the bound's gap to the exact NLL (the oracle: "
             f"{floor['mc_oracle_acc_se']:.3f}, the exact NLL: {floor['mc_exact_nll_se']:.3f}).", ""]
    estimators = ("masked", "xdlm")

    def understanding(part, model):
        cells = []
        for metric in ("mc_acc", "mc_bound"):
            cells += [cell(mc[(part, model, e, metric)]) if (part, model, e, metric) in mc else "= masked"
                      for e in estimators]
        return cells

    source = [f"{floor['mc_oracle_acc']:.3f} (oracle)", f"{floor['mc_oracle_acc']:.3f} (oracle)",
              f"{floor['mc_exact_nll']:.3f} (exact)", f"{floor['mc_exact_nll']:.3f} (exact)"]
    understanding_head = " | MC acc, masked | MC acc, XDLM | bound, masked | bound, XDLM |"
    gen_head = "| model | NELBO | " + " | ".join(f"gen-NLL {s} steps" for s in gen_steps)

    def generation(part, model, k):
        return [cell(get[(part, model, "", "", "", "nelbo")])] + [
            cell(get[(part, model, "ancestral", k, s, "gen_nll")]) for s in gen_steps]

    source_gen = [f"{floor['block_entropy']:.3f} (floor)"] + [f"{floor['doc_entropy']:.3f}"] * len(gen_steps)
    lines += ["Part 2, from scratch", "", gen_head + understanding_head, "|" + " --- |" * (6 + len(gen_steps)),
              "| source (exact) | " + " | ".join(source_gen + source) + " |"]
    for k in args.k_values:
        lines.append(f"| {row_name(k)} | " + " | ".join(generation("2", row_name(k), k)
                                                          + understanding("2", row_name(k))) + " |")
    lines += ["", f"Part 3, continued pretraining (failure: completions of noise-free prompts by the confidence "
              f"sampler at {most} steps, the model's own k; the base is part 2's MDLM)", "",
              gen_head + f" | failure {most} steps" + understanding_head, "|" + " --- |" * (7 + len(gen_steps)),
              "| source (exact) | " + " | ".join(source_gen + ["0"] + source) + " |"]
    base = row_name(0.0)
    lines.append("| base (MDLM) | " + " | ".join(generation("2", base, 0.0)
                                                 + [cell(get[("3", "base", "confidence", 0.0, most, "failure")])]
                                                 + understanding("2", base)) + " |")
    for method, k in CONTINUED_K.items():
        model = f"continued {method}"
        lines.append(f"| {model} | " + " | ".join(generation("3", model, k)
                                                 + [cell(get[("3", model, "confidence", k, most, "failure")])]
                                                 + understanding("3", model)) + " |")
    return lines + [""]


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
    g = ap.add_argument_group("understanding: a multiple-choice task from the language, scored through lm-eval")
    g.add_argument("--mc_items", type=int, default=256, help="items of the task")
    g.add_argument("--mc_choices", type=int, default=4, help="continuations per item, one of them right")
    g.add_argument("--mc_answer", type=int, default=8, help="tokens of each continuation (its context: the rest of "
                   "a block, its eos aside)")
    g.add_argument("--mc_num", type=int, default=32, help="Monte-Carlo draws per (context, continuation)")
    g.add_argument("--mc_batch", type=int, default=8, help="draws per systematic group (LLaDA's --batch_size)")
    args = ap.parse_args(argv)
    if args.continue_steps is None:
        args.continue_steps = args.steps

    require_at_least_one(ap, args, ("jobs", "seeds", "words", "successors", "train_docs", "valid_docs",
                                    "entropy_samples", "d_model", "n_layers", "n_heads", "steps", "continue_steps",
                                    "batch_size", "eval_blocks", "samples", "prompts", "prompt_length",
                                    "completion_length", "mc_items", "mc_answer", "mc_num", "mc_batch"))
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
    if args.mc_choices < 2:
        ap.error(f"--mc_choices must be at least 2 (one right continuation and a wrong one), got {args.mc_choices}")
    if args.mc_answer > args.block_size - 2:
        ap.error(f"--mc_answer must be at most --block_size - 2 = {args.block_size - 2} (an item is a context of at "
                 f"least one token, a continuation and the eos, in one block), got {args.mc_answer}")
    args.mc_context = args.block_size - 1 - args.mc_answer
    if args.mc_num % args.mc_batch:
        ap.error(f"--mc_num ({args.mc_num}) must be a multiple of --mc_batch ({args.mc_batch}): draws come in groups "
                 "of --mc_batch, each a systematic sample of the masked counts")
    args.k_values = float_grid(ap, "ks", args.ks)
    if args.k_values[0] != 0 or args.k_values[-1] > 1:
        ap.error(f"--ks must lie in [0, 1] and include 0 (part 3 continues the k = 0 models), got {args.ks!r}")
    args.sample_grid = step_grid(ap, "sample_steps", args.sample_steps, args.block_size)
    args.completion_grid = step_grid(ap, "completion_steps", args.completion_steps, args.completion_length)
    args.tiny_dir = os.path.join(args.out, "language")  # the layout experiment_common's stages read
    refuse_other_settings(ap, args, ignore=("out", "jobs", "tiny_dir", "k_values", "sample_grid", "completion_grid",
                                            "mc_context"))

    started = time.time()
    source = source_of(args)
    floor = make_language(args, source)
    print(f"language: {args.words} words of {args.word_min}-{args.word_max} over {args.symbols} symbols, "
          f"{args.successors} successors per word, noise {args.noise} ({source.n_states} hidden states)")
    print(f"entropy of a {args.block_size}-token block per token (the NELBO floor; Monte Carlo over "
          f"{args.entropy_samples} documents): {floor['block_entropy']:.4f} ± {floor['block_entropy_se']:.4f}; "
          f"per document token: {floor['doc_entropy']:.4f}", flush=True)
    print(f"multiple-choice task: {args.mc_items} items in {choice_task_dir(args)}; the exact source's accuracy "
          f"{floor['mc_oracle_acc']:.4f}, the right answers' exact NLL per token {floor['mc_exact_nll']:.4f} ± "
          f"{floor['mc_exact_nll_se']:.4f}", flush=True)
    run_stages(args, stages(args))
    write_outputs(args, collect(args, floor), floor)
    with open(os.path.join(args.out, "results.md")) as f:
        print("\n" + f.read())
    print(f"written: {args.out}/results.csv, results.md, fig1.png ({(time.time() - started) / 60:.1f} min; "
          f"each stage's time in {args.out}/stage_times.jsonl)")


if __name__ == "__main__":
    main()
