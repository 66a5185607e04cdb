"""Log-likelihood of answer tokens given a context under a diffusion LM: a Monte-Carlo bound,
for a batch of (context, answer) requests of different lengths.

  estimator="masked"  LLaDA's estimator (ML-GSAI/LLaDA eval_llada.py, get_log_likelihood.py).
        mc_num draws in groups of batch_size. In each group the masked counts are a systematic
        sample: a random start s in 1..L (L the answer's length), then evenly spaced by L / b and
        wrapped into 1..L (`systematic_counts`); each draw masks that many answer positions chosen
        uniformly, never the context. A draw's value is the cross-entropy of its masked tokens
        times L / n (n masked). The estimate of -log p(answer | context) is the mean of the draws.
  estimator="xdlm"    the XDLM bound of the answer given the context under mixing ratio k: the
        continuous-time NELBO E_t E_z sum_i h_i(z, t) over the answer, t ~ U(0, 1), alpha = 1 - t,
        z from XDLM's forward process (each answer token noised with probability t, a noised token
        drawn from r: a uniform id with probability k, else the mask; the context never), h the
        training loss's per-token term (xdlm_loss.xdlm_loss). Drawing t and corrupting token by
        token makes the number n of noised tokens binomial, weighted by about 1 / t: a heavy-tailed
        estimate (on a tiny model its standard error was ~170x the masked one's). So the bound is
        split by n, exactly: under t ~ U(0, 1), n is uniform on 0..L, the noised set is a uniform
        n-subset, and t given n is Beta(n + 1, L - n + 1), whose mean of f(t) is (L + 1) / n times
        the Beta(n, L - n + 1) mean of t f(t). Each draw takes n from the same systematic counts as
        the masked estimator, noises a uniform n-subset with draws from r, takes t ~ Beta(n, L - n + 1)
        (the n-th smallest of the L uniforms that chose the subset) and is worth
        (L / n) t sum_i h_i(z, t). The n = 0 term, the clean answer's (1 / (L + 1)) sum_i h_i(x, t0)
        with t0 ~ Beta(1, L + 1), is one extra sequence per request scored once per group; it is 0
        at k = 0. At k = 0 a draw's value is (L / n) sum of the masked tokens' cross-entropies: the
        masked estimator's, from the same random numbers (the two agree to rounding).

Both compute the loss in float32 from the model's logits (bf16 on a GPU) with the mask logit
excluded, as in training (the xdlm_loss functions do both). Only the positions that carry loss
go through the output head. cfg > 0 is LLaDA's unsupervised classifier-free guidance: every
sequence also runs as an unconditional copy with the context replaced by masks, and the logits
are uncond + (cfg + 1) (cond - uncond).

Each request draws from its own generator, seeded by (seed, the request's token ids): its
estimate does not depend on the other requests of the call, their order, or how draws are packed
into forward passes, which hold draws of several requests (padded on the right, with an attention
mask). Returns per request the log-likelihood estimate (minus the bound's estimate) and its
Monte-Carlo standard error: the spread of the group means (groups are independent, the draws
within one are not), NaN with a single group.

Deviations from LLaDA's eval_llada.py, on purpose: (1) the counts round j L / b half up in integer
arithmetic; LLaDA's torch.round rounds ties half to even, which depends on the start's parity, so
there not every count is equally likely and its estimate is biased (for example L = 12, batch 8:
odd counts are drawn 1/24 of the time each, even ones 1/8); (2) the mask logit is excluded and the
loss is float32 (LLaDA: bf16 cross-entropy over all logits, CFG in bf16); (3) a generator per
request (LLaDA: one global seed for the run, so an estimate depends on the requests before it).
"""
import math
import operator
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from generate import is_native, resolve_mask_id
from model_config import max_length
from xdlm_loss import masked_diffusion_loss, stationary_noise, xdlm_loss
from xdlm_trainer import seeded_generator

ESTIMATORS = ("masked", "xdlm")
# Logit elements formed at a time (per copy): bounds the [positions, N] float32 temporaries.
_LOGIT_ELEMENTS = 1 << 24


class Estimate(NamedTuple):
    log_likelihood: float  # minus the estimated bound on -log p(answer | context)
    standard_error: float  # its Monte-Carlo standard error (NaN with a single group of draws)


def _is_int(value):
    try:
        operator.index(value)
    except TypeError:
        return False
    return not isinstance(value, bool)


def check_settings(estimator="masked", k=0.0, cfg=0.0, mc_num=128, batch_size=8, seed=1234, draws_per_forward=64):
    """Raises ValueError naming the first bad setting (no model needed)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if not isinstance(k, (int, float)) or isinstance(k, bool) or not 0.0 <= k <= 1.0:
        raise ValueError(f"k (the XDLM mixing ratio) must be a number in [0, 1], got {k!r}")
    if estimator == "masked" and k != 0:
        raise ValueError(f"k={k!r} applies to estimator='xdlm'; the masked estimator is LLaDA's (the k = 0 bound)")
    if not isinstance(cfg, (int, float)) or isinstance(cfg, bool) or not (math.isfinite(cfg) and cfg >= 0):
        raise ValueError(f"cfg (the guidance scale) must be a finite number >= 0, got {cfg!r}")
    for name, value in (("mc_num", mc_num), ("batch_size", batch_size), ("draws_per_forward", draws_per_forward)):
        if not _is_int(value) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if mc_num % batch_size:
        raise ValueError(f"mc_num ({mc_num}) must be a multiple of batch_size ({batch_size}): draws come in groups "
                         "of batch_size, each a systematic sample of the masked counts")
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def estimator_settings(estimator, model_k, **settings):
    """`estimate`'s settings for a model trained (and sampled) at model_k, checked: the masked
    estimator is LLaDA's, the k = 0 bound, whatever the model's k; xdlm is the bound at model_k."""
    chosen = dict(estimator=estimator, k=model_k if estimator == "xdlm" else 0.0, **settings)
    check_settings(**chosen)
    return chosen


def systematic_counts(start, answer_length, group_size):
    """The masked counts of one group of draws: start s in 1..L, then spaced by L / b (rounded half
    up, in integers) and wrapped into 1..L. Over a uniform start every count in 1..L is equally
    likely for every draw of the group."""
    L, b = answer_length, group_size
    return [(start - 1 + (2 * j * L + b) // (2 * b)) % L + 1 for j in range(b)]


def _request_generator(seed, context_ids, answer_ids):
    # The context's length first: (ab, c) and (a, bc) draw differently.
    return seeded_generator("cpu", seed, len(context_ids), *context_ids, *answer_ids)


class Draws(NamedTuple):
    """One request's Monte-Carlo draws. A draw's value is weight x its summed per-token loss at
    rate; a group's value is the mean of its draws' values, plus (xdlm, k > 0) 1 / (L + 1) x the
    clean answer's summed loss at the group's clean_rate."""
    noisy: torch.Tensor       # [mc_num, C + L] int64: context untouched, answer corrupted
    rate: torch.Tensor        # [mc_num] float64: p_mask = n / L (masked) or t (xdlm, alpha = 1 - t)
    weight: torch.Tensor      # [mc_num] float64: 1 (masked) or (L / n) t (xdlm)
    clean_rate: torch.Tensor  # [mc_num / batch_size] float64: t0 ~ Beta(1, L + 1) per group (xdlm, k > 0), else empty


def draw_corruptions(context_ids, answer_ids, estimator="masked", k=0.0, mc_num=128, batch_size=8, seed=1234,
                     mask_id=None, vocab_size=None):
    """The Draws that `estimate` scores for one request (see the module's docstring). vocab_size
    (N, the model's width, mask id included) is the range of k > 0's uniform noise."""
    context = torch.as_tensor(context_ids, dtype=torch.long)
    answer = torch.as_tensor(answer_ids, dtype=torch.long)
    C, L, b = len(context), len(answer), batch_size
    g = _request_generator(seed, context.tolist(), answer.tolist())
    noise = None if estimator == "masked" or k == 0 else stationary_noise(k, mask_id, vocab_size, torch.float64)
    noisy, rate, weight, clean_rate = [], [], [], []
    for _ in range(mc_num // b):
        n = torch.tensor(systematic_counts(int(torch.randint(1, L + 1, (1,), generator=g)), L, b))
        u = torch.rand(b, L, generator=g, dtype=torch.float64)
        # The ranks of iid uniforms are a uniform permutation, independent of the sorted values:
        # the n smallest mark a uniform n-subset, and the n-th smallest is t ~ Beta(n, L - n + 1).
        noised = u.argsort(1).argsort(1) < n[:, None]
        if noise is None:
            corrupted = torch.where(noised, mask_id, answer)
        else:
            values = torch.multinomial(noise, b * L, replacement=True, generator=g).view(b, L)
            corrupted = torch.where(noised, values, answer)
        noisy.append(torch.cat([context.expand(b, C), corrupted], 1))
        if estimator == "masked":
            rate.append(n.double() / L)
            weight.append(torch.ones(b, dtype=torch.float64))
        else:
            t = u.sort(1).values.gather(1, n[:, None] - 1)[:, 0]
            rate.append(t)
            weight.append(L / n.double() * t)
            if noise is not None:  # t0 = 1 - v^(1 / (L + 1)), v in (0, 1]: Beta(1, L + 1), below 1
                clean_rate.append(1 - (1 - torch.rand(1, generator=g, dtype=torch.float64)) ** (1 / (L + 1)))
    clean_rate = torch.cat(clean_rate) if clean_rate else torch.zeros(0, dtype=torch.float64)
    return Draws(torch.cat(noisy), torch.cat(rate), torch.cat(weight), clean_rate)


def guided_logits(cond, uncond, cfg):
    """LLaDA's unsupervised classifier-free guidance, in float32 (float64 for float64 logits):
    uncond + (cfg + 1) (cond - uncond)."""
    dtype = torch.float64 if torch.float64 in (cond.dtype, uncond.dtype) else torch.float32
    cond, uncond = cond.to(dtype), uncond.to(dtype)
    return uncond + (cfg + 1) * (cond - uncond)


def token_losses(logits, noisy, clean, p_mask, estimator, k, mask_id):
    """Per-position loss [M] of logits [M, N] (float32): the masked estimator's -log p(x) / p_mask
    on masked positions (xdlm_loss.masked_diffusion_loss) or the XDLM NELBO term at alpha = 1 - p_mask
    (xdlm_loss.xdlm_loss); each position is its own row, p_mask [M] its draw's."""
    args = (logits[:, None], noisy[:, None], clean[:, None])
    if estimator == "masked":
        return masked_diffusion_loss(*args, p_mask, mask_id)[:, 0]
    return xdlm_loss(*args, 1 - p_mask, k, mask_id)[:, 0]


def _check_model(model, mask_id):
    if not is_native(model):
        raise TypeError(f"the likelihood estimators need this repository's LLaDA model (modeling_llada.LLaDAModelLM, "
                        f"with final_hidden and logits_from_hidden), got {type(model).__name__}")
    N = model.output_head_weight.shape[0]
    mask_id = resolve_mask_id(mask_id, getattr(model.config, "mask_token_id", None))
    if not 0 <= mask_id < N:
        raise ValueError(f"mask_id {mask_id!r} is not a token id of the model (0 .. {N - 1})")
    return int(mask_id), N


def _check_requests(requests, mask_id, N, longest):
    checked = []
    for i, request in enumerate(requests):
        try:
            context, answer = request
        except (TypeError, ValueError):
            raise ValueError(f"requests[{i}] must be a (context_ids, answer_ids) pair") from None
        parts = []
        for name, ids in (("context", context), ("answer", answer)):
            t = torch.as_tensor(ids).cpu()
            if t.dim() != 1 or (t.numel() and t.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8)):
                raise ValueError(f"requests[{i}]: the {name} must be a sequence of token ids, got {t.dtype} "
                                 f"{tuple(t.shape)}")
            t = t.long()
            if t.numel() and not bool(((t >= 0) & (t < N)).all()):
                raise ValueError(f"requests[{i}]: the {name} has token ids outside the model's vocabulary [0, {N})")
            if bool((t == mask_id).any()):
                raise ValueError(f"requests[{i}]: the {name} contains the mask id {mask_id}; requests are clean text")
            parts.append(t)
        if not len(parts[1]):
            raise ValueError(f"requests[{i}]: the answer is empty; there is nothing to score")
        if longest is not None and len(parts[0]) + len(parts[1]) > longest:
            raise ValueError(f"requests[{i}]: context + answer = {len(parts[0])} + {len(parts[1])} tokens exceeds the "
                             f"model's max_sequence_length {longest}")
        checked.append(tuple(parts))
    return checked


@torch.no_grad()
def estimate(model, requests, estimator="masked", k=0.0, cfg=0.0, mc_num=128, batch_size=8, seed=1234, mask_id=None,
             draws_per_forward=64, progress=False):
    """[Estimate(log_likelihood, standard_error)] per (context_ids, answer_ids) request (lists or
    1-D tensors of token ids; the context may be empty, the answer may not). See the module's
    docstring for the estimators. draws_per_forward: sequences (Monte-Carlo draws of any requests,
    and xdlm's clean answers) one forward pass holds; with cfg > 0 each is run twice. Every
    argument is checked before the first forward pass."""
    check_settings(estimator, k, cfg, mc_num, batch_size, seed, draws_per_forward)
    mask_id, N = _check_model(model, mask_id)
    requests = _check_requests(requests, mask_id, N, max_length(model.config))
    if not requests:
        return []
    G = mc_num // batch_size
    # Per request: the draws' values (mc_num) and the clean answer's term per group (G).
    values = torch.zeros(len(requests), mc_num + G, dtype=torch.float64)
    # Longest first, so a forward's rows have similar lengths (little padding).
    order = sorted(range(len(requests)), key=lambda i: -(len(requests[i][0]) + len(requests[i][1])))
    settings = dict(estimator=estimator, k=k, mc_num=mc_num, batch_size=batch_size, seed=seed, mask_id=mask_id,
                    vocab_size=N)
    scorer = dict(model=model, estimator=estimator, k=k, cfg=cfg, mask_id=mask_id)
    queue, queued = [], 0  # _Rows waiting for a forward pass
    bar = tqdm(total=len(requests), desc="likelihood", disable=not progress)
    for i in order:
        queue.append(_rows(i, requests[i], draw_corruptions(*requests[i], **settings), mc_num + G))
        queued += len(queue[-1].seqs)
        while queued >= draws_per_forward:
            pack, queue = _take(queue, draws_per_forward)
            queued -= draws_per_forward
            _score(pack, values, **scorer)
        bar.update(1)
    if queue:
        _score(queue, values, **scorer)
    bar.close()
    groups = values[:, :mc_num].view(len(requests), G, batch_size).mean(-1) + values[:, mc_num:]
    nll = groups.mean(-1)
    se = groups.std(-1) / math.sqrt(G) if G > 1 else torch.full_like(nll, math.nan)
    return [Estimate(-float(a), float(b)) for a, b in zip(nll, se)]


class _Rows(NamedTuple):
    """Sequences to run and the loss evaluations on them: evaluation e scores the loss positions of
    sequence row[e] at rate[e], times weight[e], into slot dest[e] of `values` (flattened)."""
    seqs: torch.Tensor       # [S, T] noisy sequences
    clean: torch.Tensor      # [T] the request's clean sequence
    context_length: int
    row: torch.Tensor        # [E] int64, indices into seqs
    rate: torch.Tensor       # [E] float64
    weight: torch.Tensor     # [E] float64
    dest: torch.Tensor       # [E] int64


def _rows(i, request, draws, slots):
    """Request i's sequences: its draws, then (xdlm, k > 0) its clean answer, scored once per group."""
    context, answer = request
    m, G = len(draws.rate), len(draws.clean_rate)
    clean = torch.cat([context, answer])
    seqs = torch.cat([draws.noisy, clean[None]]) if G else draws.noisy
    row = torch.cat([torch.arange(m), torch.full((G,), m)])
    rate = torch.cat([draws.rate, draws.clean_rate])
    weight = torch.cat([draws.weight, torch.full((G,), 1 / (len(answer) + 1), dtype=torch.float64)])
    dest = i * slots + torch.arange(m + G)
    return _Rows(seqs, clean, len(context), row, rate, weight, dest)


def _take(queue, n):
    """The first n sequences of the queue (splitting a request's rows if needed), and the rest."""
    pack, rest = [], list(queue)
    while n:
        rows = rest.pop(0)
        if len(rows.seqs) <= n:
            pack.append(rows)
            n -= len(rows.seqs)
            continue
        head = rows.row < n
        pack.append(rows._replace(seqs=rows.seqs[:n], row=rows.row[head], rate=rows.rate[head],
                                  weight=rows.weight[head], dest=rows.dest[head]))
        rest.insert(0, rows._replace(seqs=rows.seqs[n:], row=rows.row[~head] - n, rate=rows.rate[~head],
                                     weight=rows.weight[~head], dest=rows.dest[~head]))
        n = 0
    return pack, rest


def _score(pack, values, model, estimator, k, cfg, mask_id):
    """One forward pass over the sequences of `pack`; adds each evaluation's weighted summed loss
    into its slot of `values`."""
    device = model.output_head_weight.device
    R = sum(len(rows.seqs) for rows in pack)
    T = max(rows.seqs.shape[1] for rows in pack)
    x = torch.zeros(R, T, dtype=torch.long)
    clean = torch.zeros(R, T, dtype=torch.long)
    keep = torch.zeros(R, T, dtype=torch.bool)
    answer = torch.zeros(R, T, dtype=torch.bool)
    start, evals = 0, []
    for rows in pack:
        S, n = rows.seqs.shape
        x[start:start + S, :n] = rows.seqs
        clean[start:start + S, :n] = rows.clean
        keep[start:start + S, :n] = True
        answer[start:start + S, rows.context_length:n] = True
        evals.append((rows.row + start, rows.rate, rows.weight, rows.dest))
        start += S
    e_row, e_rate, e_weight, e_dest = (torch.cat(parts) for parts in zip(*evals))
    # The positions with loss: at k > 0 every answer position (unmasked and uniform-noised tokens
    # carry loss too), at k = 0 the masked ones.
    scored = answer if estimator == "xdlm" and k > 0 else answer & (x == mask_id)
    # Evaluation e covers the scored positions of its row: flatten them, row by row.
    per_row = scored.sum(1)
    pos_r, pos_c = scored.nonzero(as_tuple=True)
    first = per_row.cumsum(0) - per_row
    count = per_row[e_row]
    e_of = torch.repeat_interleave(torch.arange(len(e_row)), count)
    within = torch.arange(int(count.sum())) - torch.repeat_interleave(count.cumsum(0) - count, count)
    pos = first[e_row][e_of] + within
    r, c = pos_r[pos], pos_c[pos]

    inputs = x
    context = keep & ~answer
    guided = cfg > 0 and bool(context.any())  # without a context the unconditional copy is the same sequence
    if guided:  # the unconditional copy: the context masked, the rest as drawn
        inputs = torch.cat([x, torch.where(context, mask_id, x)])
    attention_mask = None if bool(keep.all()) else keep.repeat(2 if guided else 1, 1).long().to(device)
    hidden = model.final_hidden(inputs.to(device), attention_mask)
    chunk = max(1, _LOGIT_ELEMENTS // model.output_head_weight.shape[0])
    for s in range(0, len(r), chunk):
        rs, cs, es = r[s:s + chunk], c[s:s + chunk], e_of[s:s + chunk]
        rd, cd = rs.to(device), cs.to(device)
        logits = model.logits_from_hidden(hidden[rd, cd])
        if guided:
            logits = guided_logits(logits, model.logits_from_hidden(hidden[rd + R, cd]), cfg)
        loss = token_losses(logits, x[rs, cs].to(device), clean[rs, cs].to(device), e_rate[es].to(device), estimator,
                            k, mask_id)
        values.view(-1).index_add_(0, e_dest[es], loss.double().cpu() * e_weight[es])


# ---------------------------------------------------------------------------
# Text requests
# ---------------------------------------------------------------------------

def encode_pair(tokenizer, context, continuation):
    """(context ids, answer ids) as LLaDA's eval_llada.py (after lm-eval's TemplateLM): trailing
    whitespace of the context moves to the start of the continuation; the answer is what tokenizing
    context + continuation adds after the context's own tokens (special tokens as the tokenizer adds
    them by default, e.g. a BOS at the start)."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = tokenizer(context + continuation)["input_ids"]
    context_ids = tokenizer(context)["input_ids"]
    return list(context_ids), list(whole[len(context_ids):])


def estimate_texts(model, tokenizer, pairs, **settings):
    """estimate() of (context, continuation) text pairs, encoded by encode_pair."""
    check_settings(**{k: v for k, v in settings.items() if k not in ("mask_id", "progress")})
    return estimate(model, [encode_pair(tokenizer, c, a) for c, a in pairs], **settings)
