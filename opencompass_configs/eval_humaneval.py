# HumanEval as the paper evaluates it (its fork's humaneval_gen_base, which 0.5.4 does not ship):
# the problem's prompt as is, no stop word, humaneval_internal_v2_postprocess (the indented
# function body up to the first unindented line), HumanEvalEvaluator. Rows and steps: see models.py.
from mmengine.config import read_base
from opencompass.datasets import HumanevalDataset, HumanEvalEvaluator, humaneval_internal_v2_postprocess
from opencompass.openicl.icl_inferencer import GenInferencer
from opencompass.openicl.icl_prompt_template import PromptTemplate
from opencompass.openicl.icl_retriever import ZeroRetriever

with read_base():
    from .models import models  # noqa: F401

datasets = [
    dict(
        abbr="openai_humaneval",
        type=HumanevalDataset,
        path="opencompass/humaneval",
        reader_cfg=dict(input_columns=["prompt"], output_column="task_id", train_split="test"),
        infer_cfg=dict(
            prompt_template=dict(type=PromptTemplate, template=dict(round=[dict(role="HUMAN", prompt="{prompt}")])),
            retriever=dict(type=ZeroRetriever),
            inferencer=dict(type=GenInferencer, max_out_len=512),
        ),
        eval_cfg=dict(evaluator=dict(type=HumanEvalEvaluator), pred_role="BOT",
                      pred_postprocessor=dict(type=humaneval_internal_v2_postprocess)),
    )
]
