# MATH as the paper evaluates it: math_gen_a58d9d (4-shot, its template ending "Solution:\n"),
# stop word "Problem:", MATHVerifyEvaluator (needs math-verify). Rows and steps: see models.py.
from mmengine.config import read_base

with read_base():
    from opencompass.configs.datasets.math.math_gen_a58d9d import math_datasets

    from .models import models  # noqa: F401

datasets = [
    {**d, "infer_cfg": {**d["infer_cfg"],
                        "inferencer": {**d["infer_cfg"]["inferencer"], "stopping_criteria": ["Problem:"]}}}
    for d in math_datasets
]
