"""XDLM: mixed mask / uniform-noise discrete diffusion, its forward process and loss.

Notation (see docs/math.md): N vocabulary size (mask id included), m the mask
id, k the mixing ratio, alpha = alpha_t the signal rate, beta = 1 - alpha,
r(e) = k/N + (1 - k)[e = m] the stationary noise, p the model's distribution with
p(m) = 0.

Forward process    q(z_t = e | x) = alpha [e = x] + beta r(e).
Per-token NELBO    h_t = lim_{s->t} KL(q(z_s | z_t, x) || p(z_s | z_t)) / (alpha_s - alpha_t)
                     = w [ N([z_t = x] - p(z_t))/A - (1/alpha) log(A*/A) + log(B*/B) + (k beta/alpha) P ].

k = 0 is LLaDA's masked diffusion loss, k = 1 uniform-noise diffusion.
Losses are computed in float32 (float64 when the logits are float64).
"""
import math
import operator

import torch
import torch.nn.functional as F

# LLaDA's mask-rate floor: p_mask = (1 - eps) t + eps.
MASK_RATE_EPS = 1e-3
# Relative difference allowed between linear_xdlm_loss and the reference path (loss and
# gradients), by compute dtype: the benchmarks and the GPU check exit non-zero beyond it.
FUSED_LOSS_TOLERANCE = {"float32": 1e-5, "bfloat16": 2e-2, "float16": 2e-2}
# Below this argument the series forms of g and phi are used (truncation error < 1e-8
# relative); above it the direct forms lose at most ~1e-5 relative to cancellation.
_SERIES_BELOW = 0.01
# Vocabulary slice for the sum of g: bounds its temporaries.
_SUM_SLICE = 8192


# ---------------------------------------------------------------------------
# Checks shared by every entry point: a clear error before any work is done.
# ---------------------------------------------------------------------------

def _check_k(k):
    try:
        value = float(k)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"k (the XDLM mixing ratio) must be a number in [0, 1], got {k!r}")
    return value


def _check_mask_id(mask_id, vocab_size):
    try:
        value = operator.index(mask_id)
    except TypeError:
        value = -1
    if not 0 <= value < vocab_size:
        raise ValueError(f"mask_id must be an integer in [0, {vocab_size}) (the vocabulary size), got {mask_id!r}")
    return value


def _check_alpha(alpha_t, batch_size, name="alpha_t"):
    if not torch.is_tensor(alpha_t) or alpha_t.shape != (batch_size,):
        shape = tuple(alpha_t.shape) if torch.is_tensor(alpha_t) else type(alpha_t).__name__
        raise ValueError(f"{name} must be a tensor of shape [B] = ({batch_size},), got {shape}")
    if not bool(((alpha_t > 0) & (alpha_t <= 1)).all()):
        raise ValueError(f"{name} must lie in (0, 1], got values in [{alpha_t.min().item()}, {alpha_t.max().item()}]")


def _check_ids(name, ids, vocab_size, mask_id=None):
    if ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{name} must be an integer tensor, got {ids.dtype}")
    if ids.numel() and not bool(((ids >= 0) & (ids < vocab_size)).all()):
        raise ValueError(f"{name} must lie in [0, {vocab_size}) (the vocabulary size)")
    if mask_id is not None and bool((ids == mask_id).any()):
        raise ValueError(f"{name} must not contain the mask id {mask_id}: clean tokens are never the mask")


def _check_loss_inputs(shape, vocab_size, noisy_ids, clean_ids, alpha_t, mask_id, source, loss_weight=None):
    named = {"noisy_ids": noisy_ids, "clean_ids": clean_ids}
    if loss_weight is not None:
        named["loss_weight"] = loss_weight
    for name, t in named.items():
        if t.shape != shape:
            raise ValueError(f"{name} must have shape [B, L] = {shape} to match {source}, got {tuple(t.shape)}")
    mask_id = _check_mask_id(mask_id, vocab_size)
    _check_ids("noisy_ids", noisy_ids, vocab_size)
    _check_ids("clean_ids", clean_ids, vocab_size, mask_id=mask_id)
    _check_alpha(alpha_t, shape[0])
    return mask_id


# ---------------------------------------------------------------------------
# Noise schedule and forward process
# ---------------------------------------------------------------------------

def sample_mask_rate(batch_size, eps=MASK_RATE_EPS, generator=None, device=None):
    """LLaDA's mask rate p_mask = (1 - eps) t + eps, t ~ U(0, 1); returns p_mask [B]."""
    t = torch.rand(batch_size, generator=generator, device=device)
    return (1 - eps) * t + eps


def stratified_mask_rate(u, strata, n_strata, eps=MASK_RATE_EPS):
    """p_mask of the samples in `strata` (indices in [0, n_strata)) of a batch stratified with the
    shared offset u ~ U(0, 1): t_i = (u + strata_i / n_strata) mod 1. Each t_i is still U(0, 1)
    (the loss stays unbiased) but the batch covers [0, 1) evenly, which lowers the variance of
    the batch loss at no cost. Lets the samples of one optimizer batch, spread over ranks and
    accumulation steps, each take its own stratum."""
    t = (u + strata / n_strata) % 1.0
    return (1 - eps) * t + eps


def corrupt(clean_ids, alpha_t, k, mask_id, vocab_size, generator=None, prompt_mask=None):
    """Sample z_t ~ q(z_t | x) = alpha [z_t = x] + beta r(z_t), independently per token.

    One uniform draw u per token: keep x if u < alpha, a uniformly random id from
    [0, N) if u < alpha + k beta, else the mask. `prompt_mask` (bool, shape of clean_ids) marks
    positions that are never noised (prompt tokens in conditional training).
    """
    k = _check_k(k)
    mask_id = _check_mask_id(mask_id, vocab_size)
    if clean_ids.dim() != 2:
        raise ValueError(f"clean_ids must have shape [B, L], got {tuple(clean_ids.shape)}")
    _check_alpha(alpha_t, clean_ids.shape[0])
    if prompt_mask is not None and (prompt_mask.shape != clean_ids.shape or prompt_mask.dtype != torch.bool):
        raise ValueError(f"prompt_mask must be a bool tensor of shape {tuple(clean_ids.shape)}, "
                         f"got {prompt_mask.dtype} {tuple(prompt_mask.shape)}")
    alpha = alpha_t.to(torch.float64)[:, None]
    u = torch.rand(clean_ids.shape, generator=generator, device=clean_ids.device, dtype=torch.float64)
    random_ids = torch.randint(0, vocab_size, clean_ids.shape, generator=generator, device=clean_ids.device)
    noisy = torch.where(u < alpha + k * (1 - alpha), random_ids, torch.full_like(clean_ids, mask_id))
    noisy = torch.where(u < alpha, clean_ids, noisy)
    if prompt_mask is not None:
        noisy = torch.where(prompt_mask, clean_ids, noisy)
    return noisy


def stationary_noise(k, mask_id, vocab_size, dtype=torch.float32, device=None):
    """r(e) = k/N + (1 - k)[e = m], shape [N]."""
    r = torch.full((vocab_size,), k / vocab_size, dtype=dtype, device=device)
    r[mask_id] += 1 - k
    return r


def forward_marginal(y, alpha, r):
    """f_t(y, e) = alpha y(e) + beta r(e): the law of z_t given clean distribution y [..., N];
    alpha broadcasts against y's leading dimensions."""
    return alpha[..., None] * y + (1 - alpha[..., None]) * r


def reverse_posterior(p, z_t, alpha_s, alpha_t, k, mask_id):
    """p(z_s = e | z_t) = q(z_t | z_s = e) f_s(p, e) / f_t(p, z_t), over all e: [B, L, N].

    p [B, L, N] is the model's (or a one-hot x: then the true posterior q(z_s | z_t, x));
    alpha_s > alpha_t are [B]. q(z_t | z_s) = (alpha_t/alpha_s)[z_t = z_s] + (1 - alpha_t/alpha_s) r(z_t)
    because r is stationary.

    Where p gives no mass to any z_s that can lead to z_t (f_t(p, z_t) = 0: a one-hot p, at
    temperature 0, that differs from a token decoded earlier at k = 0), the step follows the
    forward process alone, q(z_t | z_s) normalised over z_s: at k = 0 a decoded token is kept.
    """
    N = p.shape[-1]
    r = stationary_noise(k, mask_id, N, dtype=p.dtype, device=p.device)
    ratio = (alpha_t / alpha_s).to(p.dtype)[:, None, None]
    q_zt_given_zs = (1 - ratio) * r[z_t][..., None] + ratio * F.one_hot(z_t, N).to(p.dtype)
    joint = q_zt_given_zs * forward_marginal(p, alpha_s.to(p.dtype)[:, None].expand(z_t.shape), r)
    f_t = joint.sum(-1, keepdim=True)
    unnormalised = torch.where(f_t > 0, joint, q_zt_given_zs)
    return unnormalised / unnormalised.sum(-1, keepdim=True)


# ---------------------------------------------------------------------------
# The continuous-time NELBO
# ---------------------------------------------------------------------------

def _g(u):
    """g(u) = u - log(1 + u) >= 0, accurate for small u (series u^2/2 - u^3/3 + u^4/4 - u^5/5)."""
    small = u.abs() < _SERIES_BELOW
    s = torch.where(small, u, torch.zeros_like(u))  # keeps the unused branch finite for autograd
    series = s * s * (0.5 - s * (1 / 3 - s * (0.25 - s * 0.2)))
    return torch.where(small, series, u - torch.log1p(u))


class _SumG(torch.autograd.Function):
    """S = sum over the last dimension of g(u), u >= 0, with backward dS/du = g'(u) = u / (1 + u).

    Evaluated over vocabulary slices so that g's temporaries stay small, and only u is kept
    for backward (autograd through g would keep a dozen full-vocabulary tensors)."""

    @staticmethod
    def forward(ctx, u):
        ctx.save_for_backward(u)
        S = torch.zeros(u.shape[:-1], dtype=u.dtype, device=u.device)
        for part in u.split(_SUM_SLICE, -1):
            S += _g(part).sum(-1)
        return S

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        return grad[..., None] * u / (1 + u)


def _phi(u):
    """phi(u) = log(1 + u) - u / (1 + u) >= 0, accurate for small u (series u^2/2 - 2u^3/3 + 3u^4/4 - 4u^5/5)."""
    small = u < _SERIES_BELOW
    s = torch.where(small, u, torch.zeros_like(u))
    series = s * s * (0.5 - s * (2 / 3 - s * (0.75 - s * 0.8)))
    return torch.where(small, series, torch.log1p(u) - u / (1 + u))


def drop_mask_logit(logits, mask_id):
    """Sets the mask logit to -inf in place, so p(m) = 0 (the model never predicts the mask);
    returns logits."""
    logits[..., mask_id] = float("-inf")
    return logits


def _without_mask_logit(logits, mask_id):
    """float32 (float64 stays float64) copy of logits with the mask logit at -inf, so p(m) = 0."""
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    return drop_mask_logit(logits.to(dtype, copy=True), mask_id)


def masked_diffusion_loss(logits, noisy_ids, clean_ids, p_mask, mask_id):
    """LLaDA's masked loss per token: [z_t = m] * (-log p(x)) / p_mask, float32, [B, L].

    This is h_t at k = 0 (and a cross-entropy on masked positions only, no
    full-vocabulary term beyond the log-sum-exp).
    """
    log_p = torch.log_softmax(_without_mask_logit(logits, mask_id), dim=-1)
    nll = -log_p.gather(-1, clean_ids[..., None]).squeeze(-1)
    masked = noisy_ids == mask_id
    # p_mask = 0 (alpha = 1) has no masked positions; the floor keeps their 0 / 0 out of autograd.
    p_mask = p_mask.to(nll.dtype).clamp_min(torch.finfo(nll.dtype).eps)[:, None]
    return torch.where(masked, nll, torch.zeros_like(nll)) / p_mask


def _rates(alpha_t, k, N, dtype):
    """alpha, beta and log U = log(alpha N / (beta k)), as [..., 1] columns of dtype."""
    alpha = alpha_t.to(dtype)[..., None]
    # beta -> 0 at alpha = 1: take the limit (every term of the loss is continuous there).
    beta = (1 - alpha).clamp_min(torch.finfo(dtype).eps)
    return alpha, beta, torch.log(alpha) + math.log(N) - torch.log(beta) - math.log(k)


def xdlm_from_sums(p_x, p_z, one_minus_px, S, at_x, alpha, beta, log_U, k, N):
    """h_t per token from p(x), p(z_t), 1 - p(x) and S = sum_{e != x} g(U p(e)), for k > 0.

    The closed form is rearranged into non-negative pieces so that nothing cancels
    catastrophically when alpha -> 0 (where 1/alpha log(A*/A) and k beta/alpha P are
    both huge) or alpha -> 1. With U = alpha N / (beta k) and u_e = U p(e):
      B*/B = 1 + v,   v = alpha N (1 - p(x)) / B
      C    = log(B*/B) + (k beta / alpha) P
           = log(1 + v) - v p(x) - g(v) / U + S / U
      z_t = m:          h_t = C / beta
      z_t = x:          h_t = (k / B*) (g(v) / alpha + C)
      z_t = j not x, m: h_t = (phi(u_j) / alpha + C) / beta
    with g(u) = u - log(1 + u) and phi(u) = log(1 + u) - u / (1 + u). 1 - p(x) is passed
    separately because, summed over e != x, it stays accurate when p(x) -> 1.
    """
    U = log_U.exp()
    B = alpha * N * p_x + beta * k
    B_star = alpha * N + beta * k
    v = alpha * N * one_minus_px / B
    g_v = _g(v)
    # log(1 + v) - v p(x) = v (1 - p(x)) - g(v): the left form cancels for small v, the right for large v.
    log1p_v_minus_v_px = torch.where(v < 1, v * one_minus_px - g_v, torch.log1p(v) - v * p_x)
    C = log1p_v_minus_v_px - g_v / U + S / U
    excess = torch.where(at_x, g_v, _phi(U * p_z)) / alpha  # phi(u_m) = 0: nothing extra at the mask
    weight = torch.where(at_x, k / B_star, 1 / beta)
    return weight * (excess + C)


def xdlm_terms(log_p, noisy_ids, clean_ids, alpha_t, k):
    """h_t [B, L] from log p [B, L, N] (log-probabilities with log p(m) = -inf), for k > 0."""
    N = log_p.shape[-1]
    alpha, beta, log_U = _rates(alpha_t, k, N, log_p.dtype)
    u_not_x = torch.exp(log_p + log_U[..., None]).scatter(-1, clean_ids[..., None], 0.0)  # u_m = 0 too
    p_x = log_p.gather(-1, clean_ids[..., None]).squeeze(-1).exp()
    p_z = log_p.gather(-1, noisy_ids[..., None]).squeeze(-1).exp()
    return xdlm_from_sums(p_x, p_z, u_not_x.sum(-1) / log_U.exp(), _SumG.apply(u_not_x), noisy_ids == clean_ids,
                          alpha, beta, log_U, k, N)


def xdlm_loss(logits, noisy_ids, clean_ids, alpha_t, k, mask_id):
    """Per-token continuous-time NELBO h_t [B, L] in float32 (float64 for float64 logits).

    logits [B, L, N] in any float dtype (the mask logit is excluded, the caller's tensor is
    not modified), noisy_ids z_t and clean_ids x [B, L], alpha_t [B] in (0, 1], k in [0, 1].
    k = 0 is LLaDA's masked loss (cross-entropy on masked positions / p_mask); there a
    noisy token that is neither x nor the mask cannot occur and contributes 0.
    """
    k = _check_k(k)
    if logits.dim() != 3 or not logits.is_floating_point():
        raise ValueError(f"logits must be a float tensor of shape [B, L, N], got {logits.dtype} {tuple(logits.shape)}")
    B, L, N = logits.shape
    mask_id = _check_loss_inputs((B, L), N, noisy_ids, clean_ids, alpha_t, mask_id, "logits")
    if k == 0:
        return masked_diffusion_loss(logits, noisy_ids, clean_ids, 1 - alpha_t, mask_id)
    log_p = torch.log_softmax(_without_mask_logit(logits, mask_id), dim=-1)
    return xdlm_terms(log_p, noisy_ids, clean_ids, alpha_t, k)


def loss_positions(h, loss_weight=None):
    """Per sample [B], how many positions of h [B, L] its loss is averaged over: all L without
    weights (LLaDA's pretraining: batch x length in all), else those of nonzero weight
    (conditional data: the answer tokens, their padding included, as the paper's code counts)."""
    if loss_weight is None:
        return torch.full(h.shape[:1], h.shape[1], dtype=torch.float32, device=h.device)
    return (loss_weight != 0).sum(1).float()


def batch_loss(sums, positions):
    """The batch loss, the one normalisation of training and validation batches: the summed loss of
    the batch (sums: per sample [B], prompt positions weighing 0) over its loss_positions (per
    sample [B]): batch x length for unconditional data, the answer tokens of the whole batch for
    conditional data (not a mean of per-sample means: a long answer counts more)."""
    return sums.sum() / positions.sum().clamp_min(1)


def autoregressive_loss(logits, input_ids, loss_weight=None, reduction="mean"):
    """Next-token cross-entropy in float32: position i predicts token i + 1; the mean over
    target positions whose loss_weight (of shape [B, L], aligned with input_ids) is nonzero.
    reduction="none" gives the weighted per-target losses [B, L - 1] instead."""
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    log_p = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    nll = -log_p.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    w = None if loss_weight is None else loss_weight[:, 1:]
    weighted = nll if w is None else nll * w.to(nll.dtype)
    return weighted if reduction == "none" else batch_loss(weighted.sum(1), loss_positions(nll, w))


# ---------------------------------------------------------------------------
# Fused output head + loss: never materialises the [B, L, N] logits
# ---------------------------------------------------------------------------


def _chunk_masked_ce(logits, clean, p_mask, w, with_grad):
    """k = 0 on a chunk of masked positions: w (-log p(x)) / p_mask per row and, with_grad,
    its gradient wrt the logits [c, N] (overwriting them)."""
    log_p = torch.log_softmax(logits, -1)
    nll = -log_p.gather(-1, clean[:, None]).squeeze(-1)
    scale = w / p_mask
    if not with_grad:
        return scale * nll, None
    grad = log_p.exp_().mul_(scale[:, None])  # softmax - onehot(x), times the weight
    grad.scatter_add_(1, clean[:, None], -scale[:, None])
    return scale * nll, grad


def _chunk_xdlm(logits, noisy, clean, alpha_t, w, k, mask_id, with_grad):
    """k > 0 on a chunk: w h_t per row and, with_grad, its gradient wrt the logits [c, N]
    (the logits are overwritten either way).

    The loss goes through xdlm_from_sums, the formula of the reference path; its four
    per-token inputs are leaves of a small autograd graph, and the vocabulary-wide part
    of the chain rule is written out: d(1 - p(x))/dp(e) = 1, dS/dp(e) = U g'(u_e) with
    g'(u) = u / (1 + u), for e != x; then d/dl = p * (G - sum p G)."""
    N = logits.shape[-1]
    alpha, beta, log_U = (t[:, 0] for t in _rates(alpha_t, k, N, logits.dtype))
    U = log_U.exp()
    at_x = noisy == clean
    z_real = ~at_x & (noisy != mask_id)
    logits.sub_(logits.amax(-1, keepdim=True)).exp_()  # e^(l - max); the mask column is 0
    Z = logits.sum(-1)
    p_x = logits.gather(1, clean[:, None]).squeeze(1) / Z
    p_z = logits.gather(1, noisy[:, None]).squeeze(1) / Z
    u = logits.mul_((U / Z)[:, None]).scatter_(1, clean[:, None], 0.0)  # u_e = U p(e), e != x
    one_minus_px = u.sum(-1) / U
    S = _SumG.apply(u)
    if not with_grad:
        return w * xdlm_from_sums(p_x, p_z, one_minus_px, S, at_x, alpha, beta, log_U, k, N), None
    t = torch.add(u, 1)
    t = torch.div(u, t, out=t)  # g'(u) = u / (1 + u), in one buffer
    R = (t * u).sum(-1)  # sum_{e != x} u_e g'(u_e) = U sum_{e != x} p(e) g'(u_e)
    with torch.enable_grad():
        leaves = [x.detach().requires_grad_() for x in (p_x, p_z, one_minus_px, S)]
        loss = w * xdlm_from_sums(*leaves, at_x, alpha, beta, log_U, k, N)
        a_x, a_z, a_Q, a_S = torch.autograd.grad(loss.sum(), leaves)
    a_z = torch.where(z_real, a_z, torch.zeros_like(a_z))  # p(m) = 0 is a constant
    G_x = a_x + torch.where(at_x, a_z, torch.zeros_like(a_z))
    G_mean = a_S * R + a_Q * one_minus_px + p_x * G_x + p_z * a_z
    # p(e) G(e) - p(e) G_mean for e != x: a_S u^2/(1+u) + (a_Q - G_mean) u / U
    t.mul_(u).mul_(a_S[:, None])  # a_S u g'(u)
    grad = u.mul_(((a_Q - G_mean) / U)[:, None]).add_(t)
    grad.scatter_add_(1, noisy[:, None], (p_z * a_z)[:, None])
    grad.scatter_(1, clean[:, None], (p_x * (G_x - G_mean))[:, None])
    return loss.detach(), grad


def _compute_dtype(hidden):
    """The fused loss computes in float32, or float64 for float64 inputs (the tests' exact path)."""
    return torch.float64 if hidden.dtype == torch.float64 else torch.float32


def _fused_chunks(hidden, head_weight, noisy, clean, alpha_tok, loss_weight, k, mask_id, chunk_size, with_grad):
    """Over chunks of the positions that carry loss, yields (their rows, their hidden states
    [c, d], w h_t [c], and with_grad the gradient wrt their logits [c, N], else None). Each
    chunk's logits [c, N] are the only vocabulary-wide tensor alive."""
    compute = _compute_dtype(hidden)
    # Positions that carry no loss are skipped: weight 0 (prompts) and, at k = 0, unmasked ones.
    carries = loss_weight != 0
    if k == 0:
        carries &= noisy == mask_id
    for idx in carries.nonzero().squeeze(1).split(chunk_size):
        h = hidden.index_select(0, idx)
        logits = drop_mask_logit((h @ head_weight.t()).to(compute), mask_id)
        w = loss_weight[idx].to(compute)
        if k == 0:
            loss, grad = _chunk_masked_ce(logits, clean[idx], 1 - alpha_tok[idx].to(compute), w, with_grad)
        else:
            loss, grad = _chunk_xdlm(logits, noisy[idx], clean[idx], alpha_tok[idx], w, k, mask_id, with_grad)
        yield idx, h, loss, grad


class _LinearXDLM(torch.autograd.Function):
    """sum_t w_t h_t from hidden [T, d] and the head [N, d], chunk by chunk over tokens. The
    gradients are computed during the forward pass (each chunk's logits live only there)
    into the hidden and head gradient tensors that the caller needs anyway. Only used when
    a gradient is needed (linear_xdlm_loss checks): under no_grad, needs_input_grad still
    says True for inputs that require grad."""

    @staticmethod
    def forward(ctx, hidden, head_weight, noisy, clean, alpha_tok, loss_weight, k, mask_id, chunk_size):
        need_h, need_head_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_hidden = torch.zeros_like(hidden) if need_h else None
        grad_head_weight = torch.zeros_like(head_weight) if need_head_weight else None
        compute = _compute_dtype(hidden)
        total = torch.zeros((), dtype=compute, device=hidden.device)
        for idx, h, loss, grad in _fused_chunks(hidden, head_weight, noisy, clean, alpha_tok, loss_weight, k, mask_id,
                                                chunk_size, with_grad=True):
            total += loss.sum()
            grad = grad.to(hidden.dtype)
            if need_h:
                grad_hidden.index_copy_(0, idx, grad @ head_weight)
            if need_head_weight:
                grad_head_weight.addmm_(grad.t(), h)
            del grad
        ctx.save_for_backward(grad_hidden, grad_head_weight)
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_hidden, grad_head_weight = ctx.saved_tensors
        scale = grad_out.to(torch.float32)
        if grad_hidden is not None:
            grad_hidden.mul_(scale)
        if grad_head_weight is not None:
            grad_head_weight.mul_(scale)
        return grad_hidden, grad_head_weight, None, None, None, None, None, None, None


def linear_xdlm_loss(hidden, lm_head_weight, noisy_ids, clean_ids, alpha_t, k, mask_id, loss_weight=None,
                     chunk_size=None, reduction="sum"):
    """sum over positions of loss_weight * h_t (weight 1 where not given), from the final hidden
    states [B, L, d] and the output head [N, d], without materialising the [B, L, N] logits.

    Equal to xdlm_loss(hidden @ lm_head_weight.T, ...) weighted and summed, in float32 (float64
    for float64 inputs); the logits are formed chunk_size tokens at a time (default: 1/32 of
    the tokens, at least 16). k = 0 costs a masked cross-entropy on the masked positions only.
    When no gradient is needed (torch.no_grad, or no input requires one) only the loss is
    computed: no gradient buffers, no gradient matmuls. reduction="none" returns the weighted
    per-token losses [B, L] instead of their sum (no gradient then: evaluation only).
    """
    k = _check_k(k)
    if hidden.dim() != 3 or lm_head_weight.dim() != 2 or hidden.shape[-1] != lm_head_weight.shape[-1]:
        raise ValueError(f"hidden must be [B, L, d] and lm_head_weight [N, d] with the same d, got "
                         f"{tuple(hidden.shape)} and {tuple(lm_head_weight.shape)}")
    B, L, d = hidden.shape
    N = lm_head_weight.shape[0]
    mask_id = _check_loss_inputs((B, L), N, noisy_ids, clean_ids, alpha_t, mask_id, "hidden", loss_weight)
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    needs_grad = torch.is_grad_enabled() and (hidden.requires_grad or lm_head_weight.requires_grad)
    if reduction not in ("sum", "none"):
        raise ValueError(f"reduction must be 'sum' or 'none', got {reduction!r}")
    if reduction == "none" and needs_grad:
        raise ValueError("reduction='none' gives per-token losses without gradients: call it under torch.no_grad()")
    T = B * L
    chunk_size = chunk_size or max(16, -(-T // 32))
    if torch.is_autocast_enabled(hidden.device.type):  # what F.linear would compute in under autocast
        dtype = torch.get_autocast_dtype(hidden.device.type)
        hidden, lm_head_weight = hidden.to(dtype), lm_head_weight.to(dtype)
    elif hidden.dtype != lm_head_weight.dtype:
        raise ValueError(f"hidden ({hidden.dtype}) and lm_head_weight ({lm_head_weight.dtype}) must share a dtype")
    loss_weight = torch.ones(B, L, device=hidden.device) if loss_weight is None else loss_weight
    args = (hidden.reshape(T, d), lm_head_weight, noisy_ids.reshape(T), clean_ids.reshape(T),
            alpha_t[:, None].expand(B, L).reshape(T), loss_weight.reshape(T), k, mask_id, chunk_size)
    with torch.autocast(hidden.device.type, enabled=False):
        if needs_grad:
            return _LinearXDLM.apply(*args)
        compute = _compute_dtype(hidden)
        per_token = torch.zeros(T, dtype=compute, device=hidden.device)
        for idx, _, loss, _ in _fused_chunks(*args, with_grad=False):
            per_token.index_copy_(0, idx, loss)
        return per_token.view(B, L) if reduction == "none" else per_token.sum()
