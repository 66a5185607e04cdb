# The rows of the paper's table (opencompass_configs/benchmarks.py: ROWS), each at 32, 64, 128 and 256
# steps (gen length 256, block 256, temperature 0, low-confidence remasking), as in the paper's own
# model list. Every checkpoint a chosen row needs is checked here, when a config loads: a model folder
# (config.json and weights) or a hub id; anything else stops the run before any row.
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
# Likelihood rows (`likelihood_models`, for the PPL- and LL-mode configs, e.g. eval_arc_c_ppl.py): each
# chosen row's checkpoint scored with likelihood.py's estimator, LLaDA's settings by default (mc_num 128 in
# groups of 8, seed 1234). The masked estimator is LLaDA's k = 0 bound whatever the row's k, and the
# XDLM one at k = 0 equals it: a (checkpoint, estimator's k) runs once, under the first row asking for it
# (base-k0 and base-k0.1 give one masked row). The abbr is ROW-ll-ESTIMATOR[-cfgC][-mcN]:
#   EVAL_ESTIMATORS  comma-separated: masked (LLaDA's, default), xdlm (the XDLM bound under the row's k)
#   EVAL_CFG         classifier-free guidance scale (default 0: the paper's Table 1)
#   EVAL_MC_NUM      Monte-Carlo draws per request (default 128; below 8, one group of that many)
import os

# mmengine's config loader turns import statements (but of a few core modules) into lazy placeholders:
# the table is imported by a call (this repository must be on PYTHONPATH, as for the model's type). The
# loader rebuilds every tuple bound at a config's top level by calling its type, which a NamedTuple
# refuses: the table's rows are read through _table, never bound here.
_table = __import__("opencompass_configs.benchmarks", fromlist=["ROWS"])
_step_choices = _table.STEPS
_runnable = [r for r, (var, default, _) in _table.ROWS.items() if default or os.environ.get(var)]
_chosen_rows = [r.strip() for r in os.environ.get("EVAL_ROWS", ",".join(_runnable)).split(",") if r.strip()]
_chosen_steps = [s.strip() for s in os.environ.get("EVAL_STEPS", ",".join(map(str, _step_choices))).split(",")
                 if s.strip()]
if not _chosen_rows or set(_chosen_rows) - set(_table.ROWS):
    raise ValueError(f"EVAL_ROWS={os.environ.get('EVAL_ROWS')!r}: choose a comma-separated subset of "
                     f"{', '.join(_table.ROWS)}")
if not _chosen_steps or set(_chosen_steps) - {str(s) for s in _step_choices}:
    raise ValueError(f"EVAL_STEPS={os.environ.get('EVAL_STEPS')!r}: choose a comma-separated subset of "
                     f"{', '.join(map(str, _step_choices))}")
for _row in _chosen_rows:
    if _table.ROWS[_row].default is None and not os.environ.get(_table.ROWS[_row].variable):
        raise ValueError(f"EVAL_ROWS includes {_row}: set {_table.ROWS[_row].variable} to its checkpoint folder, "
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
_mode = _table.sampler_mode(_block, _cache, _threshold)
# The likelihood settings are checked by likelihood.check_settings (imported by __import__, as above).
_check_estimator = __import__("likelihood").check_settings


def _estimator_settings(variable, **fields):
    """Refuses fields that likelihood.check_settings refuses, naming the environment variable."""
    try:
        _check_estimator(**fields)
    except ValueError as e:
        raise ValueError(f"{variable}={os.environ.get(variable)!r}: {e}") from None


_estimators = [e.strip() for e in os.environ.get("EVAL_ESTIMATORS", "masked").split(",") if e.strip()]
for _estimator in _estimators or [""]:
    _estimator_settings("EVAL_ESTIMATORS", estimator=_estimator)
_cfg = _number(os.environ.get("EVAL_CFG", "0"), float)
_estimator_settings("EVAL_CFG", cfg=_cfg)
_mc_num = _number(os.environ.get("EVAL_MC_NUM", "128"), int)
_mc_batch = min(8, _mc_num) if isinstance(_mc_num, int) and _mc_num > 0 else 8  # LLaDA's groups of 8
_estimator_settings("EVAL_MC_NUM", mc_num=_mc_num, batch_size=_mc_batch)
_likelihood_rows = {}  # (checkpoint variable, the estimator's k): (row, estimator)
for _estimator in _estimators:
    for _row in _chosen_rows:
        _k = _table.ROWS[_row].k if _estimator == "xdlm" else 0.0
        _likelihood_rows.setdefault((_table.ROWS[_row].variable, _k), (_row, "xdlm" if _k else "masked"))
_likelihood_abbrs = [_table.model_abbr(r, None, _table.likelihood_mode(e, _cfg, _mc_num))
                     for r, e in _likelihood_rows.values()]
_left_out = [f"{r} (set {_table.ROWS[r].variable})" for r in _table.ROWS if r not in _chosen_rows + _runnable] + \
    [f"{r} (not in EVAL_ROWS)" for r in _table.ROWS if r in _runnable and r not in _chosen_rows]
# Every checkpoint the chosen rows need, checked now: a bad one stops the run before any row.
_given = {_table.ROWS[r].variable: os.environ.get(_table.ROWS[r].variable) or _table.ROWS[r].default
          for r in _chosen_rows}
_checkpoints, _problems = {}, []  # variable: (path, "folder" or "hub id")
for _var, _value in _given.items():
    try:
        _checkpoints[_var] = _table.checkpoint(_var, _value)
    except ValueError as e:
        _problems.append(str(e))
if _problems:
    raise ValueError("; ".join(_problems))
print(f"OpenCompass rows: {', '.join(_chosen_rows)} at steps {','.join(_chosen_steps)}"
      f"{' [' + _mode + ': not the paper protocol]' if _mode else ''}"
      f"; left out: {', '.join(_left_out) or 'none'}"
      f"; checkpoints: {', '.join(f'{v}={path} ({kind})' for v, (path, kind) in _checkpoints.items())}"
      f"; likelihood rows: {', '.join(_likelihood_abbrs)}")

models = [
    dict(
        abbr=_table.model_abbr(_row, _steps, _mode),
        type="opencompass_llada.DiffusionLM",
        path=_checkpoints[_table.ROWS[_row].variable][0],
        k=_table.ROWS[_row].k,
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

likelihood_models = [
    dict(
        abbr=_abbr,
        type="opencompass_llada.DiffusionLM",
        path=_checkpoints[_variable][0],
        k=_k,
        estimator=_estimator,
        cfg=_cfg,
        mc_num=_mc_num,
        mc_batch_size=_mc_batch,
        seed=1234,
        max_seq_len=4096,
        batch_size=int(_batch_size),
        run_cfg=dict(num_gpus=1),
    )
    for _abbr, ((_variable, _k), (_row, _estimator)) in zip(_likelihood_abbrs, _likelihood_rows.items())
]
