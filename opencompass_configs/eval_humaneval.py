# HumanEval, 0-shot, LLaDA-8B-Base (k = 0) vs XDLM (k = 0.1), 32 steps.
from mmengine.config import read_base

with read_base():
    from opencompass.configs.datasets.humaneval.humaneval_gen_8e312c import humaneval_datasets
    from .models import models  # noqa: F401

datasets = humaneval_datasets
