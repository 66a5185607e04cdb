# The rows of the paper's table, each at 32, 64, 128 and 256 steps (gen length 256, block 256,
# temperature 0, low-confidence remasking), as in the paper's own model list:
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
#   EVAL_BATCH_SIZE  prompts generated together (default 8; the paper ran one at a time, and
#                    a batch gives the same completions)
# Faster, approximate sampling (Fast-dLLM's; NOT the paper's protocol, see generate.py). Such a
# row's abbr names its mode, e.g. xdlm-k0.1-s32-b32-dual-t0.9, so it never merges with a
# paper-protocol row:
#   EVAL_CACHE         none (default), prefix or dual: KV cache refreshed at each block's first step
#   EVAL_THRESHOLD     a probability in [0, 1]: reveal every masked position at least that probable
#   EVAL_BLOCK_LENGTH  block length (default 256, the paper's; Fast-dLLM uses 32 with a cache)
import os

_rows = {  # row: (checkpoint variable, default checkpoint, k)
    "base-k0": ("LLADA_BASE", "GSAI-ML/LLaDA-8B-Base", 0.0),
    "base-k0.1": ("LLADA_BASE", "GSAI-ML/LLaDA-8B-Base", 0.1),
    "mdm-k0": ("MDM_CKPT", None, 0.0),
    "xdlm-k0.1": ("XDLM_CKPT", None, 0.1),
}
_step_choices = (32, 64, 128, 256)
_runnable = [r for r, (var, default, _) in _rows.items() if default or os.environ.get(var)]
_chosen_rows = [r.strip() for r in os.environ.get("EVAL_ROWS", ",".join(_runnable)).split(",") if r.strip()]
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
# The sampler modes are checked by generate.SamplerSettings, imported by __import__: mmengine's config
# loader turns an import statement of a module outside the standard library into a lazy object that
# cannot be called.
_SamplerSettings = __import__("generate").SamplerSettings


def _sampler_settings(variable, **fields):
    """Refuses fields that generate.SamplerSettings refuses, naming the environment variable."""
    try:
        return _SamplerSettings(**fields)
    except ValueError as e:
        raise ValueError(f"{variable}={os.environ.get(variable)!r}: {e}") from None


def _number(text, kind):
    """kind(text), or the text itself (which SamplerSettings then refuses by name) if it is not one."""
    try:
        return kind(text)
    except ValueError:
        return text


_cache = os.environ.get("EVAL_CACHE", "none") or "none"
_sampler_settings("EVAL_CACHE", cache=_cache)
_threshold = os.environ.get("EVAL_THRESHOLD", "")
_threshold = _number(_threshold, float) if _threshold else None
_sampler_settings("EVAL_THRESHOLD", threshold=_threshold)
_block = _number(os.environ.get("EVAL_BLOCK_LENGTH", "256"), int)
for _steps in _chosen_steps:
    _sampler_settings("EVAL_BLOCK_LENGTH", steps=int(_steps), gen_length=256, block_length=_block, cache=_cache,
                      threshold=_threshold)
# Anything but the paper's exact sampler (block 256, no cache, no threshold) says so in its abbr.
_mode = (f"-b{_block}" if _block != 256 else "") + (f"-{_cache}" if _cache != "none" else "") + \
    (f"-t{_threshold:g}" if _threshold is not None else "")
_left_out = [f"{r} (set {_rows[r][0]})" for r in _rows if r not in _chosen_rows and r not in _runnable] + \
    [f"{r} (not in EVAL_ROWS)" for r in _rows if r not in _chosen_rows and r in _runnable]
print(f"OpenCompass rows: {', '.join(_chosen_rows)} at steps {','.join(_chosen_steps)}"
      f"{' [' + _mode.lstrip('-') + ': not the paper protocol]' if _mode else ''}"
      f"; left out: {', '.join(_left_out) or 'none'}")

models = [
    dict(
        abbr=f"{_row}-s{_steps}{_mode}",
        type="opencompass_llada.DiffusionLM",
        path=os.environ.get(_rows[_row][0]) or _rows[_row][1],
        k=_rows[_row][2],
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
