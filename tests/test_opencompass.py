"""OpenCompass integration: the benchmark table (opencompass_configs/benchmarks.py) and the configs
it names, which load with OpenCompass's loader and hold the paper's rows x step counts (selectable);
the model wrapper generates whole batches, decodes as the paper's does and applies stop words, and
scripts/eval_tiny.sh runs OpenCompass end to end offline."""
import csv
import glob
import itertools
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
from opencompass_configs.benchmarks import BENCHMARKS, ROWS, STEPS, model_abbr, parse_abbr, sampler_mode



def model_folder(path, files=("config.json", "model.safetensors")):
    """A folder holding `files` (empty but for config.json's {}): what the checkpoint check looks at."""
    os.makedirs(path, exist_ok=True)
    for name in files:
        with open(os.path.join(path, name), "w") as f:
            f.write("{}" if name == "config.json" else "")
    return str(path)


@pytest.fixture
def ckpts(tmp_path):
    """The three rows' checkpoint variables, each naming a model folder."""
    return {var: model_folder(tmp_path / name) for var, name in
            [("LLADA_BASE", "base"), ("MDM_CKPT", "mdm"), ("XDLM_CKPT", "xdlm")]}


def load(name, monkeypatch, **env):
    from mmengine.config import Config

    for var in ("EVAL_ROWS", "EVAL_STEPS", "LLADA_BASE", "MDM_CKPT", "XDLM_CKPT", "EVAL_BATCH_SIZE", "EVAL_CACHE",
                "EVAL_THRESHOLD", "EVAL_BLOCK_LENGTH"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    file = BENCHMARKS[name]["config"] if name in BENCHMARKS else os.path.join("opencompass_configs", name)
    return Config.fromfile(os.path.join(ROOT, file), format_python_code=False)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_configs_hold_the_papers_four_rows_at_four_step_counts(name, monkeypatch, ckpts):
    cfg = load(name, monkeypatch, **ckpts)
    # the table's headline score is one OpenCompass will put in the summary: a dataset or group of the config
    headline_dataset, _ = BENCHMARKS[name]["headline"]
    groups = [g["name"] for g in cfg.get("summarizer", {}).get("summary_groups", [])]
    assert cfg.datasets and headline_dataset in [d["abbr"] for d in cfg.datasets] + groups
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
    (dict(EVAL_ROWS="base-k0", EVAL_STEPS="16"), "EVAL_STEPS='16': choose a comma-separated subset of 32, 64, 128, 256"),
    (dict(EVAL_ROWS="mdm-k0"), "EVAL_ROWS includes mdm-k0: set MDM_CKPT"),
    (dict(EVAL_ROWS="base-k0", EVAL_BATCH_SIZE="0"), "EVAL_BATCH_SIZE='0': must be a positive integer"),
    (dict(EVAL_CACHE="full"), "EVAL_CACHE='full': choose none, prefix or dual"),
    (dict(EVAL_THRESHOLD="high"), "EVAL_THRESHOLD='high': must be a probability in \\[0, 1\\]"),
    (dict(EVAL_THRESHOLD="1.5"), "EVAL_THRESHOLD='1.5': must be a probability"),
    (dict(EVAL_BLOCK_LENGTH="48"), "EVAL_BLOCK_LENGTH='48': must divide the gen length 256"),
    (dict(EVAL_BLOCK_LENGTH="4", EVAL_STEPS="32"), "EVAL_BLOCK_LENGTH='4'"),  # 64 blocks, 32 steps
])
def test_bad_row_or_step_selection_is_refused_by_name(env, match, monkeypatch):
    with pytest.raises(Exception, match=match):
        load("gsm8k", monkeypatch, **env)


def test_default_rows_are_the_runnable_ones_and_one_line_says_which(monkeypatch, capfd, ckpts):
    cfg = load("gsm8k", monkeypatch)  # a new user's first try: no environment at all
    assert {m.abbr.rsplit("-s", 1)[0] for m in cfg.models} == {"base-k0", "base-k0.1"}
    out = capfd.readouterr().out
    assert "rows: base-k0, base-k0.1 at steps 32,64,128,256; left out: mdm-k0 (set MDM_CKPT), xdlm-k0.1 (set XDLM_CKPT)" in out
    cfg = load("gsm8k", monkeypatch, MDM_CKPT=ckpts["MDM_CKPT"])
    assert {m.abbr.rsplit("-s", 1)[0] for m in cfg.models} == {"base-k0", "base-k0.1", "mdm-k0"}
    assert "left out: xdlm-k0.1 (set XDLM_CKPT)" in capfd.readouterr().out


@pytest.mark.parametrize("case, problem", [
    ("missing", "no such folder"),
    ("missing, relative", "no such folder"),  # not a hub id either
    ("a file", "a file, not a model folder"),
    ("no config", "a folder without config.json"),
    ("no weights", "a folder without weights \\(\\*.safetensors or pytorch_model\\*.bin\\)"),
    ("a shard missing", "its model.safetensors.index.json names shards that are missing: model-00002-of-00002"),
])
def test_a_checkpoint_that_is_no_model_folder_nor_hub_id_stops_the_config_naming_variable_and_path(
        case, problem, tmp_path, monkeypatch):
    files = {"a file": ["config.json", "model.safetensors"], "no config": ["model.safetensors"],
             "no weights": ["config.json", "tokenizer.json"],
             "a shard missing": ["config.json", "model-00001-of-00002.safetensors"]}
    if case in files:
        model_folder(tmp_path / "m", files[case])
    if case == "a shard missing":
        write_index(tmp_path / "m", "model.safetensors.index.json", 2)
    path = {"missing": "/no/such/folder", "missing, relative": "./no/such/folder",
            "a file": str(tmp_path / "m" / "config.json")}.get(case, str(tmp_path / "m"))
    with pytest.raises(ValueError, match=f"^MDM_CKPT={re.escape(repr(path))}: {problem}"):
        load("gsm8k", monkeypatch, EVAL_ROWS="base-k0,mdm-k0", EVAL_STEPS="32", MDM_CKPT=path)


def write_index(folder, name, shards):
    """A weight index, as transformers writes it, naming `shards` shard files."""
    files = [f"model-{i:05d}-of-{shards:05d}.safetensors" for i in range(1, shards + 1)]
    with open(os.path.join(folder, name), "w") as f:
        json.dump({"metadata": {}, "weight_map": {f"w{i}": file for i, file in enumerate(files)}}, f)


def test_every_bad_checkpoint_is_named_at_once_and_only_the_rows_chosen_are_checked(monkeypatch):
    with pytest.raises(ValueError, match="^MDM_CKPT='/no/mdm': no such folder.*; XDLM_CKPT='/no/xdlm': no such folder"):
        load("gsm8k", monkeypatch, EVAL_ROWS="mdm-k0,xdlm-k0.1", MDM_CKPT="/no/mdm", XDLM_CKPT="/no/xdlm")
    cfg = load("gsm8k", monkeypatch, EVAL_ROWS="base-k0", XDLM_CKPT="/no/xdlm")  # xdlm-k0.1 is not run
    assert {m.path for m in cfg.models} == {"GSAI-ML/LLaDA-8B-Base"}


def test_model_folders_and_hub_ids_load_and_one_line_names_each_checkpoint(tmp_path, monkeypatch, capfd):
    sharded = model_folder(tmp_path / "sharded", ["config.json", "model-00001-of-00002.safetensors",
                                                  "model-00002-of-00002.safetensors"])
    write_index(sharded, "model.safetensors.index.json", 2)
    model_folder(tmp_path / "bin", ["config.json", "pytorch_model.bin"])
    monkeypatch.chdir(tmp_path)
    cfg = load("gsm8k", monkeypatch, EVAL_STEPS="32", LLADA_BASE="someone/LLaDA-8B-Base", MDM_CKPT=sharded,
               XDLM_CKPT="bin")  # a relative folder: the config holds its absolute path
    assert {m.abbr: m.path for m in cfg.models} == {
        "base-k0-s32": "someone/LLaDA-8B-Base", "base-k0.1-s32": "someone/LLaDA-8B-Base",
        "mdm-k0-s32": sharded, "xdlm-k0.1-s32": str(tmp_path / "bin")}
    assert (f"OpenCompass checkpoints: LLADA_BASE=someone/LLaDA-8B-Base (hub id), MDM_CKPT={sharded} (model folder), "
            f"XDLM_CKPT={tmp_path / 'bin'} (model folder)") in capfd.readouterr().out


def test_an_accelerated_row_says_so_in_its_abbr_and_passes_its_mode(monkeypatch, ckpts):
    exact = load("mbpp", monkeypatch, EVAL_ROWS="xdlm-k0.1", EVAL_STEPS="32", XDLM_CKPT=ckpts["XDLM_CKPT"]).models[0]
    fast = load("mbpp", monkeypatch, EVAL_ROWS="xdlm-k0.1", EVAL_STEPS="32", XDLM_CKPT=ckpts["XDLM_CKPT"],
                EVAL_CACHE="dual", EVAL_THRESHOLD="0.9", EVAL_BLOCK_LENGTH="32").models[0]
    assert exact.abbr == "xdlm-k0.1-s32" and (exact.cache, exact.threshold, exact.block_length) == ("none", None, 256)
    assert fast.abbr == "xdlm-k0.1-s32-b32-dual-t0.9" and (fast.cache, fast.threshold, fast.block_length) == ("dual", 0.9, 32)
    prefix = load("mbpp", monkeypatch, EVAL_ROWS="base-k0", EVAL_STEPS="64", EVAL_CACHE="prefix").models[0]
    assert prefix.abbr == "base-k0-s64-prefix"


def test_an_abbr_parses_back_to_its_row_steps_and_mode_and_names_each_sampler_apart():
    seen = {}
    for row, steps, block, cache, threshold in itertools.product(ROWS, STEPS, (256, 32, 8), ("none", "prefix", "dual"),
                                                                 (None, 0.0, 0.9, 1.0, 1e-05)):
        mode = sampler_mode(block, cache, threshold)
        abbr = model_abbr(row, steps, mode)
        assert parse_abbr(abbr) == (row, steps, mode), abbr
        assert (mode == "") == (block == 256 and cache == "none" and threshold is None)  # only the paper's is unnamed
        assert seen.setdefault(abbr, (row, steps, block, cache, threshold)) == (row, steps, block, cache, threshold)
    for other in ("tiny-xdlm-k0.0", "base-k0.2-s32", "base-k0-s32-fast", "base-k0-sx", "gsm8k"):
        assert parse_abbr(other) is None, other


def test_the_table_lists_its_benchmarks_for_the_launcher_and_refuses_an_unknown_one(capsys):
    from opencompass_configs import benchmarks

    benchmarks.main([])
    listed = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [name for name, _ in listed] == list(BENCHMARKS)
    assert all(os.path.isfile(os.path.join(ROOT, config)) for _, config in listed)
    benchmarks.main(["mbpp", "gsm8k"])
    listed = capsys.readouterr().out.split()
    assert listed == ["mbpp", BENCHMARKS["mbpp"]["config"], "gsm8k", BENCHMARKS["gsm8k"]["config"]]
    with pytest.raises(SystemExit, match=f"unknown benchmark 'gsmk': choose from {', '.join(BENCHMARKS)}$"):
        benchmarks.main(["gsm8k", "gsmk"])


SEED_CONFIGS = sorted(os.path.basename(p) for p in glob.glob(f"{ROOT}/opencompass_configs/llada_base_gen_*.py"))


def test_the_seed_readmes_five_config_names_are_there():
    names = sorted(["gsm8k", "math", "humaneval", "mbpp", "bbh"])
    assert SEED_CONFIGS == [f"llada_base_gen_{n}_length256_block256.py" for n in names]


@pytest.mark.parametrize("seed_config", SEED_CONFIGS)
def test_the_seed_readmes_config_names_are_our_configs(seed_config, monkeypatch, ckpts):
    name = re.fullmatch(r"llada_base_gen_(\w+?)_length256_block256\.py", seed_config).group(1)
    seed = load(seed_config, monkeypatch, **ckpts)
    ours = load(name, monkeypatch, **ckpts)
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
    assert (calls[0]["cache"], calls[0]["threshold"], calls[0]["block_length"]) == ("dual", 0.9, 8)


@pytest.mark.parametrize("kw, match", [
    (dict(steps=3), "steps \\(3\\) must be a positive multiple"),
    (dict(cache="full"), "cache must be one of"),
    (dict(temperature=float("nan")), "temperature must be >= 0 and finite"),
    (dict(sampler="ancestral", cache="dual"), "cache and threshold apply to sampler='confidence' only"),
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


def eval_opencompass(tmp_path, *benchmarks, **settings):
    """scripts/eval_opencompass.sh BENCHMARK... with `settings` its only ones, offline, into tmp_path/work, run
    from a copy of the repository: OpenCompass writes tmp/ and .cache/dataset_size.json (the sizes it splits
    datasets by) into the folder it runs in, and this test's tiny GSM8K must not be remembered by the real one."""
    repo = shutil.copytree(ROOT, tmp_path / "repo", ignore=shutil.ignore_patterns(
        ".*", "outputs", "checkpoints", "docs", "tests", "__pycache__"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVAL_", "LLADA_BASE", "MDM_CKPT", "XDLM_CKPT"))}
    env.update(PYTHON=sys.executable, EVAL_WORK_DIR=str(tmp_path / "work"), **settings)
    return subprocess.run(["bash", "scripts/eval_opencompass.sh", *benchmarks], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_eval_opencompass_stops_at_once_on_a_mistyped_checkpoint(tmp_path):
    """Issue 24's reproduction: it used to run base-k0, fail mdm-k0 on its own, and exit 0."""
    proc = eval_opencompass(tmp_path, "gsm8k", MDM_CKPT="/no/such/folder", EVAL_ROWS="base-k0,mdm-k0",
                            EVAL_STEPS="32")
    assert proc.returncode != 0
    assert proc.stderr.splitlines() == [
        "opencompass_configs/eval_gsm8k.py: MDM_CKPT='/no/such/folder': no such folder; give a model folder "
        "(config.json and weights) or a hub id (owner/name)"]
    assert not (tmp_path / "work").exists()  # no row ran


@pytest.mark.slow
def test_eval_opencompass_exits_non_zero_naming_the_task_that_failed(tmp_path):
    """A row whose checkpoint passes the check but does not load: OpenCompass runs it, its task fails,
    OpenCompass exits 0; the script must not."""
    for split in ("train", "test"):  # GSM8K where OpenCompass looks for it, offline
        os.makedirs(tmp_path / "data" / "data" / "gsm8k", exist_ok=True)
        with open(tmp_path / "data" / "data" / "gsm8k" / f"{split}.jsonl", "w") as f:
            f.write(json.dumps({"question": "Tom has 3 apples and eats 1. How many are left?",
                                "answer": "3 - 1 = 2\n#### 2"}) + "\n")
    broken = model_folder(tmp_path / "broken")  # config.json "{}" and an empty model.safetensors
    # models.py asks one GPU per task; OpenCompass's runner counts those CUDA_VISIBLE_DEVICES names
    proc = eval_opencompass(tmp_path, "gsm8k", MDM_CKPT=broken, EVAL_ROWS="mdm-k0", EVAL_STEPS="32",
                            COMPASS_DATA_CACHE=str(tmp_path / "data"), CUDA_VISIBLE_DEVICES="0")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    (evaluation,) = glob.glob(str(tmp_path / "work" / "gsm8k" / "*" / "configs"))
    failed = [line for line in proc.stderr.splitlines() if line.startswith("failed: ")]
    assert failed == [f"failed: {os.path.dirname(evaluation)}: mdm-k0-s32/gsm8k: no result "
                      f"(see {os.path.join(os.path.dirname(evaluation), 'logs')})"]
    assert proc.stderr.splitlines()[-1].startswith("eval_opencompass: tasks failed in gsm8k")
