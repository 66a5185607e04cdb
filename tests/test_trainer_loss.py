"""The trainer's loss normalisation (batch x length, or the answer tokens of conditional data),
the validation NELBO per answer token, weight decay, and wandb offline, each against a truth
computed here from the reference loss or from the optimizer's behaviour."""
import math
import os
from types import SimpleNamespace

import datasets
import pytest
import torch
from transformers import TrainingArguments, default_data_collator

import llada_cpt
import xdlm_trainer
from helpers import TINY_SHAPE, tiny_model
from xdlm_loss import autoregressive_loss, corrupt, xdlm_loss

VOCAB, MASK = TINY_SHAPE["vocab_size"], TINY_SHAPE["mask_token_id"]


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


@pytest.mark.parametrize("stratified", [True, False])
def test_training_noise_continues_from_a_checkpoint_and_differs_across_ranks_and_micro_steps(
        tmp_path, monkeypatch, stratified):
    """Each process draws t and the corruption from its own generator, seeded by (seed, rank): a
    trainer that loads a checkpoint's RNG states draws next exactly what the trainer that saved them
    draws next, while micro-steps and ranks draw other noise. (Two processes for real, and kills at
    any moment: test_resume's slow tests.)"""
    rows = conditional_rows([0, 0])
    batch = {"input_ids": default_data_collator(rows)["input_ids"]}
    monkeypatch.setattr(TrainingArguments, "world_size", property(lambda self: 2))
    spy = CorruptSpy(monkeypatch)

    def trainer_of(rank):
        monkeypatch.setattr(TrainingArguments, "process_index", property(lambda self: rank))
        trainer = make_trainer(tmp_path / f"rank{rank}", gradient_accumulation_steps=2)
        trainer.xdlm_args.stratified_t = stratified
        return trainer

    def draw(trainer, step, micro_steps=(0, 1)):
        trainer.state.global_step = step
        out = []
        for _ in micro_steps:
            trainer.compute_loss(trainer.model.train(), batch)
            _, alpha, _, noisy = spy.calls[-1]
            out.append((1 - alpha, noisy))
        return out

    first = trainer_of(0)
    drawn = draw(first, 0) + draw(first, 1)
    first._save_rng_state(str(tmp_path))
    after = draw(first, 2)
    resumed = trainer_of(0)
    resumed._load_rng_state(str(tmp_path))
    assert all(torch.equal(a, b) for x, y in zip(draw(resumed, 2), after) for a, b in zip(x, y))
    other_rank = draw(trainer_of(1), 0)
    noisy = [n for _, n in drawn + after + other_rank]
    for i in range(len(noisy)):
        for j in range(i + 1, len(noisy)):
            assert not torch.equal(noisy[i], noisy[j]), (i, j)


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


def test_fused_loss_applies_scale_logits(tmp_path):
    """LLaDA's scale_logits option feeds the output head hidden / sqrt(d_model). With it on, the
    trainer's fused loss equals xdlm_loss of logits formed here from the final hidden states,
    and differs from the loss without the scaling."""
    model = tiny_model(scale_logits=True, init_std=0.5)  # logits large enough for the scaling to matter
    trainer = make_trainer(tmp_path, model=model, fused=True)
    ids = torch.randint(0, MASK, (2, 24), generator=torch.Generator().manual_seed(3))
    p_mask = torch.tensor([0.3, 0.8])
    with torch.no_grad():
        fused = trainer.noised_loss(model, ids, None, p_mask, torch.Generator().manual_seed(1), per_sample=True)
        noisy = corrupt(ids, 1 - p_mask, 0.1, MASK, VOCAB, generator=torch.Generator().manual_seed(1))
        hidden = model(input_ids=noisy, return_hidden=True).last_hidden_state
        head = model.output_head_weight

        def loss(logits):
            return xdlm_loss(logits, noisy, ids, 1 - p_mask, 0.1, MASK).sum(1)

        scaled, plain = loss(hidden / math.sqrt(TINY_SHAPE["d_model"]) @ head.T), loss(hidden @ head.T)
    torch.testing.assert_close(fused, scaled, rtol=1e-5, atol=1e-5)
    assert ((scaled - plain).abs() / plain).min() > 0.05


def wandb_defaults(monkeypatch, tmp_path, report_to=("wandb",), netrc=None, **env):
    """The WANDB_* variables set_wandb_defaults leaves, starting from `env` alone (no other
    WANDB_* variable, a home without ~/.netrc unless `netrc` gives its text). It runs on a
    copy of the environment, so nothing it sets outlives the test."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k != "NETRC"}
    environ.update(HOME=str(tmp_path / "home"), **env)
    if netrc is not None:
        (tmp_path / "netrc").write_text(netrc)
        environ["NETRC"] = str(tmp_path / "netrc")
    monkeypatch.setattr(os, "environ", environ)
    out = tmp_path / "out"
    xdlm_trainer.set_wandb_defaults(SimpleNamespace(report_to=list(report_to), output_dir=str(out)))
    return {k: v for k, v in environ.items() if k.startswith("WANDB_")}, out


def test_wandb_without_a_login_logs_offline_into_the_output_folder(monkeypatch, tmp_path):
    """No API key, no netrc entry, no WANDB_MODE: offline, in a project named after this
    repository, with the run's files in output_dir (created), not in the working directory."""
    env, out = wandb_defaults(monkeypatch, tmp_path)
    assert env == {"WANDB_PROJECT": "xdlm-llada", "WANDB_DIR": str(out), "WANDB_MODE": "offline"}
    assert out.is_dir()


def test_wandb_settings_the_user_made_are_kept(monkeypatch, tmp_path):
    elsewhere = str(tmp_path / "elsewhere")
    env, _ = wandb_defaults(monkeypatch, tmp_path, WANDB_PROJECT="my-project", WANDB_DIR=elsewhere)
    assert env == {"WANDB_PROJECT": "my-project", "WANDB_DIR": elsewhere, "WANDB_MODE": "offline"}
    env, _ = wandb_defaults(monkeypatch, tmp_path, WANDB_MODE="disabled")
    assert env["WANDB_MODE"] == "disabled"


@pytest.mark.parametrize("login", [dict(WANDB_API_KEY="k" * 40),
                                   dict(netrc="machine api.wandb.ai\n  login user\n  password secret\n"),
                                   dict(WANDB_BASE_URL="https://wandb.example.org",
                                        netrc="machine wandb.example.org login user password secret\n")])
def test_wandb_with_a_login_is_left_to_log_live(monkeypatch, tmp_path, login):
    env, _ = wandb_defaults(monkeypatch, tmp_path, **login)
    assert "WANDB_MODE" not in env and env["WANDB_PROJECT"] == "xdlm-llada"


def test_wandb_defaults_only_with_report_to_wandb(monkeypatch, tmp_path):
    env, out = wandb_defaults(monkeypatch, tmp_path, report_to=("none",))
    assert env == {} and not out.exists()


def test_loss_curve_shows_the_raw_losses_their_running_mean_and_the_validation_points(tmp_path, monkeypatch):
    import matplotlib.axes

    real_plot, drawn = matplotlib.axes.Axes.plot, {}

    def plot(self, *args, label=None, **kwargs):
        drawn[label] = [list(map(float, a)) for a in args if not isinstance(a, str)]
        return real_plot(self, *args, label=label, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", plot)
    g = torch.Generator().manual_seed(0)
    losses = (5 - torch.arange(60) / 30 + torch.rand(60, generator=g)).tolist()
    history = [{"step": i + 1, "loss": x} for i, x in enumerate(losses)]
    history += [{"step": 30, "eval_nelbo": 4.0, "eval_loss": 9.0}, {"step": 60, "eval_nelbo": 3.5}]
    path = tmp_path / "loss_curve.png"
    xdlm_trainer.plot_loss_curve(history, str(path), eval_key="eval_nelbo", window=7)
    assert path.stat().st_size > 1000
    assert drawn["training loss (logged)"] == [list(range(1, 61)), losses]
    steps, mean = drawn["running mean over 7 logged steps"]
    want = [sum(losses[max(0, i - 6):i + 1]) / len(losses[max(0, i - 6):i + 1]) for i in range(60)]
    assert steps == list(range(1, 61)) and mean == pytest.approx(want, rel=1e-12)
    assert drawn["validation nelbo"] == [[30, 60], [4.0, 3.5]]
