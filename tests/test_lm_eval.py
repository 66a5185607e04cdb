"""lm_eval_llada.py: lm-eval 0.4.13 end to end on the local tasks of tests/lm_eval_tasks (offline,
in-process, the tiny LLaDA-format checkpoint), against the adapter's own estimates, generations and
windows; settings refused before loading; the command line through lm_eval_llada.py."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import ROOT

TASKS = os.path.join(ROOT, "tests", "lm_eval_tasks")
SETTINGS = dict(mc_num=16, batch_size=4, device="cpu", steps=8, gen_length=16, block_length=16)


@pytest.fixture(scope="module")
def harness(llada_dir):
    from lm_eval_llada import HarnessDiffusionLM

    return HarnessDiffusionLM(pretrained=llada_dir, generate_batch_size=3, **SETTINGS)


def run_tasks(lm, tasks, monkeypatch):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    monkeypatch.chdir(ROOT)  # the tasks' data paths are relative to the repository
    return simple_evaluate(model=lm, tasks=tasks, log_samples=True,
                           task_manager=TaskManager(include_path=TASKS, include_defaults=False))


def request(kind, *args):
    from lm_eval.api.instance import Instance

    return Instance(kind, doc={}, arguments=args, idx=0)


def test_multiple_choice_accuracy_is_the_adapter_s_own_choice_per_item(harness, monkeypatch):
    from likelihood import estimate_texts

    res = run_tasks(harness, ["xdlm_tiny_mc"], monkeypatch)
    samples = res["samples"]["xdlm_tiny_mc"]
    assert len(samples) == 8
    correct = []
    for s in samples:
        doc = s["doc"]
        own = [estimate_texts(harness.model, harness.tokenizer, [(doc["context"], " " + choice)], mc_num=16,
                              batch_size=4)[0].log_likelihood for choice in doc["choices"]]
        assert [r[0] for r in s["filtered_resps"]] == pytest.approx(own, abs=1e-4)
        assert [r[1] for r in s["filtered_resps"]] == [False] * len(own)  # check_greedy off
        correct.append(float(np.argmax(own) == doc["gold"]))
        assert s["acc"] == correct[-1]
    assert res["results"]["xdlm_tiny_mc"]["acc,none"] == pytest.approx(np.mean(correct))


def test_generation_task_equals_each_prompt_generated_alone_and_cut_at_the_stop_strings(harness, monkeypatch):
    from generate import decode_completion, generate

    res = run_tasks(harness, ["xdlm_tiny_gen"], monkeypatch)
    samples = res["samples"]["xdlm_tiny_gen"]
    assert len(samples) == 5  # in batches of 3 with left padding
    for s in samples:
        ids = harness.tokenizer(s["doc"]["prompt"], return_tensors="pt")["input_ids"]
        out = generate(harness.model, ids, steps=8, gen_length=16, block_length=16, mask_id=harness.mask_id)
        alone = decode_completion(harness.tokenizer, out[0, ids.shape[1]:][:12]).split("\n")[0].split(")")[0]
        assert s["filtered_resps"][0] == alone


def test_stop_strings_cut_before_their_first_occurrence(harness):
    prompts = ["import", "def add(a, b):\n    return", "for i in range("]
    raw = harness.generate_until([request("generate_until", p, {"until": [], "max_gen_toks": 16}) for p in prompts])
    assert all(len(r) >= 8 for r in raw)
    stops = [r[5:7] for r in raw]  # strings the completions contain
    cut = harness.generate_until([request("generate_until", p, {"until": ["never there", stop]})
                                  for p, stop in zip(prompts, stops)])
    for r, stop, c in zip(raw, stops, cut):
        assert c == r[:r.find(stop)] and len(c) <= 5
    one = harness.generate_until([request("generate_until", prompts[0], {"until": stops[0]})])  # a bare string
    assert one == cut[:1]


def test_batched_equals_one_at_a_time(harness, monkeypatch):
    pairs = [("import", " os"), ("def f(x):\n    return", " x + 1"), ("for", " i in range(3):")]
    batched = harness.loglikelihood([request("loglikelihood", c, a) for c, a in pairs])
    alone = [harness.loglikelihood([request("loglikelihood", c, a)])[0] for c, a in pairs]
    assert [b[0] for b in batched] == pytest.approx([a[0] for a in alone], abs=1e-5)
    prompts = [request("generate_until", p, {"until": ["\n"]}) for p in ("x =", "class A:\n    def", "while")]
    batched = harness.generate_until(prompts)
    monkeypatch.setattr(harness, "generate_batch_size", 1)
    assert harness.generate_until(prompts) == batched


def test_rolling_loglikelihood_scores_every_token_once_given_the_window_before_it(harness, monkeypatch, corpus_texts):
    import lm_eval_llada
    from likelihood import estimate

    windows = []

    def recording(model, requests, **settings):
        windows.extend(requests)
        return estimate(model, requests, **settings)

    monkeypatch.setattr(lm_eval_llada, "estimate", recording)
    monkeypatch.setattr(harness, "max_length", 32)
    text = corpus_texts[3][:600]
    (total,) = harness.loglikelihood_rolling([request("loglikelihood_rolling", text)])
    tokens = harness.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(tokens) > 3 * 32 and len(windows) >= 4
    assert [t for _, answer in windows for t in answer] == tokens
    assert windows[0][0] == [harness.tokenizer.eos_token_id]  # no BOS in this tokenizer: EOS before the text
    at = len(windows[0][1])
    for context, answer in windows[1:]:
        assert len(context) + len(answer) == 32 and context == tokens[at - len(context):at]
        at += len(answer)
    own = estimate(harness.model, windows, mc_num=16, batch_size=4)
    assert total == pytest.approx(sum(e.log_likelihood for e in own), rel=1e-6)
    assert harness.loglikelihood_rolling([request("loglikelihood_rolling", "")]) == [0.0]


def test_is_greedy_is_llada_s_suffix_greedy_check(llada_dir):
    """check_greedy=True against a plain re-implementation of LLaDA's suffix_greedy_prediction: the
    answer's positions masked after the context, each step unmasks the single most confident one."""
    from lm_eval_llada import HarnessDiffusionLM

    lm = HarnessDiffusionLM(pretrained=llada_dir, check_greedy=True, **SETTINGS)
    context = lm.tokenizer("def add(a, b):")["input_ids"]
    seq = torch.tensor([context + [lm.mask_id] * 4])
    for _ in range(4):
        with torch.no_grad():
            logits = lm.model(seq).logits[0].float()
        logits[:, lm.mask_id] = -torch.inf
        conf, pred = logits.softmax(-1).max(-1)
        conf[seq[0] != lm.mask_id] = -1
        at = int(conf.argmax())
        seq[0, at] = pred[at]
    decoded = seq[0, len(context):].tolist()
    other = decoded[:3] + [(decoded[3] + 1) % 512]
    assert lm._greedy([(context, decoded), (context, other), ([], decoded)])[:2] == [True, False]
    (ll,) = lm.loglikelihood([request("loglikelihood", "def add(a, b):", " return")])
    assert isinstance(ll[1], bool)


def test_model_args_parse_as_on_the_command_line(llada_dir):
    from lm_eval.api.registry import get_model

    import lm_eval_llada  # noqa: F401  (registers the model)

    cls = get_model("xdlm_llada")
    assert cls.__name__ == "HarnessDiffusionLM"
    lm = cls.create_from_arg_string(f"pretrained={llada_dir},estimator=xdlm,k=0.1,cfg=0.5,mc_num=8,seed=7,steps=4,"
                                    "gen_length=8,block_length=8,cache=dual",
                                    {"batch_size": "4", "max_batch_size": None, "device": "cpu"})  # as lm-eval's CLI
    assert lm.estimator_settings == dict(estimator="xdlm", k=0.1, cfg=0.5, mc_num=8, batch_size=4, seed=7,
                                         draws_per_forward=64)
    assert (lm.sampler_settings.steps, lm.sampler_settings.k, lm.sampler_settings.cache) == (4, 0.1, "dual")
    masked = cls.create_from_arg_string(f"pretrained={llada_dir},k=0.1", {"device": "cpu"})
    assert masked.estimator_settings["k"] == 0.0 and masked.sampler_settings.k == 0.1


@pytest.mark.parametrize("args, match", [
    (dict(estimator="ar"), "estimator must be one of"),
    (dict(batch_size="auto"), r"batch_size \(lm-eval's --batch_size: draws per systematic group\) must be a positive "
                              "integer, got 'auto'"),
    (dict(mc_num=12, batch_size=8), r"mc_num \(12\) must be a multiple of batch_size \(8\)"),
    (dict(max_batch_size=16), "max_batch_size applies to lm-eval's --batch_size auto"),
    (dict(check_greedy=True, cfg=0.5), "check_greedy decodes with generate.py, which has no classifier-free guidance"),
    (dict(gen_length=10, block_length=4), r"gen_length \(10\) must be a positive multiple of block_length \(4\)"),
    (dict(stpes=8), "xdlm_llada model_args: unknown settings stpes; the sampler's are steps, gen_length"),
    (dict(dtype="float8"), "dtype 'float8' is not a torch dtype name"),
    (dict(device="cuda:0"), "device 'cuda:0': no GPU here"),
])
def test_bad_settings_are_refused_before_the_checkpoint_loads(args, match):
    from lm_eval_llada import HarnessDiffusionLM

    if args.get("device") == "cuda:0" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match=match):
        HarnessDiffusionLM(pretrained="/nonexistent/checkpoint", **args)


def test_generation_longer_than_gen_length_is_refused(harness):
    with pytest.raises(ValueError, match="asks for max_gen_toks=32 tokens but the sampler writes gen_length=16"):
        harness.generate_until([request("generate_until", "import", {"until": [], "max_gen_toks": 32})])


@pytest.mark.slow
def test_command_line_runs_the_local_tasks_through_lm_eval_llada_py_not_plain_lm_eval(llada_dir, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    args = ["--model", "xdlm_llada", "--device", "cpu", "--batch_size", "4", "--include_path", TASKS,
            "--tasks", "xdlm_tiny_mc,xdlm_tiny_gen", "--output_path", str(tmp_path / "out"),
            "--model_args", f"pretrained={llada_dir},mc_num=8,steps=8,gen_length=16,block_length=16"]
    run = subprocess.run([sys.executable, os.path.join(ROOT, "lm_eval_llada.py"), *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "|xdlm_tiny_mc " in run.stdout and "|acc " in run.stdout and "|exact_match|" in run.stdout
    plain = subprocess.run([os.path.join(os.path.dirname(sys.executable), "lm_eval"), *args], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=600)
    assert plain.returncode != 0 and "no model for this name found" in plain.stderr
