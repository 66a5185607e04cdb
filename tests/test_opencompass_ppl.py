"""OpenCompass's likelihood modes on the diffusion LM: DiffusionLM.get_ppl (PPL mode) and
get_loglikelihood (LL mode) are likelihood.estimate of the split OpenCompass means; OpenCompass's
PPLInferencer predicts the choice of lowest per-token bound, its LLInferencer the likeliest
continuation; the ARC-Challenge PPL config and its likelihood rows; bad estimator settings refused
before a model loads or when the config loads; (slow) OpenCompass runs the config and the report
shows the likelihood row."""
import csv
import glob
import json
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

from helpers import ROOT
from opencompass_configs import benchmarks

SETTINGS = dict(mc_num=16, mc_batch_size=8, seed=1234)  # small and cheap; literal seed
TEXTS = ["Question: Which is a mammal?\nAnswer: a whale", "def f(x):\n    return x + 1",
         "Question: What melts ice?\nAnswer: heat from the sun"]


def build(llada_dir, **kw):
    from opencompass.registry import MODELS

    sys.path.insert(0, ROOT)
    return MODELS.build(dict(type="opencompass_llada.DiffusionLM", path=llada_dir, max_seq_len=256,
                             **{"steps": 4, "gen_length": 16, "block_length": 16, **SETTINGS, **kw}))


def estimates(model, requests, **kw):
    """likelihood.estimate of (context ids, answer ids) requests with the test's settings."""
    import likelihood

    return likelihood.estimate(model.model, requests, mc_num=SETTINGS["mc_num"], batch_size=SETTINGS["mc_batch_size"],
                               seed=SETTINGS["seed"], **kw)


@pytest.mark.parametrize("kw, estimator", [({}, dict(estimator="masked")),
                                           (dict(k=0.1, estimator="xdlm"), dict(estimator="xdlm", k=0.1)),
                                           (dict(cfg=0.5), dict(estimator="masked", cfg=0.5))],
                         ids=["masked", "xdlm-k0.1", "cfg"])
def test_get_ppl_is_the_per_token_bound_of_the_tokens_after_mask_length(llada_dir, kw, estimator):
    model = build(llada_dir, **kw)
    ids = [model.tokenizer(t)["input_ids"] for t in TEXTS]  # the special tokens the tokenizer adds included
    whole = [-e.log_likelihood / len(i) for e, i in zip(estimates(model, [([], i) for i in ids], **estimator), ids)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ppl = model.get_ppl(TEXTS)  # PPLInferencer's call: no mask_length, the whole text, no context
    assert isinstance(ppl, np.ndarray) and ppl.tolist() == pytest.approx(whole, rel=1e-6)
    # guidance masks the context: with none it changes nothing, and says so (once)
    assert [str(w.message) for w in caught if "cfg" in str(w.message)] == (
        ["cfg=0.5 has no effect on a text scored without context (get_ppl without mask_length scores the whole "
         "text)"] if "cfg" in kw else [])
    for mask_length in ([3, 5, 1], [0, 0, 0]):
        split = [(i[:m], i[m:]) for i, m in zip(ids, mask_length)]
        truth = [-e.log_likelihood / len(answer) for e, (_, answer) in zip(estimates(model, split, **estimator), split)]
        assert model.get_ppl(TEXTS, mask_length=mask_length).tolist() == pytest.approx(truth, rel=1e-6)


def test_get_loglikelihood_is_the_continuations_summed_estimate_given_the_text_before_it(llada_dir):
    model = build(llada_dir)
    conts = [" a whale", "\n    return x + 1", " heat from the sun"]
    truth = []
    for text, cont in zip(TEXTS, conts):
        context = text[:-len(cont)]
        context_ids, whole = model.tokenizer(context)["input_ids"], model.tokenizer(text)["input_ids"]
        assert whole[:len(context_ids)] == context_ids  # these texts split cleanly at the continuation
        truth.append((context_ids, whole[len(context_ids):]))
    got = model.get_loglikelihood(TEXTS, conts)
    assert isinstance(got, np.ndarray)
    assert got.tolist() == pytest.approx([e.log_likelihood for e in estimates(model, truth)], rel=1e-6)
    assert (got < 0).all()  # a sum of log-probabilities, not a per-token NLL


@pytest.mark.parametrize("call, match", [
    (lambda m: m.get_ppl(TEXTS, mask_length=[1, 2]), "get_ppl: 2 mask lengths for 3 texts"),
    (lambda m: m.get_ppl(["a b"], mask_length=[99]), "get_ppl: mask_length\\[0\\] = 99 for a text of \\d+ tokens"),
    (lambda m: m.get_ppl(["a b"], mask_length=[-1]), "mask_length\\[0\\] = -1"),
    (lambda m: m.get_loglikelihood(TEXTS[:1], [" a fish"]), "text 0 must end with its continuation, ' a fish'"),
    (lambda m: m.get_loglikelihood(TEXTS[:1], [""]), "text 0 must end with its continuation, ''"),
    (lambda m: m.get_loglikelihood(TEXTS, [" x"]), "1 continuations for 3 texts"),
])
def test_bad_likelihood_requests_are_refused_by_name(llada_dir, call, match):
    with pytest.raises(ValueError, match=match):
        call(build(llada_dir))


@pytest.mark.parametrize("kw, match", [
    (dict(estimator="nelbo"), "DiffusionLM: estimator must be one of \\('masked', 'xdlm'\\), got 'nelbo'"),
    (dict(cfg=-1.0), "DiffusionLM: cfg \\(the guidance scale\\) must be a finite number >= 0, got -1.0"),
    (dict(mc_num=0), "DiffusionLM: mc_num must be a positive integer, got 0"),
    (dict(mc_num=12, mc_batch_size=8), "DiffusionLM: mc_num \\(12\\) must be a multiple of mc_batch_size \\(8\\)"),
    (dict(mc_batch_size=0), "DiffusionLM: mc_batch_size must be a positive integer, got 0"),
    (dict(seed=-3), "DiffusionLM: seed must be a non-negative integer, got -3"),
    (dict(estimator="xdlm", k=1.5), "k must lie in \\[0, 1\\)"),  # the sampler's check of the shared k
])
def test_bad_estimator_settings_are_refused_before_loading_the_model(kw, match, monkeypatch):
    import opencompass_llada

    monkeypatch.setattr(opencompass_llada, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(ValueError, match=match):
        opencompass_llada.DiffusionLM("/nonexistent/checkpoint", max_seq_len=512, **kw)


# ---------------------------------------------------------------------------- PPL mode in OpenCompass

ITEMS = [  # question, four choices, the key
    ("Which gas do plants take in?", ["oxygen", "carbon dioxide", "helium", "neon"], "B"),
    ("What is 2 + 2?", ["3", "4", "5", "22"], "B"),
    ("Which is a planet?", ["the Moon", "the Sun", "Mars", "Sirius"], "C"),
    ("Where do fish live?", ["in water", "in trees", "in sand", "in the sky"], "A"),
    ("def add(a, b): return", ["a + b", "a - b", "None", "print(a)"], "A"),
]


def arc_config(monkeypatch, **env):
    from mmengine.config import Config

    for var in ("EVAL_ROWS", "EVAL_STEPS", "LLADA_BASE", "MDM_CKPT", "XDLM_CKPT", "EVAL_BATCH_SIZE", "EVAL_CACHE",
                "EVAL_THRESHOLD", "EVAL_BLOCK_LENGTH", "EVAL_ESTIMATORS", "EVAL_CFG", "EVAL_MC_NUM"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return Config.fromfile(os.path.join(ROOT, "opencompass_configs", benchmarks.BENCHMARKS["arc_c"].config),
                           format_python_code=False)


def test_ppl_mode_predicts_the_choice_of_lowest_per_token_bound(llada_dir, tmp_path, monkeypatch):
    """OpenCompass's PPLInferencer over a local JSONL with the ARC-c config's own template and
    reader: its predictions are the argmin, per item, of our own per-choice estimates."""
    from opencompass.datasets import CustomDataset
    from opencompass.openicl.icl_inferencer import PPLInferencer
    from opencompass.openicl.icl_prompt_template import PromptTemplate
    from opencompass.openicl.icl_retriever import ZeroRetriever

    (dataset,) = arc_config(monkeypatch).datasets
    rows = [dict(question=q, textA=a, textB=b, textC=c, textD=d, answerKey=key) for q, (a, b, c, d), key in ITEMS]
    path = tmp_path / "arc.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = CustomDataset(path=str(path), reader_cfg=dataset.reader_cfg)
    model = build(llada_dir)
    template = PromptTemplate(template=dataset.infer_cfg.prompt_template.template)
    inferencer = PPLInferencer(model=model, batch_size=2, output_json_filepath=str(tmp_path / "out"))
    predictions = inferencer.inference(ZeroRetriever(data), prompt_template=template)

    texts = [[f"Question: {q}\nAnswer: {choice}" for choice in choices] for q, choices, _ in ITEMS]
    ids = [[model.tokenizer(t)["input_ids"] for t in item] for item in texts]
    flat = [i for item in ids for i in item]
    per_token = [-e.log_likelihood / len(i) for e, i in zip(estimates(model, [([], i) for i in flat]), flat)]
    per_token = np.array(per_token).reshape(len(ITEMS), 4)
    assert predictions == ["ABCD"[j] for j in per_token.argmin(1)]
    assert (per_token.argmin(1) != per_token.argmax(1)).all()  # lowest, not highest, wins: the test can tell
    saved = json.load(open(tmp_path / "out" / "predictions"))
    saved_ppl = [saved[str(i)][f"label: {c}"]["PPL"] for i in range(len(ITEMS)) for c in "ABCD"]
    assert saved_ppl == pytest.approx(per_token.ravel().tolist(), rel=1e-5)
    assert [saved[str(i)]["label: A"]["prompt"] for i in range(len(ITEMS))] == [item[0] for item in texts]


def test_ll_mode_predicts_the_option_whose_continuation_is_likeliest(llada_dir, tmp_path):
    """OpenCompass's LLInferencer as its WinoGrande config uses it: each option fills the blank, and
    the shared continuation after the blank (the "cont" column) is scored given that option."""
    from opencompass.datasets import CustomDataset
    from opencompass.openicl.icl_inferencer import LLInferencer
    from opencompass.openicl.icl_prompt_template import PromptTemplate
    from opencompass.openicl.icl_retriever import ZeroRetriever

    items = [("The cup fell off the table because the", ["cup", "table"], " was too close to the edge."),
             ("Anna gave Maria a book since", ["Anna", "Maria"], " had already read it twice."),
             ("The ice melted in the sun as", ["the ice", "the sun"], " was warm."),
             ("def f(x): return", ["x", "y"], " + 1")]
    rows = [dict(opt1=q + " " + a + c, opt2=q + " " + b + c, cont=c, answer="1") for q, (a, b), c in items]
    path = tmp_path / "wino.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = CustomDataset(path=str(path), reader_cfg=dict(input_columns=["opt1", "opt2"], output_column="answer"))
    model = build(llada_dir)
    inferencer = LLInferencer(model=model, batch_size=3, output_json_filepath=str(tmp_path / "out"))
    predictions = inferencer.inference(ZeroRetriever(data), prompt_template=PromptTemplate(
        template={1: "{opt1}", 2: "{opt2}"}))

    pairs = []
    for r in rows:
        for text in (r["opt1"], r["opt2"]):
            context_ids = model.tokenizer(text[:-len(r["cont"])])["input_ids"]
            whole = model.tokenizer(text)["input_ids"]
            assert whole[:len(context_ids)] == context_ids
            pairs.append((context_ids, whole[len(context_ids):]))
    ll = np.array([e.log_likelihood for e in estimates(model, pairs)]).reshape(len(items), 2)
    assert predictions == [1 + j for j in ll.argmax(1)]
    assert (ll.argmax(1) != ll.argmin(1)).all()


def test_the_arc_config_is_opencompass_arc_c_in_ppl_mode_on_the_likelihood_rows(monkeypatch, tmp_path):
    from opencompass.openicl.icl_inferencer import PPLInferencer

    folders = {}
    for var in ("LLADA_BASE", "MDM_CKPT", "XDLM_CKPT"):
        folders[var] = str(tmp_path / var)
        os.makedirs(folders[var])
        for name in ("config.json", "model.safetensors"):
            open(os.path.join(folders[var], name), "w").close()
    cfg = arc_config(monkeypatch, **folders)
    (dataset,) = cfg.datasets
    assert dataset.abbr == benchmarks.BENCHMARKS["arc_c"].dataset == "ARC-c" and dataset.name == "ARC-Challenge"
    assert dataset.infer_cfg.inferencer.type is PPLInferencer
    assert dataset.infer_cfg.prompt_template.template == {c: f"Question: {{question}}\nAnswer: {{text{c}}}"
                                                          for c in "ABCD"}
    # every checkpoint once with LLaDA's masked estimator and settings (base-k0 and base-k0.1 share one)
    assert [(m.abbr, m.path, m.estimator, m.k, m.cfg, m.mc_num, m.mc_batch_size, m.seed) for m in cfg.models] == [
        ("base-k0-ll-masked", folders["LLADA_BASE"], "masked", 0.0, 0.0, 128, 8, 1234),
        ("mdm-k0-ll-masked", folders["MDM_CKPT"], "masked", 0.0, 0.0, 128, 8, 1234),
        ("xdlm-k0.1-ll-masked", folders["XDLM_CKPT"], "masked", 0.0, 0.0, 128, 8, 1234)]
    assert all(m.type == "opencompass_llada.DiffusionLM" and "steps" not in m for m in cfg.models)
    cfg = arc_config(monkeypatch, **folders, EVAL_ESTIMATORS="masked,xdlm", EVAL_CFG="0.5", EVAL_MC_NUM="32")
    assert [(m.abbr, m.estimator, m.k, m.cfg, m.mc_num) for m in cfg.models] == [
        ("base-k0-ll-masked-cfg0.5-mc32", "masked", 0.0, 0.5, 32),
        ("mdm-k0-ll-masked-cfg0.5-mc32", "masked", 0.0, 0.5, 32),
        ("xdlm-k0.1-ll-masked-cfg0.5-mc32", "masked", 0.0, 0.5, 32),
        ("base-k0.1-ll-xdlm-cfg0.5-mc32", "xdlm", 0.1, 0.5, 32),  # the base model's XDLM bound at k = 0.1
        ("xdlm-k0.1-ll-xdlm-cfg0.5-mc32", "xdlm", 0.1, 0.5, 32)]  # (xdlm at k = 0 is the masked row)
    for m in cfg.models:
        assert benchmarks.parse_abbr(m.abbr)[1] is None  # a likelihood row: no step count
    (one,) = arc_config(monkeypatch, EVAL_ROWS="base-k0.1", EVAL_MC_NUM="1").models
    assert (one.abbr, one.path, one.mc_num, one.mc_batch_size) == ("base-k0.1-ll-masked-mc1", "GSAI-ML/LLaDA-8B-Base",
                                                                   1, 1)


@pytest.mark.parametrize("env, match", [
    (dict(EVAL_ESTIMATORS="nelbo"), "EVAL_ESTIMATORS='nelbo': estimator must be one of \\('masked', 'xdlm'\\)"),
    (dict(EVAL_ESTIMATORS=","), "EVAL_ESTIMATORS=',': estimator must be one of"),
    (dict(EVAL_CFG="-1"), "EVAL_CFG='-1': cfg \\(the guidance scale\\) must be a finite number >= 0"),
    (dict(EVAL_CFG="strong"), "EVAL_CFG='strong': cfg \\(the guidance scale\\) must be a finite number"),
    (dict(EVAL_MC_NUM="12"), "EVAL_MC_NUM='12': mc_num \\(12\\) must be a multiple of batch_size \\(8\\)"),
    (dict(EVAL_MC_NUM="0"), "EVAL_MC_NUM='0': mc_num must be a positive integer, got 0"),
    (dict(EVAL_MC_NUM="many"), "EVAL_MC_NUM='many': mc_num must be a positive integer, got 'many'"),
])
def test_bad_likelihood_settings_are_refused_when_the_config_loads(env, match, monkeypatch):
    with pytest.raises(ValueError, match=match):
        arc_config(monkeypatch, EVAL_ROWS="base-k0", **env)


def test_a_likelihood_abbr_parses_back_and_never_as_a_step_count():
    for row in benchmarks.ROWS:
        for estimator in ("masked", "xdlm"):
            for cfg, mc_num in ((0.0, 128), (0.5, 128), (2.0, 1), (0.0, 32)):
                mode = benchmarks.likelihood_mode(estimator, cfg, mc_num)
                assert mode.startswith(f"ll-{estimator}") and ("cfg" in mode) == (cfg > 0)
                assert ("-mc" in mode) == (mc_num != 128)
                assert benchmarks.parse_abbr(benchmarks.model_abbr(row, None, mode)) == (row, None, mode)
    assert benchmarks.parse_abbr("base-k0-s32") == ("base-k0", 32, "")  # generation rows as before


# ---------------------------------------------------------------------------- end to end

@pytest.mark.slow
def test_opencompass_runs_the_arc_config_offline_and_the_report_shows_its_likelihood_row(llada_dir, tmp_path):
    """`opencompass eval_arc_c_ppl.py --debug` on a local ARC-Challenge Dev file (OpenCompass's
    layout under COMPASS_DATA_CACHE), the tiny checkpoint as the base row; then eval_report.py."""
    import shutil

    repo = tmp_path / "repo"  # OpenCompass leaves folders where it runs
    os.makedirs(repo)
    for name in os.listdir(ROOT):
        if name.endswith(".py"):
            shutil.copy(os.path.join(ROOT, name), repo)
    for name in ("scripts", "opencompass_configs"):
        shutil.copytree(os.path.join(ROOT, name), repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    arc = tmp_path / "cache" / "data" / "ARC" / "ARC-c"
    os.makedirs(arc)
    with open(arc / "ARC-Challenge-Dev.jsonl", "w") as f:
        for n, (q, choices, key) in enumerate(ITEMS):
            f.write(json.dumps({"id": f"q{n}", "answerKey": key, "question": {
                "stem": q, "choices": [{"label": c, "text": t} for c, t in zip("ABCD", choices)]}}) + "\n")
    work = tmp_path / "work"
    env = dict(os.environ, PYTHONPATH=str(repo), LLADA_BASE=llada_dir, EVAL_ROWS="base-k0", EVAL_MC_NUM="16",
               COMPASS_DATA_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               CUDA_VISIBLE_DEVICES="0")  # OpenCompass's runner grants a row's one GPU; the model runs on the CPU
    proc = subprocess.run([sys.executable, "-m", "opencompass.cli.main", "opencompass_configs/eval_arc_c_ppl.py",
                           "-w", str(work / "arc_c"), "--debug"], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (pred_file,) = glob.glob(str(work / "arc_c" / "*" / "predictions" / "base-k0-ll-masked-mc16" / "ARC-c.json"))
    preds = json.load(open(pred_file))
    acc = 100 * sum(preds[str(i)]["prediction"] == key for i, (_, _, key) in enumerate(ITEMS)) / len(ITEMS)
    (summary,) = glob.glob(str(work / "arc_c" / "*" / "summary" / "summary_*.csv"))
    line = {r["dataset"]: r for r in csv.DictReader(open(summary))}["ARC-c"]
    assert line["metric"] == "accuracy" and float(line["base-k0-ll-masked-mc16"]) == pytest.approx(acc, abs=0.01)
    proc = subprocess.run([sys.executable, "scripts/eval_report.py", str(work)], cwd=repo, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = (work / "report.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| row | steps |"))
    column = [c.strip() for c in header.strip("|").split("|")].index("ARC-C (PPL)")
    row = next(line for line in lines if line.startswith("| base-k0 [ll-masked-mc16] | - |"))  # the scores' table
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[column] == f"{acc:.1f}" and cells[-1] == "no: a likelihood row (the paper reports generation)"
    assert re.search(r"\| base-k0 \[ll-masked-mc16\] \| - \| ARC-C \(PPL\) \| [\d.]+ \| arc_c/\d+_\d+ \| "
                     + re.escape(llada_dir), "\n".join(lines))
