# The models of every benchmark config: the rows of the paper's table (ROWS in benchmarks.py), each at
# 32, 64, 128 and 256 steps (gen length 256, block 256, temperature 0, low-confidence remasking), as in
# the paper's own model list, each named by benchmarks.model_abbr:
#   base-k0     LLaDA-8B-Base, LLaDA's sampler
#   base-k0.1   LLaDA-8B-Base, the XDLM sampler (k = 0.1)
#   mdm-k0      the checkpoint continually pretrained with the MDM loss, LLaDA's sampler
#   xdlm-k0.1   the checkpoint continually pretrained with the XDLM loss, the XDLM sampler
# Environment:
#   EVAL_ROWS        comma-separated rows to run (default: the base rows, plus mdm-k0 when
#                    MDM_CKPT is set and xdlm-k0.1 when XDLM_CKPT is set)
#   EVAL_STEPS       comma-separated step counts (default: 32,64,128,256)
#   LLADA_BASE       base checkpoint (default GSAI-ML/LLaDA-8B-Base)
#   MDM_CKPT         MDM checkpoint folder (needed when mdm-k0 is run)
#   XDLM_CKPT        XDLM checkpoint folder, e.g. the output_dir of llada_cpt.py (needed when xdlm-k0.1 is run)
#                    Each checkpoint a chosen row needs is checked when this config loads: a model folder
#                    (config.json and weights; its absolute path goes into the config) or a hub id
#                    (owner/name, fetched when the row runs); anything else stops the run before any row.
#   EVAL_BATCH_SIZE  prompts generated together (default 8; the paper ran one at a time, and
#                    a batch gives the same completions)
# Faster, approximate sampling (Fast-dLLM's; NOT the paper's protocol, see generate.py). Such a
# row's abbr names its mode, e.g. xdlm-k0.1-s32-b32-dual-t0.9, so it never merges with a
# paper-protocol row:
#   EVAL_CACHE         none (default), prefix or dual: KV cache refreshed at each block's first step
#   EVAL_THRESHOLD     a probability in [0, 1]: reveal every masked position at least that probable
#   EVAL_BLOCK_LENGTH  block length (default 256, the paper's; Fast-dLLM uses 32 with a cache)
import os

from mmengine.config import read_base

with read_base():  # the table (mmengine executes it as a config: see its docstring)
    from .benchmarks import ROWS, STEPS, model_abbr, row_checkpoints, sampler_mode

_runnable = [r for r, row in ROWS.items() if row["default"] or os.environ.get(row["variable"])]
_chosen_rows = [r.strip() for r in os.environ.get("EVAL_ROWS", ",".join(_runnable)).split(",") if r.strip()]
_chosen_steps = [s.strip() for s in os.environ.get("EVAL_STEPS", ",".join(map(str, STEPS))).split(",") if s.strip()]
if not _chosen_rows or set(_chosen_rows) - set(ROWS):
    raise ValueError(f"EVAL_ROWS={os.environ.get('EVAL_ROWS')!r}: choose a comma-separated subset of {', '.join(ROWS)}")
if not _chosen_steps or set(_chosen_steps) - {str(s) for s in STEPS}:
    raise ValueError(f"EVAL_STEPS={os.environ.get('EVAL_STEPS')!r}: choose a comma-separated subset of "
                     f"{', '.join(map(str, STEPS))}")
# Every checkpoint the chosen rows need, checked now: a bad one stops the run before any row.
_checkpoints = row_checkpoints(_chosen_rows, os.environ)
_batch_size = os.environ.get("EVAL_BATCH_SIZE", "8")
if not _batch_size.isdigit() or int(_batch_size) < 1:
    raise ValueError(f"EVAL_BATCH_SIZE={_batch_size!r}: must be a positive integer")
_cache = os.environ.get("EVAL_CACHE", "none") or "none"
if _cache not in ("none", "prefix", "dual"):
    raise ValueError(f"EVAL_CACHE={_cache!r}: choose none, prefix or dual")
_threshold = os.environ.get("EVAL_THRESHOLD", "")
try:
    _threshold = float(_threshold) if _threshold else None
except ValueError:
    _threshold = -1.0
if _threshold is not None and not 0.0 <= _threshold <= 1.0:
    raise ValueError(f"EVAL_THRESHOLD={os.environ.get('EVAL_THRESHOLD')!r}: must be a probability in [0, 1] (or unset)")
_block = os.environ.get("EVAL_BLOCK_LENGTH", "256")
if not _block.isdigit() or int(_block) < 1 or 256 % int(_block) or any(int(s) % (256 // int(_block)) for s in _chosen_steps):
    raise ValueError(f"EVAL_BLOCK_LENGTH={_block!r}: must divide the gen length 256, and 256/EVAL_BLOCK_LENGTH must "
                     f"divide every step count ({', '.join(_chosen_steps)})")
_block = int(_block)
_mode = sampler_mode(_block, _cache, _threshold)  # anything but the paper's exact sampler says so in its abbr
_left_out = [f"{r} (set {ROWS[r]['variable']})" for r in ROWS if r not in _chosen_rows and r not in _runnable] + \
    [f"{r} (not in EVAL_ROWS)" for r in ROWS if r not in _chosen_rows and r in _runnable]
print(f"OpenCompass rows: {', '.join(_chosen_rows)} at steps {','.join(_chosen_steps)}"
      f"{' [' + _mode + ': not the paper protocol]' if _mode else ''}"
      f"; left out: {', '.join(_left_out) or 'none'}")
print("OpenCompass checkpoints: " + ", ".join(f"{var}={path} ({kind})" for var, (path, kind) in _checkpoints.items()))

models = [
    dict(
        abbr=model_abbr(_row, _steps, _mode),
        type="opencompass_llada.DiffusionLM",
        path=_checkpoints[ROWS[_row]["variable"]][0],
        k=ROWS[_row]["k"],
        steps=int(_steps),
        gen_length=256,
        block_length=_block,
        temperature=0.0,
        cache=_cache,
        threshold=_threshold,
        max_seq_len=4096,
        max_out_len=256,
        batch_size=int(_batch_size),
        run_cfg=dict(num_gpus=1),
    )
    for _row in _chosen_rows
    for _steps in _chosen_steps
]
