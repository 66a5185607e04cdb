# BBH as the paper evaluates it: bbh_gen_ee62e9 (27 tasks, 3-shot chain of thought), no stop word,
# multiple choice scored as in 0.5.4 (unchanged since 0.4.2), free form scored as in 0.4.2 (the
# first "answer is", exact match: opencompass_llada.BBHFirstAnswerEvaluator), and the "bbh"
# average over the 27 tasks. Rows and steps: see models.py.
from mmengine.config import read_base

with read_base():
    from opencompass.configs.datasets.bbh.bbh_gen_ee62e9 import bbh_datasets, bbh_free_form_sets
    from opencompass.configs.summarizers.groups.bbh import bbh_summary_groups

    from .models import models  # noqa: F401

datasets = [
    {**d, "eval_cfg": {**d["eval_cfg"], "evaluator": dict(type="opencompass_llada.BBHFirstAnswerEvaluator")}}
    if d["name"] in bbh_free_form_sets else d
    for d in bbh_datasets
]
summarizer = dict(summary_groups=bbh_summary_groups)
