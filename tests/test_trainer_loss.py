"""The trainer's loss normalisation (batch x length, or the answer tokens of conditional data),
the validation NELBO per answer token, weight decay, and wandb offline, each against a truth
computed here from the reference loss or from the optimizer's behaviour."""
import os
import subprocess
import sys

import datasets
import pytest
import torch
from transformers import TrainingArguments, default_data_collator

import llada_cpt
import xdlm_trainer
from modeling_llada import LLaDAConfig, LLaDAModelLM
from xdlm_loss import autoregressive_loss, xdlm_loss

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB, MASK = 101, 100


def tiny_model(**overrides):
    torch.manual_seed(0)
    cfg = dict(d_model=32, n_heads=4, n_kv_heads=4, n_layers=2, mlp_hidden_size=48, vocab_size=VOCAB,
               embedding_size=VOCAB, max_sequence_length=64, mask_token_id=MASK)
    cfg.update(overrides)
    return LLaDAModelLM(LLaDAConfig(**cfg))


def make_trainer(tmp_path, method="xdm", fused=True, eval_rows=None, model=None, **training):
    xdlm_args = llada_cpt.XDLMArguments(training_method=method, fused_loss=fused and method != "ar", eval_mask_rates=3)
    assert xdlm_args.xdlm_k == (0.1 if method == "xdm" else None) and xdlm_args.stratified_t
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, seed=5,
                             remove_unused_columns=False, **training)
    eval_dataset = None if eval_rows is None else datasets.Dataset.from_list(eval_rows)
    return llada_cpt.XDLMTrainer(model=model or tiny_model(), args=args, eval_dataset=eval_dataset,
                                 data_collator=default_data_collator, xdlm_args=xdlm_args, mask_id=MASK)


def conditional_rows(prompt_lengths, L=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for p in prompt_lengths:
        ids = torch.randint(0, MASK, (L,), generator=g).tolist()
        rows.append({"input_ids": ids, "prompt_mask": [1] * p + [0] * (L - p)})
    return rows


class CorruptSpy:
    """Records every call of the trainer's corrupt: clean ids, alpha, keep and the noisy ids."""

    def __init__(self, monkeypatch):
        self.calls = []
        real = xdlm_trainer.corrupt

        def spy(clean_ids, alpha_t, k, mask_id, vocab_size, generator=None, prompt_mask=None):
            noisy = real(clean_ids, alpha_t, k, mask_id, vocab_size, generator=generator, prompt_mask=prompt_mask)
            self.calls.append((clean_ids, alpha_t, prompt_mask, noisy))
            return noisy

        monkeypatch.setattr(xdlm_trainer, "corrupt", spy)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("conditional", [True, False])
def test_training_loss_is_divided_by_answer_tokens_or_batch_times_length(tmp_path, monkeypatch, fused, conditional):
    """Conditional data: the summed loss over B L - sum of prompt lengths (the paper's code);
    unconditional data: over B L (LLaDA's pretraining)."""
    prompt_lengths = [3, 17, 9] if conditional else [0, 0, 0]
    rows = conditional_rows(prompt_lengths)
    batch = default_data_collator(rows)
    if not conditional:
        del batch["prompt_mask"]
    trainer = make_trainer(tmp_path, fused=fused)
    spy = CorruptSpy(monkeypatch)
    model = trainer.model.train()
    loss = trainer.compute_loss(model, batch)
    (clean, alpha, keep, noisy), = spy.calls
    with torch.no_grad():
        h = xdlm_loss(model(noisy).logits, noisy, clean, alpha, 0.1, MASK)
    B, L = clean.shape
    answer = torch.arange(L)[None, :] >= torch.tensor(prompt_lengths)[:, None]
    truth = h[answer].sum() / (B * L - sum(prompt_lengths))
    assert loss.item() == pytest.approx(truth.item(), rel=1e-5)
    if conditional:
        assert loss.item() != pytest.approx((h[answer].sum() / (B * L)).item(), rel=1e-2)


@pytest.mark.parametrize("method, fused", [("xdm", True), ("xdm", False), ("mdm", True), ("ar", False)])
def test_validation_loss_is_per_answer_token_over_the_whole_set(tmp_path, monkeypatch, method, fused):
    """Batches of very different answer lengths and a partial last batch: the reported NELBO
    (ar: NLL) is the summed loss of the whole set over its answer tokens, not a mean of batch
    means. A second evaluate() on the same trainer gives the same number (fixed noise)."""
    rows = conditional_rows([22, 21, 2, 3, 12])  # batches of 2: answers of 2 + 3, 22 + 21, 12 tokens
    trainer = make_trainer(tmp_path, method=method, fused=fused, eval_rows=rows, per_device_eval_batch_size=2)
    spy = CorruptSpy(monkeypatch)
    metrics = trainer.evaluate()
    name = "nll" if method == "ar" else "nelbo"
    model = trainer.model.eval()
    batch = default_data_collator(rows)
    answer = batch["prompt_mask"] == 0
    with torch.no_grad():
        if method == "ar":
            nll = autoregressive_loss(model(batch["input_ids"]).logits, batch["input_ids"], reduction="none")
            truth = nll[answer[:, 1:]].sum() / answer[:, 1:].sum()
        else:
            G = 3
            assert len(spy.calls) == 3 * G  # three batches, G mask rates each
            k = 0.1 if method == "xdm" else 0.0
            total = sum((xdlm_loss(model(noisy).logits, noisy, clean, alpha, k, MASK) * ~keep).sum()
                        for clean, alpha, keep, noisy in spy.calls)
            truth = total / G / answer.sum()
    assert metrics[f"eval_{name}"] == pytest.approx(truth.item(), rel=1e-5)
    assert metrics["eval_ppl_bound" if name == "nelbo" else "eval_ppl"] == pytest.approx(truth.exp().item(), rel=1e-5)
    assert trainer.evaluate()[f"eval_{name}"] == metrics[f"eval_{name}"]


def test_weight_decay_spares_every_norm_and_bias(tmp_path):
    """With zero gradients, one AdamW step changes only the decayed parameters: exactly the
    matrices (embedding, projections, head), never a norm weight (ln_f included) or a bias."""
    model = tiny_model(include_bias=True)
    trainer = make_trainer(tmp_path, model=model, weight_decay=0.1, learning_rate=0.5)
    optimizer = trainer.create_optimizer()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    matrices = {n for n, p in model.named_parameters() if p.dim() == 2}
    assert "model.transformer.ln_f.weight" in before and any(n.endswith(".bias") for n in before)
    assert changed == matrices


def test_report_to_wandb_runs_offline_without_a_login(tmp_path, text_file, llada_dir):
    """No API key, no netrc, no WANDB_MODE: training with --report_to wandb still runs, offline,
    in a project named after this repository (or WANDB_PROJECT), under --run_name, with its
    files in output_dir/wandb (or WANDB_DIR)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path / "home"), PYTHONPATH=ROOT)  # a home without ~/.netrc
    script = ("import llada_cpt, wandb; llada_cpt.main(); "
              "print('WANDB', wandb.run and (wandb.run.project, wandb.run.name, wandb.run.settings.mode), flush=True)")
    for project, wandb_dir in [(None, None), ("my-project", str(tmp_path / "elsewhere"))]:
        run_env = dict(env, **({"WANDB_PROJECT": project, "WANDB_DIR": wandb_dir} if project else {}))
        out = str(tmp_path / f"out-{project}")
        proc = subprocess.run([sys.executable, "-c", script, "--model_name_or_path", llada_dir, "--train_file", text_file,
                               "--block_size", "32", "--per_device_train_batch_size", "2", "--do_train", "--max_steps",
                               "2", "--logging_steps", "1", "--save_strategy", "no", "--output_dir", out,
                               "--report_to", "wandb", "--run_name", f"run-{project}"],
                              cwd=str(tmp_path), env=run_env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        seen = next(line for line in proc.stdout.splitlines() if line.startswith("WANDB "))
        assert seen == f"WANDB {(project or 'xdlm-llada', f'run-{project}', 'offline')}"
        runs = os.listdir(os.path.join(wandb_dir or out, "wandb"))
        assert any(r.startswith("offline-run-") for r in runs), runs
    assert not os.path.exists(tmp_path / "wandb")  # nothing left in the working directory


@pytest.fixture(scope="module")
def text_file(tmp_path_factory, corpus_texts):
    from local_data import write_jsonl

    return write_jsonl(str(tmp_path_factory.mktemp("data") / "train.jsonl"), [{"text": t} for t in corpus_texts[:20]])
