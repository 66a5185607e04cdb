"""XDLM's understanding / generation trade-off, reproduced at tiny scale on CPU.

Stands in for the paper's experiment (LLaDA-8B-Base continued for 600 steps with LLaDA's
masked loss or with XDLM, k = 0.1), on the tiny default's data and model shape:
  base    a tiny masked diffusion model (k = 0) trained from scratch (the "LLaDA-8B-Base");
  mdm     base continued for --continue_steps with the masked loss (k = 0);
  xdm     base continued for --continue_steps with XDLM (k = 0.1), and with k = 0.5;
  judge   a tiny autoregressive model (--training_method ar) that scores the samples.
Every stage is llada_cpt.py in a subprocess. For each model: the validation NELBO on the
trainer's fixed mask-rate grid under its own loss (understanding, tiny_report.validation_nelbo),
and generation with generate.generate at each step count (base and mdm with k = 0, xdm with
k = 0.1 (0.5), and base with k = 0.1 as the paper also does): generative perplexity of the samples
under the judge and their unigram entropy, over held-out prompts (generation).

Writes OUT/results.csv, OUT/results.md and OUT/tradeoff.png. A rerun reuses finished
stages (trained models, NELBOs and generation results are kept in OUT; a rerun with other
settings in the same OUT is refused).
usage: python scripts/tradeoff_tiny.py [--out outputs/tradeoff_tiny] [--base_steps 600] [...]
"""
import argparse
import csv
import json
import math
import os
import subprocess
import sys

import torch
from tqdm.auto import tqdm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from generate import generate, load_model  # noqa: E402
from tiny_report import validation_nelbo  # noqa: E402

# model -> the k it is trained with (0: LLaDA's masked loss, --training_method mdm)
TRAIN_K = {"base": 0.0, "mdm": 0.0, "xdm": 0.1, "xdm_k0.5": 0.5}
# (row name, model, sampler k)
ROWS = (("base", "base", 0.0), ("base (k=0.1 sampler)", "base", 0.1), ("mdm", "mdm", 0.0),
        ("xdm", "xdm", 0.1), ("xdm (k=0.5)", "xdm_k0.5", 0.5))
FIELDS = ("model", "trained", "train_k", "sampler_k", "nelbo", "steps", "gen_ppl", "entropy")


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------

@torch.no_grad()
def generative_perplexity(judge, prompt_ids, completion_ids):
    """exp of the judge's mean negative log-likelihood per completion token, each token given
    its prompt and the completion before it (all rows' tokens pooled)."""
    ids = torch.cat([prompt_ids, completion_ids], 1)
    log_p = torch.log_softmax(judge(input_ids=ids).logits.float(), -1)
    P = prompt_ids.shape[1]
    # position i predicts token i + 1: the completion's tokens are predicted by positions P-1 .. end-1
    nll = -log_p[:, P - 1:-1].gather(-1, completion_ids[..., None]).squeeze(-1)
    return math.exp(nll.mean().item())


def sample_entropy(completion_ids):
    """Mean over rows of the entropy (nats) of the row's token frequencies: low for a sample
    that repeats a few tokens."""
    total = 0.0
    for row in completion_ids:
        counts = torch.bincount(row).double()
        p = counts[counts > 0] / row.numel()
        total += float(-(p * p.log()).sum())
    return total / completion_ids.shape[0]


# ---------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------

def train(args, name, method, steps, init=None, k=None, seed=0):
    """llada_cpt.py in a subprocess; a finished stage (model.safetensors present) is skipped,
    an interrupted one resumes from its last checkpoint."""
    out = os.path.join(args.out, name)
    if os.path.exists(os.path.join(out, "model.safetensors")):
        return out
    tiny = args.tiny_dir
    cmd = [sys.executable, os.path.join(ROOT, "llada_cpt.py"), "--tokenizer_name", os.path.join(tiny, "model"),
           "--train_file", os.path.join(tiny, "train.jsonl"), "--training_method", method,
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
    with open(os.path.join(args.out, f"{name}.log"), "w") as log:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=None)
    if proc.returncode:
        sys.exit(f"training {name} failed (exit {proc.returncode}); see {args.out}/{name}.log")
    return out


def cached(path, compute):
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    value = compute()
    with open(path, "w") as f:
        json.dump(value, f)
    return value


def nelbo(args, name, model_dir, k):
    def compute():
        method, extra = ("mdm", ()) if k == 0 else ("xdm", ("--xdlm_k", str(k)))
        metrics, _ = validation_nelbo(model_dir, args.tiny_dir, os.path.join(args.out, f"eval_{name}"), method,
                                      args.block_size, args.eval_blocks, extra=extra)
        return metrics["eval_nelbo"]
    return cached(os.path.join(args.out, f"nelbo_{name}.json"), compute)


def held_out_prompts(tokenizer, tiny_dir, n, length):
    """n prompts of `length` tokens: the starts of n evenly spaced lines of the held-out texts
    that have at least that many tokens after them (deterministic)."""
    with open(os.path.join(tiny_dir, "valid.jsonl"), encoding="utf-8") as f:
        text = "".join(json.loads(line)["text"] for line in f)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    starts = torch.linspace(0, len(ids) - length - 1, n).long().tolist()
    if len(ids) < length + n:
        raise ValueError(f"the held-out text has {len(ids)} tokens, too few for {n} prompts of {length}")
    return torch.tensor([ids[s:s + length] for s in starts])


def load(model_dir):
    return load_model(model_dir, dtype="float32", device="cpu")[0]


def write_outputs(args, rows):
    with open(os.path.join(args.out, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    steps = sorted({r["steps"] for r in rows})
    models = list(dict.fromkeys(r["model"] for r in rows))
    by = {(r["model"], r["steps"]): r for r in rows}
    lines = ["| model | NELBO | " + " | ".join(f"{s} steps" for s in steps) + " |",
             "| --- | --- | " + " | ".join("---" for _ in steps) + " |"]
    for m in models:
        first = by[(m, steps[0])]
        cells = [f"{by[(m, s)]['gen_ppl']:.1f} / {by[(m, s)]['entropy']:.2f}" for s in steps]
        lines.append(f"| {m} | {first['nelbo']:.3f} | " + " | ".join(cells) + " |")
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write("Validation NELBO (nats/token, each model under its own loss) and, per number of sampling "
                "steps, generative perplexity under the judge / unigram entropy of the samples (nats).\n\n")
        f.write("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw=dict(width_ratios=(2, 1)))
    for m in models:
        ax.plot(steps, [by[(m, s)]["gen_ppl"] for s in steps], marker="o", label=m)
    ax.set_xscale("log", base=2)
    ax.set_xticks(steps, [str(s) for s in steps])
    ax.set_xlabel("sampling steps")
    ax.set_ylabel("generative perplexity (AR judge), lower is better")
    ax.grid(alpha=0.3)
    ax.legend()
    trained = list(dict.fromkeys((r["trained"], r["nelbo"]) for r in rows))
    bx.bar([t[0] for t in trained], [t[1] for t in trained], color="tab:gray")
    bx.set_ylim(min(t[1] for t in trained) * 0.95, max(t[1] for t in trained) * 1.02)
    bx.set_ylabel("validation NELBO (nats/token), lower is better")
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "tradeoff.png"), dpi=90)
    plt.close(fig)


def refuse_other_settings(ap, args, ignore=("out",)):
    """Finished stages in args.out are reused, so they must have been made with these settings:
    records them in args.out/settings.json, or stops with the flags that changed."""
    os.makedirs(args.out, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k not in ignore}
    settings_file = os.path.join(args.out, "settings.json")
    if os.path.exists(settings_file):
        with open(settings_file) as f:
            before = json.load(f)
        if before != settings:
            changed = ", ".join(f"--{k} {before.get(k)} -> {v}" for k, v in settings.items() if before.get(k) != v)
            ap.error(f"{args.out} holds stages made with other settings ({changed}): use another --out or delete it")
    with open(settings_file, "w") as f:
        json.dump(settings, f, indent=1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="outputs/tradeoff_tiny")
    ap.add_argument("--tiny_dir", default=".tiny", help="made by scripts/make_tiny.py")
    ap.add_argument("--base_steps", type=int, default=600)
    ap.add_argument("--continue_steps", type=int, default=200, help="for mdm and xdm alike (the paper: 600)")
    ap.add_argument("--judge_steps", type=int, default=200)
    ap.add_argument("--learning_rate", type=float, default=1e-3)
    ap.add_argument("--warmup_steps", type=int, default=20)
    ap.add_argument("--batch_size", type=int, default=16)
    ap.add_argument("--block_size", type=int, default=128)
    ap.add_argument("--eval_blocks", type=int, default=128, help="random validation blocks for the NELBO")
    ap.add_argument("--prompts", type=int, default=64, help="held-out prompts")
    ap.add_argument("--prompt_length", type=int, default=32)
    ap.add_argument("--gen_length", type=int, default=64)
    ap.add_argument("--steps", default="4,8,16,32,64", help="comma-separated sampling step counts")
    args = ap.parse_args(argv)

    for name in ("base_steps", "continue_steps", "judge_steps", "batch_size", "eval_blocks", "prompts",
                 "prompt_length", "gen_length"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    try:
        grid = sorted({int(s) for s in args.steps.split(",")})
    except ValueError:
        ap.error(f"--steps must be comma-separated integers, got {args.steps!r}")
    if not grid or grid[0] < 1 or grid[-1] > args.gen_length:
        ap.error(f"--steps must lie in [1, --gen_length = {args.gen_length}], got {args.steps!r}")
    if args.prompt_length + args.gen_length > args.block_size:
        ap.error(f"--prompt_length + --gen_length ({args.prompt_length + args.gen_length}) must fit in "
                 f"--block_size {args.block_size}, the length the models (the judge too) are trained on")
    if not os.path.exists(os.path.join(args.tiny_dir, "model", "config.json")):
        ap.error(f"--tiny_dir {args.tiny_dir} has no model/config.json: run scripts/make_tiny.py --out {args.tiny_dir}")
    refuse_other_settings(ap, args)

    base = train(args, "base", "mdm", args.base_steps)
    dirs = {"base": base, "mdm": train(args, "mdm", "mdm", args.continue_steps, init=base),
            "xdm": train(args, "xdm", "xdm", args.continue_steps, init=base, k=0.1),
            "xdm_k0.5": train(args, "xdm_k0.5", "xdm", args.continue_steps, init=base, k=0.5)}
    judge_dir = train(args, "judge", "ar", args.judge_steps)
    nelbos = {name: nelbo(args, name, d, TRAIN_K[name]) for name, d in dirs.items()}

    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(os.path.join(args.tiny_dir, "model"))
    prompts = held_out_prompts(tokenizer, args.tiny_dir, args.prompts, args.prompt_length)
    judge = load(judge_dir)
    if not judge.config.causal:
        sys.exit(f"{judge_dir} is not an autoregressive (causal) model")
    torch.manual_seed(0)
    rows = []
    bar = tqdm(total=len(ROWS) * len(grid), desc="generation (rows x step counts)")
    for row, model_name, k in ROWS:
        model = load(dirs[model_name])
        for steps in grid:
            def compute():
                out = generate(model, prompts, steps=steps, gen_length=args.gen_length, block_length=args.gen_length, k=k)
                completion = out[:, args.prompt_length:]
                return dict(gen_ppl=generative_perplexity(judge, prompts, completion), entropy=sample_entropy(completion))
            result = cached(os.path.join(args.out, f"gen_{model_name}_k{k}_s{steps}.json"), compute)
            rows.append(dict(model=row, trained=model_name, train_k=TRAIN_K[model_name], sampler_k=k,
                             nelbo=nelbos[model_name], steps=steps, **result))
            bar.update(1)
    bar.close()
    write_outputs(args, rows)
    with open(os.path.join(args.out, "results.md")) as f:
        print("\n" + f.read())
    print(f"written: {args.out}/results.csv, results.md, tradeoff.png")


if __name__ == "__main__":
    main()
