"""OpenCompass integration: the five benchmark configs load with OpenCompass's loader, the
model wrapper generates whole batches with stop words, and scripts/eval_tiny.sh runs
OpenCompass end to end offline."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = {"gsm8k": 1, "math": 1, "humaneval": 1, "mbpp": 1, "bbh": 27}


def load(name, monkeypatch, **env):
    from mmengine.config import Config

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return Config.fromfile(os.path.join(ROOT, "opencompass_configs", f"eval_{name}.py"), format_python_code=False)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_configs_load_and_compare_base_k0_with_xdlm_k01_at_32_steps(name, monkeypatch):
    cfg = load(name, monkeypatch, LLADA_BASE="/models/base", XDLM_CKPT="/models/xdlm")
    assert len(cfg.datasets) == BENCHMARKS[name]
    (base, xdlm) = cfg.models
    assert (base.path, base.k, xdlm.path, xdlm.k) == ("/models/base", 0.0, "/models/xdlm", 0.1)
    for m in cfg.models:
        assert m.type == "opencompass_llada.DiffusionLM"
        assert (m.steps, m.gen_length, m.block_length, m.temperature) == (32, 256, 256, 0.0)
    shots = {"gsm8k": "gsm8k_gen_17d0dc", "math": "math_4shot_base_gen_db136b", "humaneval": "humaneval_gen_8e312c",
             "mbpp": "sanitized_mbpp_gen_742f0c", "bbh": "bbh_gen_98fba6"}[name]
    assert shots in open(os.path.join(ROOT, "opencompass_configs", f"eval_{name}.py")).read()
    if name == "mbpp":
        assert cfg.datasets[0]["infer_cfg"]["inferencer"]["stopping_criteria"] == ["[DONE]"]


def test_wrapper_generates_batches_and_applies_stop_words(llada_dir, monkeypatch):
    sys.path.insert(0, ROOT)
    from opencompass.registry import MODELS

    import opencompass_llada

    model = MODELS.build(dict(type="opencompass_llada.DiffusionLM", path=llada_dir, max_seq_len=256, steps=4,
                              gen_length=16, block_length=16, k=0.1))
    assert isinstance(model, opencompass_llada.DiffusionLM)
    calls = []
    real = opencompass_llada.generate
    monkeypatch.setattr(opencompass_llada, "generate", lambda *a, **k: calls.append(a[1].shape) or real(*a, **k))
    prompts = ["def f(x):", "import os\nprint(", "class A:\n    pass\n\n\nclass B(A):"]
    outs = model.generate(prompts, max_out_len=16)
    assert len(outs) == 3 and all(isinstance(o, str) for o in outs)
    assert len(calls) == 1 and calls[0][0] == 3  # one batched call, not one per prompt
    assert model.get_token_len("def f(x):") == len(model.tokenizer("def f(x):")["input_ids"])

    # stop words: cut before a stop word, or keep it for those the scorer needs ([DONE])
    monkeypatch.setattr(opencompass_llada, "decode_completion", lambda tok, ids: "x = 1\n[DONE]\ny = 2\nQuestion: z")
    assert model.generate(["a"], 16, stopping_criteria=["[DONE]"]) == ["x = 1\n[DONE]"]
    assert model.generate(["a"], 16, stopping_criteria=["Question"]) == ["x = 1\n[DONE]\ny = 2\n"]


def test_wrapper_rejects_settings_it_would_ignore(llada_dir):
    import opencompass_llada

    with pytest.raises(ValueError, match="generation_kwargs"):
        opencompass_llada.DiffusionLM(llada_dir, generation_kwargs={"do_sample": True})
    with pytest.raises(ValueError, match="max_seq_len \\(128\\) must exceed gen_length \\(256\\)"):
        opencompass_llada.DiffusionLM(llada_dir, max_seq_len=128)


def test_eval_tiny_runs_opencompass_offline_and_prints_a_numeric_summary(llada_dir, tmp_path):
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(["bash", "scripts/eval_tiny.sh", llada_dir, str(tmp_path / "work")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    table = [line for line in proc.stdout.splitlines() if line.startswith("stdlib-next-line")]
    assert table, proc.stdout[-3000:]
    scores = table[0].split()[-2:]
    assert all(0.0 <= float(s) <= 100.0 for s in scores)
