"""The evaluation's one table: the benchmarks (config, headline score, the paper's numbers), the rows
of the paper's table (checkpoint variable, default checkpoint, k), the step counts, and the model
abbr that names a (row, steps, sampler mode) in OpenCompass's work folders. Read by models.py,
scripts/eval_opencompass.sh (`python opencompass_configs/benchmarks.py [NAME ...]`),
scripts/eval_report.py and the tests.

A new benchmark is its config file (datasets, and `models` from models.py: see eval_gsm8k.py) and
one entry in BENCHMARKS; the tests load every entry's config and check its headline against it.

Plain data and the standard library only: models.py reads this file through mmengine's `read_base`,
which executes it as a config and turns a top-level import of any module but a frozen or built-in one
(`os`, `sys`) into a LazyObject, depending on where Python is installed; so the functions import what
else they need themselves.
"""
import os

# name: its config file (relative to the repository root); its headline score in OpenCompass's summary
# (dataset abbr or summary group, metric); its title in the report; the paper's score at 32 steps per
# row (LLaDA-8B-Base; after 600 steps of continual pretraining with each loss; "~": read off the
# paper's radar chart; the paper gives no base-k0.1 numbers).
BENCHMARKS = {
    "gsm8k": dict(config="opencompass_configs/eval_gsm8k.py", headline=("gsm8k", "accuracy"), title="GSM8K",
                  paper={"base-k0": "42.7", "mdm-k0": "~42", "xdlm-k0.1": "~43"}),
    "math": dict(config="opencompass_configs/eval_math.py", headline=("math", "accuracy"), title="MATH",
                 paper={"base-k0": "24.5", "mdm-k0": "~26", "xdlm-k0.1": "~30"}),
    "humaneval": dict(config="opencompass_configs/eval_humaneval.py", headline=("openai_humaneval", "humaneval_pass@1"),
                      title="HumanEval", paper={"base-k0": "4.8", "mdm-k0": "~2.8", "xdlm-k0.1": "~4.8"}),
    "mbpp": dict(config="opencompass_configs/eval_mbpp.py", headline=("mbpp", "score"), title="MBPP",
                 paper={"base-k0": "6.8", "mdm-k0": "4.4", "xdlm-k0.1": "15.0"}),
    "bbh": dict(config="opencompass_configs/eval_bbh.py", headline=("bbh", "naive_average"), title="BBH",
                paper={"base-k0": "5.5", "mdm-k0": "~6.8", "xdlm-k0.1": "~11"}),
}

# row: the variable naming its checkpoint, the default checkpoint (None: the variable must be set), k
# (0: LLaDA's sampler; 0.1: the XDLM sampler), in the order of the paper's table.
ROWS = {
    "base-k0": dict(variable="LLADA_BASE", default="GSAI-ML/LLaDA-8B-Base", k=0.0),
    "base-k0.1": dict(variable="LLADA_BASE", default="GSAI-ML/LLaDA-8B-Base", k=0.1),
    "mdm-k0": dict(variable="MDM_CKPT", default=None, k=0.0),
    "xdlm-k0.1": dict(variable="XDLM_CKPT", default=None, k=0.1),
}
STEPS = (32, 64, 128, 256)  # the step counts of the sweep (gen length 256, block 256)
PAPER_STEPS = 32  # the step count of the paper's table


def sampler_mode(block_length=256, cache="none", threshold=None):
    """The name of a sampler other than the paper's (block 256, no cache, no threshold), e.g.
    "b32-dual-t0.9"; "" for the paper's."""
    return "-".join(([f"b{block_length}"] if block_length != 256 else []) + ([cache] if cache != "none" else []) +
                    ([f"t{threshold:g}"] if threshold is not None else []))


def model_abbr(row, steps, mode=""):
    """The model abbr of a row at a step count with a sampler mode (sampler_mode), e.g. "xdlm-k0.1-s32"
    or "xdlm-k0.1-s32-b32-dual-t0.9": a faster sampler is named in it, so that its scores are never
    merged with, or compared as, the paper's."""
    return f"{row}-s{steps}" + (f"-{mode}" if mode else "")


def parse_abbr(abbr):
    """(row, steps, mode) of an abbr that model_abbr wrote; None for any other abbr."""
    import re

    found = re.fullmatch(r"(.+)-s(\d+)((?:-b\d+)?(?:-prefix|-dual)?(?:-t[0-9.e+-]+)?)", abbr)
    if not found or found.group(1) not in ROWS:
        return None
    return found.group(1), int(found.group(2)), found.group(3).lstrip("-")


def model_folder_problem(folder):
    """What keeps `folder` from being a model folder (config.json and weights: *.safetensors or
    pytorch_model*.bin, every shard a weight index names), or None."""
    import glob
    import json

    if not os.path.isfile(os.path.join(folder, "config.json")):
        return "a folder without config.json"
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if os.path.exists(os.path.join(folder, index)):
            try:
                with open(os.path.join(folder, index)) as f:
                    shards = sorted(set(json.load(f)["weight_map"].values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                return f"its {index} is unreadable ({type(e).__name__}: {e})"
            missing = [s for s in shards if not os.path.isfile(os.path.join(folder, s))]
            if missing:
                return f"its {index} names shards that are missing: {', '.join(missing)}"
            return None
    if not any(glob.glob(os.path.join(folder, pattern)) for pattern in ("*.safetensors", "pytorch_model*.bin")):
        return "a folder without weights (*.safetensors or pytorch_model*.bin)"
    return None


_HUB_NAME = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?"  # as the Hugging Face hub spells owners and names


def check_checkpoint(variable, value):
    """(checkpoint, kind) of the checkpoint `value` given by `variable`: kind "model folder" (made
    absolute) or "hub id" (owner/name that is no existing path: fetched when the model loads).
    Anything else (a missing path, a file, a folder that is no model folder) raises a ValueError
    naming the variable and the value."""
    import re

    if os.path.isdir(value):
        problem = model_folder_problem(value)
        if problem is None:
            return os.path.abspath(value), "model folder"
    elif os.path.exists(value):
        problem = "a file, not a model folder"
    elif re.fullmatch(f"{_HUB_NAME}/{_HUB_NAME}", value) and ".." not in value and "--" not in value:
        return value, "hub id"
    else:
        problem = "no such folder"
    raise ValueError(f"{variable}={value!r}: {problem}; give a model folder (config.json and weights) "
                     f"or a hub id (owner/name)")


def row_checkpoints(rows, environ=os.environ):
    """{variable: (checkpoint, kind)} of the rows' checkpoints (check_checkpoint), each from its
    variable in `environ` or the row's default. One ValueError names every variable that is unset
    without a default or names no checkpoint, before any row runs."""
    found, problems = {}, []
    for row in rows:
        variable, default = ROWS[row]["variable"], ROWS[row]["default"]
        if variable in found or variable in {p[0] for p in problems}:
            continue
        value = environ.get(variable) or default
        if value is None:
            problems.append((variable, f"EVAL_ROWS includes {row}: set {variable} to its checkpoint folder, "
                                       f"or leave the row out of EVAL_ROWS"))
            continue
        try:
            found[variable] = check_checkpoint(variable, value)
        except ValueError as e:
            problems.append((variable, str(e)))
    if problems:
        raise ValueError("; ".join(message for _, message in problems))
    return found


def main(names):
    """`python opencompass_configs/benchmarks.py [NAME ...]`: "NAME CONFIG" per benchmark (default all),
    or exit naming an unknown one."""
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark {unknown[0]!r}: choose from {', '.join(BENCHMARKS)}")
    for name in names or BENCHMARKS:
        print(name, BENCHMARKS[name]["config"])


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
