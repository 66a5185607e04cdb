#!/usr/bin/env python
"""Sampling from LLaDA-class diffusion models, batched, at any number of steps (32 by default).

  k = 0   LLaDA's sampler: semi-autoregressive blocks; in each block an even per-step
          schedule of how many masked tokens to reveal; the most confident ("low_confidence"
          remasking) or random positions are revealed; optional Gumbel temperature.
  k > 0   the XDLM sampler, as the paper's: the same, plus re-editing of already decoded tokens
          whose prediction changed. Within each block the cumulative number of re-edits allowed
          after step i is floor(k/(1-k) x tokens revealed in the block through step i), none at
          the block's first step (`edit_budgets`); unused budget carries to the block's next
          steps, and every block starts afresh. A re-edited token takes the predicted value (the
          Gumbel sample at temperature > 0). Tokens never return to the mask.
          Deviations from the paper's sampler, kept on purpose: prompt and padding positions are
          never edited (the paper's also re-edits prompt tokens), and the mask token is never
          predicted.
  Confidence (both k): the probability of the predicted token as LLaDA's and Fast-dLLM's float64
          softmax gives it (separating probabilities within 1e-7 of 1, where float32 ties them),
          without a float64 tensor over the vocabulary; it ranks reveals and re-edits and meets
          the threshold below. Exact ties (p = 1.0 in float64, or equal logits) go to the leftmost
          position: torch.topk leaves their order unspecified (on CPU it varies with the row
          length and the count; CUDA differs again).
  sampler="ancestral": the exact XDLM posterior step p(z_s | z_t) (xdlm_loss.reverse_posterior).

Opt-in approximations for speed (Fast-dLLM's, NVlabs/Fast-dLLM llada/generate.py), not the paper's
protocol; the defaults (cache="none", threshold=None) are the exact sampler above:
  cache="prefix"  at each block's first step one full forward fills a cache of every layer's keys
                  and values; the block's other steps run only the block and what follows it,
                  against the cached keys and values of everything before the block.
  cache="dual"    the same, but the other steps run only the block, against the cached keys
                  and values of everything before and after it.
                  With a cache, k > 0 re-edits only decoded tokens of the current block (its
                  earlier blocks sit in the cache and are not scored again); the block's edit
                  budget is unchanged.
  threshold=t     each step reveals every masked position of the block whose probability is at
                  least t (p >= t, as Fast-dLLM compares), and never fewer than the schedule's
                  count (so at least the most confident one): a block ends early when nothing is
                  left to reveal, and the steps used are at most `steps` (stats["steps"]). With
                  steps = gen_length this is Fast-dLLM's rule (at least one a step). The re-edit
                  budget then counts the tokens actually revealed: floor(k/(1-k) x revealed in
                  the block so far), none at the block's first step.

Prompts may be left-padded (attention_mask); prompt and padding positions are never edited. The
mask id is the model config's mask_token_id (mask_id only where the config has none: one that
contradicts it is refused), and a prompt may not hold the mask token (refused, naming its row and
position). generate.py refuses a path that is not a LLaDA model folder or hub id before loading.
usage: python generate.py --model_name_or_path DIR --prompt "def add(a, b):" --steps 32 --k 0.1
"""
import argparse
import dataclasses
import math
import numbers
import sys
import typing

import torch
from tqdm.auto import tqdm

from model_config import model_source, model_vocab_size
from modeling_llada import KVCache
from xdlm_loss import drop_mask_logit, reverse_posterior, stationary_noise


def _setting(default, help, choices=None):
    return dataclasses.field(default=default, metadata=dict(help=help, choices=choices))


@dataclasses.dataclass(frozen=True)
class SamplerSettings:
    """The sampler's settings, checked when made (ValueError naming the first bad one; no model
    needed, so a caller can refuse a bad configuration before loading anything). Each field is
    also generate()'s keyword, generate.py's flag --<name> (type, default, help and choices from
    here) and the OpenCompass model config's key (opencompass_llada.DiffusionLM).

    A new setting is a field here (type, default, help, and choices if it has them), its range
    check in __post_init__ if type and choices do not say it all, and its use in the sampler
    (`_confidence`, `_ancestral` or `_Scorer`, which read the settings object)."""
    steps: int = _setting(32, "sampling steps in all, a multiple of the number of blocks")
    gen_length: int = _setting(256, "tokens generated")
    block_length: int = _setting(256, "tokens per semi-autoregressive block (divides gen_length)")
    k: float = _setting(0.0, "0: LLaDA's sampler; > 0: XDLM re-editing budget k/(1-k)")
    temperature: float = _setting(0.0, "Gumbel sampling temperature (0: the argmax)")
    remasking: str = _setting("low_confidence", "the masked positions a step reveals: the most confident or random "
                              "ones", choices=("low_confidence", "random"))
    sampler: str = _setting("confidence", "confidence: LLaDA's / XDLM's sampler; ancestral: exact posterior steps",
                            choices=("confidence", "ancestral"))
    cache: str = _setting("none", "approximate KV cache refreshed at each block's first step (not the paper's "
                          "protocol)", choices=("none", "prefix", "dual"))
    threshold: typing.Optional[float] = _setting(
        None, "reveal every masked position of the block at least this probable (not the paper's protocol)")

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value, kind = getattr(self, field.name), _value_type(field)
            if value is None and field.default is None:  # an optional setting left out
                continue
            # Any integer or real number type (numpy's too), stored as Python's int or float; never a bool.
            abstract, name = {int: (numbers.Integral, "an integer"), float: (numbers.Real, "a real number"),
                              str: (str, "a string")}[kind]
            if not isinstance(value, abstract) or isinstance(value, bool):
                raise ValueError(f"{field.name} must be {name}{' or None' if field.default is None else ''}, "
                                 f"got {value!r}")
            object.__setattr__(self, field.name, kind(value))
            choices = field.metadata["choices"]
            if choices is not None and value not in choices:
                raise ValueError(f"{field.name} must be one of {choices}, got {value!r}")
        if self.gen_length < 1 or self.block_length < 1 or self.gen_length % self.block_length:
            raise ValueError(f"gen_length ({self.gen_length}) must be a positive multiple of block_length "
                             f"({self.block_length})")
        if self.steps < self.blocks or self.steps % self.blocks:
            raise ValueError(f"steps ({self.steps}) must be a positive multiple of the number of blocks "
                             f"gen_length/block_length = {self.blocks}")
        if self.steps // self.blocks > self.block_length:
            raise ValueError(f"steps per block ({self.steps // self.blocks}) cannot exceed block_length "
                             f"({self.block_length})")
        if self.sampler == "ancestral" and self.remasking != "low_confidence":
            raise ValueError("remasking applies to sampler='confidence' only: the ancestral sampler draws from the "
                             "posterior")
        upper = 1.0 if self.sampler == "ancestral" else 1.0 - 1e-9
        if not 0.0 <= self.k <= upper:
            raise ValueError(f"k must lie in [0, 1) for the confidence sampler ([0, 1] for ancestral), got {self.k}")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"temperature must be >= 0 and finite, got {self.temperature}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be None or a probability in [0, 1], got {self.threshold!r}")
        if self.sampler == "ancestral" and (self.cache != "none" or self.threshold is not None):
            raise ValueError("cache and threshold apply to sampler='confidence' only: the ancestral sampler takes "
                             "exact posterior steps over the whole sequence")
        if self.threshold is not None and self.remasking != "low_confidence":
            raise ValueError("threshold compares probabilities: it needs remasking='low_confidence'")

    @classmethod
    def named(cls, owner, **fields):
        """The settings of `fields`, a name that is not a setting refused (`owner` says whose options
        they were: the OpenCompass model's config keys, lm-eval's model_args)."""
        names = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(fields) - set(names))
        if unknown:
            raise ValueError(f"{owner}: unknown settings {', '.join(unknown)}; the sampler's are {', '.join(names)}")
        return cls(**fields)

    @property
    def blocks(self):
        return self.gen_length // self.block_length

    @property
    def steps_per_block(self):
        return self.steps // self.blocks


def _value_type(field):
    """int, float or str: the type of a SamplerSettings field's values (Optional[float] -> float)."""
    args = [a for a in typing.get_args(field.type) if a is not type(None)]
    return args[0] if args else field.type


def transfer_schedule(n_tokens, steps):
    """How many tokens each step reveals: n_tokens spread evenly over steps, the remainder
    going to the first steps (LLaDA's schedule)."""
    base, extra = divmod(n_tokens, steps)
    return [base + (i < extra) for i in range(steps)]


def edit_budgets(schedule, k):
    """Cumulative re-edits allowed in a block after each of its steps, for the per-step reveal
    counts `schedule`: floor(k/(1-k) x tokens revealed in the block through that step), and none
    at the block's first step (the paper's XDLM budget). All zeros at k = 0."""
    budgets, revealed = [], 0
    for i, n in enumerate(schedule):
        revealed += n
        budgets.append(edit_budget(k, revealed) if i > 0 and k > 0 else 0)
    return budgets


def edit_budget(k, revealed):
    """floor(k/(1-k) x revealed), for a count or a tensor of counts (the threshold rule's per row)."""
    # + 1e-9: k/(1-k) x revealed is often an integer that floats land just below (0.1 x 9 / 0.9)
    if torch.is_tensor(revealed):  # in float64 as for a count: float32 lands below integers (0.4 x 33 / 0.6)
        return torch.floor(k * revealed.double() / (1 - k) + 1e-9).long()
    return math.floor(k * revealed / (1 - k) + 1e-9)


def add_gumbel_noise(logits, temperature):
    """Gumbel-max sampling at a temperature, in float64 (float32 Gumbel noise visibly lowers
    sample quality for diffusion LMs): argmax(exp(l) / (-log u)^T) ~ softmax(l / T)."""
    if temperature == 0:
        return logits
    logits = logits.double()
    gumbel = (-torch.log(torch.rand_like(logits))) ** temperature
    return logits.exp() / gumbel


def _check(model, prompt_ids, attention_mask, mask_id, settings):
    """The checks that need the model and the prompts; returns the mask id."""
    mask_id = resolve_mask_id(mask_id, getattr(model.config, "mask_token_id", None))
    width = model_vocab_size(model.config)
    if width is not None and not 0 <= mask_id < width:
        raise ValueError(f"mask_id {mask_id} is not a token id of the model (0 .. {width - 1}); pass the model's mask "
                         "token id as mask_id (generate.py: --mask_id)")
    if not torch.is_tensor(prompt_ids) or prompt_ids.dtype != torch.long:
        raise ValueError(f"prompt_ids must be a torch.long tensor of token ids, got "
                         f"{prompt_ids.dtype if torch.is_tensor(prompt_ids) else type(prompt_ids).__name__}")
    if prompt_ids.dim() != 2 or prompt_ids.shape[0] == 0:
        raise ValueError(f"prompt_ids must have shape [B, P] with B >= 1 prompts, got {tuple(prompt_ids.shape)}")
    if attention_mask is not None and attention_mask.shape != prompt_ids.shape:
        raise ValueError(f"attention_mask must have the prompt's shape {tuple(prompt_ids.shape)}, got "
                         f"{tuple(attention_mask.shape)}")
    if width is not None:
        _refuse_first(prompt_ids, (prompt_ids < 0) | (prompt_ids >= width),
                      f"which is not a token id of the model (0 .. {width - 1})")
    real = prompt_ids == mask_id if attention_mask is None else (prompt_ids == mask_id) & attention_mask.bool()
    _refuse_first(prompt_ids, real, "the mask token: a prompt may not hold it (the sampler fills only the completion, "
                  "and the model reads a mask as a token to predict)")
    if settings.cache != "none" and not is_native(model):
        raise ValueError(f"cache={settings.cache!r} needs the native LLaDA model (modeling_llada.LLaDAModelLM), got "
                         f"{type(model).__name__}")
    return mask_id


def _refuse_first(prompt_ids, bad, what):
    """ValueError naming the first prompt position where `bad` holds (and how many there are)."""
    if bool(bad.any()):
        row, position = (int(i) for i in bad.nonzero()[0])
        more = int(bad.sum()) - 1
        raise ValueError(f"prompt_ids row {row} position {position} holds id {int(prompt_ids[row, position])}, {what}"
                         + (f" ({more} more such positions)" if more else ""))


def resolve_mask_id(mask_id, config_mask_id):
    """The mask id to sample with: the model config's mask_token_id, or `mask_id` when the config has
    none. A mask_id that contradicts the config is refused rather than taken as an override: the
    config records the id the model was trained with, and another id would be read as an ordinary
    token, filled in silently with nonsense."""
    if mask_id is None:
        if config_mask_id is None:
            raise ValueError("mask_id: the model config has no mask_token_id; pass mask_id (generate.py: --mask_id)")
        return config_mask_id
    if isinstance(mask_id, bool) or not isinstance(mask_id, numbers.Integral):
        raise ValueError(f"mask_id must be an integer token id, got {mask_id!r}")
    if config_mask_id is not None and mask_id != config_mask_id:
        raise ValueError(f"mask_id {mask_id} contradicts the model config's mask_token_id {config_mask_id}: leave it "
                         "out to use the config's, or correct the config")
    return int(mask_id)


def is_native(model):
    """This repository's LLaDA model (final_hidden, logits_from_hidden), not a checkpoint's own code."""
    return hasattr(model, "final_hidden") and hasattr(model, "logits_from_hidden")


class _Scorer:
    """Scores the positions [B, M] asked for: logits with p(mask) = 0, their argmax, log-normaliser
    and the predicted token (argmax, or a Gumbel sample at temperature > 0).

    With the native model only those positions go through the output head. The [B, M, N]
    work tensors are reused across steps: on CPU, allocating them afresh costs more than
    the arithmetic (page faults), and the sampler must stay within 5% of the forward passes.

    With a cache (native model only), `begin_block` marks the next call as a block's first
    step: one full forward that also refills the cache; later calls run only the span
    [lo, hi) ("dual") or [lo, L) ("prefix") against it. Counts full and span forwards."""

    def __init__(self, model, attention_mask, mask_id, temperature, cache="none"):
        self.model, self.attention_mask, self.mask_id, self.temperature = model, attention_mask, mask_id, temperature
        self.native = is_native(model)
        self.buffers = {}
        self._vocab_size = model.output_head_weight.shape[0] if self.native else None
        self.cache_mode, self.kv, self.span = cache, None, None
        self.full_forwards = self.span_forwards = 0

    def begin_block(self, lo, hi, length):
        if self.cache_mode != "none":
            self.kv = None  # refreshed by the block's first call
            self.span = (lo, hi if self.cache_mode == "dual" else length)

    def hidden(self, x):
        """(final hidden states of the positions computed, the first position they cover)."""
        if self.cache_mode == "none" or self.kv is None:
            self.full_forwards += 1
            if self.cache_mode != "none":
                self.kv = KVCache()
            return self.model.final_hidden(x, self.attention_mask, cache=self.kv), 0
        self.span_forwards += 1
        lo, hi = self.span
        return self.model.span_hidden(x[:, lo:hi], lo, self.kv), lo

    def vocab_size(self, x):
        """N, the logits' width (one single-position pass if the model does not expose its head)."""
        if self._vocab_size is None:
            self.logits(x, torch.zeros(x.shape[0], 1, dtype=torch.long, device=x.device))
        return self._vocab_size

    def _buffer(self, name, shape, like):
        n = math.prod(shape)
        buf = self.buffers.get(name)
        if buf is None or buf.numel() < n or buf.dtype != like.dtype or buf.device != like.device:
            buf = self.buffers[name] = torch.empty(n, dtype=like.dtype, device=like.device)
        return buf[:n].view(shape)

    def logits(self, x, positions):
        if self.native:
            hidden, first = self.hidden(x)
            hidden = hidden.gather(1, (positions - first)[..., None].expand(-1, -1, hidden.shape[-1]))
            out = self._buffer("logits", (*positions.shape, self._vocab_size), hidden)
            logits = self.model.logits_from_hidden(hidden, out=out)
        else:
            self.full_forwards += 1
            logits = self.model(x, attention_mask=self.attention_mask).logits
            logits = logits.gather(1, positions[..., None].expand(-1, -1, logits.shape[-1]))
        drop_mask_logit(logits, self.mask_id)
        self._vocab_size = logits.shape[-1]
        return logits.float()

    def __call__(self, x, positions):
        """logits [B, M, N] (float32, p(mask) = 0), the predicted token (argmax, or a Gumbel sample at
        temperature > 0), its logit, and its probability p_pred [B, M] in float64: the model's
        softmax, as a float64 softmax of the logits gives it."""
        logits = self.logits(x, positions)
        top_logit, top = logits.max(-1)
        # p_pred = exp(l_pred - l_top) / (1 + s), s = sum over the other tokens of exp(l - l_top).
        # s in float32 keeps its relative precision however small it is (where 1 + s in float32 is
        # 1 for s < 6e-8), so 1 + s taken in float64 separates probabilities near 1 as float64 does,
        # and ties them where float64 ties them (p = 1.0 once s < 1.1e-16).
        others = torch.sub(logits, top_logit[..., None], out=self._buffer("exp", logits.shape, logits))
        s = others.scatter_(-1, top[..., None], -torch.inf).exp_().sum(-1)
        if self.temperature == 0:
            pred, pred_logit = top, top_logit
        else:
            pred = add_gumbel_noise(logits, self.temperature).argmax(-1)
            pred_logit = logits.gather(-1, pred[..., None]).squeeze(-1)
        p_pred = (pred_logit.double() - top_logit.double()).exp() / (1 + s.double())
        return logits, pred, pred_logit, p_pred


@torch.no_grad()
def generate(model, prompt_ids, settings=None, *, attention_mask=None, mask_id=None, progress=False, stats=None,
             **fields):
    """Returns [B, P + gen_length] ids: the (left-padded) prompts followed by their completions.
    `settings` is a SamplerSettings, or give its fields as keywords (generate(model, ids, steps=64,
    k=0.1)); not both. A dict passed as `stats` receives "steps" (sampling steps taken, <= steps),
    "full_forwards" and "span_forwards" (model passes over the whole sequence, and over a cached span)."""
    if settings is None:
        settings = SamplerSettings(**fields)
    elif fields:
        raise TypeError(f"generate: pass settings or its fields ({', '.join(fields)}), not both")
    elif not isinstance(settings, SamplerSettings):
        raise TypeError(f"generate: settings must be a SamplerSettings, got {type(settings).__name__}")
    mask_id = _check(model, prompt_ids, attention_mask, mask_id, settings)
    B, P = prompt_ids.shape
    device = prompt_ids.device
    x = torch.cat([prompt_ids, torch.full((B, settings.gen_length), mask_id, dtype=prompt_ids.dtype, device=device)], 1)
    if attention_mask is not None:
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(B, settings.gen_length)], 1)
        if bool(attention_mask.all()):
            attention_mask = None  # no padding: the model may take its fastest attention path
    scorer = _Scorer(model, attention_mask, mask_id, settings.temperature, settings.cache)
    bar = tqdm(total=settings.steps, desc="sampling", disable=not progress)
    if settings.sampler == "ancestral":
        x, steps_taken = _ancestral(scorer, x, P, settings, mask_id, bar), settings.steps
    else:
        x, steps_taken = _confidence(scorer, x, P, settings, mask_id, bar)
    bar.close()
    if stats is not None:
        stats.update(steps=steps_taken, full_forwards=scorer.full_forwards, span_forwards=scorer.span_forwards)
    return x


def _confidence(scorer, x, P, settings, mask_id, bar):
    """The confidence sampler, block by block. Each step reveals n_reveal[b] masked positions of the
    block in row b, the most confident (or random) ones: the schedule's count, or with a threshold
    at least that many plus every position at or above it; then the row's decoded tokens may be
    re-edited within budget[b] = floor(k/(1-k) x revealed[b] so far in the block)."""
    B, device = x.shape[0], x.device
    block_length, k, threshold = settings.block_length, settings.k, settings.threshold
    schedule = transfer_schedule(block_length, settings.steps_per_block)
    # Without a threshold every row reveals the schedule's count, so these are every row's budgets.
    planned_budgets = edit_budgets(schedule, k)
    cached = scorer.cache_mode != "none"
    steps_taken = 0
    for b in range(settings.blocks):
        lo, hi = P + b * block_length, P + (b + 1) * block_length
        scorer.begin_block(lo, hi, x.shape[1])
        revealed = torch.zeros(B, dtype=torch.long, device=device)  # in this block so far, per row
        edits_used = torch.zeros(B, dtype=torch.long, device=device)  # every block starts afresh
        for i, n_scheduled in enumerate(schedule):
            if threshold is not None and i > 0 and not bool((x[:, lo:hi] == mask_id).any()):
                break  # every row's block is complete: the block ends early
            if threshold is None and planned_budgets[i] == 0:
                # No row may re-edit yet, and every row has the same number of masked positions
                # left: score only those, in order (no host sync needed).
                still_masked = block_length - sum(schedule[:i])
                rows = (x[:, lo:hi] != mask_id).to(torch.int8).argsort(stable=True)[:, :still_masked] + lo
            else:
                # Re-edits look at every generated position up to the current block (never the prompt or
                # its padding); with a cache, only at the current block (earlier ones are not scored again).
                rows = torch.arange(lo if cached else P, hi, device=device).expand(B, -1)
            tokens = x.gather(1, rows)
            eligible = (tokens == mask_id) & (rows >= lo)
            logits, pred, pred_logit, p_pred = scorer(x, rows)
            if settings.remasking == "low_confidence":
                conf = p_pred
            else:
                conf = torch.rand(pred.shape, device=device)
            conf = conf.masked_fill(~eligible, -torch.inf)
            n_reveal = torch.full_like(revealed, n_scheduled)
            if threshold is not None:  # at least the schedule's count, plus every position at or above the threshold
                n_reveal = torch.maximum(n_reveal, (conf >= threshold).sum(-1))
            n_reveal = torch.minimum(n_reveal, eligible.sum(-1))  # but no more than the row has masked
            revealed += n_reveal
            change = eligible & _top(conf, n_reveal)
            if k > 0 and i > 0:
                # Decoded tokens whose prediction differs and is at least as likely as the token
                # take the prediction, most likely first, within the budget left.
                cur_logit = logits.gather(-1, tokens[..., None]).squeeze(-1)
                cand = (tokens != mask_id) & (pred != tokens) & (pred_logit >= cur_logit)
                budget_left = edit_budget(k, revealed) - edits_used
                edit = cand & _top(torch.where(cand, p_pred, -torch.inf), budget_left)
                edits_used += edit.sum(-1)
                change |= edit
            x.scatter_(1, rows, torch.where(change, pred, tokens))
            steps_taken += 1
            bar.update(1)
    return x, steps_taken


def _top(scores, n):
    """[B, M] mask of the n[b] highest scores of each row b; exact ties go to the leftmost entry
    (a stable sort: torch.topk and a plain argsort leave their order unspecified)."""
    order = scores.argsort(stable=True, descending=True)
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions) < n[:, None]


def _ancestral(scorer, x, P, settings, mask_id, bar):
    """Exact reverse steps from t = 1 (z ~ r) to t = 0 on LLaDA's schedule alpha_t = 1 - t,
    block by block; positions outside the current block are held. The model's p is
    softmax(logits / temperature), its argmax at temperature 0."""
    B, block_length, k, temperature = x.shape[0], settings.block_length, settings.k, settings.temperature
    steps = settings.steps_per_block
    for b in range(settings.blocks):
        lo, hi = P + b * block_length, P + (b + 1) * block_length
        if k > 0:  # the prior at t = 1 is r: a uniform id with probability k, else the mask
            r = stationary_noise(k, mask_id, scorer.vocab_size(x), device=x.device)
            x[:, lo:hi] = torch.multinomial(r, B * block_length, replacement=True).view(B, block_length)
        for i in range(steps):
            t, s = 1 - i / steps, 1 - (i + 1) / steps
            logits = scorer.logits(x, torch.arange(lo, hi, device=x.device).expand(B, -1)).double()
            if temperature > 0:
                p = torch.softmax(logits / temperature, -1)
            else:
                p = torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).double()
            alpha_t = torch.full((B,), 1 - t, dtype=torch.float64, device=x.device)
            alpha_s = torch.full((B,), 1 - s, dtype=torch.float64, device=x.device)
            post = reverse_posterior(p, x[:, lo:hi], alpha_s, alpha_t, k, mask_id)
            x[:, lo:hi] = torch.multinomial(post.flatten(0, 1), 1).view(B, block_length)
            bar.update(1)
    return x


# The model types load_model can sample from: the native LLaDA model (modeling_llada.py), which
# LLaDA's own checkpoints and this repository's use.
DIFFUSION_MODEL_TYPES = ("llada",)


def model_config_dict(path):
    """The config.json contents of the model at `path` (a local folder, or a hub id tried on the hub),
    refused before anything heavy loads when it is not a diffusion LM the sampler can drive: a local
    path must be a model folder, anything else a hub id (model_config.model_source)."""
    import transformers

    try:
        path, kind = model_source(path)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    try:
        config = transformers.PretrainedConfig.get_config_dict(path)[0]
    except OSError as e:  # only a hub id gets here
        raise ValueError(f"{path} is not a local folder, and as a hub id: {str(e).splitlines()[0]}") from None
    if config.get("model_type") not in DIFFUSION_MODEL_TYPES:
        raise ValueError(f"{path}: model_type {config.get('model_type')!r} is not a diffusion LM this sampler can "
                         f"drive (model types: {', '.join(DIFFUSION_MODEL_TYPES)})")
    return config


def load_model(path, dtype=None, device=None, tokenizer_path=None):
    """(model, tokenizer, device) for sampling: the checkpoint (native LLaDA model for model_type
    "llada") in eval mode, on sampling_device_and_dtype's device and dtype. The tokenizer pads on the left
    (pad = eos when it has no pad token) for batches of prompts. A path that is not such a model is
    refused first (model_config_dict)."""
    import transformers

    import modeling_llada  # noqa: F401  (registers the native LLaDA model)

    device, dtype = sampling_device_and_dtype(device, dtype)
    model_config_dict(path)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_path or path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = transformers.AutoModel.from_pretrained(path, dtype=dtype).to(device).eval()
    return model, tokenizer, device


def sampling_device_and_dtype(device=None, dtype=None):
    """(device, torch dtype) to sample on: by default the GPU in bfloat16 when there is one, else
    the CPU in float32; `dtype` is a name ("bfloat16", "float32", ...)."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or ("bfloat16" if str(device).startswith("cuda") else "float32")
    if not isinstance(getattr(torch, dtype, None), torch.dtype):
        raise ValueError(f"dtype {dtype!r} is not a torch dtype name (e.g. bfloat16, float32)")
    return device, getattr(torch, dtype)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Sample a completion from a LLaDA-class diffusion model.")
    ap.add_argument("--model_name_or_path", required=True)
    ap.add_argument("--prompt", required=True)
    for field in dataclasses.fields(SamplerSettings):  # the sampler's flags, one per setting
        ap.add_argument(f"--{field.name}", type=_value_type(field), default=field.default,
                        choices=field.metadata["choices"], help=field.metadata["help"] + " (default: %(default)s)")
    ap.add_argument("--mask_id", type=int, default=None,
                    help="the mask token id (default: the model config's mask_token_id)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=("bfloat16", "float32"), default=None,
                    help="default: bfloat16 on GPU, float32 on CPU")
    args = ap.parse_args(argv)
    try:  # before the model loads
        settings = SamplerSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SamplerSettings)})
    except ValueError as e:
        ap.error("--" + str(e))  # the settings are named as their flags

    try:  # before the model loads: a model the sampler can drive, and its mask id
        config = model_config_dict(args.model_name_or_path)
    except ValueError as e:
        ap.error(f"--model_name_or_path {e}")
    if args.mask_id is None and config.get("mask_token_id") is None:
        ap.error(f"{args.model_name_or_path} has no mask_token_id in its config: pass --mask_id")
    try:
        resolve_mask_id(args.mask_id, config.get("mask_token_id"))
    except ValueError as e:
        ap.error("--" + str(e))
    torch.manual_seed(args.seed)
    model, tokenizer, device = load_model(args.model_name_or_path, args.dtype)
    ids = tokenizer(args.prompt, return_tensors="pt", add_special_tokens=False)["input_ids"].to(device)
    try:  # the checks that need the model and the prompt (a mask token in it; a cache needs the native model)
        _check(model, ids, None, args.mask_id, settings)
    except ValueError as e:
        ap.error(str(e).replace("prompt_ids row 0 position", "--prompt token"))
    stats = {}
    out = generate(model, ids, settings, mask_id=args.mask_id, progress=True, stats=stats)
    if settings.threshold is not None:
        print(f"steps used: {stats['steps']} of {settings.steps}", file=sys.stderr)
    print(decode_completion(tokenizer, out[0, ids.shape[1]:]))


def decode_completion(tokenizer, ids):
    """Text of all the generated ids with special tokens (eos padding among them) skipped, as the
    paper's evaluation decodes: text the model wrote after an eos is kept."""
    return tokenizer.decode(ids.tolist(), skip_special_tokens=True)


def cut_at_stop_words(text, stop_words):
    """The text before the first occurrence of any of the stop words (the stop word dropped)."""
    return text[:min((at for at in (text.find(s) for s in stop_words if s) if at >= 0), default=len(text))]


def complete(model, tokenizer, prompts, settings, max_length, stop_words=(), max_new_tokens=None, mask_id=None):
    """The completions of a batch of text prompts, as the evaluations read them (OpenCompass's
    DiffusionLM, lm-eval's generate_until): the prompts left-padded into one batch, each keeping
    its last max_length - gen_length tokens (prompt and completion must fit the model); all
    generated tokens decoded (decode_completion), the first max_new_tokens[i] of them kept, and
    cut before the first of stop_words[i] (one list per prompt)."""
    device = next(model.parameters()).device
    enc = tokenizer(list(prompts), return_tensors="pt", padding=True)
    keep = max_length - settings.gen_length
    ids, mask = enc["input_ids"][:, -keep:].to(device), enc["attention_mask"][:, -keep:].to(device)
    rows = generate(model, ids, settings, attention_mask=mask, mask_id=mask_id)[:, ids.shape[1]:]
    limits = max_new_tokens or [settings.gen_length] * len(rows)
    stops = stop_words or [()] * len(rows)
    return [cut_at_stop_words(decode_completion(tokenizer, row[:n]), stop) for row, n, stop in zip(rows, limits, stops)]


if __name__ == "__main__":
    main()
