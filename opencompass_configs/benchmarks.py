"""The benchmark table of the evaluation: the benchmarks, the rows of the paper's table, and the name
(abbr) each row carries through OpenCompass; and the likelihood table (LLaDA's lm-eval tasks).

Plain data and a few helpers, read by opencompass_configs/models.py (rows, checkpoints, abbrs),
scripts/eval_opencompass.sh (the benchmarks and their configs), scripts/eval_report.py (headline
scores, the paper's numbers, abbrs), scripts/eval_lm_eval.sh and scripts/lm_eval_report.py (the
likelihood table) and the tests. Not an OpenCompass config: models.py imports it.

A new benchmark is its config, opencompass_configs/eval_<name>.py (its `datasets`, and
`from .models import models` inside `read_base()`; for a likelihood benchmark, PPL or LL mode,
`from .models import likelihood_models as models`), plus one row of BENCHMARKS.

    python opencompass_configs/benchmarks.py [NAME ...]   prints "NAME CONFIG" per benchmark (all by default)
    python opencompass_configs/benchmarks.py --likelihood [--dry_run] [TASK ...]
                          prints "ROW TASK CFG ARGS" per likelihood run (eval_lm_eval.sh's environment)
"""
import glob
import os
import re
import sys
from typing import NamedTuple, Optional


class Benchmark(NamedTuple):
    title: str  # its column in the report
    config: str  # its OpenCompass config, in opencompass_configs/
    dataset: str  # its headline score in OpenCompass's summary: the line of this dataset abbr (or summary group)
    metric: str  # ... and this metric
    paper: dict  # the paper's score per row at PAPER_STEPS steps, as printed ("~": read off its radar chart)


# The paper's table at 32 steps (LLaDA-8B-Base; after 600 steps of continual pretraining with each loss).
# The paper gives no base-k0.1 numbers.
BENCHMARKS = {  # name (eval_opencompass.sh's argument): Benchmark
    "gsm8k": Benchmark("GSM8K", "eval_gsm8k.py", "gsm8k", "accuracy",
                       {"base-k0": "42.7", "mdm-k0": "~42", "xdlm-k0.1": "~43"}),
    "math": Benchmark("MATH", "eval_math.py", "math", "accuracy",
                      {"base-k0": "24.5", "mdm-k0": "~26", "xdlm-k0.1": "~30"}),
    "humaneval": Benchmark("HumanEval", "eval_humaneval.py", "openai_humaneval", "humaneval_pass@1",
                           {"base-k0": "4.8", "mdm-k0": "~2.8", "xdlm-k0.1": "~4.8"}),
    "mbpp": Benchmark("MBPP", "eval_mbpp.py", "mbpp", "score",
                      {"base-k0": "6.8", "mdm-k0": "4.4", "xdlm-k0.1": "15.0"}),
    "bbh": Benchmark("BBH", "eval_bbh.py", "bbh", "naive_average",
                     {"base-k0": "5.5", "mdm-k0": "~6.8", "xdlm-k0.1": "~11"}),
    # Likelihood (OpenCompass's PPL mode, the likelihood rows of models.py); the paper gives no such numbers.
    "arc_c": Benchmark("ARC-C (PPL)", "eval_arc_c_ppl.py", "ARC-c", "accuracy", {}),
}


class Row(NamedTuple):
    variable: str  # the environment variable that names its checkpoint
    default: Optional[str]  # its checkpoint when the variable is unset (None: the variable must be set)
    k: float  # the sampler's k (0: LLaDA's sampler; > 0: the XDLM sampler)


ROWS = {  # the rows of the paper's table, in its order
    "base-k0": Row("LLADA_BASE", "GSAI-ML/LLaDA-8B-Base", 0.0),  # LLaDA-8B-Base, LLaDA's sampler
    "base-k0.1": Row("LLADA_BASE", "GSAI-ML/LLaDA-8B-Base", 0.1),  # LLaDA-8B-Base, the XDLM sampler
    "mdm-k0": Row("MDM_CKPT", None, 0.0),  # continually pretrained with the MDM loss, LLaDA's sampler
    "xdlm-k0.1": Row("XDLM_CKPT", None, 0.1),  # continually pretrained with the XDLM loss, the XDLM sampler
}
STEPS = (32, 64, 128, 256)  # each row's step counts (gen length 256, block 256)
PAPER_STEPS = 32  # the step count of the paper's numbers


def sampler_mode(block_length, cache, threshold):
    """What an abbr says of a sampler other than the paper's exact one (block 256, no cache, no
    threshold), e.g. "b32-dual-t0.9"; "" for the paper's."""
    return "-".join(([f"b{block_length}"] if block_length != 256 else []) + ([cache] if cache != "none" else [])
                    + ([f"t{threshold:g}"] if threshold is not None else []))


def likelihood_mode(estimator, cfg, mc_num):
    """What an abbr says of a likelihood row's estimator, e.g. "ll-masked", "ll-xdlm-cfg0.5-mc32" (cfg
    when > 0, mc_num when not LLaDA's 128)."""
    return "-".join(["ll", estimator] + ([f"cfg{cfg:g}"] if cfg else []) + ([f"mc{mc_num}"] if mc_num != 128 else []))


def model_abbr(row, steps, mode=""):
    """OpenCompass's name of a row at a step count: ROW-sSTEPS, then -MODE for another sampler; a
    likelihood row (steps None) is ROW-MODE, its mode from likelihood_mode."""
    if steps is None:
        return f"{row}-{mode}"
    return f"{row}-s{steps}" + (f"-{mode}" if mode else "")


def parse_abbr(abbr):
    """(row, steps, mode) of a name model_abbr wrote (mode "" for the paper's sampler; steps None
    for a likelihood row), else None."""
    found = re.fullmatch(r"(.+?)-s(\d+)(?:-(.+))?", abbr or "")
    if found:
        return found[1], int(found[2]), found[3] or ""
    found = re.fullmatch(r"(.+?)-(ll-.+)", abbr or "")
    return (found[1], None, found[2]) if found else None


def checkpoint(variable, value):
    """(path, kind) of a row's checkpoint (model_config.model_source: a model folder as an absolute
    path, or a hub id); anything else raises ValueError naming the variable and the path."""
    from model_config import model_source  # (imported here: the benchmark listing needs no transformers)

    where = f"{variable}={value!r}" + (f" ({os.path.abspath(value)})" if value != os.path.abspath(value) else "")
    try:
        return model_source(value)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


# ---------------------------------------------------------------- likelihood (lm-evaluation-harness)
# LLaDA's likelihood benchmarks of LLaDA-8B-Base, as its eval_llada_lm_eval.sh runs them through
# lm-eval (ML-GSAI/LLaDA), for scripts/eval_lm_eval.sh (one lm_eval_llada.py run per row, task and
# setting) and scripts/lm_eval_report.py (the published numbers).


class LikelihoodTask(NamedTuple):
    title: str  # its column in the report
    metric: str  # the score LLaDA's numbers are: results[task]["METRIC,none"] of lm-eval's results file
    num_fewshot: int
    mc_num: int  # Monte-Carlo draws per (context, answer)
    batch_size: int  # draws per systematic group (lm-eval's --batch_size)
    cfg: float  # the guidance scale of LLaDA's script (LM_EVAL_CFG=llada); LM_EVAL_CFG=none runs at 0
    published: dict  # LLaDA-8B-Base's score (%) per cfg it was measured at (0: the paper's Table 1)


# lm-eval 0.4.13 task (group) name: its settings in LLaDA's eval_llada_lm_eval.sh and LLaDA's numbers
# (EVAL.md: "w/o CFG", as the paper's Table 1, and "w/ CFG" at the script's cfg). acc_norm for
# ARC-C, HellaSwag and PIQA: LLaDA does not name the metric; acc_norm is the one usually reported for
# them, and as far as we can tell the one of the LLaMA-2-7B numbers in its Table 1 (HellaSwag 76.0 is
# lm-eval's 0-shot acc_norm of LLaMA-2-7B). GPQA's, MMLU's, CMMLU's and C-Eval's choices are letters
# of one length, where acc and acc_norm agree.
LIKELIHOOD_TASKS = {
    "arc_challenge": LikelihoodTask("ARC-C", "acc_norm", 0, 128, 8, 0.5, {0.0: 45.9, 0.5: 47.9}),
    "hellaswag": LikelihoodTask("HellaSwag", "acc_norm", 0, 128, 8, 0.5, {0.0: 70.5, 0.5: 72.5}),
    "truthfulqa_mc2": LikelihoodTask("TruthfulQA", "acc", 0, 128, 8, 2.0, {0.0: 46.1, 2.0: 46.4}),
    "winogrande": LikelihoodTask("WinoGrande", "acc", 5, 128, 8, 0.0, {0.0: 74.8}),
    "gpqa_main_n_shot": LikelihoodTask("GPQA", "acc", 5, 128, 8, 0.5, {0.0: 25.2, 0.5: 26.1}),
    "piqa": LikelihoodTask("PIQA", "acc_norm", 0, 128, 8, 0.5, {0.0: 73.6, 0.5: 74.4}),
    # one-token answers: one draw is the exact cross-entropy (LLaDA runs them with batch 1, no CFG)
    "mmlu": LikelihoodTask("MMLU", "acc", 5, 1, 1, 0.0, {0.0: 65.9}),
    "cmmlu": LikelihoodTask("CMMLU", "acc", 5, 1, 1, 0.0, {0.0: 69.9}),
    "ceval-valid": LikelihoodTask("C-Eval", "acc", 5, 1, 1, 0.0, {0.0: 70.5}),
}
LIKELIHOOD_SEED = 1234  # LLaDA's (set_seed(1234) in eval_llada.py); the estimator's seed in model_args
# A task of your own (LM_EVAL_INCLUDE_PATH): 0-shot, no CFG, LLaDA's draws; no published number.
LOCAL_TASK = LikelihoodTask("", "acc", 0, 128, 8, 0.0, {})
CFG_MODES = {  # LM_EVAL_CFG: the cfg of each task
    "llada": "LLaDA's eval_llada_lm_eval.sh (with CFG where it uses it)",
    "none": "no CFG anywhere (the paper's Table 1)",
}


class LikelihoodRow(NamedTuple):
    variable: str  # the environment variable that names its checkpoint
    default: Optional[str]  # its checkpoint when the variable is unset (None: the variable must be set)
    estimator: str  # likelihood.py's: "masked" (LLaDA's estimator) or "xdlm" (the model's own XDLM bound)
    k: float  # the XDLM bound's mixing ratio (0 for the masked estimator)


LIKELIHOOD_ROWS = {
    "base": LikelihoodRow(ROWS["base-k0"].variable, ROWS["base-k0"].default, "masked", 0.0),  # LLaDA-8B-Base
    "mdm": LikelihoodRow("MDM_CKPT", None, "masked", 0.0),  # continually pretrained with the MDM loss
    "xdlm": LikelihoodRow("XDLM_CKPT", None, "masked", 0.0),  # ... with the XDLM loss, LLaDA's estimator
    "xdlm-bound": LikelihoodRow("XDLM_CKPT", None, "xdlm", 0.1),  # the same checkpoint, its own bound (k = 0.1)
}


def likelihood_settings(task, cfg_mode):
    """The settings of one task under LM_EVAL_CFG=cfg_mode ("llada" or "none")."""
    t = LIKELIHOOD_TASKS.get(task, LOCAL_TASK)
    return dict(num_fewshot=t.num_fewshot, mc_num=t.mc_num, batch_size=t.batch_size,
                cfg=t.cfg if cfg_mode == "llada" else 0.0, seed=LIKELIHOOD_SEED)


def _declares_task(folder, task):
    """Whether a YAML file under folder declares `task: TASK` or `group: TASK` (as lm-eval's --include_path)."""
    for path in glob.glob(os.path.join(glob.escape(folder), "**", "*.yaml"), recursive=True):
        with open(path, encoding="utf-8", errors="replace") as f:
            if re.search(rf"^(task|group):\s*['\"]?{re.escape(task)}['\"]?\s*$", f.read(), re.MULTILINE):
                return True
    return False


def likelihood_runs(tasks, environ, check_device=True):
    """[(row, task, cfg, the arguments of lm_eval_llada.py but --output_path)] of every run the
    environment asks for (scripts/eval_lm_eval.sh documents it), everything checked first: a bad row,
    task, setting or checkpoint raises ValueError naming the variable and what is allowed."""
    mode = environ.get("LM_EVAL_CFG") or "llada"
    if mode not in CFG_MODES:
        raise ValueError(f"LM_EVAL_CFG={mode!r}: choose {' or '.join(CFG_MODES)}")
    include = environ.get("LM_EVAL_INCLUDE_PATH") or None
    if include is not None and not os.path.isdir(include):
        raise ValueError(f"LM_EVAL_INCLUDE_PATH={include!r} is not a folder (of lm-eval task YAML files)")
    for task in tasks:
        if task not in LIKELIHOOD_TASKS and not (include and _declares_task(include, task)):
            raise ValueError(f"unknown task {task!r}: choose from {', '.join(LIKELIHOOD_TASKS)} (LLaDA's, "
                             "opencompass_configs/benchmarks.py), or a task of a YAML file under LM_EVAL_INCLUDE_PATH"
                             + (f" (none of {include} declares it)" if include else ""))
    runnable = [r for r, row in LIKELIHOOD_ROWS.items() if row.default or environ.get(row.variable)]
    rows = [r.strip() for r in environ.get("LM_EVAL_ROWS", ",".join(runnable)).split(",") if r.strip()]
    if not rows or set(rows) - set(LIKELIHOOD_ROWS):
        raise ValueError(f"LM_EVAL_ROWS={environ.get('LM_EVAL_ROWS')!r}: choose a comma-separated subset of "
                         f"{', '.join(LIKELIHOOD_ROWS)}")
    checkpoints, problems = {}, []
    for row in rows:
        variable, default = LIKELIHOOD_ROWS[row][:2]
        value = environ.get(variable) or default
        if value is None:
            problems.append(f"row {row}: set {variable} to its checkpoint (a model folder or hub id), or leave the "
                            "row out of LM_EVAL_ROWS")
        elif variable not in checkpoints and "," in value:
            problems.append(f"{variable}={value!r}: lm-eval's --model_args cannot hold a path with a comma")
        elif variable not in checkpoints:
            try:
                checkpoints[variable] = checkpoint(variable, value)[0]
            except ValueError as e:
                problems.append(str(e))
    if problems:
        raise ValueError("; ".join(dict.fromkeys(problems)))
    limit = environ.get("LM_EVAL_LIMIT") or None
    if limit is not None and not (limit.isdigit() and int(limit) > 0):
        raise ValueError(f"LM_EVAL_LIMIT={limit!r}: a positive number of items per task (a subset: not comparable "
                         "with LLaDA's numbers)")
    extra = {}
    for pair in filter(None, (environ.get("LM_EVAL_MODEL_ARGS") or "").split(",")):
        key, sep, value = pair.partition("=")
        if not sep or not key or key in ("pretrained", "estimator", "k", "cfg", "seed"):
            raise ValueError(f"LM_EVAL_MODEL_ARGS={environ['LM_EVAL_MODEL_ARGS']!r}: give key=value pairs, "
                             "comma-separated, of lm_eval_llada.py's model_args other than pretrained, estimator, k, "
                             "cfg and seed (which the rows and LM_EVAL_CFG set)")
        extra[key] = value
    device = environ.get("LM_EVAL_DEVICE") or "cuda"
    if check_device and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"LM_EVAL_DEVICE={device!r}: no GPU here; set LM_EVAL_DEVICE=cpu (slow beyond a tiny "
                             "model)")
    runs = []
    for row in rows:
        spec = LIKELIHOOD_ROWS[row]
        for task in tasks or LIKELIHOOD_TASKS:
            s = likelihood_settings(task, mode)
            model_args = dict(pretrained=checkpoints[spec.variable], estimator=spec.estimator,
                              **({"k": f"{spec.k:g}"} if spec.estimator == "xdlm" else {}),
                              cfg=f"{s['cfg']:g}", mc_num=str(s["mc_num"]), seed=str(s["seed"]))
            model_args.update(extra)
            args = ["--model", "xdlm_llada", "--tasks", task, "--num_fewshot", str(s["num_fewshot"]),
                    "--batch_size", str(s["batch_size"]), "--device", device,
                    "--model_args", ",".join(f"{k}={v}" for k, v in model_args.items())]
            args += (["--limit", limit] if limit else []) + (["--include_path", include] if include else [])
            runs.append((row, task, s["cfg"], args))
    left_out = [f"{r} (set {LIKELIHOOD_ROWS[r].variable})" for r in LIKELIHOOD_ROWS if r not in rows + runnable]
    left_out += [f"{r} (not in LM_EVAL_ROWS)" for r in runnable if r not in rows]
    print(f"lm-eval rows: {', '.join(rows)}; left out: {', '.join(left_out) or 'none'}; LM_EVAL_CFG={mode}: "
          f"{CFG_MODES[mode]}", file=sys.stderr)
    return runs


def likelihood_main(argv):
    """Prints "ROW TASK CFG ARGS" per run (ARGS shell-quoted), or one line saying what is wrong (exit 2)."""
    import shlex

    dry_run = "--dry_run" in argv
    try:
        runs = likelihood_runs([a for a in argv if a != "--dry_run"], os.environ, check_device=not dry_run)
    except ValueError as e:
        print(f"eval_lm_eval: {e}", file=sys.stderr)
        sys.exit(2)
    for row, task, cfg, args in runs:
        print(row, task, f"{cfg:g}", shlex.join(args))


def main(names):
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark {unknown[0]!r}: choose from {', '.join(BENCHMARKS)} "
              "(opencompass_configs/benchmarks.py)", file=sys.stderr)
        sys.exit(2)
    for name in names or [n for n, b in BENCHMARKS.items() if b.paper]:  # by default, the paper's table
        print(name, os.path.join("opencompass_configs", BENCHMARKS[name].config))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--likelihood"]:
        likelihood_main(sys.argv[2:])
    else:
        main(sys.argv[1:])
