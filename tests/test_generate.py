"""The samplers: LLaDA's schedule, XDLM re-editing within its budget, batching with left
padding, and the exact ancestral step against a brute-force posterior."""
import dataclasses
import functools
import math
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from generate import SamplerSettings, _Scorer, edit_budget, edit_budgets, generate, transfer_schedule
from helpers import ROOT, check_left_padded_batch_equals_each_prompt_alone, run_main, sharpened
from helpers import tiny_model as shared_tiny_model
from xdlm_loss import reverse_posterior

V, MASK = 64, 63
# float64, vocabulary 64, wide initialisation: sharp and exactly comparable distributions.
tiny_model = functools.partial(shared_tiny_model, dtype=torch.float64, mlp_hidden_size=64, vocab_size=V,
                               embedding_size=V, max_sequence_length=256, mask_token_id=MASK, init_std=0.5)


class Recorder(torch.nn.Module):
    """Wraps a model and keeps the input of every forward pass."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config, self.inputs = model, model.config, []

    def forward(self, input_ids, attention_mask=None):
        self.inputs.append(input_ids.clone())
        return self.model(input_ids, attention_mask=attention_mask)


def prompts(B=3, P=5, seed=1):
    return torch.randint(0, MASK, (B, P), generator=torch.Generator().manual_seed(seed))


def test_schedule_spreads_tokens_evenly_remainder_first():
    assert transfer_schedule(10, 3) == [4, 3, 3]
    assert transfer_schedule(256, 32) == [8] * 32
    for n, s in [(7, 7), (13, 5), (256, 7)]:
        sch = transfer_schedule(n, s)
        assert sum(sch) == n and max(sch) - min(sch) <= 1 and sch == sorted(sch, reverse=True)


@pytest.mark.parametrize("k", [0.0, 0.1, 0.5])
def test_deterministic_no_mask_left_prompt_kept(k):
    model, x = tiny_model(), prompts()
    a = generate(model, x, steps=8, gen_length=32, block_length=16, k=k)
    b = generate(model, x, steps=8, gen_length=32, block_length=16, k=k)
    assert torch.equal(a, b)
    assert a.shape == (3, 37) and not (a == MASK).any()
    assert torch.equal(a[:, :5], x)


def test_each_step_reveals_the_scheduled_number_within_the_current_block():
    rec = Recorder(tiny_model())
    x = prompts()
    out = generate(rec, x, steps=6, gen_length=20, block_length=10, k=0.0)
    states = rec.inputs + [out]
    per_block = transfer_schedule(10, 3)
    for step in range(6):
        before, after = states[step], states[step + 1]
        newly = (before == MASK) & (after != MASK)
        block = step // 3
        lo, hi = 5 + 10 * block, 5 + 10 * (block + 1)
        assert (newly.sum(1) == per_block[step % 3]).all()
        assert not newly[:, :lo].any() and not newly[:, hi:].any()  # semi-autoregressive blocks
        assert torch.equal(after[before != MASK], before[before != MASK])  # k = 0 never edits


def test_random_remasking_and_temperature_sampling_finish():
    model, x = tiny_model(), prompts()
    torch.manual_seed(0)
    a = generate(model, x, steps=4, gen_length=16, block_length=16, remasking="random", temperature=1.0)
    torch.manual_seed(1)
    b = generate(model, x, steps=4, gen_length=16, block_length=16, remasking="random", temperature=1.0)
    assert not (a == MASK).any() and not torch.equal(a, b)


@pytest.mark.parametrize("k, steps, block_length, want", [
    # the paper's setting: 8 tokens a step, cumulative budget floor(8 (i + 1) / 9) from step 1 on
    (0.1, 32, 256, [0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 9, 10, 11, 12, 13, 14, 15, 16, 16, 17, 18, 19, 20, 21, 22,
                    23, 24, 24, 25, 26, 27, 28]),
    (0.1, 2, 16, [0, 1]),        # 8 + 8 revealed: floor(16 / 9) = 1
    (0.2, 3, 10, [0, 1, 2]),     # reveals 4, 3, 3; k/(1-k) = 1/4: floor(7/4), floor(10/4)
    (0.5, 3, 7, [0, 5, 7]),      # reveals 3, 2, 2; k/(1-k) = 1: the count revealed, yet none at the first step
    (0.3, 4, 32, [0, 6, 10, 13]),  # 8 a step; k/(1-k) = 3/7: floor(48/7), floor(72/7), floor(96/7)
    (0.0, 4, 32, [0, 0, 0, 0]),
])
def test_edit_budgets_equal_hand_computed_tables(k, steps, block_length, want):
    assert edit_budgets(transfer_schedule(block_length, steps), k) == want


def test_edit_budget_of_a_tensor_of_counts_equals_that_of_each_count():
    """The threshold rule's per-row budgets against the formula on Python numbers (float32 arithmetic
    gave floor(0.4 / 0.6 x 33) = 21)."""
    revealed = torch.arange(0, 300)
    for k in (0.1, 0.2, 0.3, 0.4, 0.5, 0.7):
        assert edit_budget(k, revealed).tolist() == [math.floor(k * n / (1 - k) + 1e-9) for n in range(300)], k
    assert edit_budget(0.4, torch.tensor([33])).item() == 22  # 2/3 x 33 exactly


class CyclingArgmax(torch.nn.Module):
    """Every position's most likely token is `token(call)`, one of 50 ids, the call counting
    forward passes: decoded tokens are re-edit candidates whenever that token changes."""

    def __init__(self, token, slope=1.0):
        super().__init__()
        self.config = type("C", (), {"mask_token_id": MASK})()
        self.token, self.slope, self.calls, self.inputs = token, slope, 0, []

    def forward(self, input_ids, attention_mask=None):
        self.inputs.append(input_ids.clone())
        B, L = input_ids.shape
        logits = torch.zeros(B, L, V, dtype=torch.float64)
        # a little position-dependent confidence so that reveals and edits have a definite order
        logits[..., 1 + self.token(self.calls) % 50] = 5 + self.slope * torch.linspace(0, 1, L, dtype=torch.float64)
        self.calls += 1
        return type("O", (), {"logits": logits})()


def edits_per_step(states):
    return [int(((a != MASK) & (b != a)).sum()) for a, b in zip(states, states[1:])]


def test_reedits_use_the_whole_budget_of_each_block_and_restart_at_each_block():
    # 3 blocks of 16, 4 steps each (4 tokens a step), k = 0.2: cumulative budgets [0, 2, 3, 4] a block
    model = CyclingArgmax(lambda call: call)
    x = prompts(B=1)
    out = generate(model, x, steps=12, gen_length=48, block_length=16, k=0.2)
    edits = edits_per_step(model.inputs + [out])
    assert edits == [0, 2, 1, 1] * 3
    assert not (out == MASK).any() and torch.equal(out[:, :5], x)


def test_unused_budget_carries_to_the_next_steps_of_the_block():
    # The argmax changes only every other step: 8 steps revealing 4 each, k = 0.3, cumulative
    # budgets [0, 3, 5, 6, 8, 10, 12, 13]. Step 1 finds no candidate (all tokens equal the argmax)
    # and its 3 edits carry: step 2 makes 5; step 3 has 3 candidates and 1 edit left.
    model = CyclingArgmax(lambda call: call // 2)
    out = generate(model, prompts(B=1), steps=8, gen_length=32, block_length=32, k=0.3)
    assert edits_per_step(model.inputs + [out]) == [0, 0, 5, 1, 2, 2, 2, 1]


def test_with_temperature_a_reedited_token_takes_the_sampled_value():
    """Tokens 1 and 2 tie for the argmax: a re-edit sets the Gumbel sample, so tokens change
    1 -> 2 as well as 2 -> 1 (taking the argmax would only ever give 1)."""
    class TwoWayTie(torch.nn.Module):
        config = type("C", (), {"mask_token_id": MASK})()

        def forward(self, input_ids, attention_mask=None):
            logits = torch.full((*input_ids.shape, V), -30.0)
            logits[..., 1:3] = 0.0
            return type("O", (), {"logits": logits})()

    rec = Recorder(TwoWayTie())
    torch.manual_seed(0)
    out = generate(rec, prompts(B=4), steps=16, gen_length=64, block_length=64, k=0.3, temperature=1.0)
    states = rec.inputs + [out]
    changes = set()
    for a, b in zip(states, states[1:]):
        edited = (a != MASK) & (b != a)
        changes |= set(zip(a[edited].tolist(), b[edited].tolist()))
    assert changes == {(1, 2), (2, 1)}


def reference_sampler(model, prompt, steps, gen_length, block_length, k):
    """The paper's XDLM sampler at temperature 0, one prompt at a time with plain loops, less its
    prompt editing, with p(mask) = 0: an independent check of the batched implementation."""
    x = prompt[0].tolist() + [MASK] * gen_length
    P, per_block = prompt.shape[1], steps // (gen_length // block_length)
    for b in range(gen_length // block_length):
        lo, hi = P + b * block_length, P + (b + 1) * block_length
        counts = [block_length // per_block + (i < block_length % per_block) for i in range(per_block)]
        used = 0
        for i in range(per_block):
            logits = model(torch.tensor([x])).logits[0].float()
            logits[:, MASK] = -torch.inf
            p = torch.softmax(logits, -1)
            x0 = p.argmax(-1).tolist()
            masked = [j for j in range(lo, hi) if x[j] == MASK]
            reveal = sorted(masked, key=lambda j: -p[j, x0[j]].item())[:counts[i]]
            allowed = 0 if i == 0 else math.floor(k / (1 - k) * sum(counts[:i + 1]) + 1e-9) - used
            cands = [j for j in range(P, hi) if x[j] != MASK and x0[j] != x[j] and p[j, x0[j]] >= p[j, x[j]]]
            edit = sorted(cands, key=lambda j: -p[j, x0[j]].item())[:max(allowed, 0)]
            used += len(edit)
            for j in reveal + edit:
                x[j] = x0[j]
    return torch.tensor([x])


@pytest.mark.parametrize("k, steps, block_length", [(0.1, 16, 32), (0.3, 12, 16)])
def test_batched_sampler_equals_a_plain_reference_of_the_papers(k, steps, block_length):
    model = tiny_model()
    x = prompts(B=3)
    out = generate(model, x, steps=steps, gen_length=48 if block_length == 16 else 32, block_length=block_length, k=k)
    for i in range(3):
        want = reference_sampler(model, x[i:i + 1], steps, out.shape[1] - 5, block_length, k)
        assert torch.equal(out[i:i + 1], want), i
    assert (out[:, 5:] != generate(model, x, steps=steps, gen_length=out.shape[1] - 5, block_length=block_length,
                                   k=0.0)[:, 5:]).any()  # the re-edits changed something


def test_exact_ties_go_to_the_leftmost_positions_in_reveals_and_re_edits():
    """Every position has the same logits, so every confidence ties exactly: each step reveals the
    leftmost masked positions of its block and re-edits the leftmost candidates (torch.topk and a
    plain argsort leave the order of ties unspecified; on CPU it depends on the row length)."""
    model = CyclingArgmax(lambda call: call, slope=0.0)
    x = prompts(B=1)
    out = generate(model, x, steps=12, gen_length=48, block_length=16, k=0.2)
    states = model.inputs + [out]
    positions = torch.arange(out.shape[1])
    for step, (before, after) in enumerate(zip(states, states[1:])):
        hi = 5 + 16 * (step // 4 + 1)
        masked = ((before[0] == MASK) & (positions < hi)).nonzero().flatten()
        revealed = ((before[0] == MASK) & (after[0] != MASK)).nonzero().flatten()
        assert revealed.tolist() == masked[:4].tolist(), step
        candidates = ((before[0] != MASK) & (before[0] != 1 + step % 50) & (positions >= 5)).nonzero().flatten()
        edited = ((before[0] != MASK) & (after[0] != before[0])).nonzero().flatten()
        assert edited.tolist() == candidates[:len(edited)].tolist(), step
    assert edits_per_step(states) == [0, 2, 1, 1] * 3  # the budget was used: the rule was exercised


def sharp_model(factor):
    """float32 logits, as LLaDA's sampler takes a float64 softmax of, from a head made sharp."""
    return sharpened(shared_tiny_model(torch.float32, mlp_hidden_size=64, vocab_size=V, embedding_size=V,
                                       max_sequence_length=256, mask_token_id=MASK, init_std=0.5), factor)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_confidences_rank_as_a_float64_softmax_on_a_sharpened_head(temperature):
    """LLaDA's and Fast-dLLM's confidence is softmax(logits in float64) at the predicted token (the
    Gumbel sample at temperature > 0); near 1, float32 ties what float64 separates."""
    model = sharp_model(10)
    x = torch.cat([prompts(B=3), torch.full((3, 32), MASK)], 1)
    x[:, 20:28] = prompts(B=3, P=8, seed=2)  # some decoded tokens among the masks
    torch.manual_seed(0)
    with torch.no_grad():
        logits, pred, _, p = _Scorer(model, None, MASK, temperature)(x, torch.arange(5, 37).expand(3, -1))
    want = torch.softmax(logits.double(), -1).gather(-1, pred[..., None]).squeeze(-1)
    ties32 = torch.softmax(logits, -1).gather(-1, pred[..., None]).squeeze(-1) == 1
    assert ties32.sum() >= 10 and want[ties32].unique().numel() >= 10  # float32 ties at 1 what float64 separates
    assert torch.equal(p.argsort(stable=True), want.argsort(stable=True))
    torch.testing.assert_close(1 - p, 1 - want, rtol=1e-5, atol=1e-15)


def test_confidences_tie_where_float64_ties():
    """p = 1.0 exactly in float64 (every other token below e^-37 of the top) ties as it does in LLaDA."""
    model = sharp_model(25)
    x = torch.cat([prompts(B=3), torch.full((3, 32), MASK)], 1)
    with torch.no_grad():
        logits, pred, _, p = _Scorer(model, None, MASK, 0.0)(x, torch.arange(5, 37).expand(3, -1))
    want = torch.softmax(logits.double(), -1).max(-1).values
    assert 0 < (want == 1).sum() < want.numel()
    assert torch.equal(p == 1, want == 1)


def llada_reference(model, prompt, steps, gen_length, block_length):
    """LLaDA's sampler (ML-GSAI/LLaDA generate.py) at temperature 0 for one prompt, written plainly:
    each step reveals the top-k of the confidence softmax(logits in float64) at the argmax over the
    whole sequence, -inf outside the current block's masked positions; less LLaDA's prediction of
    the mask token (generate's documented deviation)."""
    x = torch.cat([prompt, torch.full((1, gen_length), MASK)], 1)
    P, per_block = prompt.shape[1], steps // (gen_length // block_length)
    for b in range(gen_length // block_length):
        hi = P + (b + 1) * block_length
        for i in range(per_block):
            n = block_length // per_block + (i < block_length % per_block)
            logits = model(x).logits[0].double()
            logits[:, MASK] = -torch.inf
            p = torch.softmax(logits, -1)
            x0 = p.argmax(-1)
            confidence = p.gather(-1, x0[:, None])[:, 0]
            confidence[(x[0] != MASK) | (torch.arange(x.shape[1]) >= hi)] = -torch.inf
            top = confidence.topk(n + 1).values
            assert top[n - 1] > top[n]  # no tie at the cut: any tie rule gives LLaDA's choice
            chosen = confidence.topk(n).indices
            x[0, chosen] = x0[chosen]
    return x


def test_exact_sampler_equals_llada_float64_reference_on_a_sharpened_head():
    model = sharp_model(10)
    x = prompts(B=3)
    with torch.no_grad():
        out = generate(model, x, steps=8, gen_length=32, block_length=16)
        for i in range(3):
            assert torch.equal(out[i:i + 1], llada_reference(model, x[i:i + 1], 8, 32, 16)), i


@pytest.mark.parametrize("k", [0.0, 0.1])
def test_left_padded_batch_equals_each_prompt_alone(k):
    model = tiny_model()
    singles = [prompts(B=1, P=n, seed=n) for n in (3, 7, 5)]
    check_left_padded_batch_equals_each_prompt_alone(model, singles, steps=8, gen_length=16, block_length=8, k=k)


def brute_force_reverse(p, z_t, alpha_s, alpha_t, k, N, m):
    """p(z_s | z_t) from full transition matrices: Q_t = alpha_t I + beta_t 1 r^T."""
    r = np.full(N, k / N)
    r[m] += 1 - k
    Q = lambda a: a * np.eye(N) + (1 - a) * np.outer(np.ones(N), r)  # noqa: E731  Q[x, z]
    Q_ts = Q(alpha_t / alpha_s)
    f_s, f_t = p @ Q(alpha_s), p @ Q(alpha_t)
    return Q_ts[:, z_t] * f_s / f_t[z_t]


@pytest.mark.parametrize("k", [0.0, 0.1, 0.6, 1.0])
def test_ancestral_step_equals_a_brute_force_posterior(k):
    N, m = 7, 6
    rng = np.random.default_rng(0)
    for z_t in range(N):
        logits = rng.normal(size=N) * 2
        logits[m] = -np.inf
        p = np.exp(logits - logits.max())
        p /= p.sum()
        a_t, a_s = 0.3, 0.55
        got = reverse_posterior(torch.tensor(p)[None, None], torch.tensor([[z_t]]),
                                torch.tensor([a_s], dtype=torch.float64), torch.tensor([a_t], dtype=torch.float64),
                                k, m)[0, 0].numpy()
        np.testing.assert_allclose(got, brute_force_reverse(p, z_t, a_s, a_t, k, N, m), rtol=1e-10, atol=1e-12)
        # the closed forms of the math notes for a masked z_t
        if z_t == m and k < 1:
            b_t, b_s, b_ts = 1 - a_t, 1 - a_s, (a_s - a_t) / a_s
            want = (a_s - a_t) * p / b_t + k * b_ts * b_s / (N * b_t)
            want[m] = b_s / b_t - k * b_ts * b_s * (N - 1) / (N * b_t)
            np.testing.assert_allclose(got, want, rtol=1e-10)


class FixedLogits(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.config = type("C", (), {"mask_token_id": MASK})()
        self.table = logits

    def forward(self, input_ids, attention_mask=None):
        return type("O", (), {"logits": self.table.expand(*input_ids.shape, -1).clone()})()


def test_ancestral_sampler_draws_from_the_model_in_one_step():
    """One step from t = 1 to t = 0 must sample each position from p (mask excluded)."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(V, generator=g) * 1.5
    p = torch.softmax(logits.masked_fill(torch.arange(V) == MASK, -torch.inf), -1)
    torch.manual_seed(0)
    out = generate(FixedLogits(logits), torch.zeros(64, 1, dtype=torch.long), steps=1, gen_length=256,
                   block_length=256, k=0.3, temperature=1.0, sampler="ancestral")[:, 1:]
    freq = torch.bincount(out.flatten(), minlength=V).double() / out.numel()
    n = out.numel()
    assert freq[MASK] == 0
    assert ((freq - p.double()).abs() <= 5 * (p.double() * (1 - p.double()) / n).sqrt() + 1e-4).all()


def test_ancestral_sampler_finishes_without_masks_and_keeps_the_prompt():
    model, x = tiny_model(), prompts()
    for k in (0.0, 0.2):
        out = generate(model, x, steps=8, gen_length=16, block_length=8, k=k, temperature=1.0, sampler="ancestral")
        assert not (out == MASK).any() and torch.equal(out[:, :5], x)


def test_ancestral_sampler_at_temperature_0_keeps_decoded_tokens_where_the_model_disagrees():
    """At temperature 0 the model's p is one-hot, and it may put no mass on a token decoded at an
    earlier step. At k = 0 such a token can only have come from itself (the forward process keeps
    or masks), so the posterior keeps it, rather than dividing 0 by 0."""
    from xdlm_loss import reverse_posterior

    p = torch.nn.functional.one_hot(torch.tensor([[3, 3]]), 7).double()  # the model says 3 everywhere
    z_t = torch.tensor([[5, 6]])  # position 0 decoded as 5, position 1 still masked (mask id 6)
    post = reverse_posterior(p, z_t, torch.tensor([0.75]).double(), torch.tensor([0.5]).double(), 0.0, 6)
    assert torch.equal(post[0, 0], torch.nn.functional.one_hot(torch.tensor(5), 7).double())
    # masked: revealed with probability (alpha_s - alpha_t) / (1 - alpha_t) = 0.5, as the model says
    assert torch.allclose(post[0, 1], torch.tensor([0, 0, 0, 0.5, 0, 0, 0.5]).double())
    model, x = tiny_model(), prompts()
    for k in (0.0, 0.2):
        out = generate(model, x, steps=8, gen_length=16, block_length=8, k=k, temperature=0.0, sampler="ancestral")
        assert not (out == MASK).any() and torch.equal(out[:, :5], x)


@pytest.mark.parametrize("kwargs, match", [
    (dict(gen_length=30, block_length=16), "gen_length \\(30\\) must be a positive multiple of block_length"),
    (dict(steps=3, gen_length=32, block_length=16), "steps \\(3\\) must be a positive multiple"),
    (dict(k=1.0), "k must lie in \\[0, 1\\)"),
    (dict(sampler="greedy"), "sampler must be one of"),
    (dict(remasking="top"), "remasking must be one of"),
    (dict(remasking="random", sampler="ancestral"), "remasking applies to sampler='confidence' only"),
    (dict(temperature=-1.0), "temperature must be >= 0"),
])
def test_bad_settings_raise_clear_errors(kwargs, match):
    args = dict(steps=4, gen_length=16, block_length=16)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        generate(tiny_model(), prompts(), **args)


def test_settings_are_one_dataclass_taken_as_an_object_or_as_keywords():
    model, x = tiny_model(), prompts()
    settings = SamplerSettings(steps=8, gen_length=16, block_length=8, k=0.2)
    assert torch.equal(generate(model, x, settings), generate(model, x, steps=8, gen_length=16, block_length=8, k=0.2))
    with pytest.raises(TypeError, match="pass settings or its fields \\(k\\), not both"):
        generate(model, x, settings, k=0.1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.k = 0.3


@pytest.mark.parametrize("flags, want", [
    (["--steps", "4", "--gen_length", "16", "--block_length", "8", "--k", "0.2", "--temperature", "0.5",
      "--remasking", "random", "--cache", "dual"],
     dict(steps=4, gen_length=16, block_length=8, k=0.2, temperature=0.5, remasking="random", cache="dual")),
    (["--gen_length", "16", "--block_length", "16", "--steps", "2", "--threshold", "0.25"],
     dict(steps=2, gen_length=16, block_length=16, threshold=0.25)),
    (["--gen_length", "16", "--block_length", "16", "--steps", "4", "--sampler", "ancestral"],
     dict(steps=4, gen_length=16, block_length=16, sampler="ancestral")),
])
def test_every_sampler_setting_is_a_command_line_flag(flags, want, llada_dir, monkeypatch, capsys):
    import generate as generate_module

    seen = []

    def record(model, ids, settings, stats, **kw):
        seen.append(settings)
        stats.update(steps=settings.steps)
        return ids

    monkeypatch.setattr(generate_module, "generate", record)
    code, out, err = run_main(generate_module.main, ["--model_name_or_path", llada_dir, "--prompt", "x = 1"] + flags,
                              capsys)
    assert code == 0, err[-3000:]
    assert seen == [SamplerSettings(**want)]
    code, out, err = run_main(generate_module.main, ["--model_name_or_path", llada_dir, "--prompt", "x", "--help"],
                              capsys)
    for field in dataclasses.fields(SamplerSettings):
        assert f"--{field.name}" in out


def with_id(x, row, position, value):
    x = x.clone()
    x[row, position] = value
    return x


@pytest.mark.parametrize("make, match", [
    (lambda x: x.int(), "prompt_ids must be a torch.long tensor of token ids, got torch.int32"),
    (lambda x: x.tolist(), "prompt_ids must be a torch.long tensor of token ids, got list"),
    (lambda x: x[:0], "prompt_ids must have shape \\[B, P\\] with B >= 1 prompts, got \\(0, 5\\)"),
    (lambda x: with_id(x, 1, 3, V), "prompt_ids row 1 position 3 holds id 64, which is not a token id of the model "
                                    "\\(0 .. 63\\)"),
    (lambda x: with_id(x, 0, 0, -1), "prompt_ids row 0 position 0 holds id -1, which is not a token id"),
    (lambda x: with_id(with_id(x, 2, 4, MASK), 2, 1, MASK), "prompt_ids row 2 position 1 holds id 63, the mask token: "
                                                            "a prompt may not hold it .* \\(1 more such positions\\)"),
])
def test_bad_prompts_are_refused_naming_the_row_and_position(make, match):
    with pytest.raises(ValueError, match=match):
        generate(tiny_model(), make(prompts()), steps=4, gen_length=16, block_length=16)


def test_a_mask_token_in_left_padding_is_not_part_of_the_prompt():
    model, x = tiny_model(), with_id(prompts(), 0, 0, MASK)
    mask = torch.ones_like(x)
    mask[0, :2] = 0
    out = generate(model, x, attention_mask=mask, steps=4, gen_length=16, block_length=16)
    assert torch.equal(out[:, :5], x) and not (out[:, 5:] == MASK).any()
    with pytest.raises(ValueError, match="prompt_ids row 0 position 2 holds id 63, the mask token"):
        generate(model, with_id(x, 0, 2, MASK), attention_mask=mask, steps=4, gen_length=16, block_length=16)


def test_a_mask_id_that_contradicts_the_model_config_is_refused_naming_both():
    model = tiny_model()
    with pytest.raises(ValueError, match="mask_id 5 contradicts the model config's mask_token_id 63"):
        generate(model, prompts(), steps=4, gen_length=16, block_length=16, mask_id=5)
    out = generate(model, prompts(), steps=4, gen_length=16, block_length=16, mask_id=MASK)  # the same id is fine
    assert torch.equal(out, generate(model, prompts(), steps=4, gen_length=16, block_length=16))


@pytest.mark.parametrize("kwargs, match", [
    (dict(steps=8.0), "steps must be an integer, got 8.0"),
    (dict(gen_length=True), "gen_length must be an integer, got True"),
    (dict(k="0.1"), "k must be a real number, got '0.1'"),
    (dict(threshold="0.9"), "threshold must be a real number or None, got '0.9'"),
    (dict(threshold=True), "threshold must be a real number or None, got True"),
    (dict(threshold=math.nan), "threshold must be None or a probability in \\[0, 1\\], got nan"),
    (dict(k=np.float64(math.nan)), "k must lie in \\[0, 1\\)"),
    (dict(cache=None), "cache must be a string, got None"),
])
def test_settings_of_another_type_are_refused_naming_the_setting(kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate(tiny_model(), prompts(), **{"steps": 4, "gen_length": 16, "block_length": 16, **kwargs})


def test_numpy_numbers_are_settings_like_any_other():
    settings = SamplerSettings(steps=np.int64(4), gen_length=16, block_length=np.int32(16), k=np.float32(0.25),
                               threshold=np.float32(0.5))  # a float32 threshold was refused as out of range
    assert settings == SamplerSettings(steps=4, gen_length=16, block_length=16, k=0.25, threshold=0.5)
    assert type(settings.steps) is int and type(settings.threshold) is float
    model, x = tiny_model(), prompts()
    assert torch.equal(generate(model, x, steps=np.int64(4), gen_length=16, block_length=16, k=np.float32(0.25),
                                threshold=np.float32(0.5)),
                       generate(model, x, steps=4, gen_length=16, block_length=16, k=0.25, threshold=0.5))


def write_model_folder(path, config, weights=True):
    import json

    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    if weights:
        (path / "model.safetensors").write_bytes(b"")  # refused before it would be read
    return str(path)


def test_command_line_refuses_what_it_cannot_sample_before_loading_it(tmp_path, monkeypatch, capsys):
    import generate as generate_module

    monkeypatch.setattr(generate_module, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    cases = {
        "/no/such/folder": "--model_name_or_path /no/such/folder: no such model folder",
        "outputs/tiny": "--model_name_or_path outputs/tiny: no such model folder",  # outputs/ is a local folder
        "someone/no-such-model": "--model_name_or_path someone/no-such-model is not a local folder, and as a hub "
                                 "id: We couldn't connect",  # offline in the tests
        str(tmp_path / "outputs"): "is not a model folder: it has no config.json",
        write_model_folder(tmp_path / "no_weights", {"model_type": "llada"}, weights=False):
            "is not a model folder: it has no weights",
        write_model_folder(tmp_path / "gpt2", {"model_type": "gpt2", "vocab_size": 64}):
            "model_type 'gpt2' is not a diffusion LM this sampler can drive \\(model types: llada\\)",
        write_model_folder(tmp_path / "bert", {"model_type": "bert", "vocab_size": 64}):
            "model_type 'bert' is not a diffusion LM this sampler can drive",
        write_model_folder(tmp_path / "llada", {"model_type": "llada", "mask_token_id": 2}):
            "--mask_id 5 contradicts the model config's mask_token_id 2",
    }
    for path, match in cases.items():
        argv = ["--model_name_or_path", path, "--prompt", "x", "--mask_id", "5"]
        code, out, err = run_main(generate_module.main, argv, capsys)
        assert code == 2 and re.search(match, err), (path, err)
        assert len(err.strip().splitlines()[-1]) < 300  # one line


def test_command_line_refuses_a_mask_token_in_the_prompt(llada_dir, capsys):
    import generate as generate_module

    code, out, err = run_main(generate_module.main, ["--model_name_or_path", llada_dir, "--prompt", "x = <|mdm_mask|>",
                                                     "--steps", "4", "--gen_length", "16", "--block_length", "16"],
                              capsys)
    assert code == 2 and re.search("--prompt token [0-9]+ holds id [0-9]+, the mask token", err), err


@pytest.mark.slow
def test_command_line_prints_a_completion(llada_dir):
    proc = subprocess.run([sys.executable, "generate.py", "--model_name_or_path", llada_dir,
                           "--prompt", "def add(a, b):", "--steps", "8", "--gen_length", "32", "--block_length", "32",
                           "--k", "0.1"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() and "sampling" in proc.stderr  # the completion, and a progress bar


def test_bench_sampler_compares_the_modes_with_the_threads_it_is_given(capsys):
    import bench_sampler

    args = ["--random", "tiny", "--prompt_length", "24", "--gen_length", "16", "--block_length", "8", "--steps", "16"]
    threads = torch.get_num_threads()
    try:
        code, out, err = run_main(bench_sampler.main, args + ["--threads", "1"], capsys)
    finally:
        torch.set_num_threads(threads)
    assert code == 0, err[-3000:]
    assert "float32 on cpu (1 threads)" in out
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines() if line.startswith("| ")]
    rows = {c[0]: c for c in cells}
    assert set(rows) == {"mode", "---", "exact", "prefix", "dual", "prefix-t0.9", "dual-t0.9", "dual-t0.1"}
    assert rows["exact"][3:8] == ["1.00x", "16", "16 / 0", "100.0%", "100%"]  # the reference against itself
    assert rows["dual"][5] == "2 / 14"  # one full forward per block, the other steps on the cached span
    code, out, err = run_main(bench_sampler.main, args + ["--threads", "0"], capsys)
    assert code == 2 and "--threads must be at least 1, got 0" in err
    code, out, err = run_main(bench_sampler.main, ["--model", "/nonexistent"], capsys)
    assert code == 1 and "--model /nonexistent: no checkpoint there" in err
