"""Opt-in faster sampling: the cached span forward is exact against a full forward (the only
approximation is staleness), the cache and threshold modes of `generate` keep their rules
(schedule, k > 0 edit budgets inside the block, left padding), and bad settings are refused."""
import math
import shutil

import pytest
import torch

from generate import edit_budgets, generate, transfer_schedule
from generate import main as generate_main
from helpers import check_left_padded_batch_equals_each_prompt_alone, run_main, sharpened
from helpers import tiny_model as shared_tiny_model
from modeling_llada import KVCache

V, MASK = 64, 63


def tiny_model(dtype=torch.float64, **overrides):
    """The shared tiny model with a 64-token vocabulary, room for long prompts, and weights large
    enough (init_std 0.5) that predictions are confident and differ between positions."""
    shape = dict(vocab_size=V, embedding_size=V, mask_token_id=MASK, mlp_hidden_size=64, max_sequence_length=256,
                 init_std=0.5)
    return shared_tiny_model(dtype, **dict(shape, **overrides))


def prompts(B=3, P=5, seed=1):
    return torch.randint(0, MASK, (B, P), generator=torch.Generator().manual_seed(seed))


def padded_batch():
    ids = torch.randint(0, MASK, (3, 24), generator=torch.Generator().manual_seed(2))
    mask = torch.ones(3, 24, dtype=torch.long)
    mask[0, :5], mask[2, :9] = 0, 0  # left padding of different lengths
    return ids, mask


@pytest.mark.parametrize("start, end", [(12, 18), (12, 24), (0, 24), (3, 7)])  # dual, prefix, all, over padding
def test_span_forward_against_a_cache_of_the_same_sequence_equals_the_full_forward(start, end):
    model = tiny_model(torch.float32, n_kv_heads=2)  # grouped-query attention too
    ids, mask = padded_batch()
    with torch.no_grad():
        full = model(ids, attention_mask=mask).logits
        cache = KVCache()
        model.final_hidden(ids, mask, cache=cache)
        span = model.logits_from_hidden(model.span_hidden(ids[:, start:end], start, cache))
    real = mask[:, start:end].bool()  # pad positions' outputs are unused anywhere
    torch.testing.assert_close(span[real], full[:, start:end][real], rtol=1e-5, atol=1e-5)


def test_a_stale_cache_is_what_the_span_sees():
    """A span forward reads the other positions only from the cache: after they change, it
    still gives the old sequence's answer until the cache is refilled."""
    model = tiny_model(torch.float32)
    ids, mask = padded_batch()
    changed = ids.clone()
    changed[:, 20:] = (changed[:, 20:] + 1) % MASK  # positions outside the span [12, 18)
    with torch.no_grad():
        cache = KVCache()
        model.final_hidden(ids, mask, cache=cache)
        stale = model.span_hidden(changed[:, 12:18], 12, cache)
        old = model.final_hidden(ids, mask)[:, 12:18]
        new = model.final_hidden(changed, mask)[:, 12:18]
    torch.testing.assert_close(stale, old, rtol=1e-5, atol=1e-5)
    assert (new - old).abs().max() > 1e-3  # the test would notice a span that ignored the cache


def test_cache_modes_take_one_full_forward_per_block():
    model, x = tiny_model(), prompts()
    for cache in ("prefix", "dual"):
        stats = {}
        out = generate(model, x, steps=8, gen_length=32, block_length=8, cache=cache, stats=stats)
        assert stats == dict(steps=8, full_forwards=4, span_forwards=4)
        assert not (out == MASK).any() and torch.equal(out[:, :5], x)
    stats = {}
    generate(model, x, steps=8, gen_length=32, block_length=8, stats=stats)
    assert stats == dict(steps=8, full_forwards=8, span_forwards=0)


def test_a_cache_matches_the_exact_sampler_while_it_is_fresh():
    """One step per block: every step is a block's first, a full forward: no staleness at all."""
    model, x = tiny_model(), prompts()
    exact = generate(model, x, steps=4, gen_length=32, block_length=8)
    for cache in ("prefix", "dual"):
        assert torch.equal(generate(model, x, steps=4, gen_length=32, block_length=8, cache=cache), exact)


class StateRecorder:
    """Records the generated part of x at every step of a native model's sampling, whether the
    step ran a full forward or a cached span."""

    def __init__(self, model, P):
        self.states, self.P, self.current = [], P, None
        full, span = model.final_hidden, model.span_hidden

        def final_hidden(ids, *a, **kw):
            self.current = ids.clone()
            self.states.append(self.current[:, P:].clone())
            return full(ids, *a, **kw)

        def span_hidden(span_ids, start, cache):
            self.current[:, start:start + span_ids.shape[1]] = span_ids
            self.states.append(self.current[:, P:].clone())
            return span(span_ids, start, cache)

        model.final_hidden, model.span_hidden = final_hidden, span_hidden


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_with_a_cache_re_edits_stay_in_the_block_within_its_budget(cache):
    model, x = tiny_model(), prompts()
    k, steps, gen, block = 0.3, 16, 32, 16
    rec = StateRecorder(model, 5)
    out = generate(model, x, steps=steps, gen_length=gen, block_length=block, k=k, cache=cache)
    states = rec.states + [out[:, 5:]]
    per_block = steps * block // gen
    schedule = transfer_schedule(block, per_block)
    budgets = edit_budgets(schedule, k)
    total_edits = 0
    for b in range(gen // block):
        lo, hi = b * block, (b + 1) * block
        used = torch.zeros(3, dtype=torch.long)
        for i in range(per_block):
            before, after = states[b * per_block + i], states[b * per_block + i + 1]
            revealed = (before == MASK) & (after != MASK)
            edited = (before != MASK) & (after != before)
            assert (revealed.sum(1) == schedule[i]).all()
            assert not revealed[:, :lo].any() and not revealed[:, hi:].any()
            assert not edited[:, :lo].any() and not edited[:, hi:].any()  # earlier blocks sit in the cache
            used += edited.sum(1)
            assert (used <= budgets[i]).all(), (b, i, used, budgets[i])
        total_edits += int(used.sum())
    assert total_edits > 0  # the budget was used: the rule was exercised


@pytest.mark.parametrize("cache", ["none", "prefix", "dual"])
def test_threshold_one_reveals_exactly_one_token_a_step(cache):
    model, x = tiny_model(), prompts()
    rec = StateRecorder(model, 5)
    stats = {}
    out = generate(model, x, steps=16, gen_length=16, block_length=8, threshold=1.0, cache=cache, stats=stats)
    states = rec.states + [out[:, 5:]]
    assert stats["steps"] == 16
    for before, after in zip(states, states[1:]):
        assert (((before == MASK) & (after != MASK)).sum(1) == 1).all()
    # one a step, the most confident: the exact sampler's choice
    assert torch.equal(out, generate(model, x, steps=16, gen_length=16, block_length=8, cache=cache))


@pytest.mark.parametrize("cache", ["none", "prefix", "dual"])
def test_threshold_one_reveals_the_schedules_count_on_a_sharpened_head(cache):
    """Probabilities within 1e-7 of 1 are 1 in float32 but below 1 in float64 (LLaDA's and
    Fast-dLLM's softmax): threshold 1.0 reveals only the schedule's 2 a step, as the exact sampler."""
    model = sharpened(tiny_model(torch.float32), 10)
    x = prompts()
    with torch.no_grad():
        first = model(torch.cat([x, torch.full((3, 16), MASK)], 1)).logits[:, 5:13]
    first[..., MASK] = -math.inf
    top = torch.softmax(first.double(), -1).max(-1).values
    assert ((1 - top < 1e-7) & (top < 1)).sum() >= 3  # the sharp regime, already at the first step
    rec = StateRecorder(model, 5)
    stats = {}
    out = generate(model, x, steps=8, gen_length=16, block_length=8, threshold=1.0, cache=cache, stats=stats)
    states = rec.states + [out[:, 5:]]
    assert stats["steps"] == 8
    for before, after in zip(states, states[1:]):
        assert (((before == MASK) & (after != MASK)).sum(1) == 2).all()
    assert torch.equal(out, generate(model, x, steps=8, gen_length=16, block_length=8, cache=cache))


@pytest.mark.parametrize("cache", ["none", "prefix", "dual"])
@pytest.mark.parametrize("threshold", [None, 1.0])
def test_exact_ties_are_revealed_leftmost_first_in_every_mode(cache, threshold):
    """A zero output head: every logit is 0, every confidence ties exactly, so each step reveals the
    leftmost masked positions of its block (at k > 0 too: the window of re-edit candidates)."""
    model = sharpened(tiny_model(), 0.0)
    rec = StateRecorder(model, 5)
    out = generate(model, prompts(), steps=8, gen_length=32, block_length=16, k=0.3, cache=cache, threshold=threshold)
    states = rec.states + [out[:, 5:]]
    for before, after in zip(states, states[1:]):
        revealed = (before == MASK) & (after != MASK)
        masked = before == MASK
        leftmost = masked & (masked.cumsum(1) <= revealed.sum(1, keepdim=True))
        assert torch.equal(revealed, leftmost) and (revealed.sum(1) == 4).all()


@pytest.mark.parametrize("cache", ["none", "dual"])
def test_threshold_zero_reveals_a_whole_block_at_its_first_step(cache):
    model, x = tiny_model(), prompts()
    stats = {}
    out = generate(model, x, steps=16, gen_length=16, block_length=8, threshold=0.0, cache=cache, stats=stats)
    assert stats["steps"] == 2 and stats["full_forwards"] == 2 and stats["span_forwards"] == 0
    # block 1: the argmax (mask excluded) of one forward over the prompt and 16 masks
    masked = torch.cat([x, torch.full((3, 16), MASK)], 1)
    logits = model(masked).logits[:, 5:13]
    logits[..., MASK] = -math.inf
    assert torch.equal(out[:, 5:13], logits.argmax(-1))


def test_threshold_steps_never_exceed_the_request_and_the_schedule_is_a_floor():
    model, x = tiny_model(), prompts()
    for threshold in (0.05, 0.3, 0.9):
        rec = StateRecorder(model, 5)
        stats = {}
        out = generate(model, x, steps=8, gen_length=32, block_length=16, threshold=threshold, cache="dual",
                       stats=stats)
        assert stats["steps"] <= 8 and not (out == MASK).any()
        states = rec.states + [out[:, 5:]]
        for before, after in zip(states, states[1:]):
            n = ((before == MASK) & (after != MASK)).sum(1)
            block = 0 if (before[:, :16] == MASK).any() else 1  # the batch moves on when all rows are done
            left = (before[:, 16 * block:16 * (block + 1)] == MASK).sum(1)
            assert ((n >= 4) | (n == left)).all()  # the schedule's 4 a step, or the row's last ones


@pytest.mark.parametrize("k", [0.0, 0.1])
def test_cached_left_padded_batch_equals_each_prompt_alone(k):
    model = tiny_model()
    singles = [prompts(B=1, P=n, seed=n) for n in (3, 7, 5)]
    check_left_padded_batch_equals_each_prompt_alone(model, singles, steps=8, gen_length=16, block_length=8, k=k,
                                                     cache="dual", threshold=0.2)


@pytest.mark.parametrize("settings", [
    dict(k=0.0), dict(k=0.4), dict(k=0.4, temperature=2.0), dict(remasking="random", cache="prefix"),
    dict(k=0.2, cache="dual", threshold=0.5, temperature=1.0), dict(sampler="ancestral", k=0.3, temperature=1.0),
])
def test_no_setting_produces_the_mask_token(settings):
    torch.manual_seed(0)
    out = generate(tiny_model(), prompts(), steps=8, gen_length=16, block_length=8, **settings)
    assert not (out[:, 5:] == MASK).any()


@pytest.mark.parametrize("kwargs, match", [
    (dict(temperature=math.inf), "temperature must be >= 0 and finite, got inf"),
    (dict(temperature=math.nan), "temperature must be >= 0 and finite, got nan"),
    (dict(cache="full"), "cache must be one of \\('none', 'prefix', 'dual'\\)"),
    (dict(threshold=1.5), "threshold must be None or a probability in \\[0, 1\\]"),
    (dict(threshold=0.9, remasking="random"), "threshold compares probabilities"),
    (dict(cache="dual", sampler="ancestral"), "cache and threshold apply to sampler='confidence' only"),
])
def test_bad_fast_settings_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate(tiny_model(), prompts(), steps=4, gen_length=16, block_length=16, **kwargs)


def test_a_cache_needs_the_native_model():
    class Wrapped(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model, self.config = model, model.config

        def forward(self, input_ids, attention_mask=None):
            return self.model(input_ids, attention_mask=attention_mask)

    with pytest.raises(ValueError, match="cache='dual' needs the native LLaDA model"):
        generate(Wrapped(tiny_model()), prompts(), steps=4, gen_length=16, block_length=16, cache="dual")


def test_a_model_without_a_mask_id_is_refused_naming_mask_id():
    model = tiny_model()
    model.config.mask_token_id = None
    with pytest.raises(ValueError, match="--mask_id"):
        generate(model, prompts(), steps=4, gen_length=16, block_length=16)


def test_command_line_mask_id_and_fast_modes(llada_dir, tmp_path, capsys):
    """generate.py's command line (in this process; test_generate.py launches it for real)."""
    import json

    folder = tmp_path / "no_mask_id"
    shutil.copytree(llada_dir, folder)
    cfg = json.loads((folder / "config.json").read_text())
    mask_id, cfg["mask_token_id"] = cfg["mask_token_id"], None
    (folder / "config.json").write_text(json.dumps(cfg))
    common = ["--model_name_or_path", str(folder), "--prompt", "def add(a, b):", "--steps", "16", "--gen_length", "16",
              "--block_length", "8"]
    code, out, err = run_main(generate_main, common, capsys)
    assert code == 2 and "pass --mask_id" in err
    code, out, err = run_main(generate_main, common + ["--mask_id", str(10 ** 6)], capsys)
    assert code == 2 and "mask_id 1000000 is not a token id of the model" in err  # a usage error, not a traceback
    code, out, err = run_main(generate_main,
                              common + ["--mask_id", str(mask_id), "--cache", "dual", "--threshold", "0.5"], capsys)
    assert code == 0, err[-3000:]
    assert out.strip() and "steps used: " in err
    code, out, err = run_main(generate_main, common + ["--mask_id", str(mask_id), "--temperature", "nan"], capsys)
    assert code == 2 and "--temperature must be >= 0 and finite, got nan" in err  # was: empty text, exit 0
