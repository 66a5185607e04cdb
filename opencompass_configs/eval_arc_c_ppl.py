# ARC-Challenge in OpenCompass's PPL mode, 0-shot: OpenCompass's ARC_c_ppl_d52a21, whose text per choice,
# "Question: {question}\nAnswer: {choice}", is lm-eval's arc_challenge's (LLaDA's) context and continuation.
# PPLInferencer scores each whole text with DiffusionLM.get_ppl (the bound of all its tokens, no context,
# per token) and predicts the lowest; AccEvaluator. OpenCompass's ARC-c is the Dev split's 4-choice
# questions. Rows and estimator settings: the likelihood rows of models.py (EVAL_ESTIMATORS, EVAL_CFG,
# EVAL_MC_NUM); guidance has no effect here (no context to mask).
from mmengine.config import read_base

with read_base():
    from opencompass.configs.datasets.ARC_c.ARC_c_ppl_d52a21 import ARC_c_datasets as datasets  # noqa: F401

    from .models import likelihood_models as models  # noqa: F401
