"""XDLM: mixed mask / uniform-noise discrete diffusion, its forward process and loss.

Notation (see README "The math"): N vocabulary size (mask id included), m the mask
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

import torch
import torch.nn.functional as F

# LLaDA's mask-rate floor: p_mask = (1 - eps) t + eps.
MASK_RATE_EPS = 1e-3
# Below this argument the series forms of g and phi are used (truncation error < 1e-8
# relative); above it the direct forms lose at most ~1e-5 relative to cancellation.
_SERIES_BELOW = 0.01


# ---------------------------------------------------------------------------
# Checks shared by every entry point: a clear error before any work is done.
# ---------------------------------------------------------------------------

def _check_k(k):
    if not (isinstance(k, (int, float)) and 0.0 <= float(k) <= 1.0):
        raise ValueError(f"k (the XDLM mixing ratio) must be a number in [0, 1], got {k!r}")
    return float(k)


def _check_mask_id(mask_id, vocab_size):
    if not (isinstance(mask_id, int) and 0 <= mask_id < vocab_size):
        raise ValueError(f"mask_id must be an integer in [0, {vocab_size}) (the vocabulary size), got {mask_id!r}")


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


# ---------------------------------------------------------------------------
# Noise schedule and forward process
# ---------------------------------------------------------------------------

def sample_mask_rate(batch_size, eps=MASK_RATE_EPS, stratified=False, generator=None, device=None):
    """LLaDA's mask rate p_mask = (1 - eps) t + eps, t ~ U(0, 1); returns p_mask [B].

    stratified=True draws t_i = (u + i / B) mod 1 with one shared u ~ U(0, 1): each t_i is
    still U(0, 1) (the loss stays unbiased) but the batch covers [0, 1) evenly, which
    lowers the variance of the batch loss at no cost.
    """
    if stratified:
        u = torch.rand(1, generator=generator, device=device)
        t = (u + torch.arange(batch_size, device=device) / batch_size) % 1.0
    else:
        t = torch.rand(batch_size, generator=generator, device=device)
    return (1 - eps) * t + eps


def corrupt(clean_ids, alpha_t, k, mask_id, vocab_size, generator=None, keep=None):
    """Sample z_t ~ q(z_t | x) = alpha [z_t = x] + beta r(z_t), independently per token.

    One uniform draw u per token: keep x if u < alpha, a uniformly random id from
    [0, N) if u < alpha + k beta, else the mask. `keep` (bool, shape of clean_ids) marks
    positions that are never noised (prompt tokens in conditional training).
    """
    k = _check_k(k)
    _check_mask_id(mask_id, vocab_size)
    if clean_ids.dim() != 2:
        raise ValueError(f"clean_ids must have shape [B, L], got {tuple(clean_ids.shape)}")
    _check_alpha(alpha_t, clean_ids.shape[0])
    if keep is not None and (keep.shape != clean_ids.shape or keep.dtype != torch.bool):
        raise ValueError(f"keep must be a bool tensor of shape {tuple(clean_ids.shape)}, got {keep.dtype} {tuple(keep.shape)}")
    alpha = alpha_t.to(torch.float64)[:, None]
    u = torch.rand(clean_ids.shape, generator=generator, device=clean_ids.device, dtype=torch.float64)
    random_ids = torch.randint(0, vocab_size, clean_ids.shape, generator=generator, device=clean_ids.device)
    noisy = torch.where(u < alpha + k * (1 - alpha), random_ids, torch.full_like(clean_ids, mask_id))
    noisy = torch.where(u < alpha, clean_ids, noisy)
    if keep is not None:
        noisy = torch.where(keep, clean_ids, noisy)
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
    """
    N = p.shape[-1]
    r = stationary_noise(k, mask_id, N, dtype=p.dtype, device=p.device)
    ratio = (alpha_t / alpha_s).to(p.dtype)[:, None, None]
    q_zt_given_zs = (1 - ratio) * r[z_t][..., None] + ratio * F.one_hot(z_t, N).to(p.dtype)
    joint = q_zt_given_zs * forward_marginal(p, alpha_s.to(p.dtype)[:, None].expand(z_t.shape), r)
    return joint / joint.sum(-1, keepdim=True)  # the sum is f_t(p, z_t)


# ---------------------------------------------------------------------------
# The continuous-time NELBO
# ---------------------------------------------------------------------------

def _g(u):
    """g(u) = u - log(1 + u) >= 0, accurate for small u (series u^2/2 - u^3/3 + u^4/4 - u^5/5)."""
    small = u.abs() < _SERIES_BELOW
    s = torch.where(small, u, torch.zeros_like(u))  # keeps the unused branch finite for autograd
    series = s * s * (0.5 - s * (1 / 3 - s * (0.25 - s * 0.2)))
    return torch.where(small, series, u - torch.log1p(u))


def _phi(u):
    """phi(u) = log(1 + u) - u / (1 + u) >= 0, accurate for small u (series u^2/2 - 2u^3/3 + 3u^4/4 - 4u^5/5)."""
    small = u < _SERIES_BELOW
    s = torch.where(small, u, torch.zeros_like(u))
    series = s * s * (0.5 - s * (2 / 3 - s * (0.75 - s * 0.8)))
    return torch.where(small, series, torch.log1p(u) - u / (1 + u))


def _without_mask_logit(logits, mask_id):
    """float32 (float64 stays float64) copy of logits with the mask logit at -inf, so p(m) = 0."""
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    return logits.to(dtype).index_fill(-1, torch.tensor([mask_id], device=logits.device), float("-inf"))


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


def xdlm_terms(log_p, noisy_ids, clean_ids, alpha_t, k):
    """h_t [B, L] from log p [B, L, N] (log-probabilities with log p(m) = -inf), for k > 0.

    The closed form is rearranged into non-negative pieces so that nothing cancels
    catastrophically when alpha -> 0 (where 1/alpha log(A*/A) and k beta/alpha P are
    both huge) or alpha -> 1. With U = alpha N / (beta k) and u_e = U p(e):
      B*/B = 1 + v,   v = alpha N (1 - p(x)) / B
      C    = log(B*/B) + (k beta / alpha) P
           = log(1 + v) - v p(x) - g(v) / U + (1/U) sum_{e != x} g(u_e)
      z_t = m:          h_t = C / beta
      z_t = x:          h_t = (k / B*) (g(v) / alpha + C)
      z_t = j not x, m: h_t = (phi(u_j) / alpha + C) / beta
    with g(u) = u - log(1 + u) and phi(u) = log(1 + u) - u / (1 + u).
    """
    N = log_p.shape[-1]
    alpha = alpha_t.to(log_p.dtype)[:, None]
    # beta -> 0 at alpha = 1: take the limit (every term below is continuous there).
    beta = (1 - alpha).clamp_min(torch.finfo(log_p.dtype).eps)
    log_U = torch.log(alpha) + math.log(N) - torch.log(beta) - math.log(k)
    U = log_U.exp()
    # u_e for e != x (u_m = 0 since p(m) = 0). Summing u_e over e != x gives 1 - p(x)
    # accurately even when p(x) -> 1, where -expm1(log p(x)) would round to 0.
    u_not_x = torch.exp(log_p + log_U[..., None]).scatter(-1, clean_ids[..., None], 0.0)
    one_minus_px = u_not_x.sum(-1) / U
    p_x = log_p.gather(-1, clean_ids[..., None]).squeeze(-1).exp()  # accurate when p(x) -> 0
    B = alpha * N * p_x + beta * k
    B_star = alpha * N + beta * k
    v = alpha * N * one_minus_px / B
    g_v = _g(v)
    # log(1 + v) - v p(x) = v (1 - p(x)) - g(v): the left form cancels for small v, the right for large v.
    log1p_v_minus_v_px = torch.where(v < 1, v * one_minus_px - g_v, torch.log1p(v) - v * p_x)
    C = log1p_v_minus_v_px - g_v / U + _g(u_not_x).sum(-1) / U
    u_z = torch.exp(log_p.gather(-1, noisy_ids[..., None]).squeeze(-1) + log_U)
    at_x = noisy_ids == clean_ids
    excess = torch.where(at_x, g_v, _phi(u_z)) / alpha  # phi(u_m) = 0: nothing extra at the mask
    weight = torch.where(at_x, k / B_star, 1 / beta)
    return weight * (excess + C)


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
    for name, ids in (("noisy_ids", noisy_ids), ("clean_ids", clean_ids)):
        if ids.shape != (B, L):
            raise ValueError(f"{name} must have shape [B, L] = {(B, L)} to match logits, got {tuple(ids.shape)}")
    _check_mask_id(mask_id, N)
    _check_ids("noisy_ids", noisy_ids, N)
    _check_ids("clean_ids", clean_ids, N, mask_id=mask_id)
    _check_alpha(alpha_t, B)
    if k == 0:
        return masked_diffusion_loss(logits, noisy_ids, clean_ids, 1 - alpha_t, mask_id)
    log_p = torch.log_softmax(_without_mask_logit(logits, mask_id), dim=-1)
    return xdlm_terms(log_p, noisy_ids, clean_ids, alpha_t, k)


def diffusion_objective(h, loss_weight=None):
    """The batch loss: sum over positions of loss_weight * h_t (prompt positions weighted 0),
    divided by batch x length, as LLaDA normalises its masked loss."""
    if loss_weight is not None:
        h = h * loss_weight.to(h.dtype)
    return h.sum() / h.numel()


def autoregressive_loss(logits, input_ids, loss_weight=None):
    """Next-token cross-entropy in float32: position i predicts token i + 1; the mean over
    target positions whose loss_weight (of shape [B, L], aligned with input_ids) is nonzero."""
    log_p = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    nll = -log_p.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    if loss_weight is None:
        return nll.mean()
    w = loss_weight[:, 1:].to(nll.dtype)
    return (nll * w).sum() / w.sum().clamp_min(1)
