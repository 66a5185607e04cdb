# MBPP as the paper evaluates it: mbpp_gen_830460 (500 test problems, 3-shot, the prompt ends
# "[BEGIN]\n"), stop word "[DONE]" (cut), OpenCompass 0.4.2's scoring: the quoted answer unquoted
# and run with the plain test asserts (opencompass_llada.MBPPPlainEvaluator). Rows and steps: see models.py.
from mmengine.config import read_base

with read_base():
    from opencompass.configs.datasets.mbpp.mbpp_gen_830460 import mbpp_datasets

    from .models import models  # noqa: F401

datasets = [
    {**d,
     "infer_cfg": {**d["infer_cfg"], "inferencer": {**d["infer_cfg"]["inferencer"], "stopping_criteria": ["[DONE]"]}},
     "eval_cfg": {**d["eval_cfg"], "evaluator": dict(type="opencompass_llada.MBPPPlainEvaluator")}}
    for d in mbpp_datasets
]
