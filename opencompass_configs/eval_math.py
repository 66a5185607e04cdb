# MATH, 4-shot (base-model prompt), LLaDA-8B-Base (k = 0) vs XDLM (k = 0.1), 32 steps.
from mmengine.config import read_base

with read_base():
    from opencompass.configs.datasets.math.math_4shot_base_gen_db136b import math_datasets
    from .models import models  # noqa: F401

datasets = math_datasets
