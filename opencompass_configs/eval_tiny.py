# Offline end-to-end check of the OpenCompass integration on the embedded tiny model:
# next-line completion of held-out Python standard-library code, written by
# scripts/eval_tiny.sh. Paths come from the environment (TINY_CKPT, TINY_EVAL_DATA).
import os

from opencompass.datasets import CustomDataset
from opencompass.openicl.icl_evaluator import AccEvaluator
from opencompass.openicl.icl_inferencer import GenInferencer
from opencompass.openicl.icl_prompt_template import PromptTemplate
from opencompass.openicl.icl_retriever import ZeroRetriever
from opencompass.partitioners import NaivePartitioner
from opencompass.runners import LocalRunner
from opencompass.tasks import OpenICLEvalTask, OpenICLInferTask

datasets = [
    dict(
        abbr="stdlib-next-line",
        type=CustomDataset,
        path=os.environ["TINY_EVAL_DATA"],
        reader_cfg=dict(input_columns=["context"], output_column="next_line"),
        infer_cfg=dict(
            prompt_template=dict(type=PromptTemplate, template="{context}\n"),
            retriever=dict(type=ZeroRetriever),
            inferencer=dict(type=GenInferencer, max_out_len=32),
        ),
        eval_cfg=dict(evaluator=dict(type=AccEvaluator), pred_postprocessor=dict(type="opencompass_llada.first_line")),
    )
]

models = [
    dict(abbr=f"tiny-xdlm-k{k}", type="opencompass_llada.DiffusionLM", path=os.environ["TINY_CKPT"],
         max_seq_len=512, steps=32, gen_length=32, block_length=32, k=k, max_out_len=32, batch_size=8,
         run_cfg=dict(num_gpus=0))
    for k in (0.0, 0.1)
]

infer = dict(partitioner=dict(type=NaivePartitioner),
             runner=dict(type=LocalRunner, max_num_workers=1, task=dict(type=OpenICLInferTask)))
eval = dict(partitioner=dict(type=NaivePartitioner),
            runner=dict(type=LocalRunner, max_num_workers=1, task=dict(type=OpenICLEvalTask)))
del os  # a config may only hold plain values
