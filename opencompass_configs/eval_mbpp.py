# MBPP (sanitized), 3-shot [BEGIN] ... [DONE] prompts, stop word "[DONE]" (kept in the
# completion: OpenCompass's MBPP scorer reads it), LLaDA-8B-Base (k = 0) vs XDLM (k = 0.1).
from mmengine.config import read_base

with read_base():
    from opencompass.configs.datasets.mbpp.sanitized_mbpp_gen_742f0c import sanitized_mbpp_datasets
    from .models import models  # noqa: F401

datasets = [
    {**d, "infer_cfg": {**d["infer_cfg"], "inferencer": {**d["infer_cfg"]["inferencer"], "stopping_criteria": ["[DONE]"]}}}
    for d in sanitized_mbpp_datasets
]
