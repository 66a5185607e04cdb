# The two models of the paper's comparison, both at 32 steps, gen length 256, block 256:
# LLaDA-8B-Base with LLaDA's sampler (k = 0) and an XDLM checkpoint with the XDLM sampler
# (k = 0.1). Paths come from the environment:
#   LLADA_BASE   base checkpoint (default GSAI-ML/LLaDA-8B-Base)
#   XDLM_CKPT    XDLM checkpoint, e.g. the output_dir of llada_cpt.py (default ./checkpoints)
#   EVAL_BATCH_SIZE  prompts generated together (default 8)
import os

_sampling = dict(
    type="opencompass_llada.DiffusionLM",
    max_seq_len=4096,
    steps=32,
    gen_length=256,
    block_length=256,
    temperature=0.0,
    max_out_len=256,
    batch_size=int(os.environ.get("EVAL_BATCH_SIZE", "8")),
    run_cfg=dict(num_gpus=1),
)

models = [
    dict(abbr="llada-8b-base-k0", path=os.environ.get("LLADA_BASE", "GSAI-ML/LLaDA-8B-Base"), k=0.0, **_sampling),
    dict(abbr="llada-8b-xdlm-k0.1", path=os.environ.get("XDLM_CKPT", "./checkpoints"), k=0.1, **_sampling),
]
