"""The XDLM loss against independent truths: a brute-force KL from full transition
matrices, LLaDA's masked cross-entropy, and properties of the forward process."""
import math

import numpy as np
import pytest
import torch

from xdlm_loss import (
    autoregressive_loss,
    batch_loss,
    corrupt,
    loss_positions,
    sample_mask_rate,
    stratified_mask_rate,
    xdlm_loss,
)

N_TINY, M_TINY = 7, 6  # tiny vocabulary, the mask is the last id
LLADA_N, LLADA_M = 126464, 126336


# --- brute force: exact posteriors over all N values of z_s, KL / d, extrapolated ---

def _r(N, m, k):
    r = np.full(N, k / N)
    r[m] += 1 - k
    return r


def _posterior(y, z_t, alpha_s, alpha_t, N, m, k):
    """p(z_s = e | z_t) with y in place of x (y is a one-hot x or the model's p)."""
    r = _r(N, m, k)
    q_t_given_s = (alpha_t / alpha_s) * (np.arange(N) == z_t) + (1 - alpha_t / alpha_s) * r[z_t]
    f_s = alpha_s * y + (1 - alpha_s) * r
    joint = q_t_given_s * f_s
    return joint / joint.sum()


def brute_force_h(p, x, z_t, alpha_t, k, N=N_TINY, m=M_TINY):
    onehot = np.eye(N)[x]

    def kl_rate(d):
        q = _posterior(onehot, z_t, alpha_t + d, alpha_t, N, m, k)
        pp = _posterior(p, z_t, alpha_t + d, alpha_t, N, m, k)
        nz = q > 0
        return float(np.sum(q[nz] * np.log(q[nz] / pp[nz]))) / d

    d = 1e-5 * min(alpha_t, 1 - alpha_t)
    return 2 * kl_rate(d / 2) - kl_rate(d)


def _probs(logits, m):
    lg = logits.copy()
    lg[m] = -np.inf
    e = np.exp(lg - lg.max())
    return e / e.sum()


# A replaced token has probability 0 at k = 0 (infinite KL): no such case there.
@pytest.mark.parametrize("k, state, seed", [
    (0.0, "kept", 100), (0.0, "masked", 101),
    (0.1, "kept", 102), (0.1, "masked", 103), (0.1, "replaced", 104),
    (0.5, "kept", 105), (0.5, "masked", 106), (0.5, "replaced", 107),
    (0.9, "kept", 108), (0.9, "masked", 109), (0.9, "replaced", 110),
    (1.0, "kept", 111), (1.0, "masked", 112), (1.0, "replaced", 113),
])
def test_matches_brute_force_kl(k, state, seed):
    rng = np.random.default_rng(seed)
    for _ in range(6):
        logits = rng.normal(size=(1, 1, N_TINY)) * 2
        x = int(rng.integers(0, M_TINY))
        z = {"kept": x, "masked": M_TINY, "replaced": int((x + 1 + rng.integers(0, M_TINY - 1)) % M_TINY)}[state]
        alpha = float(rng.uniform(0.05, 0.95))
        h = xdlm_loss(torch.tensor(logits), torch.tensor([[z]]), torch.tensor([[x]]),
                      torch.tensor([alpha], dtype=torch.float64), k, M_TINY).item()
        truth = brute_force_h(_probs(logits[0, 0], M_TINY), x, z, alpha, k)
        assert h == pytest.approx(truth, rel=1e-5, abs=1e-9), (k, state, alpha)


def test_k0_is_lladas_masked_cross_entropy():
    g = torch.Generator().manual_seed(0)
    B, L, N, m = 3, 10, 11, 10
    logits = torch.randn(B, L, N, generator=g, dtype=torch.float64) * 3
    x = torch.randint(0, m, (B, L), generator=g)
    p_mask = sample_mask_rate(B, generator=g).double()
    z = corrupt(x, 1 - p_mask, 0.0, m, N, generator=g)
    assert (z == m).any() and (z != m).any()
    h = xdlm_loss(logits, z, x, 1 - p_mask, 0.0, m)
    # LLaDA: cross-entropy on masked positions (p(m) = 0) divided by p_mask, 0 elsewhere.
    lg = logits.clone()
    lg[..., m] = float("-inf")
    ce = torch.nn.functional.cross_entropy(lg.reshape(-1, N), x.reshape(-1), reduction="none").reshape(B, L)
    expected = torch.where(z == m, ce / p_mask[:, None], torch.zeros_like(ce))
    torch.testing.assert_close(h, expected, rtol=0, atol=0)
    # ... and the general formula approaches it as k -> 0 (kept positions cost O(k)).
    h_small_k = xdlm_loss(logits, z, x, 1 - p_mask, 1e-13, m)
    masked = z == m
    torch.testing.assert_close(h_small_k[masked], expected[masked], rtol=1e-6, atol=0)
    assert h_small_k[~masked].abs().max() < 1e-6


@pytest.mark.parametrize("k", [0.0, 0.1, 0.5, 1.0])
def test_nonnegative_and_zero_at_the_truth(k):
    g = torch.Generator().manual_seed(1)
    B, L, N, m = 4, 16, 9, 8
    x = torch.randint(0, m, (B, L), generator=g)
    alpha = torch.rand(B, generator=g, dtype=torch.float64) * 0.98 + 0.01
    z = corrupt(x, alpha, k, m, N, generator=g)
    h = xdlm_loss(torch.randn(B, L, N, generator=g, dtype=torch.float64) * 4, z, x, alpha, k, m)
    assert (h >= 0).all()
    # h -> 0 as the prediction approaches the one-hot of x.
    prev = None
    for scale in [2.0, 8.0, 32.0]:
        logits = torch.nn.functional.one_hot(x, N).double() * scale
        worst = xdlm_loss(logits, z, x, alpha, k, m).max().item()
        assert prev is None or worst < prev / 10
        prev = worst
    assert prev < 1e-8


def test_corrupt_frequencies_match_the_forward_process():
    g = torch.Generator().manual_seed(2)
    N, m, n = 50, 49, 200_000
    for k in [0.0, 0.1, 0.7, 1.0]:
        for a in [0.2, 0.9]:
            x = torch.randint(0, m, (1, n), generator=g)
            z = corrupt(x, torch.tensor([a]), k, m, N, generator=g)
            beta = 1 - a
            # keeping x also happens when the random id happens to be x (probability k beta / N)
            expected = {"kept": a + k * beta / N, "mask": (1 - k) * beta + k * beta / N,
                        "other": k * beta * (N - 2) / N}
            observed = {"kept": (z == x).float().mean().item(), "mask": (z == m).float().mean().item(),
                        "other": ((z != x) & (z != m)).float().mean().item()}
            for key, p in expected.items():
                bound = 5 * math.sqrt(p * (1 - p) / n) + 1e-12
                assert abs(observed[key] - p) <= bound, (k, a, key, observed[key], p)
            if k > 0:  # the replacement ids are uniform over the vocabulary: a chi-square check
                counts = torch.bincount(z[(z != x) & (z != m)], minlength=N).double()[:m]
                chi2 = ((counts - counts.mean()) ** 2 / counts.mean()).sum().item()
                df = m - 1
                assert chi2 < df + 5 * math.sqrt(2 * df), (k, a, chi2)


def test_corrupt_never_touches_prompt_positions():
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 20, (4, 64), generator=g)
    prompt_mask = torch.zeros_like(x, dtype=torch.bool)
    prompt_mask[:, :17] = True
    z = corrupt(x, torch.full((4,), 1e-3), 0.5, 20, 21, generator=g, prompt_mask=prompt_mask)
    assert torch.equal(z[prompt_mask], x[prompt_mask])
    assert (z[~prompt_mask] != x[~prompt_mask]).float().mean() > 0.9


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(4)
    B, L, N, m = 2, 5, 6, 5
    x = torch.randint(0, m, (B, L), generator=g)
    alpha = torch.tensor([0.3, 0.8], dtype=torch.float64)
    for k in [0.0, 0.1, 1.0]:
        z = corrupt(x, alpha, k, m, N, generator=g)
        logits = torch.randn(B, L, N, generator=g, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda lg: xdlm_loss(lg, z, x, alpha, k, m), (logits,))  # noqa: B023 (called here)


def _direct_float64(logits, z, x, alpha, k, m):
    """The closed form of the math notes transcribed term by term, in float64."""
    lg = logits.double().clone()
    lg[..., m] = float("-inf")
    p = torch.softmax(lg, -1)
    N = p.shape[-1]
    a = alpha.double()[:, None]
    b = 1 - a
    px = p.gather(-1, x[..., None]).squeeze(-1)
    pz = p.gather(-1, z[..., None]).squeeze(-1)
    rho = k + N * (1 - k) * (z == m).double()
    A = a * N * pz + b * rho
    A_star = a * N * (z == x).double() + b * rho
    B = a * N * px + b * k
    B_star = a * N + b * k
    w = rho / A_star
    P = (((N - 1) / N) * torch.log(b * k) + torch.log(B_star) / N
         - torch.log(a[..., None] * N * p + b[..., None] * k).sum(-1) / N)
    return w * (N * ((z == x).double() - pz) / A - torch.log(A_star / A) / a + torch.log(B_star / B) + k * b / a * P)


def _masked_cross_entropy_float64(logits, z, x, p_mask, m):
    """LLaDA's masked loss written out in float64: -log p(x) from a log-sum-exp that leaves out
    the mask logit, divided by p_mask on masked positions, 0 elsewhere."""
    lg = logits.double()
    keep = torch.ones(lg.shape[-1], dtype=torch.bool)
    keep[m] = False
    nll = torch.logsumexp(lg[..., keep], -1) - lg.gather(-1, x[..., None]).squeeze(-1)
    return torch.where(z == m, nll / p_mask[:, None], torch.zeros_like(nll))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_float32_accuracy_at_lladas_vocabulary(dtype):
    """float32 / bf16 logits at N = 126464, alpha_t from 1e-6 to 1 - 1e-3: finite and within
    1e-3 relative of the float64 closed form evaluated on the same (rounded) logits."""
    g = torch.Generator().manual_seed(5)
    alphas = torch.tensor([1e-6, 1e-4, 0.5, 1 - 1e-3])
    B, L = len(alphas), 6
    for k in [0.0, 0.1, 0.5, 1.0]:
        for scale in [1.0, 10.0, 40.0]:
            x = torch.randint(0, LLADA_M, (B, L), generator=g)
            logits = (torch.randn(B, L, LLADA_N, generator=g) * scale).to(dtype)
            logits[:, :2].scatter_(-1, x[:, :2, None], scale * 5)  # some positions confident and right
            z = torch.full_like(x, LLADA_M)  # masked, kept and replaced positions in every row
            z[:, 1::3] = x[:, 1::3]
            if k > 0:
                z[:, 2::3] = torch.randint(0, LLADA_M, (B, L // 3), generator=g)
            h = xdlm_loss(logits, z, x, alphas, k, LLADA_M)
            assert h.dtype == torch.float32 and torch.isfinite(h).all(), (k, scale)
            ref = _direct_float64(logits.float(), z, x, alphas.double(), k, LLADA_M) if k > 0 else \
                _masked_cross_entropy_float64(logits, z, x, 1 - alphas.double(), LLADA_M)
            torch.testing.assert_close(h.double(), ref, rtol=1e-3, atol=1e-6, msg=f"k={k} scale={scale}")


def test_bf16_logits_give_the_float32_loss_within_bf16_rounding():
    g = torch.Generator().manual_seed(6)
    B, L, N, m = 4, 32, 1000, 999
    x = torch.randint(0, m, (B, L), generator=g)
    alpha = torch.rand(B, generator=g) * 0.9 + 0.05
    z = corrupt(x, alpha, 0.1, m, N, generator=g)
    logits = torch.randn(B, L, N, generator=g) * 3
    h32 = xdlm_loss(logits, z, x, alpha, 0.1, m)
    h16 = xdlm_loss(logits.bfloat16(), z, x, alpha, 0.1, m)
    assert h16.dtype == torch.float32
    # bf16 rounds logits by up to 2^-8 relative (|logit| <= ~12 here, so <= 0.05 absolute):
    # the summed loss moves by about that much relative.
    assert abs(h16.sum() / h32.sum() - 1) < 2e-2


@pytest.mark.parametrize("k", [0.0, 0.1, 1.0])
def test_extremes_are_finite_with_finite_gradients(k):
    g = torch.Generator().manual_seed(7)
    B, L, N, m = 4, 8, 50, 49
    alpha = torch.tensor([1e-6, 1e-3, 1 - 1e-3, 1.0])
    x = torch.randint(0, m, (B, L), generator=g)
    z = corrupt(x, alpha, k, m, N, generator=g)
    z[:3, 0] = m  # every row has masked positions (alpha = 1 keeps all tokens: z = x there)
    z[3] = x[3]
    for scale in [1.0, 100.0]:
        logits = (torch.randn(B, L, N, generator=g) * scale).requires_grad_()
        h = xdlm_loss(logits, z, x, alpha, k, m)
        h.sum().backward()
        assert torch.isfinite(h).all() and torch.isfinite(logits.grad).all()


def test_caller_logits_unchanged_and_mask_logit_ignored():
    g = torch.Generator().manual_seed(8)
    B, L, N, m = 2, 4, 12, 3
    logits = torch.randn(B, L, N, generator=g)
    before = logits.clone()
    x = torch.randint(4, N, (B, L), generator=g)
    alpha = torch.tensor([0.4, 0.7])
    z = corrupt(x, alpha, 0.3, m, N, generator=g)
    h = xdlm_loss(logits, z, x, alpha, 0.3, m)
    assert torch.equal(logits, before)
    moved = logits.clone()
    moved[..., m] += 50.0  # the mask logit has no effect on the loss
    torch.testing.assert_close(xdlm_loss(moved, z, x, alpha, 0.3, m), h)


@pytest.mark.parametrize("bad, match", [
    (dict(k=1.5), "k .*\\[0, 1\\]"),
    (dict(k=-0.1), "k .*\\[0, 1\\]"),
    (dict(mask_id=12), "mask_id .*\\[0, 12\\)"),
    (dict(mask_id=-1), "mask_id"),
    (dict(alpha=torch.tensor([0.0, 0.5])), "alpha_t .*\\(0, 1\\]"),
    (dict(alpha=torch.tensor([0.5, 1.5])), "alpha_t .*\\(0, 1\\]"),
    (dict(alpha=torch.tensor([0.5])), "alpha_t .*shape"),
    (dict(clean_is_mask=True), "clean_ids .*mask id"),
    (dict(short_noisy=True), "noisy_ids .*shape"),
    (dict(flat_logits=True), "logits .*\\[B, L, N\\]"),
])
def test_bad_input_raises_a_clear_error(bad, match):
    B, L, N, m = 2, 4, 12, 11
    logits = torch.randn(B, L, N)
    x = torch.zeros(B, L, dtype=torch.long)
    z = torch.full((B, L), m)
    if bad.get("clean_is_mask"):
        x[0, 0] = m
    if bad.get("short_noisy"):
        z = z[:, :3]
    if bad.get("flat_logits"):
        logits = logits[0]
    with pytest.raises(ValueError, match=match):
        xdlm_loss(logits, z, x, bad.get("alpha", torch.tensor([0.5, 0.5])), bad.get("k", 0.1), bad.get("mask_id", m))


def test_corrupt_bad_input():
    x = torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="k "):
        corrupt(x, torch.tensor([0.5, 0.5]), 2.0, 5, 6)
    with pytest.raises(ValueError, match="mask_id"):
        corrupt(x, torch.tensor([0.5, 0.5]), 0.1, 6, 6)
    with pytest.raises(ValueError, match="prompt_mask"):
        corrupt(x, torch.tensor([0.5, 0.5]), 0.1, 5, 6, prompt_mask=torch.ones(2, 3, dtype=torch.bool))


def test_mask_rate_sampler():
    g = torch.Generator().manual_seed(9)
    p = sample_mask_rate(100_000, generator=g)
    assert p.min() >= 1e-3 and p.max() <= 1
    assert abs(p.mean().item() - (1e-3 + (1 - 1e-3) / 2)) < 5e-3
    # stratified: every stratum [i/B, (i+1)/B) of t holds exactly one draw, for any batch
    B = 16

    def stratified(B):
        return stratified_mask_rate(torch.rand(1, generator=g), torch.arange(B), B)

    for _ in range(20):
        t = (stratified(B) - 1e-3) / (1 - 1e-3)
        assert torch.equal(torch.sort((t * B).floor().long().clamp_max(B - 1)).values, torch.arange(B))
    # ... and each draw is still uniform: the mean over many batches of one slot is 1/2
    slot0 = torch.stack([stratified(B)[0] for _ in range(4000)])
    assert abs(slot0.mean().item() - 0.5) < 0.02


def test_stratified_sampling_lowers_the_variance_of_the_batch_loss():
    g = torch.Generator().manual_seed(10)
    B, L, N, m = 8, 32, 20, 19
    x = torch.randint(0, m, (B, L), generator=g)
    noise = torch.randn(B, L, N, generator=g)

    def batch_losses(stratified):
        out = []
        for _ in range(300):
            if stratified:
                p_mask = stratified_mask_rate(torch.rand(1, generator=g), torch.arange(B), B)
            else:
                p_mask = sample_mask_rate(B, generator=g)
            z = corrupt(x, 1 - p_mask, 0.1, m, N, generator=g)
            # like a trained model: the fewer tokens are noised, the better it predicts x
            clean_frac = (z == x).float().mean(1)[:, None, None]
            logits = noise + 6 * clean_frac * torch.nn.functional.one_hot(x, N)
            h = xdlm_loss(logits, z, x, 1 - p_mask, 0.1, m)
            out.append(batch_loss(h.sum(1), loss_positions(h)).item())
        return torch.tensor(out)

    plain, strat = batch_losses(False), batch_losses(True)
    assert abs(strat.mean() / plain.mean() - 1) < 0.1  # same expectation
    assert strat.var() < 0.7 * plain.var()


def test_batch_loss_divides_by_batch_times_length_or_by_the_answer_tokens():
    h = torch.arange(12.0).reshape(2, 6)
    assert batch_loss(h.sum(1), loss_positions(h)).item() == pytest.approx((h.sum() / 12).item())  # LLaDA's pretraining
    w = torch.ones(2, 6)
    w[0, :2] = 0  # prompts of 2 and 4 tokens: 4 + 2 answer tokens
    w[1, :4] = 0
    # the paper's code: the summed loss over the batch's answer tokens, B L - sum of prompt lengths
    # (not the mean of the two answers' means, (h[0, 2:].mean() + h[1, 4:].mean()) / 2)
    loss = batch_loss((h * w).sum(1), loss_positions(h, w)).item()
    assert loss == pytest.approx((h[0, 2:].sum() + h[1, 4:].sum()).item() / (12 - 6))


def test_autoregressive_loss_is_next_token_cross_entropy():
    g = torch.Generator().manual_seed(11)
    logits = torch.randn(2, 5, 7, generator=g).bfloat16()
    ids = torch.randint(0, 7, (2, 5), generator=g)
    expected = np.mean([-torch.log_softmax(logits[b, i].float(), -1)[ids[b, i + 1]].item()
                        for b in range(2) for i in range(4)])
    assert autoregressive_loss(logits, ids).item() == pytest.approx(expected, rel=1e-6)
    w = torch.ones(2, 5)
    w[:, :3] = 0  # only targets 3 and 4 count
    expected_w = np.mean([-torch.log_softmax(logits[b, i].float(), -1)[ids[b, i + 1]].item()
                          for b in range(2) for i in (2, 3)])
    assert autoregressive_loss(logits, ids, w).item() == pytest.approx(expected_w, rel=1e-6)
    per_target = autoregressive_loss(logits, ids, w, reduction="none")
    assert per_target.shape == (2, 4) and (per_target[:, :2] == 0).all()
    assert per_target.sum().item() / 4 == pytest.approx(expected_w, rel=1e-6)
