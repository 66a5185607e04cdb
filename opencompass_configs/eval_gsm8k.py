# GSM8K, 4-shot (base-model prompt), LLaDA-8B-Base (k = 0) vs XDLM (k = 0.1), 32 steps.
from mmengine.config import read_base

with read_base():
    from opencompass.configs.datasets.gsm8k.gsm8k_gen_17d0dc import gsm8k_datasets
    from .models import models  # noqa: F401

datasets = gsm8k_datasets
