"""XDLM's understanding / generation trade-off, reproduced at tiny scale on CPU.

Stands in for the paper's experiment (LLaDA-8B-Base continued for 600 steps with LLaDA's
masked loss or with XDLM, k = 0.1), on the tiny default's data and model shape:
  base    a tiny masked diffusion model (k = 0) trained from scratch (the "LLaDA-8B-Base");
  mdm     base continued for --continue_steps with the masked loss (k = 0);
  xdm     base continued for --continue_steps with XDLM (k = 0.1), and with k = 0.5;
  judge   a tiny autoregressive model (--training_method ar) that scores the samples.
Every stage is llada_cpt.py in a subprocess. For each model: the validation NELBO on the
trainer's fixed mask-rate grid under its own loss (understanding, experiment_common.validation_nelbo),
and generation with generate.generate at each step count (base and mdm with k = 0, xdm with
k = 0.1 (0.5), and base with k = 0.1 as the paper also does): generative perplexity of the samples
under the judge and their unigram entropy, over held-out prompts (generation).

Writes OUT/results.csv, OUT/results.md and OUT/tradeoff.png. A rerun reuses finished
stages (trained models, NELBOs and generation results are kept in OUT; a rerun with other
settings in the same OUT is refused).
usage: python scripts/tradeoff_tiny.py [--out outputs/tradeoff_tiny] [--base_steps 600] [...]
"""
import argparse
import math
import os
import sys

import torch
from tqdm.auto import tqdm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from experiment_common import (  # noqa: E402
    cached,
    cached_nelbo,
    finite_float,
    held_out_prompts,
    load_on_cpu,
    refuse_other_settings,
    require_at_least_one,
    sample_entropy,
    step_grid,
    train_stage,
    write_csv,
)
from generate import generate  # noqa: E402

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


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

def write_outputs(args, rows):
    write_csv(os.path.join(args.out, "results.csv"), FIELDS, rows)
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="outputs/tradeoff_tiny")
    ap.add_argument("--tiny_dir", default=".tiny", help="made by scripts/make_tiny.py")
    ap.add_argument("--base_steps", type=int, default=600)
    ap.add_argument("--continue_steps", type=int, default=200, help="for mdm and xdm alike (the paper: 600)")
    ap.add_argument("--judge_steps", type=int, default=200)
    ap.add_argument("--learning_rate", type=finite_float, default=1e-3)
    ap.add_argument("--warmup_steps", type=int, default=20)
    ap.add_argument("--batch_size", type=int, default=16)
    ap.add_argument("--block_size", type=int, default=128)
    ap.add_argument("--eval_blocks", type=int, default=128, help="random validation blocks for the NELBO")
    ap.add_argument("--prompts", type=int, default=64, help="held-out prompts")
    ap.add_argument("--prompt_length", type=int, default=32)
    ap.add_argument("--gen_length", type=int, default=64)
    ap.add_argument("--steps", default="4,8,16,32,64", help="comma-separated sampling step counts")
    args = ap.parse_args(argv)

    require_at_least_one(ap, args, ("base_steps", "continue_steps", "judge_steps", "batch_size", "eval_blocks",
                                    "prompts", "prompt_length", "gen_length"))
    grid = step_grid(ap, "steps", args.steps, args.gen_length, most_flag="gen_length")
    if args.prompt_length + args.gen_length > args.block_size:
        ap.error(f"--prompt_length + --gen_length ({args.prompt_length + args.gen_length}) must fit in "
                 f"--block_size {args.block_size}, the length the models (the judge too) are trained on")
    if not os.path.exists(os.path.join(args.tiny_dir, "model", "config.json")):
        ap.error(f"--tiny_dir {args.tiny_dir} has no model/config.json: run scripts/make_tiny.py --out {args.tiny_dir}")
    refuse_other_settings(ap, args)

    base = train_stage(args, "base", "mdm", args.base_steps)
    dirs = {"base": base, "mdm": train_stage(args, "mdm", "mdm", args.continue_steps, init=base),
            "xdm": train_stage(args, "xdm", "xdm", args.continue_steps, init=base, k=0.1),
            "xdm_k0.5": train_stage(args, "xdm_k0.5", "xdm", args.continue_steps, init=base, k=0.5)}
    judge_dir = train_stage(args, "judge", "ar", args.judge_steps)
    nelbos = {name: cached_nelbo(args, name, d, TRAIN_K[name]) for name, d in dirs.items()}

    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(os.path.join(args.tiny_dir, "model"))
    prompts = held_out_prompts(tokenizer, args.tiny_dir, args.prompts, args.prompt_length)
    judge = load_on_cpu(judge_dir)
    if not judge.config.causal:
        sys.exit(f"{judge_dir} is not an autoregressive (causal) model")
    torch.manual_seed(0)
    rows = []
    bar = tqdm(total=len(ROWS) * len(grid), desc="generation (rows x step counts)")
    for row, model_name, k in ROWS:
        model = load_on_cpu(dirs[model_name])
        for steps in grid:
            def compute(model=model, steps=steps, k=k):  # this iteration's values (cached calls it at once)
                out = generate(model, prompts, steps=steps, gen_length=args.gen_length, block_length=args.gen_length,
                               k=k)
                completion = out[:, args.prompt_length:]
                return dict(gen_ppl=generative_perplexity(judge, prompts, completion),
                            entropy=sample_entropy(completion))
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
