# BBH, 3-shot chain of thought (27 tasks), LLaDA-8B-Base (k = 0) vs XDLM (k = 0.1), 32 steps.
from mmengine.config import read_base

with read_base():
    from opencompass.configs.datasets.bbh.bbh_gen_98fba6 import bbh_datasets
    from .models import models  # noqa: F401

datasets = bbh_datasets
