"""likelihood.py: LLaDA's masked estimator and the XDLM bound against exact enumerations, their
standard errors against the spread over seeds, CFG on hand-made logits, LLaDA's pair encoding,
and batching (across requests, companions, pack sizes) against one request at a time."""
import functools
import itertools
import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from helpers import run_main
from helpers import tiny_model as shared_tiny_model
from likelihood import draw_corruptions, encode_pair, estimate, estimate_texts, systematic_counts
from xdlm_loss import stationary_noise, xdlm_loss

V, MASK = 8, 7
# float64, vocabulary 8, wide initialisation: sharp distributions, exactly comparable numbers,
# and a z-space small enough to enumerate (8^3 answers).
tiny_model = functools.partial(shared_tiny_model, dtype=torch.float64, vocab_size=V, embedding_size=V,
                               mask_token_id=MASK, init_std=0.5)
CONTEXT, ANSWER = [1, 4], [2, 5, 3]
REQUESTS = [(CONTEXT, ANSWER), ([6], [0, 1, 2, 3, 4]), ([], [5, 5]), ([3, 3, 0, 1, 2], [6])]


@functools.lru_cache(maxsize=None)
def model():
    return tiny_model()


def log_p_without_mask(logits):
    logits = logits.clone()
    logits[..., MASK] = -math.inf
    return logits.log_softmax(-1)


def exact_masked_nll(m, context, answer):
    """LLaDA's bound by enumeration: sum over n of (1/L)(L/n) x the mean over n-subsets S of the
    answer of sum_{i in S} -log p(x_i | answer masked on S), the mask logit excluded."""
    C, L = len(context), len(answer)
    total = 0.0
    for n in range(1, L + 1):
        subsets = list(itertools.combinations(range(L), n))
        for S in subsets:
            z = [MASK if i in S else a for i, a in enumerate(answer)]
            with torch.no_grad():
                log_p = log_p_without_mask(m(torch.tensor([context + z])).logits[0])
            total += (1 / L) * (L / n) * sum(-log_p[C + i, answer[i]].item() for i in S) / len(subsets)
    return total


def exact_xdlm_nelbo(m, context, answer, k):
    """The continuous-time NELBO integral_0^1 sum_z q(z | x, t) sum_i h_i(z, t) dt over every
    answer z in V^L, with Gauss-Legendre panels on a geometric grid towards t = 0 (the integrand
    has a boundary layer there) and h from the training loss."""
    C, L = len(context), len(answer)
    zs = torch.tensor(list(itertools.product(range(V), repeat=L)))
    seqs = torch.cat([torch.tensor(context).expand(len(zs), C), zs], 1)
    clean = torch.tensor(context + answer).expand_as(seqs)
    with torch.no_grad():
        logits = m(seqs).logits
    r = stationary_noise(k, MASK, V, torch.float64)
    nodes, weights = np.polynomial.legendre.leggauss(16)
    edges = [0.0, *np.logspace(-8, 0, 9)]
    total = 0.0
    for a, b in zip(edges[:-1], edges[1:]):
        for x, w in zip(nodes, weights):
            t = a + (b - a) * (x + 1) / 2
            q = ((1 - t) * (zs == torch.tensor(answer)) + t * r[zs]).prod(1)
            h = xdlm_loss(logits, seqs, clean, torch.full((len(zs),), 1 - t, dtype=torch.float64), k, MASK)
            total += (b - a) / 2 * w * (q * h[:, C:].sum(1)).sum().item()
    return total


# ---------------------------------------------------------------------------
# The counts: LLaDA's systematic sampling, every count equally likely
# ---------------------------------------------------------------------------

def llada_rounded_counts(start, L, b):
    """eval_llada.py's counts: torch.round(torch.linspace(s, s + (b - 1) L / b, b)), wrapped into 1..L."""
    x = torch.round(torch.linspace(float(start), start + (b - 1) * (L / b), steps=b)).long()
    return (((x - 1) % L) + 1).tolist()


def test_systematic_counts_are_llada_s_evenly_spaced_counts_with_every_count_equally_likely():
    for L in range(1, 14):
        for b in range(1, 10):
            table = [systematic_counts(s, L, b) for s in range(1, L + 1)]
            for j in range(b):  # over a uniform start, each draw's count is uniform on 1..L
                assert sorted(row[j] for row in table) == list(range(1, L + 1)), (L, b, j)
            for s, row in zip(range(1, L + 1), table):
                assert row[0] == s
                steps = {(row[j + 1] - row[j]) % L for j in range(b - 1)}
                assert steps <= {math.floor(L / b) % L, math.ceil(L / b) % L}, (L, b, row)
                # LLaDA's own arithmetic agrees wherever j L / b is not a tie at .5
                ties = [j for j in range(b) if (2 * j * L) % (2 * b) == b]
                ours, llada = row, llada_rounded_counts(s, L, b)
                assert [c for j, c in enumerate(ours) if j not in ties] == [
                    c for j, c in enumerate(llada) if j not in ties], (L, b, s)
    # ... and at ties LLaDA's round-half-to-even makes odd counts rarer (L = 12, b = 8): the deviation
    llada = [c for s in range(1, 13) for c in llada_rounded_counts(s, 12, 8)]
    assert llada.count(1) == 4 and llada.count(2) == 12


# ---------------------------------------------------------------------------
# The masked estimator
# ---------------------------------------------------------------------------

def test_masked_estimate_is_unbiased_for_the_exact_enumerated_bound():
    m = model()
    for context, answer in [(CONTEXT, ANSWER), ([6, 0], [3, 1, 4, 2])]:
        exact = exact_masked_nll(m, context, answer)
        (est,) = estimate(m, [(context, answer)], mc_num=2048, batch_size=8, seed=5)
        assert abs(-est.log_likelihood - exact) < 4 * est.standard_error, (est, exact)
        assert est.standard_error < 0.02 * exact  # the check has teeth


@pytest.mark.parametrize("settings", [dict(), dict(estimator="xdlm", k=0.5)])
def test_reported_standard_error_matches_the_spread_over_seeds(settings):
    m = model()
    estimates = [estimate(m, [(CONTEXT, ANSWER)], mc_num=16, batch_size=4, seed=s, **settings)[0] for s in range(300)]
    spread = np.std([e.log_likelihood for e in estimates], ddof=1)
    reported = math.sqrt(np.mean([e.standard_error ** 2 for e in estimates]))
    assert 0.85 < reported / spread < 1.15, (reported, spread)


def test_one_group_has_no_standard_error():
    (est,) = estimate(model(), [(CONTEXT, ANSWER)], mc_num=8, batch_size=8)
    assert math.isfinite(est.log_likelihood) and math.isnan(est.standard_error)


# ---------------------------------------------------------------------------
# The XDLM bound
# ---------------------------------------------------------------------------

def test_xdlm_at_k0_is_the_masked_estimator_and_the_exact_nelbo_is_llada_s_bound():
    m = model()
    masked = estimate(m, REQUESTS, mc_num=64, seed=11)
    xdlm = estimate(m, REQUESTS, estimator="xdlm", k=0.0, mc_num=64, seed=11)
    for a, b in zip(masked, xdlm):  # the same random numbers give the same draws' values
        assert a.log_likelihood == pytest.approx(b.log_likelihood, abs=1e-9)
        assert a.standard_error == pytest.approx(b.standard_error, abs=1e-9)
    # the two exact enumerations (over z and t, over l and subsets) agree at k = 0
    assert exact_xdlm_nelbo(m, CONTEXT, ANSWER, 0.0) == pytest.approx(exact_masked_nll(m, CONTEXT, ANSWER), rel=1e-7)


@pytest.mark.parametrize("k", [0.3, 1.0])
def test_xdlm_estimate_is_unbiased_for_the_exact_enumerated_nelbo(k):
    m = model()
    exact = exact_xdlm_nelbo(m, CONTEXT, ANSWER, k)
    (est,) = estimate(m, [(CONTEXT, ANSWER)], estimator="xdlm", k=k, mc_num=8192, batch_size=8, seed=2)
    assert abs(-est.log_likelihood - exact) < 4 * est.standard_error, (est, exact)
    assert est.standard_error < 0.06 * exact


@pytest.mark.parametrize("estimator, k", [("masked", 0.0), ("xdlm", 0.0), ("xdlm", 0.5), ("xdlm", 1.0)])
def test_draws_never_touch_the_context_and_noise_n_answer_tokens(estimator, k):
    context, answer = [1, 4, 6, 0], [2, 5, 3, 3, 1]
    d = draw_corruptions(context, answer, estimator, k, mc_num=64, batch_size=8, seed=3, mask_id=MASK, vocab_size=V)
    assert torch.equal(d.noisy[:, :4], torch.tensor(context).expand(64, 4))
    masked = (d.noisy[:, 4:] == MASK).sum(1)
    L = len(answer)
    if estimator == "masked":
        assert torch.equal(masked.double() / L, d.rate) and bool((masked >= 1).all())
        assert sorted(masked[:8].tolist()) == sorted(systematic_counts(masked[0].item(), L, 8))
    elif k == 0:  # the n-th smallest of L uniforms lies below 1, t f(t) weights by L / n
        assert torch.equal(d.weight, L / masked.double() * d.rate) and bool((d.rate < 1).all())
    else:
        assert bool((d.noisy[:, 4:] != torch.tensor(answer)).any())
        assert len(d.clean_rate) == 8 and bool(((d.clean_rate >= 0) & (d.clean_rate < 1)).all())
        if k == 1:
            assert masked.sum() < 64  # uniform noise only: the mask appears only as a uniform draw (1 in 8)


@pytest.mark.parametrize("k", [0.2, 1.0])
def test_xdlm_estimate_is_the_training_loss_on_its_own_draws(k):
    """The estimate recomputed from draw_corruptions with a plain forward and xdlm_loss: each
    draw's (L / n) t sum_i h_i(z, t), plus per group the clean answer's sum_i h_i(x, t0) / (L + 1)."""
    m, (context, answer), b = model(), REQUESTS[1], 4
    C, L = len(context), len(answer)
    d = draw_corruptions(context, answer, "xdlm", k, mc_num=16, batch_size=b, seed=9, mask_id=MASK, vocab_size=V)
    clean = torch.tensor(context + answer)
    with torch.no_grad():
        h = xdlm_loss(m(d.noisy).logits, d.noisy, clean.expand_as(d.noisy), 1 - d.rate, k, MASK)
        clean_logits = m(clean[None]).logits.expand(len(d.clean_rate), -1, -1)
    h0 = xdlm_loss(clean_logits, clean.expand(len(d.clean_rate), -1), clean.expand(len(d.clean_rate), -1),
                   1 - d.clean_rate, k, MASK)
    groups = (d.weight * h[:, C:].sum(1)).view(-1, b).mean(1) + h0[:, C:].sum(1) / (L + 1)
    (est,) = estimate(m, [(context, answer)], estimator="xdlm", k=k, mc_num=16, batch_size=b, seed=9)
    assert est.log_likelihood == pytest.approx(-groups.mean().item(), rel=1e-10)
    assert est.standard_error == pytest.approx(groups.std().item() / 2, rel=1e-8)


# ---------------------------------------------------------------------------
# Classifier-free guidance
# ---------------------------------------------------------------------------

class HandMadeLogits(torch.nn.Module):
    """Logits A at every position while the whole context is visible, U while all of it is masked
    (LLaDA's unconditional copy); anything in between is refused."""

    def __init__(self, A, U, context_length):
        super().__init__()
        self.head = torch.stack([torch.tensor(A), torch.tensor(U)], 1).double()  # [N, 2]
        self.C = context_length
        self.config = SimpleNamespace(mask_token_id=len(A) - 1, max_sequence_length=32)

    @property
    def output_head_weight(self):
        return self.head

    def final_hidden(self, ids, attention_mask=None):
        masked = ids[:, :self.C] == self.config.mask_token_id
        assert bool((masked.all(1) | ~masked.any(1)).all()), "a copy with part of its context masked"
        uncond = masked.all(1).double()[:, None, None].expand(-1, ids.shape[1], 1)
        return torch.cat([1 - uncond, uncond], -1)

    def logits_from_hidden(self, hidden):
        return hidden @ self.head.t()


@pytest.mark.parametrize("estimator", ["masked", "xdlm"])
def test_cfg_is_uncond_plus_scale_plus_one_times_the_difference_with_the_context_masked(estimator):
    A, U = [2.0, 0.0, -1.0, 5.0], [0.0, 1.0, 0.5, 9.0]  # id 3 is the mask: its logit never counts
    m = HandMadeLogits(A, U, context_length=3)
    for cfg in (0.0, 0.5, 2.0):
        g = [u + (cfg + 1) * (a - u) for a, u in zip(A, U)]
        expected = math.log(sum(math.exp(v) for v in g[:3])) - g[0]  # -log p(answer token 0)
        (est,) = estimate(m, [([1, 2, 1], [0])], estimator=estimator, cfg=cfg, mc_num=4, batch_size=2)
        assert -est.log_likelihood == pytest.approx(expected, rel=1e-12)  # L = 1: every draw masks the answer
        assert est.standard_error == 0


def test_without_a_context_cfg_changes_nothing_and_runs_no_unconditional_copy():
    m = tiny_model()  # not the shared model(): its forward is wrapped here
    rows = []
    final_hidden = m.final_hidden
    m.final_hidden = lambda ids, *a, **kw: rows.append(len(ids)) or final_hidden(ids, *a, **kw)
    (plain,) = estimate(m, [([], [1, 2, 3])], mc_num=16, batch_size=8)
    (guided,) = estimate(m, [([], [1, 2, 3])], cfg=2.0, mc_num=16, batch_size=8)
    assert guided == plain  # the unconditional copy of an empty context is the sequence itself
    assert rows == [16, 16]  # one copy of the draws each time, not two with cfg


# ---------------------------------------------------------------------------
# Batching
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("settings", [dict(), dict(cfg=0.5), dict(estimator="xdlm", k=0.3),
                                      dict(estimator="xdlm", k=0.3, cfg=1.0)])
def test_batched_equals_one_request_at_a_time_whatever_the_companions_and_packing(settings):
    m = model()
    batched = estimate(m, REQUESTS, mc_num=32, **settings)
    alone = [estimate(m, [r], mc_num=32, draws_per_forward=8, **settings)[0] for r in REQUESTS]
    other_companions = estimate(m, [REQUESTS[2], ([5, 5, 5, 5], [1, 2]), REQUESTS[0]], mc_num=32,
                                draws_per_forward=13, **settings)
    for a, b in zip(batched, alone):
        assert a.log_likelihood == pytest.approx(b.log_likelihood, abs=1e-10)
        assert a.standard_error == pytest.approx(b.standard_error, abs=1e-10)
    for a, b in ((batched[2], other_companions[0]), (batched[0], other_companions[2])):
        assert a.log_likelihood == pytest.approx(b.log_likelihood, abs=1e-10)
    assert len({round(e.log_likelihood, 6) for e in batched}) == len(REQUESTS)


def test_bfloat16_model_gives_finite_float32_estimates_close_to_float32_ones():
    f32 = shared_tiny_model(dtype=torch.float32)
    bf16 = shared_tiny_model(dtype=torch.bfloat16)
    requests = [([1, 2, 3], [4, 5, 6, 7]), ([8], [9, 10])]
    for settings in (dict(), dict(estimator="xdlm", k=0.1)):
        pairs = zip(estimate(f32, requests, mc_num=32, **settings), estimate(bf16, requests, mc_num=32, **settings))
        for a, b in pairs:
            assert math.isfinite(b.log_likelihood) and math.isfinite(b.standard_error)
            assert b.log_likelihood == pytest.approx(a.log_likelihood, rel=0.02)


# ---------------------------------------------------------------------------
# Bad input: a named one-line error before any forward pass
# ---------------------------------------------------------------------------

class NoForward:
    def __init__(self, m):
        self.m = m

    def __getattr__(self, name):
        return getattr(self.m, name)

    def final_hidden(self, *args, **kwargs):
        raise AssertionError("a forward pass ran before the input was checked")

    def logits_from_hidden(self, *args, **kwargs):
        raise AssertionError("the output head ran before the input was checked")


@pytest.mark.parametrize("requests, settings, match", [
    ([([1], [])], {}, r"requests\[0\]: the answer is empty"),
    ([([1], [2]), ([1, MASK], [2])], {}, r"requests\[1\]: the context contains the mask id 7"),
    ([([1], [2, MASK])], {}, r"requests\[0\]: the answer contains the mask id 7"),
    ([([1], [2, V])], {}, r"requests\[0\]: the answer has token ids outside the model's vocabulary \[0, 8\)"),
    ([([1] * 60, [2] * 5)], {}, "context \\+ answer = 60 \\+ 5 tokens exceeds the model's max_sequence_length 64"),
    ([([1], [2.5])], {}, r"requests\[0\]: the answer must be a sequence of token ids"),
    ([[1, 2, 3]], {}, r"requests\[0\] must be a \(context_ids, answer_ids\) pair"),
    ([([1], [2])], dict(estimator="ar"), "estimator must be one of \\('masked', 'xdlm'\\), got 'ar'"),
    ([([1], [2])], dict(estimator="xdlm", k=1.5), r"k \(the XDLM mixing ratio\) must be a number in \[0, 1\], got 1.5"),
    ([([1], [2])], dict(estimator="xdlm", k=float("nan")), "must be a number in \\[0, 1\\], got nan"),
    ([([1], [2])], dict(k=0.1), "k=0.1 applies to estimator='xdlm'"),
    ([([1], [2])], dict(mc_num=0), "mc_num must be a positive integer, got 0"),
    ([([1], [2])], dict(batch_size=0), "batch_size must be a positive integer, got 0"),
    ([([1], [2])], dict(mc_num=12, batch_size=8), r"mc_num \(12\) must be a multiple of batch_size \(8\)"),
    ([([1], [2])], dict(draws_per_forward=0), "draws_per_forward must be a positive integer, got 0"),
    ([([1], [2])], dict(cfg=-0.5), r"cfg \(the guidance scale\) must be a finite number >= 0, got -0.5"),
    ([([1], [2])], dict(cfg=float("inf")), "must be a finite number >= 0, got inf"),
    ([([1], [2])], dict(seed=-1), "seed must be a non-negative integer, got -1"),
    ([([1], [2])], dict(mask_id=5), r"mask_id 5 contradicts the model config's mask_token_id 7"),
])
def test_bad_input_is_refused_by_name_before_any_forward(requests, settings, match):
    with pytest.raises(ValueError, match=match):
        estimate(NoForward(model()), requests, **settings)


# ---------------------------------------------------------------------------
# Text pairs: LLaDA's _encode_pair
# ---------------------------------------------------------------------------

def test_encode_pair_moves_the_context_s_trailing_spaces_into_the_answer(tokenizer):
    context, continuation = "def add(a, b):\n    return  ", "a + b"
    ctx, ans = encode_pair(tokenizer, context, continuation)
    assert ctx == tokenizer("def add(a, b):\n    return")["input_ids"]
    assert ctx + ans == tokenizer(context + continuation)["input_ids"]
    assert tokenizer.decode(ans) == "  a + b" and tokenizer.decode(ctx + ans) == context + continuation
    # without trailing spaces the pair splits where the context's own tokens end
    ctx, ans = encode_pair(tokenizer, "x =", " 1")
    assert ctx == tokenizer("x =")["input_ids"] and tokenizer.decode(ans) == " 1"


def test_estimate_texts_scores_the_encoded_pairs(tokenizer):
    N = len(tokenizer)
    m = shared_tiny_model(vocab_size=N, embedding_size=N, mask_token_id=tokenizer.mask_token_id)
    pairs = [("for i in ", "range(3):"), ("import ", "os")]
    assert estimate_texts(m, tokenizer, pairs, mc_num=16) == estimate(
        m, [encode_pair(tokenizer, c, a) for c, a in pairs], mc_num=16)
    with pytest.raises(ValueError, match="mc_num must be a positive integer"):
        estimate_texts(m, tokenizer, pairs, mc_num=0)


# ---------------------------------------------------------------------------
# The benchmark, reduced
# ---------------------------------------------------------------------------

def test_bench_prints_both_ways_with_identical_estimates_and_both_standard_errors(capsys):
    import bench_likelihood

    code, out, err = run_main(bench_likelihood.main, ["--items", "3", "--mc_num", "8", "--batch_size", "4",
                                                      "--draws_per_forward", "16", "--cfg", "0.5", "--repeats", "2"],
                            capsys)
    assert code == 0, err
    assert re.search(r"\| one request at a time \(draws_per_forward = batch_size = 4\) \| 6 \|", out)  # 3 x 8 / 4
    assert re.search(r"\| batched \(draws_per_forward = 16\) \| 2 \|", out)
    assert float(re.search(r"identical up to (\S+) ", out).group(1)) < 1e-5
    assert re.search(r"\| masked \| -[\d.]+ \| [\d.]+ \| 16 \|", out)  # 8 draws, twice with cfg
    assert re.search(r"\| xdlm k=0.1 \| -[\d.]+ \| [\d.]+ \| 18 \|", out)  # and the clean answer
    code, _, err = run_main(bench_likelihood.main, ["--mc_num", "12", "--batch_size", "8"], capsys)
    assert code == 2 and "--mc_num (12) must be a multiple of batch_size (8)" in err
    code, _, err = run_main(bench_likelihood.main, ["--repeats", "0"], capsys)
    assert code == 2 and "--repeats must be at least 1, got 0" in err


def test_mask_id_is_needed_and_checked_against_the_vocabulary_when_the_config_has_none():
    m = tiny_model()  # not the shared model(): its config is changed here
    m.config.mask_token_id = None
    with pytest.raises(ValueError, match="the model config has no mask_token_id; pass mask_id"):
        estimate(NoForward(m), [([1], [2])])
    with pytest.raises(ValueError, match=r"mask_id 8 is not a token id of the model \(0 .. 7\)"):
        estimate(NoForward(m), [([1], [2])], mask_id=8)


def test_estimator_settings_take_the_model_s_k_for_its_own_bound_and_k0_for_llada_s():
    from likelihood import estimator_settings

    assert estimator_settings("masked", 0.1, mc_num=16)["k"] == 0.0  # LLaDA's bound, whatever the model's k
    assert estimator_settings("xdlm", 0.1, mc_num=16)["k"] == 0.1
    with pytest.raises(ValueError, match="mc_num must be a positive integer, got 0"):
        estimator_settings("xdlm", 0.1, mc_num=0)
