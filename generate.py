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
          never edited (the paper's also re-edits prompt tokens), the mask token is never
          predicted, and confidences are computed in float32.
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
                  least t, and never fewer than the schedule's count (so at least the most
                  confident one): a block ends early when nothing is left to reveal, and the
                  steps used are at most `steps` (stats["steps"]). With steps = gen_length this
                  is Fast-dLLM's rule (at least one a step). The re-edit budget then counts the
                  tokens actually revealed: floor(k/(1-k) x revealed in the block so far), none
                  at the block's first step.

Prompts may be left-padded (attention_mask); prompt and padding positions are never edited.
usage: python generate.py --model_name_or_path DIR --prompt "def add(a, b):" --steps 32 --k 0.1
"""
import argparse
import math
import sys

import torch
from tqdm.auto import tqdm

from model_config import model_vocab_size
from modeling_llada import KVCache
from xdlm_loss import drop_mask_logit, reverse_posterior, stationary_noise

REMASKING = ("low_confidence", "random")
SAMPLERS = ("confidence", "ancestral")
CACHES = ("none", "prefix", "dual")


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
    budget = k * revealed / (1 - k) + 1e-9
    return torch.floor(budget).long() if torch.is_tensor(budget) else math.floor(budget)


def add_gumbel_noise(logits, temperature):
    """Gumbel-max sampling at a temperature, in float64 (float32 Gumbel noise visibly lowers
    sample quality for diffusion LMs): argmax(exp(l) / (-log u)^T) ~ softmax(l / T)."""
    if temperature == 0:
        return logits
    logits = logits.double()
    gumbel = (-torch.log(torch.rand_like(logits))) ** temperature
    return logits.exp() / gumbel


def check_settings(steps=32, gen_length=256, block_length=256, k=0.0, temperature=0.0, remasking="low_confidence",
                   sampler="confidence", cache="none", threshold=None):
    """Raises ValueError naming the first bad sampling setting (no model needed, so a wrapper
    can refuse a bad configuration before loading anything)."""
    if gen_length < 1 or block_length < 1 or gen_length % block_length:
        raise ValueError(f"gen_length ({gen_length}) must be a positive multiple of block_length ({block_length})")
    blocks = gen_length // block_length
    if steps < blocks or steps % blocks:
        raise ValueError(f"steps ({steps}) must be a positive multiple of the number of blocks gen_length/block_length = {blocks}")
    if steps // blocks > block_length:
        raise ValueError(f"steps per block ({steps // blocks}) cannot exceed block_length ({block_length})")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if remasking not in REMASKING:
        raise ValueError(f"remasking must be one of {REMASKING}, got {remasking!r}")
    if sampler == "ancestral" and remasking != "low_confidence":
        raise ValueError("remasking applies to sampler='confidence' only: the ancestral sampler draws from the posterior")
    upper = 1.0 if sampler == "ancestral" else 1.0 - 1e-9
    if not 0.0 <= k <= upper:
        raise ValueError(f"k must lie in [0, 1) for the confidence sampler ([0, 1] for ancestral), got {k}")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be >= 0 and finite, got {temperature}")
    if cache not in CACHES:
        raise ValueError(f"cache must be one of {CACHES}, got {cache!r}")
    if threshold is not None and not (isinstance(threshold, (int, float)) and 0.0 <= threshold <= 1.0):
        raise ValueError(f"threshold must be None or a probability in [0, 1], got {threshold!r}")
    if sampler == "ancestral" and (cache != "none" or threshold is not None):
        raise ValueError("cache and threshold apply to sampler='confidence' only: the ancestral sampler takes "
                         "exact posterior steps over the whole sequence")
    if threshold is not None and remasking != "low_confidence":
        raise ValueError("threshold compares probabilities: it needs remasking='low_confidence'")


def _check(model, prompt_ids, attention_mask, mask_id, **settings):
    if mask_id is None:
        mask_id = getattr(model.config, "mask_token_id", None)
        if mask_id is None:
            raise ValueError("mask_id: the model config has no mask_token_id; pass mask_id (generate.py: --mask_id)")
    width = model_vocab_size(model.config)
    if width is not None and not 0 <= mask_id < width:
        raise ValueError(f"mask_id {mask_id} is not a token id of the model (0 .. {width - 1}); pass the model's mask "
                         "token id as mask_id (generate.py: --mask_id)")
    if prompt_ids.dim() != 2:
        raise ValueError(f"prompt_ids must have shape [B, P], got {tuple(prompt_ids.shape)}")
    if attention_mask is not None and attention_mask.shape != prompt_ids.shape:
        raise ValueError(f"attention_mask must have the prompt's shape {tuple(prompt_ids.shape)}, got {tuple(attention_mask.shape)}")
    check_settings(**settings)
    if settings["cache"] != "none" and not _native(model):
        raise ValueError(f"cache={settings['cache']!r} needs the native LLaDA model (modeling_llada.LLaDAModelLM), got "
                         f"{type(model).__name__}")
    return mask_id


def _native(model):
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
        self.native = _native(model)
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
        """logits [B, M, N] (float32, p(mask) = 0), log-normaliser, predicted token and its logit."""
        logits = self.logits(x, positions)
        top_logit, top = logits.max(-1)
        shifted = torch.sub(logits, top_logit[..., None], out=self._buffer("exp", logits.shape, logits))
        log_z = top_logit + shifted.exp_().sum(-1).log()
        if self.temperature == 0:
            pred, pred_logit = top, top_logit
        else:
            pred = add_gumbel_noise(logits, self.temperature).argmax(-1)
            pred_logit = logits.gather(-1, pred[..., None]).squeeze(-1)
        return logits, log_z, pred, pred_logit


@torch.no_grad()
def generate(model, prompt_ids, attention_mask=None, steps=32, gen_length=256, block_length=256, k=0.0,
             temperature=0.0, remasking="low_confidence", mask_id=None, sampler="confidence", progress=False,
             cache="none", threshold=None, stats=None):
    """Returns [B, P + gen_length] ids: the (left-padded) prompts followed by their completions.
    A dict passed as `stats` receives "steps" (sampling steps taken, <= steps), "full_forwards"
    and "span_forwards" (model passes over the whole sequence, and over a cached span)."""
    mask_id = _check(model, prompt_ids, attention_mask, mask_id, steps=steps, gen_length=gen_length,
                     block_length=block_length, k=k, temperature=temperature, remasking=remasking, sampler=sampler,
                     cache=cache, threshold=threshold)
    B, P = prompt_ids.shape
    device = prompt_ids.device
    x = torch.cat([prompt_ids, torch.full((B, gen_length), mask_id, dtype=prompt_ids.dtype, device=device)], 1)
    if attention_mask is not None:
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(B, gen_length)], 1)
        if bool(attention_mask.all()):
            attention_mask = None  # no padding: the model may take its fastest attention path
    scorer = _Scorer(model, attention_mask, mask_id, temperature, cache)
    blocks = gen_length // block_length
    bar = tqdm(total=steps, desc="sampling", disable=not progress)
    if sampler == "ancestral":
        x = _ancestral(scorer, x, P, blocks, block_length, steps // blocks, k, mask_id, temperature, bar)
        steps_taken = steps
    else:
        x, steps_taken = _confidence(scorer, x, P, blocks, block_length, steps // blocks, k, mask_id, remasking,
                                     threshold, bar)
    bar.close()
    if stats is not None:
        stats.update(steps=steps_taken, full_forwards=scorer.full_forwards, span_forwards=scorer.span_forwards)
    return x


def _confidence(scorer, x, P, blocks, block_length, steps_per_block, k, mask_id, remasking, threshold, bar):
    B, device = x.shape[0], x.device
    schedule = transfer_schedule(block_length, steps_per_block)
    budgets = edit_budgets(schedule, k)  # the same for every block and row: no host sync needed
    log_threshold = None if threshold is None else (math.log(threshold) if threshold > 0 else -math.inf)
    # Re-edits look at every generated position up to the current block (never the prompt or
    # its padding); with a cache, only at the current block (earlier ones are not scored again).
    cached = scorer.cache_mode != "none"
    steps_taken = 0
    for b in range(blocks):
        lo, hi = P + b * block_length, P + (b + 1) * block_length
        edit_lo = lo if cached else P
        scorer.begin_block(lo, hi, x.shape[1])
        still_masked = block_length
        edits_used = torch.zeros(B, dtype=torch.long, device=device)  # every block starts afresh
        revealed = torch.zeros(B, dtype=torch.long, device=device)
        for i, (n_reveal, budget) in enumerate(zip(schedule, budgets)):
            if threshold is not None and i > 0 and not bool((x[:, lo:hi] == mask_id).any()):
                break  # every row's block is complete: the block ends early
            if budget == 0 and threshold is None:
                # Only the block's masked positions matter; every row has the same number left.
                rows = (x[:, lo:hi] == mask_id).to(torch.int8).topk(still_masked, -1).indices + lo
                eligible = None
            else:
                rows = torch.arange(edit_lo, hi, device=device).expand(B, -1)
                tokens = x[:, edit_lo:hi]
                eligible = (tokens == mask_id) & (rows >= lo)
            logits, log_z, pred, pred_logit = scorer(x, rows)
            log_p_pred = pred_logit - log_z
            if remasking == "low_confidence":
                conf = log_p_pred
            else:
                conf = torch.rand(pred.shape, device=device)
            if eligible is not None:
                conf = conf.masked_fill(~eligible, -torch.inf)
            if threshold is not None:
                # At least the schedule's count, plus every masked position at or above the
                # threshold, but no more than the row has masked.
                n_row = torch.maximum((conf >= log_threshold).sum(-1), torch.full_like(revealed, n_reveal))
                n_row = torch.minimum(n_row, eligible.sum(-1))
                revealed += n_row
                budget = edit_budget(k, revealed) if k > 0 and i > 0 else 0
            if eligible is not None and (torch.is_tensor(budget) or budget > 0):
                # Decoded tokens whose prediction differs and is at least as likely as the token
                # take the prediction, most likely first, within the budget left.
                cur_logit = logits.gather(-1, tokens[..., None]).squeeze(-1)
                cand = (tokens != mask_id) & (pred != tokens) & (pred_logit >= cur_logit)
                edit = cand & (_ranks(torch.where(cand, log_p_pred, -torch.inf)) < (budget - edits_used)[:, None])
                edits_used += edit.sum(-1)
                x[:, edit_lo:hi] = torch.where(edit, pred, tokens)  # edits touch decoded positions only
            if threshold is None:
                chosen = conf.topk(n_reveal, dim=-1).indices
                x.scatter_(1, rows.gather(1, chosen), pred.gather(1, chosen))
            else:
                reveal = _ranks(conf) < n_row[:, None]
                x[:, edit_lo:hi] = torch.where(reveal, pred, x[:, edit_lo:hi])
            still_masked -= n_reveal
            steps_taken += 1
            bar.update(1)
    return x, steps_taken


def _ranks(scores):
    """Each entry's rank within its row, 0 for the highest score."""
    order = scores.argsort(-1, descending=True)
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)


def _ancestral(scorer, x, P, blocks, block_length, steps_per_block, k, mask_id, temperature, bar):
    """Exact reverse steps from t = 1 (z ~ r) to t = 0 on LLaDA's schedule alpha_t = 1 - t,
    block by block; positions outside the current block are held. The model's p is
    softmax(logits / temperature), its argmax at temperature 0."""
    B = x.shape[0]
    for b in range(blocks):
        lo, hi = P + b * block_length, P + (b + 1) * block_length
        if k > 0:  # the prior at t = 1 is r: a uniform id with probability k, else the mask
            r = stationary_noise(k, mask_id, scorer.vocab_size(x), device=x.device)
            x[:, lo:hi] = torch.multinomial(r, B * block_length, replacement=True).view(B, block_length)
        for i in range(steps_per_block):
            t, s = 1 - i / steps_per_block, 1 - (i + 1) / steps_per_block
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


def load_model(path, dtype=None, device=None, tokenizer_path=None):
    """(model, tokenizer, device) for sampling: the checkpoint (native LLaDA model for model_type
    "llada") in eval mode, on sampling_device_and_dtype's device and dtype. The tokenizer pads on the left
    (pad = eos when it has no pad token) for batches of prompts."""
    import transformers

    import modeling_llada  # noqa: F401  (registers the native LLaDA model)

    device, dtype = sampling_device_and_dtype(device, dtype)
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
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--gen_length", type=int, default=256)
    ap.add_argument("--block_length", type=int, default=256)
    ap.add_argument("--k", type=float, default=0.0, help="0: LLaDA's sampler; > 0: XDLM re-editing budget k/(1-k)")
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--remasking", choices=REMASKING, default="low_confidence")
    ap.add_argument("--sampler", choices=SAMPLERS, default="confidence")
    ap.add_argument("--mask_id", type=int, default=None, help="the mask token id (default: the model config's mask_token_id)")
    ap.add_argument("--cache", choices=CACHES, default="none",
                    help="approximate KV cache refreshed at each block's first step (not the paper's protocol)")
    ap.add_argument("--threshold", type=float, default=None,
                    help="reveal every masked position of the block at least this probable (not the paper's protocol)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=("bfloat16", "float32"), default=None,
                    help="default: bfloat16 on GPU, float32 on CPU")
    args = ap.parse_args(argv)
    settings = dict(steps=args.steps, gen_length=args.gen_length, block_length=args.block_length, k=args.k,
                    temperature=args.temperature, remasking=args.remasking, sampler=args.sampler, cache=args.cache,
                    threshold=args.threshold)
    try:  # before the model loads
        check_settings(**settings)
    except ValueError as e:
        ap.error("--" + str(e))  # the settings are named as their flags

    torch.manual_seed(args.seed)
    model, tokenizer, device = load_model(args.model_name_or_path, args.dtype)
    if args.mask_id is None and getattr(model.config, "mask_token_id", None) is None:
        ap.error(f"{args.model_name_or_path} has no mask_token_id in its config: pass --mask_id")
    ids = tokenizer(args.prompt, return_tensors="pt", add_special_tokens=False)["input_ids"].to(device)
    try:  # the checks that need the model (the mask id's range; a cache needs the native model)
        _check(model, ids, None, args.mask_id, **settings)
    except ValueError as e:
        ap.error(str(e))
    stats = {}
    out = generate(model, ids, mask_id=args.mask_id, progress=True, stats=stats, **settings)
    if args.threshold is not None:
        print(f"steps used: {stats['steps']} of {args.steps}", file=sys.stderr)
    print(decode_completion(tokenizer, out[0, ids.shape[1]:]))


def decode_completion(tokenizer, ids):
    """Text of all the generated ids with special tokens (eos padding among them) skipped, as the
    paper's evaluation decodes: text the model wrote after an eos is kept."""
    return tokenizer.decode(ids.tolist(), skip_special_tokens=True)


if __name__ == "__main__":
    main()
