"""The benchmark table of the evaluation: the benchmarks, the rows of the paper's table, and the name
(abbr) each row carries through OpenCompass.

Plain data and a few helpers, read by opencompass_configs/models.py (rows, checkpoints, abbrs),
scripts/eval_opencompass.sh (the benchmarks and their configs), scripts/eval_report.py (headline
scores, the paper's numbers, abbrs) and the tests. Not an OpenCompass config: models.py imports it.

A new benchmark is its config, opencompass_configs/eval_<name>.py (its `datasets`, and
`from .models import models` inside `read_base()`; for a likelihood benchmark, PPL or LL mode,
`from .models import likelihood_models as models`), plus one row of BENCHMARKS.

    python opencompass_configs/benchmarks.py [NAME ...]   prints "NAME CONFIG" per benchmark (all by default)
"""
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


def main(names):
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark {unknown[0]!r}: choose from {', '.join(BENCHMARKS)} "
              "(opencompass_configs/benchmarks.py)", file=sys.stderr)
        sys.exit(2)
    for name in names or BENCHMARKS:
        print(name, os.path.join("opencompass_configs", BENCHMARKS[name].config))


if __name__ == "__main__":
    main(sys.argv[1:])
