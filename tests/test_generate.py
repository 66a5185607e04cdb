"""The samplers: LLaDA's schedule, XDLM re-editing within its budget, batching with left
padding, and the exact ancestral step against a brute-force posterior."""
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from generate import generate, transfer_schedule
from modeling_llada import LLaDAConfig, LLaDAModelLM
from xdlm_loss import reverse_posterior

ROOT = __import__("os").path.dirname(__import__("os").path.dirname(__import__("os").path.abspath(__file__)))
V, MASK = 64, 63


def tiny_model(dtype=torch.float64):
    torch.manual_seed(0)
    cfg = LLaDAConfig(d_model=32, n_heads=4, n_layers=2, mlp_hidden_size=64, vocab_size=V, embedding_size=V,
                      max_sequence_length=256, mask_token_id=MASK, init_std=0.5)
    return LLaDAModelLM(cfg).to(dtype).eval()


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


@pytest.mark.parametrize("k", [0.1, 0.3])
def test_xdlm_edits_stay_within_the_cumulative_budget(k):
    rec = Recorder(tiny_model())
    x = prompts(B=4)
    out = generate(rec, x, steps=15, gen_length=48, block_length=16, k=k)
    states = rec.inputs + [out]
    revealed, edits, total_edits = 0, torch.zeros(4, dtype=torch.long), 0
    for before, after in zip(states, states[1:]):
        assert not ((before != MASK) & (after == MASK)).any()  # never back to the mask
        edited = (before != MASK) & (after != before)
        assert not edited[:, :5].any()  # the prompt is never edited
        edits += edited.sum(1)
        assert (edits <= math.floor(k * revealed / (1 - k) + 1e-9)).all()
        revealed += int(((before == MASK) & (after != MASK)).sum(1)[0])
        total_edits += int(edited.sum())
    assert total_edits > 0  # the budget was exercised


@pytest.mark.parametrize("k", [0.0, 0.1])
def test_left_padded_batch_equals_each_prompt_alone(k):
    model = tiny_model()
    lengths = [3, 7, 5]
    singles = [prompts(B=1, P=n, seed=n) for n in lengths]
    P = max(lengths)
    batch = torch.cat([torch.cat([torch.zeros(1, P - n, dtype=torch.long), s], 1) for n, s in zip(lengths, singles)])
    mask = torch.cat([torch.cat([torch.zeros(1, P - n), torch.ones(1, n)], 1) for n in lengths]).long()
    out = generate(model, batch, attention_mask=mask, steps=8, gen_length=16, block_length=8, k=k)
    for i, (n, s) in enumerate(zip(lengths, singles)):
        alone = generate(model, s, steps=8, gen_length=16, block_length=8, k=k)
        assert torch.equal(out[i, P:], alone[0, n:]), i
        assert torch.equal(out[i, :P], batch[i])  # prompt and padding untouched


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
        got = reverse_posterior(torch.tensor(p)[None, None], torch.tensor([[z_t]]), torch.tensor([a_s], dtype=torch.float64),
                                torch.tensor([a_t], dtype=torch.float64), k, m)[0, 0].numpy()
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


def test_command_line_prints_a_completion(llada_dir):
    proc = subprocess.run([sys.executable, "generate.py", "--model_name_or_path", llada_dir, "--prompt", "def add(a, b):",
                           "--steps", "8", "--gen_length", "32", "--block_length", "32", "--k", "0.1"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() and "sampling" in proc.stderr  # the completion, and a progress bar
