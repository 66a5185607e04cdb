"""OpenCompass integration: the benchmark configs load with OpenCompass's loader and hold the
paper's rows x step counts (selectable), the model wrapper generates whole batches, decodes as the
paper's does and applies stop words, and scripts/eval_tiny.sh runs OpenCompass end to end offline."""
import csv
import glob
import json
import os
import subprocess
import sys
import warnings

import pytest
import torch

from helpers import ROOT

BENCHMARKS = {"gsm8k": 1, "math": 1, "humaneval": 1, "mbpp": 1, "bbh": 27}
CKPTS = dict(LLADA_BASE="/models/base", MDM_CKPT="/models/mdm", XDLM_CKPT="/models/xdlm")


def load(name, monkeypatch, **env):
    from mmengine.config import Config

    for var in ("EVAL_ROWS", "EVAL_STEPS", "LLADA_BASE", "MDM_CKPT", "XDLM_CKPT", "EVAL_BATCH_SIZE", "EVAL_CACHE",
                "EVAL_THRESHOLD", "EVAL_BLOCK_LENGTH"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    file = name if name.endswith(".py") else f"eval_{name}.py"
    return Config.fromfile(os.path.join(ROOT, "opencompass_configs", file), format_python_code=False)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_configs_hold_the_papers_four_rows_at_four_step_counts(name, monkeypatch):
    cfg = load(name, monkeypatch, **CKPTS)
    assert len(cfg.datasets) == BENCHMARKS[name]
    rows = {(m.path, m.k) for m in cfg.models}
    assert rows == {("/models/base", 0.0), ("/models/base", 0.1), ("/models/mdm", 0.0), ("/models/xdlm", 0.1)}
    assert sorted({m.steps for m in cfg.models}) == [32, 64, 128, 256] and len(cfg.models) == 16
    assert len({m.abbr for m in cfg.models}) == 16
    for m in cfg.models:
        assert m.type == "opencompass_llada.DiffusionLM"
        assert (m.gen_length, m.block_length, m.temperature) == (256, 256, 0.0)


def test_one_row_at_one_step_count_can_be_run_alone(monkeypatch):
    cfg = load("mbpp", monkeypatch, EVAL_ROWS="xdlm-k0.1", EVAL_STEPS="64", XDLM_CKPT="/models/xdlm")
    ((m),) = cfg.models
    assert (m.abbr, m.path, m.k, m.steps) == ("xdlm-k0.1-s64", "/models/xdlm", 0.1, 64)
    cfg = load("gsm8k", monkeypatch, EVAL_ROWS="base-k0,base-k0.1", EVAL_STEPS="32,256")
    assert [m.abbr for m in cfg.models] == ["base-k0-s32", "base-k0-s256", "base-k0.1-s32", "base-k0.1-s256"]
    assert {m.path for m in cfg.models} == {"GSAI-ML/LLaDA-8B-Base"}


@pytest.mark.parametrize("env, match", [
    (dict(EVAL_ROWS="base-k0.2"), "EVAL_ROWS='base-k0.2': choose a comma-separated subset of base-k0, base-k0.1"),
    (dict(EVAL_ROWS="base-k0", EVAL_STEPS="16"), "EVAL_STEPS='16': choose a comma-separated subset of 32, 64, 128, 256"),
    (dict(EVAL_ROWS="mdm-k0"), "EVAL_ROWS includes mdm-k0: set MDM_CKPT"),
    (dict(EVAL_ROWS="base-k0", EVAL_BATCH_SIZE="0"), "EVAL_BATCH_SIZE='0': must be a positive integer"),
    # the sampler's own checks (generate.SamplerSettings), named by the environment variable
    (dict(EVAL_CACHE="full"), "EVAL_CACHE='full': cache must be one of \\('none', 'prefix', 'dual'\\), got 'full'"),
    (dict(EVAL_THRESHOLD="high"), "EVAL_THRESHOLD='high': threshold must be a real number or None, got 'high'"),
    (dict(EVAL_THRESHOLD="1.5"), "EVAL_THRESHOLD='1.5': threshold must be None or a probability in \\[0, 1\\]"),
    (dict(EVAL_THRESHOLD="nan"), "EVAL_THRESHOLD='nan': threshold must be None or a probability"),
    (dict(EVAL_BLOCK_LENGTH="48"), "EVAL_BLOCK_LENGTH='48': gen_length \\(256\\) must be a positive multiple of "
                                   "block_length \\(48\\)"),
    (dict(EVAL_BLOCK_LENGTH="4", EVAL_STEPS="32"), "EVAL_BLOCK_LENGTH='4': steps \\(32\\) must be a positive multiple"),
    (dict(EVAL_BLOCK_LENGTH="x"), "EVAL_BLOCK_LENGTH='x': block_length must be an integer"),
])
def test_bad_row_or_step_selection_is_refused_by_name(env, match, monkeypatch):
    with pytest.raises(Exception, match=match):
        load("gsm8k", monkeypatch, **env)


def test_default_rows_are_the_runnable_ones_and_one_line_says_which(monkeypatch, capfd):
    cfg = load("gsm8k", monkeypatch)  # a new user's first try: no environment at all
    assert {m.abbr.rsplit("-s", 1)[0] for m in cfg.models} == {"base-k0", "base-k0.1"}
    out = capfd.readouterr().out
    assert "rows: base-k0, base-k0.1 at steps 32,64,128,256; left out: mdm-k0 (set MDM_CKPT), xdlm-k0.1 (set XDLM_CKPT)" in out
    cfg = load("gsm8k", monkeypatch, MDM_CKPT="/models/mdm")
    assert {m.abbr.rsplit("-s", 1)[0] for m in cfg.models} == {"base-k0", "base-k0.1", "mdm-k0"}
    assert "left out: xdlm-k0.1 (set XDLM_CKPT)" in capfd.readouterr().out


def test_an_accelerated_row_says_so_in_its_abbr_and_passes_its_mode(monkeypatch):
    exact = load("mbpp", monkeypatch, EVAL_ROWS="xdlm-k0.1", EVAL_STEPS="32", XDLM_CKPT="/x").models[0]
    fast = load("mbpp", monkeypatch, EVAL_ROWS="xdlm-k0.1", EVAL_STEPS="32", XDLM_CKPT="/x", EVAL_CACHE="dual",
                EVAL_THRESHOLD="0.9", EVAL_BLOCK_LENGTH="32").models[0]
    assert exact.abbr == "xdlm-k0.1-s32" and (exact.cache, exact.threshold, exact.block_length) == ("none", None, 256)
    assert fast.abbr == "xdlm-k0.1-s32-b32-dual-t0.9" and (fast.cache, fast.threshold, fast.block_length) == ("dual", 0.9, 32)
    prefix = load("mbpp", monkeypatch, EVAL_ROWS="base-k0", EVAL_STEPS="64", EVAL_CACHE="prefix").models[0]
    assert prefix.abbr == "base-k0-s64-prefix"


@pytest.mark.parametrize("name", BENCHMARKS)
def test_the_seed_readmes_config_names_are_our_configs(name, monkeypatch):
    seed = load(f"llada_base_gen_{name}_length256_block256.py", monkeypatch, **CKPTS)
    ours = load(name, monkeypatch, **CKPTS)
    assert seed.datasets == ours.datasets and seed.models == ours.models and seed.get("summarizer") == ours.get("summarizer")


def build(llada_dir, **kw):
    from opencompass.registry import MODELS

    sys.path.insert(0, ROOT)
    return MODELS.build(dict(type="opencompass_llada.DiffusionLM", path=llada_dir, max_seq_len=256,
                             **{"steps": 4, "gen_length": 16, "block_length": 16, **kw}))


@pytest.mark.parametrize("k", [0.0, 0.1])
def test_wrapper_batch_gives_the_completions_of_one_prompt_at_a_time(llada_dir, monkeypatch, k):
    import opencompass_llada

    model = build(llada_dir, k=k)
    assert isinstance(model, opencompass_llada.DiffusionLM)
    calls = []
    real = opencompass_llada.generate
    monkeypatch.setattr(opencompass_llada, "generate", lambda *a, **kw: calls.append(a[1].shape) or real(*a, **kw))
    prompts = ["def f(x):", "import os\nprint(", "class A:\n    pass\n\n\nclass B(A):"]  # different lengths: padded
    batch = model.generate(prompts, max_out_len=16)
    assert len(calls) == 1 and calls[0][0] == 3  # one batched call, not one per prompt
    alone = [model.generate([p], max_out_len=16)[0] for p in prompts]
    assert batch == alone and all(isinstance(o, str) for o in batch)
    assert model.get_token_len("def f(x):") == len(model.tokenizer("def f(x):")["input_ids"])


def test_wrapper_decodes_past_an_eos_then_cuts_at_stop_words(llada_dir, monkeypatch):
    """As the paper's: all generated ids are decoded with special tokens skipped (text after an
    eos stays), and the text is cut before the first stop word, which is dropped."""
    import opencompass_llada

    model = build(llada_dir)
    tok = model.tokenizer
    ids = tok("x = 1", add_special_tokens=False)["input_ids"] + [tok.eos_token_id] + \
        tok("\ny = 2\n[DONE] z", add_special_tokens=False)["input_ids"]
    ids = ids + [tok.eos_token_id] * (16 - len(ids))
    monkeypatch.setattr(opencompass_llada, "generate",
                        lambda m, x, **kw: torch.cat([x, torch.tensor([ids] * x.shape[0])], 1))
    full = tok.decode(ids, skip_special_tokens=True)
    assert "y = 2" in full and tok.eos_token not in full
    assert model.generate(["a"], 16) == [full]
    assert model.generate(["a"], 16, stopping_criteria=["[DONE]"]) == [full[:full.index("[DONE]")]]
    assert model.generate(["a"], 16, stopping_criteria=["Question", "y ="]) == [full[:full.index("y =")]]


def test_wrapper_warns_once_when_max_out_len_exceeds_gen_length(llada_dir):
    model = build(llada_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.generate(["a"], max_out_len=512)
        model.generate(["b"], max_out_len=512)
    msgs = [str(w.message) for w in caught if "max_out_len" in str(w.message)]
    assert msgs == ["max_out_len (512) exceeds the model's gen_length (16): completions have 16 tokens"]


def test_wrapper_passes_its_fast_modes_and_handles_empty_and_bad_requests(llada_dir, monkeypatch):
    import opencompass_llada

    model = build(llada_dir, cache="dual", threshold=0.9, block_length=8)
    calls = []
    real = opencompass_llada.generate
    monkeypatch.setattr(opencompass_llada, "generate", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    assert model.generate([], max_out_len=16) == [] and not calls  # an empty batch (was IndexError)
    with pytest.raises(ValueError, match="max_out_len must be a positive number of tokens, got 0"):
        model.generate(["def f(x):"], max_out_len=0)
    assert not calls  # refused before any sampling
    assert len(model.generate(["def f(x):"], max_out_len=16)) == 1
    settings = calls[0]["settings"]
    assert (settings.cache, settings.threshold, settings.block_length) == ("dual", 0.9, 8)


@pytest.mark.parametrize("kw, match", [
    (dict(steps=3), "steps \\(3\\) must be a positive multiple"),
    (dict(cache="full"), "cache must be one of"),
    (dict(temperature=float("nan")), "temperature must be >= 0 and finite"),
    (dict(sampler="ancestral", cache="dual"), "cache and threshold apply to sampler='confidence' only"),
    (dict(stpes=4), "unknown settings stpes; the sampler's are steps, gen_length, block_length, k, temperature, "
                    "remasking, sampler, cache, threshold"),
])
def test_wrapper_refuses_bad_settings_before_loading_the_model(kw, match):
    import opencompass_llada

    with pytest.raises(ValueError, match=match):  # a path that does not exist: nothing was loaded
        opencompass_llada.DiffusionLM("/nonexistent/checkpoint", max_seq_len=256,
                                      **{"steps": 4, "gen_length": 16, "block_length": 8, **kw})


def test_wrapper_rejects_settings_it_would_ignore(llada_dir):
    import opencompass_llada

    with pytest.raises(ValueError, match="generation_kwargs"):
        opencompass_llada.DiffusionLM(llada_dir, generation_kwargs={"do_sample": True})
    with pytest.raises(ValueError, match="max_seq_len \\(128\\) must exceed gen_length \\(256\\)"):
        opencompass_llada.DiffusionLM(llada_dir, max_seq_len=128)


@pytest.mark.slow
def test_eval_tiny_runs_opencompass_offline_and_its_summary_matches_the_predictions(llada_dir, tmp_path):
    env = dict(os.environ, PYTHON=sys.executable)
    work = tmp_path / "work"
    proc = subprocess.run(["bash", "scripts/eval_tiny.sh", llada_dir, str(work)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    sys.path.insert(0, ROOT)
    from opencompass_llada import first_line

    gold = [json.loads(line) for line in open(work / "stdlib_next_line.jsonl")]
    assert len(gold) == 40
    (summary,) = glob.glob(str(work / "*" / "summary" / "summary_*.csv"))
    table = {row["dataset"]: row for row in csv.DictReader(open(summary))}["stdlib-next-line"]
    for k in ("0.0", "0.1"):
        (pred_file,) = glob.glob(str(work / "*" / "predictions" / f"tiny-xdlm-k{k}" / "stdlib-next-line.json"))
        preds = json.load(open(pred_file))
        assert len(preds) == 40
        # each prompt went through the template, and the score is the accuracy of these predictions
        assert [preds[str(i)]["origin_prompt"] for i in range(40)] == [g["context"] + "\n" for g in gold]
        assert any(preds[str(i)]["prediction"].strip() for i in range(40))
        acc = 100 * sum(first_line(preds[str(i)]["prediction"]) == g["next_line"] for i, g in enumerate(gold)) / 40
        assert float(table[f"tiny-xdlm-k{k}"]) == pytest.approx(acc, abs=0.01)
