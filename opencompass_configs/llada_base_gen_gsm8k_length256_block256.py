# The seed repository's config name for gsm8k: the same benchmark config as eval_gsm8k.py (rows, steps
# and sampling modes from the environment: see models.py), so its command works with the unforked CLI:
#   PYTHONPATH=$PWD opencompass opencompass_configs/llada_base_gen_gsm8k_length256_block256.py \
#       -w outputs/llada_base_gsm8k_length256_block256
from mmengine.config import read_base

with read_base():
    from .eval_gsm8k import datasets, models  # noqa: F401
