"""scripts/tradeoff_tiny.py: its generation metrics (the judge's perplexity; the sample entropy of
scripts/experiment_common.py) against hand-computed values, and a reduced end-to-end run (every
stage, a few steps) that writes finite numbers in every cell."""
import csv
import json
import math
import os
import subprocess
import sys
import types

import pytest
import torch

import data
import experiment_common
import llada_cpt
import tiny_report
import tradeoff_tiny
from experiment_common import sample_entropy
from helpers import ROOT, run_main


class BigramJudge(torch.nn.Module):
    """An autoregressive 'judge' with known probabilities: p(next | previous token) = table[previous]."""

    def __init__(self, table):
        super().__init__()
        self.table = table

    def forward(self, input_ids):
        return types.SimpleNamespace(logits=self.table[input_ids].log())


def test_generative_perplexity_and_entropy_match_hand_computed_values():
    # vocabulary {0, 1, 2}; from 0 the judge predicts 1 with p 0.5, from 1 it predicts 2 with p 0.25, ...
    table = torch.tensor([[0.25, 0.5, 0.25],
                          [0.5, 0.25, 0.25],
                          [0.1, 0.1, 0.8]])
    prompt = torch.tensor([[0], [2]])
    completion = torch.tensor([[1, 2, 2], [2, 2, 2]])
    # row 0: p(1|0) p(2|1) p(2|2) = 0.5, 0.25, 0.8; row 1: p(2|2) three times = 0.8
    nll = -(math.log(0.5) + math.log(0.25) + math.log(0.8) + 3 * math.log(0.8)) / 6
    assert math.isclose(tradeoff_tiny.generative_perplexity(BigramJudge(table), prompt, completion),
                        math.exp(nll), rel_tol=1e-6)
    # row 0: frequencies 1/3, 2/3; row 1: a single token, entropy 0
    h0 = -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3))
    assert math.isclose(sample_entropy(completion), (h0 + 0.0) / 2, rel_tol=1e-9)
    # four distinct tokens in a row of four: log 4, the maximum
    assert math.isclose(sample_entropy(torch.tensor([[3, 1, 0, 2]])), math.log(4), rel_tol=1e-9)


def test_judge_sees_only_the_past():
    """The token at position i is scored from tokens before it: changing a later completion
    token leaves the earlier tokens' perplexity unchanged."""
    table = torch.tensor([[0.2, 0.8], [0.6, 0.4]])
    judge = BigramJudge(table)
    prompt = torch.tensor([[1]])
    one = tradeoff_tiny.generative_perplexity(judge, prompt, torch.tensor([[0]]))
    assert math.isclose(one, 1 / 0.6, rel_tol=1e-6)  # p(0 | 1): scored from the prompt's token
    for later in (0, 1):
        two = tradeoff_tiny.generative_perplexity(judge, prompt, torch.tensor([[0, later]]))
        # two tokens: 2 log ppl = -log p(0 | 1) - log p(later | 0); the first token's part is
        # the same whatever token follows it
        first = 2 * math.log(two) + math.log(table[0, later].item())
        assert math.isclose(first, math.log(one), rel_tol=1e-6), later


def test_a_stage_counts_as_trained_once_its_trainer_ran_to_the_end(tmp_path, monkeypatch):
    """A stage whose model.safetensors a kill cut short (no trainer_state.json, which llada_cpt.py
    writes after the model and its tokenizer) is trained again; a finished one is reused."""
    launched = []

    def record(cmd, cwd, **kwargs):
        launched.append(cmd[cmd.index("--output_dir") + 1])
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(experiment_common, "subprocess", types.SimpleNamespace(run=record))
    stage_files = {"cut_short": ("model.safetensors",), "finished": ("model.safetensors", "trainer_state.json")}
    for name, files in stage_files.items():
        (tmp_path / name).mkdir()
        for file in files:
            (tmp_path / name / file).write_text("")
    args = types.SimpleNamespace(out=str(tmp_path), tiny_dir=str(tmp_path / "tiny"), block_size=8, batch_size=2,
                                 learning_rate=1e-3, warmup_steps=1)
    for name in ("cut_short", "finished"):
        assert experiment_common.train_stage(args, name, "mdm", 2) == str(tmp_path / name)
    assert launched == [str(tmp_path / "cut_short")]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_learning_rate_is_refused_before_anything_is_written(tmp_path, capsys, monkeypatch, value):
    def no_stage(*args, **kwargs):
        raise AssertionError("a stage ran")

    monkeypatch.setattr(tradeoff_tiny, "train_stage", no_stage)
    (tmp_path / "tiny" / "model").mkdir(parents=True)
    (tmp_path / "tiny" / "model" / "config.json").write_text("{}")
    out = tmp_path / "tradeoff"
    argv = ["--out", str(out), "--tiny_dir", str(tmp_path / "tiny"), f"--learning_rate={value}"]
    code, _, stderr = run_main(tradeoff_tiny.main, argv, capsys)
    assert code == 2 and f"argument --learning_rate: must be a finite number, got {value!r}" in stderr, stderr
    assert not out.exists()  # no settings.json to block the corrected command


@pytest.mark.slow
def test_reduced_tradeoff_run_writes_finite_results(tmp_path, capsys, monkeypatch):
    tiny = str(tmp_path / "tiny")
    env = dict(os.environ, PYTHON=sys.executable)
    subprocess.run([sys.executable, "scripts/make_tiny.py", "--out", tiny, "--corpus_bytes", "400000"],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    out = str(tmp_path / "tradeoff")

    # The script's main in this process, and its training stages too: each stage's command line
    # goes to llada_cpt.main here instead of a new Python (the scripts launch the trainer for real
    # in test_training.py and test_fig1.py).
    def run_in_process(cmd, cwd, **kwargs):
        assert cmd[:2] == [sys.executable, os.path.join(ROOT, "llada_cpt.py")] and cwd == ROOT, cmd
        llada_cpt.main(cmd[2:])
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(experiment_common, "subprocess", types.SimpleNamespace(run=run_in_process))
    args = ["--out", out, "--tiny_dir", tiny, "--base_steps", "3", "--continue_steps", "2", "--judge_steps", "2",
            "--batch_size", "4", "--block_size", "32", "--eval_blocks", "8", "--prompts", "4", "--prompt_length", "8",
            "--gen_length", "8", "--steps", "2,8"]
    code, stdout, stderr = run_main(tradeoff_tiny.main, args, capsys)
    assert code == 0, stdout[-3000:] + stderr[-3000:]
    assert stdout.count("=== training") == 5
    with open(os.path.join(out, "results.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 * 2  # base, base at k = 0.1, mdm, xdm, xdm at k = 0.5; two step counts
    assert {r["model"] for r in rows} == {"base", "base (k=0.1 sampler)", "mdm", "xdm", "xdm (k=0.5)"}
    for r in rows:
        for key in ("nelbo", "gen_ppl", "entropy"):
            assert math.isfinite(float(r[key])) and float(r[key]) >= 0, (key, r)
    assert os.path.getsize(os.path.join(out, "tradeoff.png")) > 1000
    assert "| xdm |" in open(os.path.join(out, "results.md")).read()
    # a rerun reuses every finished stage: no training, no generation
    code, stdout, _ = run_main(tradeoff_tiny.main, args, capsys)
    assert code == 0 and "=== training" not in stdout and "written:" in stdout
    # ... and refuses to mix stages made with other settings
    code, _, stderr = run_main(tradeoff_tiny.main, args + ["--continue_steps", "3"], capsys)
    assert code == 2 and "--continue_steps 2 -> 3" in stderr

    # The report's NELBO is the trainer's evaluation on a seeded random sample of validation
    # blocks (not the first ones), the same on every call; the unigram model scores those blocks.
    sample = []
    for run_dir in ("eval_a", "eval_b"):
        metrics, trainer = experiment_common.validation_nelbo(os.path.join(out, "base"), tiny,
                                                              str(tmp_path / run_dir), "mdm", block_size=32,
                                                              max_eval_samples=8)
        assert math.isfinite(metrics["eval_nelbo"])
        sample.append(trainer.eval_dataset["input_ids"])
    assert sample[0] == sample[1]
    tok = trainer.processing_class
    with open(os.path.join(tiny, "valid.jsonl")) as f:
        texts = [json.loads(line)["text"] for line in f]
    every_block = data.pack_texts({"text": texts}, tok, "text", 32, tok.eos_token_id)["input_ids"]
    assert len(every_block) > 8 and all(b in every_block for b in sample[0]) and sample[0] != every_block[:8]


def test_unigram_model_is_add_one_smoothed_training_frequencies(tmp_path, tokenizer):
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"text": "import os"}) + "\n" + json.dumps({"text": "import os"}) + "\n")
    log_p = tiny_report.unigram_log_probs(tokenizer, str(train))
    n = len(tokenizer("import os", add_special_tokens=False)["input_ids"])
    total = 2 * (n + 1) + len(tokenizer) - 1  # two texts of n tokens + eos; one extra count per non-mask token
    eos, mask = tokenizer.eos_token_id, tokenizer.mask_token_id
    assert math.isclose(log_p[eos].exp().item(), 3 / total, rel_tol=1e-12)
    assert log_p[mask].item() == -math.inf
    unseen = next(i for i in range(len(tokenizer)) if i not in (eos, mask) and log_p[i].exp().item() < 1.5 / total)
    assert math.isclose(log_p[unseen].exp().item(), 1 / total, rel_tol=1e-12)
    assert math.isclose(log_p.exp().sum().item(), 1.0, rel_tol=1e-12)
    assert math.isclose(tiny_report.unigram_cross_entropy(log_p, [[eos, unseen]]),
                        -(math.log(3 / total) + math.log(1 / total)) / 2, rel_tol=1e-12)
