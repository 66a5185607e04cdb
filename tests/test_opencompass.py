"""OpenCompass integration: the benchmark configs load with OpenCompass's loader and hold the
paper's rows x step counts (selectable), the model wrapper generates whole batches, decodes as the
paper's does and applies stop words, and scripts/eval_tiny.sh runs OpenCompass end to end offline."""
import csv
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import warnings

import pytest
import torch

from helpers import ROOT
from opencompass_configs import benchmarks

PAPER_BENCHMARKS = {"gsm8k": 1, "math": 1, "humaneval": 1, "mbpp": 1, "bbh": 27}  # the paper's: their dataset counts
LIKELIHOOD_BENCHMARKS = ("arc_c",)  # scored by likelihood on the likelihood rows: tests/test_opencompass_ppl.py
GENERATION_BENCHMARKS = [b for b in benchmarks.BENCHMARKS if b not in LIKELIHOOD_BENCHMARKS]


def model_folder(path, files=("config.json", "model.safetensors")):
    """A folder with the files a checkpoint check looks for (their contents are never read)."""
    os.makedirs(path, exist_ok=True)
    for name in files:
        with open(os.path.join(path, name), "w") as f:
            f.write("{}")
    return str(path)


@pytest.fixture
def ckpts(tmp_path):
    return {var: model_folder(tmp_path / name) for var, name in
            (("LLADA_BASE", "base"), ("MDM_CKPT", "mdm"), ("XDLM_CKPT", "xdlm"))}


def load(name, monkeypatch, **env):
    from mmengine.config import Config

    for var in ("EVAL_ROWS", "EVAL_STEPS", "LLADA_BASE", "MDM_CKPT", "XDLM_CKPT", "EVAL_BATCH_SIZE", "EVAL_CACHE",
                "EVAL_THRESHOLD", "EVAL_BLOCK_LENGTH", "EVAL_ESTIMATORS", "EVAL_CFG", "EVAL_MC_NUM"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    file = name if name.endswith(".py") else benchmarks.BENCHMARKS[name].config
    return Config.fromfile(os.path.join(ROOT, "opencompass_configs", file), format_python_code=False)


def test_the_table_holds_the_papers_benchmarks():
    assert set(PAPER_BENCHMARKS) <= set(benchmarks.BENCHMARKS)
    assert [benchmarks.BENCHMARKS[b].title for b in PAPER_BENCHMARKS] == ["GSM8K", "MATH", "HumanEval", "MBPP", "BBH"]


def test_the_launcher_runs_the_papers_five_by_default_and_arc_c_by_name(capsys):
    """eval_opencompass.sh's list (benchmarks.py's listing): without names, the paper's table
    (not the likelihood example, which the paper does not report); a name picks any benchmark."""
    benchmarks.main([])
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["gsm8k", "math", "humaneval",
                                                                                  "mbpp", "bbh"]
    benchmarks.main(["arc_c"])
    assert capsys.readouterr().out.split() == ["arc_c", os.path.join("opencompass_configs", "eval_arc_c_ppl.py")]


@pytest.mark.parametrize("name", GENERATION_BENCHMARKS)
def test_benchmark_configs_hold_the_papers_four_rows_at_four_step_counts(name, monkeypatch, ckpts):
    cfg = load(name, monkeypatch, **ckpts)
    assert len(cfg.datasets) == PAPER_BENCHMARKS.get(name, len(cfg.datasets)) >= 1
    rows = {(m.path, m.k) for m in cfg.models}
    base, mdm, xdlm = ckpts["LLADA_BASE"], ckpts["MDM_CKPT"], ckpts["XDLM_CKPT"]
    assert rows == {(base, 0.0), (base, 0.1), (mdm, 0.0), (xdlm, 0.1)}
    assert sorted({m.steps for m in cfg.models}) == [32, 64, 128, 256] and len(cfg.models) == 16
    assert len({m.abbr for m in cfg.models}) == 16
    for m in cfg.models:
        assert m.type == "opencompass_llada.DiffusionLM"
        assert (m.gen_length, m.block_length, m.temperature) == (256, 256, 0.0)


def test_one_row_at_one_step_count_can_be_run_alone(monkeypatch, ckpts):
    cfg = load("mbpp", monkeypatch, EVAL_ROWS="xdlm-k0.1", EVAL_STEPS="64", XDLM_CKPT=ckpts["XDLM_CKPT"])
    ((m),) = cfg.models
    assert (m.abbr, m.path, m.k, m.steps) == ("xdlm-k0.1-s64", ckpts["XDLM_CKPT"], 0.1, 64)
    cfg = load("gsm8k", monkeypatch, EVAL_ROWS="base-k0,base-k0.1", EVAL_STEPS="32,256")
    assert [m.abbr for m in cfg.models] == ["base-k0-s32", "base-k0-s256", "base-k0.1-s32", "base-k0.1-s256"]
    assert {m.path for m in cfg.models} == {"GSAI-ML/LLaDA-8B-Base"}


@pytest.mark.parametrize("env, match", [
    (dict(EVAL_ROWS="base-k0.2"), "EVAL_ROWS='base-k0.2': choose a comma-separated subset of base-k0, base-k0.1"),
    (dict(EVAL_ROWS="base-k0", EVAL_STEPS="16"),
     "EVAL_STEPS='16': choose a comma-separated subset of 32, 64, 128, 256"),
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


def shards(folder, index, names, present):
    """A sharded checkpoint: config.json, `index` naming `names`, and the `present` shard files."""
    model_folder(folder, ("config.json",) + tuple(present))
    with open(os.path.join(folder, index), "w") as f:
        json.dump({"metadata": {}, "weight_map": {f"w{i}": n for i, n in enumerate(names)}}, f)
    return str(folder)


SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
BIN_SHARDS = ("pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin")


@pytest.mark.parametrize("make, problem", [
    (lambda d: str(d / "no" / "such" / "folder"), "no such model folder, and not a hub id"),
    (lambda d: model_folder(d / "m") + "/model.safetensors", "is a file: give the model's folder"),
    (lambda d: model_folder(d / "m", ("config.json", "tokenizer.json")), "has no weights"),
    (lambda d: model_folder(d / "m", ("model.safetensors",)), "has no config.json"),
    (lambda d: model_folder(d / "run" / "checkpoint-600") and model_folder(d / "run" / "checkpoint-1000")
     and str(d / "run"),  # the latest by step, not by text (where checkpoint-600 sorts last)
     "has no config.json \\(it holds training checkpoints, e.g. checkpoint-1000: give one of them\\)"),
    (lambda d: shards(d / "m", "model.safetensors.index.json", SHARDS, SHARDS[:1]),
     "lacks shards its model.safetensors.index.json names: model-00002-of-00002.safetensors"),
    (lambda d: shards(d / "m", "pytorch_model.bin.index.json", BIN_SHARDS, ()), "lacks shards"),
    # a local folder, not a hub id
    (lambda d: os.makedirs(d / "outputs") or "outputs/mdm-typo", "no such model folder"),
], ids=["missing", "file", "no-weights", "no-config", "training-run", "missing-shard", "missing-bin-shards",
        "missing-under-local-folder"])
def test_a_checkpoint_that_is_no_model_folder_stops_the_run_naming_its_variable_and_path(
        make, problem, tmp_path, monkeypatch, ckpts):
    monkeypatch.chdir(tmp_path)
    bad = make(tmp_path)
    with pytest.raises(ValueError, match=f"^MDM_CKPT={re.escape(repr(bad))}.*{problem}"):
        load("gsm8k", monkeypatch, EVAL_ROWS="base-k0,mdm-k0", EVAL_STEPS="32", LLADA_BASE=ckpts["LLADA_BASE"],
             MDM_CKPT=bad)


def test_every_bad_checkpoint_is_named_at_once_and_only_the_chosen_rows_are_checked(monkeypatch, ckpts):
    with pytest.raises(ValueError, match="^MDM_CKPT='/no/mdm': no such model folder.*; XDLM_CKPT='/no/xdlm': no such"):
        load("mbpp", monkeypatch, MDM_CKPT="/no/mdm", XDLM_CKPT="/no/xdlm")  # default rows: all four
    cfg = load("mbpp", monkeypatch, EVAL_ROWS="xdlm-k0.1", MDM_CKPT="/no/mdm", XDLM_CKPT=ckpts["XDLM_CKPT"])
    assert {m.path for m in cfg.models} == {ckpts["XDLM_CKPT"]}


@pytest.mark.parametrize("make", [
    lambda d: model_folder(d / "m"),
    lambda d: model_folder(d / "m", ("config.json", "pytorch_model.bin")),
    lambda d: shards(d / "m", "model.safetensors.index.json", SHARDS, SHARDS),
    lambda d: shards(d / "m", "pytorch_model.bin.index.json", BIN_SHARDS, BIN_SHARDS),
], ids=["safetensors", "bin", "sharded-safetensors", "sharded-bin"])
def test_model_folders_are_taken_as_absolute_paths_and_hub_ids_are_named(make, tmp_path, monkeypatch, capfd):
    folder = make(tmp_path)
    monkeypatch.chdir(tmp_path)
    cfg = load("gsm8k", monkeypatch, EVAL_ROWS="base-k0,mdm-k0", EVAL_STEPS="32", MDM_CKPT="m")  # relative
    assert {m.abbr: m.path for m in cfg.models} == {"base-k0-s32": "GSAI-ML/LLaDA-8B-Base", "mdm-k0-s32": folder}
    assert (f"checkpoints: LLADA_BASE=GSAI-ML/LLaDA-8B-Base (hub id), MDM_CKPT={folder} (folder)"
            in capfd.readouterr().out)


def test_default_rows_are_the_runnable_ones_and_one_line_says_which(monkeypatch, capfd, ckpts):
    cfg = load("gsm8k", monkeypatch)  # a new user's first try: no environment at all
    assert {m.abbr.rsplit("-s", 1)[0] for m in cfg.models} == {"base-k0", "base-k0.1"}
    out = capfd.readouterr().out
    assert ("rows: base-k0, base-k0.1 at steps 32,64,128,256; "
            "left out: mdm-k0 (set MDM_CKPT), xdlm-k0.1 (set XDLM_CKPT)") in out
    cfg = load("gsm8k", monkeypatch, MDM_CKPT=ckpts["MDM_CKPT"])
    assert {m.abbr.rsplit("-s", 1)[0] for m in cfg.models} == {"base-k0", "base-k0.1", "mdm-k0"}
    assert "left out: xdlm-k0.1 (set XDLM_CKPT)" in capfd.readouterr().out


def test_an_accelerated_row_says_so_in_its_abbr_and_passes_its_mode(monkeypatch, ckpts):
    x = ckpts["XDLM_CKPT"]
    exact = load("mbpp", monkeypatch, EVAL_ROWS="xdlm-k0.1", EVAL_STEPS="32", XDLM_CKPT=x).models[0]
    fast = load("mbpp", monkeypatch, EVAL_ROWS="xdlm-k0.1", EVAL_STEPS="32", XDLM_CKPT=x, EVAL_CACHE="dual",
                EVAL_THRESHOLD="0.9", EVAL_BLOCK_LENGTH="32").models[0]
    assert exact.abbr == "xdlm-k0.1-s32" and (exact.cache, exact.threshold, exact.block_length) == ("none", None, 256)
    assert (fast.abbr == "xdlm-k0.1-s32-b32-dual-t0.9"
            and (fast.cache, fast.threshold, fast.block_length) == ("dual", 0.9, 32))
    prefix = load("mbpp", monkeypatch, EVAL_ROWS="base-k0", EVAL_STEPS="64", EVAL_CACHE="prefix").models[0]
    assert prefix.abbr == "base-k0-s64-prefix"


@pytest.mark.parametrize("name", benchmarks.BENCHMARKS)
def test_each_benchmarks_headline_is_a_dataset_or_summary_group_of_its_config(name, monkeypatch):
    """The line the report reads in OpenCompass's summary: a dataset abbr of the config, or one of
    its summarizer's groups (BBH's average over its 27 tasks)."""
    cfg = load(name, monkeypatch, EVAL_ROWS="base-k0", EVAL_STEPS="32")
    groups = {g["name"] for g in cfg.get("summarizer", {}).get("summary_groups", [])}
    assert benchmarks.BENCHMARKS[name].dataset in {d["abbr"] for d in cfg.datasets} | groups


def test_an_abbr_parses_back_to_the_row_steps_and_mode_it_was_written_from():
    modes = {benchmarks.sampler_mode(b, c, t) for b in (256, 32, 8) for c in ("none", "prefix", "dual")
             for t in (None, 0.9, 1.0, 0.0)}
    assert len(modes) == 3 * 3 * 4 and "" in modes and "b32-dual-t0.9" in modes
    for row in benchmarks.ROWS:
        for steps in benchmarks.STEPS + (8, 1024):
            for mode in modes:
                assert benchmarks.parse_abbr(benchmarks.model_abbr(row, steps, mode)) == (row, steps, mode)
    for other in ("tiny-xdlm-k0.0", "base-k0", "base-k0-sx", "", None):
        assert benchmarks.parse_abbr(other) is None


def test_the_configs_abbrs_name_each_models_row_and_step_count(monkeypatch, ckpts):
    for env in ({}, dict(EVAL_CACHE="dual", EVAL_THRESHOLD="0.9", EVAL_BLOCK_LENGTH="32")):
        for m in load("gsm8k", monkeypatch, **ckpts, **env).models:
            row, steps, mode = benchmarks.parse_abbr(m.abbr)
            assert (m.k, m.steps) == (benchmarks.ROWS[row].k, steps)
            assert m.path == ckpts[benchmarks.ROWS[row].variable]
            assert mode == ("b32-dual-t0.9" if env else "")


@pytest.mark.parametrize("name", PAPER_BENCHMARKS)
def test_the_seed_readmes_config_names_are_our_configs(name, monkeypatch, ckpts):
    seed = load(f"llada_base_gen_{name}_length256_block256.py", monkeypatch, **ckpts)
    ours = load(name, monkeypatch, **ckpts)
    assert (seed.datasets == ours.datasets and seed.models == ours.models
            and seed.get("summarizer") == ours.get("summarizer"))


def build(llada_dir, **kw):
    from opencompass.registry import MODELS

    sys.path.insert(0, ROOT)
    return MODELS.build(dict(type="opencompass_llada.DiffusionLM", path=llada_dir, max_seq_len=256,
                             **{"steps": 4, "gen_length": 16, "block_length": 16, **kw}))


@pytest.mark.parametrize("k", [0.0, 0.1])
def test_wrapper_batch_gives_the_completions_of_one_prompt_at_a_time(llada_dir, monkeypatch, k):
    import generate as sampler
    import opencompass_llada

    model = build(llada_dir, k=k)
    assert isinstance(model, opencompass_llada.DiffusionLM)
    calls = []
    real = sampler.generate
    monkeypatch.setattr(sampler, "generate", lambda *a, **kw: calls.append(a[1].shape) or real(*a, **kw))
    prompts = ["def f(x):", "import os\nprint(", "class A:\n    pass\n\n\nclass B(A):"]  # different lengths: padded
    batch = model.generate(prompts, max_out_len=16)
    assert len(calls) == 1 and calls[0][0] == 3  # one batched call, not one per prompt
    alone = [model.generate([p], max_out_len=16)[0] for p in prompts]
    assert batch == alone and all(isinstance(o, str) for o in batch)
    assert model.get_token_len("def f(x):") == len(model.tokenizer("def f(x):")["input_ids"])


def test_wrapper_decodes_past_an_eos_then_cuts_at_stop_words(llada_dir, monkeypatch):
    """As the paper's: all generated ids are decoded with special tokens skipped (text after an
    eos stays), and the text is cut before the first stop word, which is dropped."""
    import generate as sampler

    model = build(llada_dir)
    tok = model.tokenizer
    ids = tok("x = 1", add_special_tokens=False)["input_ids"] + [tok.eos_token_id] + \
        tok("\ny = 2\n[DONE] z", add_special_tokens=False)["input_ids"]
    ids = ids + [tok.eos_token_id] * (16 - len(ids))
    monkeypatch.setattr(sampler, "generate",
                        lambda m, x, *a, **kw: torch.cat([x, torch.tensor([ids] * x.shape[0])], 1))
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
    import generate as sampler

    model = build(llada_dir, cache="dual", threshold=0.9, block_length=8)
    calls = []
    real = sampler.generate
    monkeypatch.setattr(sampler, "generate", lambda *a, **kw: calls.append(a[2]) or real(*a, **kw))
    assert model.generate([], max_out_len=16) == [] and not calls  # an empty batch (was IndexError)
    with pytest.raises(ValueError, match="max_out_len must be a positive number of tokens, got 0"):
        model.generate(["def f(x):"], max_out_len=0)
    assert not calls  # refused before any sampling
    assert len(model.generate(["def f(x):"], max_out_len=16)) == 1
    settings = calls[0]
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
    env = dict(os.environ, PYTHON=os.path.relpath(sys.executable, ROOT))  # as common.sh's default: relative
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


@pytest.mark.slow
def test_eval_opencompass_refuses_a_missing_checkpoint_before_any_row(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, MDM_CKPT="/no/such/folder", EVAL_ROWS="base-k0,mdm-k0",
               EVAL_STEPS="32", EVAL_WORK_DIR=str(tmp_path / "work"))
    proc = subprocess.run(["bash", "scripts/eval_opencompass.sh", "gsm8k"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0
    (line,) = proc.stderr.splitlines()  # one line, before OpenCompass starts
    assert line.startswith("opencompass_configs/eval_gsm8k.py: MDM_CKPT='/no/such/folder': no such model folder")
    assert not (tmp_path / "work").exists()  # no work folder: nothing ran


def repo_copy(dest):
    """The files the evaluation runs from, copied: OpenCompass leaves tmp/, .cache/ and
    icl_inference_output/ in the folder it runs in, which the scripts make the repository's root."""
    os.makedirs(dest)
    for name in os.listdir(ROOT):
        if name.endswith(".py"):
            shutil.copy(os.path.join(ROOT, name), dest)
    for name in ("scripts", "opencompass_configs"):
        shutil.copytree(os.path.join(ROOT, name), os.path.join(dest, name),
                        ignore=shutil.ignore_patterns("__pycache__"))
    return str(dest)


@pytest.mark.slow
def test_eval_opencompass_exits_nonzero_naming_a_failed_task_and_the_report_marks_it(tmp_path, tokenizer):
    """The paper's configs with OpenCompass's worker processes (not --debug), on one GSM8K question:
    base-k0 scores, mdm-k0's checkpoint passes the check at load but cannot be loaded, so its task
    fails while OpenCompass exits 0."""
    from llada_format import write_llada_checkpoint

    repo = repo_copy(tmp_path / "repo")
    base = str(tmp_path / "base")
    write_llada_checkpoint(base, tokenizer, max_sequence_length=4096)  # GSM8K's 4-shot prompt is long
    broken = model_folder(tmp_path / "broken")  # config.json "{}", an empty model.safetensors
    for split in ("train", "test"):
        os.makedirs(tmp_path / "cache" / "data" / "gsm8k", exist_ok=True)
        with open(tmp_path / "cache" / "data" / "gsm8k" / f"{split}.jsonl", "w") as f:
            f.write(json.dumps({"question": "Tom has 3 apples and buys 2. How many has he?",
                                "answer": "3 + 2 = <<3+2=5>>5\n#### 5"}) + "\n")
    work = tmp_path / "work"
    env = dict(os.environ, PYTHON=sys.executable, LLADA_BASE=base, MDM_CKPT=broken, EVAL_ROWS="base-k0,mdm-k0",
               EVAL_STEPS="32", EVAL_WORK_DIR=str(work), COMPASS_DATA_CACHE=str(tmp_path / "cache"),
               CUDA_VISIBLE_DEVICES="0",  # OpenCompass's runner then grants a row's one GPU; the model runs on the CPU
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(["bash", "scripts/eval_opencompass.sh", "gsm8k"], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 of 2 OpenCompass task(s) failed" in proc.stderr and "  mdm-k0-s32/gsm8k: no result" in proc.stderr
    assert "base-k0-s32/gsm8k" not in proc.stderr and "tasks failed in gsm8k" in proc.stderr
    (run,) = glob.glob(str(work / "gsm8k" / "*" / "summary"))
    proc = subprocess.run([sys.executable, "scripts/eval_report.py", str(work)], cwd=repo, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = (work / "report.md").read_text().splitlines()
    evaluation = os.path.relpath(os.path.dirname(run), work)
    (scored,) = [line for line in lines if line.startswith("| base-k0 | 32 | GSM8K | ")]
    assert scored.endswith(f"| {evaluation} | {base} |") and scored.split(" | ")[3] in ("0.0", "100.0")
    assert f"| mdm-k0 | 32 | GSM8K | failed | {evaluation} | {broken} |" in lines
