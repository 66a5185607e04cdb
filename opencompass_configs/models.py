# The rows of the paper's table, each at 32, 64, 128 and 256 steps (gen length 256, block 256,
# temperature 0, low-confidence remasking), as in the paper's own model list:
#   base-k0     LLaDA-8B-Base, LLaDA's sampler
#   base-k0.1   LLaDA-8B-Base, the XDLM sampler (k = 0.1)
#   mdm-k0      the checkpoint continually pretrained with the MDM loss, LLaDA's sampler
#   xdlm-k0.1   the checkpoint continually pretrained with the XDLM loss, the XDLM sampler
# Environment:
#   EVAL_ROWS        comma-separated rows to run (default: all four)
#   EVAL_STEPS       comma-separated step counts (default: 32,64,128,256)
#   LLADA_BASE       base checkpoint (default GSAI-ML/LLaDA-8B-Base)
#   MDM_CKPT         MDM checkpoint folder (needed when mdm-k0 is run)
#   XDLM_CKPT        XDLM checkpoint folder, e.g. the output_dir of llada_cpt.py (needed when xdlm-k0.1 is run)
#   EVAL_BATCH_SIZE  prompts generated together (default 8; the paper ran one at a time, and
#                    a batch gives the same completions)
import os

_rows = {  # row: (checkpoint variable, default checkpoint, k)
    "base-k0": ("LLADA_BASE", "GSAI-ML/LLaDA-8B-Base", 0.0),
    "base-k0.1": ("LLADA_BASE", "GSAI-ML/LLaDA-8B-Base", 0.1),
    "mdm-k0": ("MDM_CKPT", None, 0.0),
    "xdlm-k0.1": ("XDLM_CKPT", None, 0.1),
}
_step_choices = (32, 64, 128, 256)
_chosen_rows = [r.strip() for r in os.environ.get("EVAL_ROWS", ",".join(_rows)).split(",") if r.strip()]
_chosen_steps = [s.strip() for s in os.environ.get("EVAL_STEPS", "32,64,128,256").split(",") if s.strip()]
if not _chosen_rows or set(_chosen_rows) - set(_rows):
    raise ValueError(f"EVAL_ROWS={os.environ.get('EVAL_ROWS')!r}: choose a comma-separated subset of {', '.join(_rows)}")
if not _chosen_steps or set(_chosen_steps) - {str(s) for s in _step_choices}:
    raise ValueError(f"EVAL_STEPS={os.environ.get('EVAL_STEPS')!r}: choose a comma-separated subset of "
                     f"{', '.join(map(str, _step_choices))}")
for _row in _chosen_rows:
    if _rows[_row][1] is None and not os.environ.get(_rows[_row][0]):
        raise ValueError(f"EVAL_ROWS includes {_row}: set {_rows[_row][0]} to its checkpoint folder, "
                         f"or leave the row out of EVAL_ROWS")
_batch_size = os.environ.get("EVAL_BATCH_SIZE", "8")
if not _batch_size.isdigit() or int(_batch_size) < 1:
    raise ValueError(f"EVAL_BATCH_SIZE={_batch_size!r}: must be a positive integer")

models = [
    dict(
        abbr=f"{_row}-s{_steps}",
        type="opencompass_llada.DiffusionLM",
        path=os.environ.get(_rows[_row][0]) or _rows[_row][1],
        k=_rows[_row][2],
        steps=int(_steps),
        gen_length=256,
        block_length=256,
        temperature=0.0,
        max_seq_len=4096,
        max_out_len=256,
        batch_size=int(_batch_size),
        run_cfg=dict(num_gpus=1),
    )
    for _row in _chosen_rows
    for _steps in _chosen_steps
]
