# GSM8K as the paper evaluates it: the 4-shot base-model prompt of gsm8k_gen_17d0dc (the same text
# as the paper's gsm8k_gen_base), no stop word, the answer read from the first "The answer is N"
# (opencompass_llada.gsm8k_first_answer), Gsm8kEvaluator. Rows and steps: see models.py.
from mmengine.config import read_base

with read_base():
    from opencompass.configs.datasets.gsm8k.gsm8k_gen_17d0dc import gsm8k_datasets

    from .models import models  # noqa: F401

datasets = [
    {**d,
     "infer_cfg": {**d["infer_cfg"], "inferencer": {k: v for k, v in d["infer_cfg"]["inferencer"].items()
                                                    if k != "stopping_criteria"}},
     "eval_cfg": {**d["eval_cfg"], "pred_postprocessor": dict(type="opencompass_llada.gsm8k_first_answer")}}
    for d in gsm8k_datasets
]
