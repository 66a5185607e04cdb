"""The training objectives and the Trainer that optimises them (used by llada_cpt.py).

OBJECTIVES holds, per --training_method, its mixing ratio k, causality, validation metric
names, whether the fused loss applies, and its loss: a new method is one entry plus its loss
function. XDLMTrainer draws the training noise and normalises the loss as the paper's code.
What a run logs besides its metrics is here too: wandb's defaults and loss_curve.png."""
import logging
import math
import os
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from transformers import Trainer

from checkpoints import CheckpointingMixin
from modeling_llada import LLaDAModelLM
from xdlm_loss import (
    MASK_RATE_EPS,
    autoregressive_loss,
    batch_loss,
    corrupt,
    linear_xdlm_loss,
    loss_positions,
    sample_mask_rate,
    stratified_mask_rate,
    xdlm_loss,
)

logger = logging.getLogger(__name__)


def diffusion_loss_sums(trainer, model, input_ids, prompt_mask, training):
    """(summed loss, loss positions per sample [B]). Training: one draw of the mask rate and the
    noise, summed over the batch. Validation: per sample, the NELBO's integral over t on a fixed
    midpoint grid with fixed noise, so checkpoints are compared on one low-variance estimate."""
    positions = loss_positions(input_ids, None if prompt_mask is None else ~prompt_mask)
    if training:
        step, micro = trainer.next_micro_step()
        p_mask = trainer.training_mask_rate(input_ids.shape[0], input_ids.device, step, micro)
        return trainer.noised_loss(model, input_ids, prompt_mask, p_mask, trainer.noise_generator), positions
    G = trainer.xdlm_args.eval_mask_rates
    sums = 0
    for j in range(G):
        rate = (1 - MASK_RATE_EPS) * (j + 0.5) / G + MASK_RATE_EPS
        p_mask = torch.full((input_ids.shape[0],), rate, device=input_ids.device)
        sums = sums + trainer.noised_loss(model, input_ids, prompt_mask, p_mask, trainer.eval_generator,
                                          per_sample=True) / G
    return sums, positions


def autoregressive_loss_sums(trainer, model, input_ids, prompt_mask, training):
    """(summed next-token NLL per sample [B], its target positions per sample [B])."""
    answer = None if prompt_mask is None else (~prompt_mask).float()
    nll = autoregressive_loss(model(input_ids=input_ids).logits, input_ids, answer, reduction="none")
    return nll.sum(1), loss_positions(nll, None if answer is None else answer[:, 1:])


@dataclass(frozen=True)
class Objective:
    help: str
    k: Optional[float]      # the mixing ratio (with k_from_flag: --xdlm_k's default); None: no noise
    k_from_flag: bool       # --xdlm_k sets k
    causal: bool            # causal attention
    metric_names: tuple     # validation: (loss per loss position, its exponential)
    fused_loss_applies: bool
    loss_sums: Callable     # (trainer, model, input_ids, prompt_mask, training) -> (summed loss, positions [B])


OBJECTIVES = {
    "xdm": Objective(help="the XDLM loss (mask / uniform-noise mixture, ratio --xdlm_k)", k=0.1, k_from_flag=True,
                     causal=False, metric_names=("nelbo", "ppl_bound"), fused_loss_applies=True,
                     loss_sums=diffusion_loss_sums),
    "mdm": Objective(help="LLaDA's masked diffusion loss (XDLM at k = 0)", k=0.0, k_from_flag=False,
                     causal=False, metric_names=("nelbo", "ppl_bound"), fused_loss_applies=True,
                     loss_sums=diffusion_loss_sums),
    "ar": Objective(help="next-token cross-entropy with causal attention", k=None, k_from_flag=False,
                    causal=True, metric_names=("nll", "ppl"), fused_loss_applies=False,
                    loss_sums=autoregressive_loss_sums),
}


class XDLMTrainer(CheckpointingMixin, Trainer):
    """Trainer whose loss is the objective of --training_method.

    Normalisation, as the paper's code (xdlm_loss.batch_loss): a micro-batch's loss is its summed
    loss over the batch's loss positions, batch x length for unconditional data (LLaDA's
    pretraining) and the answer tokens (their eos padding included) for conditional data.
    Validation reports the NELBO (ar: the NLL) per loss position over the whole validation set."""

    def __init__(self, *args, xdlm_args, mask_id, run_identity=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.xdlm_args = xdlm_args
        self.run_identity = run_identity or {}  # written into every checkpoint (CheckpointingMixin)
        self.objective = xdlm_args.objective
        self.mask_id = mask_id
        self.k = xdlm_args.k
        self.eval_generator = None
        # Training noise (t and the corruption) comes from this process's own generator, seeded by
        # (seed, process index): ranks and accumulation micro-steps draw different noise. Its state is
        # saved in every checkpoint and restored on resume (CheckpointingMixin). A generator seeded
        # afresh per micro-batch from (seed, rank, step, micro-step) would need no saved state, but
        # trained the tiny default measurably worse (validation NELBO 4.14-4.28 against 3.93-4.08 over
        # three noise streams each; docs/training.md), so the one stream stays.
        self.noise_generator = seeded_generator(self.args.device, self.args.seed, 0, self.args.process_index)
        self._micro_batches_drawn = (None, 0)  # (optimizer step, micro-batches drawn in it so far)
        if self.compute_metrics is None:
            self.compute_metrics = self.per_position_metrics
        # compute_loss normalises by itself and ignores num_items_in_batch: the Trainer must
        # divide by the accumulation steps even for a (remote) model whose forward takes **kwargs.
        self.model_accepts_loss_kwargs = False

    def noised_loss(self, model, input_ids, prompt_mask, p_mask, generator, per_sample=False):
        """Sum over positions of the diffusion loss at mask rate p_mask (prompt positions weigh
        0): a scalar, or per sample [B] (no gradient then: validation)."""
        alpha = 1 - p_mask
        noisy = corrupt(input_ids, alpha, self.k, self.mask_id, self.vocab_size(model), generator=generator,
                        prompt_mask=prompt_mask)
        loss_weight = None if prompt_mask is None else (~prompt_mask).float()
        if not self.xdlm_args.fused_loss:
            h = xdlm_loss(model(input_ids=noisy).logits, noisy, input_ids, alpha, self.k, self.mask_id)
            h = h if loss_weight is None else h * loss_weight
            return h.sum(1) if per_sample else h.sum()
        native = native_llada(self.accelerator.unwrap_model(model))
        hidden = native.scaled_hidden(model(input_ids=noisy, return_hidden=True).last_hidden_state)
        args = (hidden, native.output_head_weight, noisy, input_ids, alpha, self.k, self.mask_id, loss_weight)
        return linear_xdlm_loss(*args, reduction="none").sum(1) if per_sample else linear_xdlm_loss(*args)

    def next_micro_step(self):
        """(optimizer step, index of the micro-batch about to be drawn within it); counts it."""
        step, drawn = self._micro_batches_drawn
        drawn = drawn if step == self.state.global_step else 0
        self._micro_batches_drawn = (self.state.global_step, drawn + 1)
        return self.state.global_step, drawn

    def training_mask_rate(self, batch_size, device, step, micro):
        """p_mask of micro-batch `micro` of optimizer step `step`, drawn from the noise generator. Stratified:
        each optimizer batch (world size x per-device batch x accumulation steps) shares one offset,
        drawn from (seed, step) so every rank agrees, and each sample takes its own stratum: the
        i-th sample of rank r at micro-step a is stratum (a x world size + r) x per-device batch + i."""
        if not self.xdlm_args.stratified_t:
            return sample_mask_rate(batch_size, generator=self.noise_generator, device=device)
        args = self.args
        u = torch.rand(1, generator=seeded_generator("cpu", args.seed, 1, step)).to(device)
        first = (micro * args.world_size + args.process_index) * args.per_device_train_batch_size
        n_strata = args.world_size * args.per_device_train_batch_size * args.gradient_accumulation_steps
        return stratified_mask_rate(u, torch.arange(first, first + batch_size, device=device), n_strata)

    def vocab_size(self, model):
        return self.accelerator.unwrap_model(model).get_input_embeddings().num_embeddings

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Training only: validation goes through prediction_step."""
        prompt_mask = inputs["prompt_mask"].bool() if "prompt_mask" in inputs else None
        sums, positions = self.objective.loss_sums(self, model, inputs["input_ids"], prompt_mask, training=True)
        loss = batch_loss(sums, positions)
        return (loss, None) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """The batch's loss, and per sample its summed loss and loss positions, which the Trainer
        gathers across processes (dropping the padding samples) for per_position_metrics."""
        input_ids = inputs["input_ids"].to(self.args.device)
        prompt_mask = inputs["prompt_mask"].to(self.args.device).bool() if "prompt_mask" in inputs else None
        with torch.no_grad():
            sums, positions = self.objective.loss_sums(self, model, input_ids, prompt_mask, training=False)
        return batch_loss(sums, positions).detach(), sums.detach().float(), positions

    def per_position_metrics(self, prediction):
        """The validation loss per loss position over the whole set (each position weighs the
        same, whatever the batch it fell in): the NELBO for diffusion, the NLL for ar."""
        value = float(prediction.predictions.astype("float64").sum() / prediction.label_ids.astype("float64").sum())
        loss_name, exp_name = self.objective.metric_names
        return {loss_name: value, exp_name: math.exp(min(value, 700))}

    def evaluate(self, *args, **kwargs):
        self.eval_generator = torch.Generator(device=self.args.device).manual_seed(self.args.seed)
        return super().evaluate(*args, **kwargs)

    def get_decay_parameter_names(self, model):
        """nanoGPT's rule: weight decay on the matrices (p.dim() >= 2: the projections, the
        embedding and the head), none on norm gains and biases."""
        return [name for name, p in model.named_parameters() if p.dim() >= 2]


def seeded_generator(device, *keys):
    """A torch generator seeded by a tuple of integers (numpy's SeedSequence mixes them)."""
    seed = int(np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator(device=device).manual_seed(seed)


def native_llada(model):
    """The LLaDAModelLM inside a (PEFT-wrapped) model: the fused loss needs its output head."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not isinstance(base, LLaDAModelLM):
        raise TypeError(f"--fused_loss needs this repository's LLaDA model, got {type(base).__name__}")
    return base


# ---------------------------------------------------------------------------
# Logging: wandb defaults and the loss curve
# ---------------------------------------------------------------------------

LOSS_CURVE_WINDOW = 20  # logged training losses per point of loss_curve.png's running mean
WANDB_DEFAULT_PROJECT = "xdlm-llada"  # the project a run logs to unless WANDB_PROJECT names another


def set_wandb_defaults(training_args):
    """--report_to wandb: runs go to WANDB_PROJECT (default xdlm-llada) under --run_name, their
    files to WANDB_DIR (default output_dir). Without a login (no WANDB_API_KEY, no netrc entry
    for the wandb host) and no WANDB_MODE, the run logs offline instead of stopping at a login
    prompt; `wandb sync` uploads it later. WANDB_MODE=online/offline/disabled decides explicitly."""
    if "wandb" not in (training_args.report_to or []):
        return
    import netrc
    from urllib.parse import urlparse

    os.environ.setdefault("WANDB_PROJECT", WANDB_DEFAULT_PROJECT)
    if "WANDB_DIR" not in os.environ:
        os.makedirs(training_args.output_dir, exist_ok=True)
        os.environ["WANDB_DIR"] = os.path.abspath(training_args.output_dir)
    if "WANDB_MODE" in os.environ or os.environ.get("WANDB_API_KEY"):
        return
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        logged_in = netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        logged_in = False
    if not logged_in:
        os.environ["WANDB_MODE"] = "offline"
        logger.warning(f"no wandb login for {host}: logging offline under {os.environ['WANDB_DIR']}/wandb "
                       "(upload later with `wandb sync`; set WANDB_MODE=online after `wandb login` to log live)")


def running_mean(values, window):
    """The mean of each value and the window - 1 before it (fewer at the start)."""
    sums = np.cumsum(np.concatenate([[0.0], np.asarray(values, dtype=np.float64)]))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def plot_loss_curve(log_history, path, eval_key, window=LOSS_CURVE_WINDOW):
    """The logged training losses as faint dots (diffusion's noise makes them a wide band), their
    running mean over `window` logged steps as the trend, and the validation loss `eval_key`
    (eval_nelbo, eval_nll) wherever it was evaluated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(e["step"], e["loss"]) for e in log_history if "loss" in e]
    if not points:
        return
    steps, losses = zip(*points)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, losses, ".", alpha=0.3, color="tab:blue", label="training loss (logged)")
    ax.plot(steps, running_mean(losses, window), color="tab:blue", label=f"running mean over {window} logged steps")
    evals = [(e["step"], e[eval_key]) for e in log_history if eval_key in e]
    if evals:
        ax.plot(*zip(*evals), "o-", color="tab:red", label=f"validation {eval_key[len('eval_'):]}")
    ax.legend()
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per loss position)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
