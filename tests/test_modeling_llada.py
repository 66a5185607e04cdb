"""The native LLaDA model: loads LLaDA's checkpoint format unchanged and computes LLaDA's
forward pass (checked against a from-scratch reference written from the weight dict)."""
import functools
import math

import pytest
import torch
import transformers

from helpers import tiny_model as shared_tiny_model
from llada_format import LLADA_CONFIG, reference_forward
from modeling_llada import LLaDAConfig, LLaDAModelLM

# The shape these tests were written for: d_model 64, vocabulary 101 in 128 embeddings.
tiny_model = functools.partial(shared_tiny_model, d_model=64, mlp_hidden_size=96, embedding_size=128)


def test_loads_a_llada_checkpoint_folder_unchanged_and_matches_the_reference(llada_dir):
    from safetensors.torch import load_file

    model, info = transformers.AutoModel.from_pretrained(llada_dir, output_loading_info=True, dtype=torch.float32)
    assert isinstance(model, LLaDAModelLM)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    sd = load_file(f"{llada_dir}/model.safetensors")
    ids = torch.randint(0, 1000, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = model(ids).logits.double()
    want = reference_forward(sd, LLADA_CONFIG, ids)
    assert got.shape == (2, 12, LLADA_CONFIG["embedding_size"])
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    # the hub's remote-code pointers are not followed: no configuration_llada.py exists there
    assert type(transformers.AutoConfig.from_pretrained(llada_dir)) is LLaDAConfig


def test_final_hidden_and_output_head_give_the_logits():
    model = tiny_model()
    ids = torch.randint(0, 100, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(model.final_hidden(ids) @ model.output_head_weight.T, model(ids).logits)


def test_padding_with_attention_mask_leaves_real_tokens_unchanged():
    model = tiny_model()
    ids = torch.randint(0, 100, (1, 10))
    padded = torch.cat([torch.full((1, 5), 7), ids], 1)
    mask = torch.cat([torch.zeros(1, 5, dtype=torch.long), torch.ones(1, 10, dtype=torch.long)], 1)
    with torch.no_grad():
        alone = model(ids).logits
        left = model(padded, attention_mask=mask).logits[:, 5:]
        unmasked = model(padded).logits[:, 5:]
    torch.testing.assert_close(left, alone, rtol=1e-5, atol=1e-5)
    assert (unmasked - alone).abs().max() > 1e-3  # without the mask the pads do leak in
    # right padding too
    right = torch.cat([ids, torch.full((1, 3), 9)], 1)
    rmask = torch.cat([torch.ones(1, 10, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long)], 1)
    with torch.no_grad():
        torch.testing.assert_close(model(right, attention_mask=rmask).logits[:, :10], alone, rtol=1e-5, atol=1e-5)


def test_bidirectional_by_default_and_causal_mode_sees_only_the_past():
    model = tiny_model()
    ids = torch.randint(0, 100, (1, 12))
    changed = ids.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % 100
    with torch.no_grad():
        bi, bi2 = model(ids).logits, model(changed).logits
        c, c2 = model(ids, causal=True).logits, model(changed, causal=True).logits
    assert (bi[0, :8] - bi2[0, :8]).abs().max() > 1e-4  # bidirectional: the future matters
    torch.testing.assert_close(c[0, :8], c2[0, :8])  # causal: it does not
    assert (c[0, 8:] - c2[0, 8:]).abs().max() > 1e-4
    # causal with left padding stays finite and unchanged for real tokens
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], 1)
    mask = torch.cat([torch.zeros(1, 3), torch.ones(1, 12)], 1).long()
    with torch.no_grad():
        out = model(padded, attention_mask=mask, causal=True).logits
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[:, 3:], c, rtol=1e-5, atol=1e-5)


def test_gradient_checkpointing_gives_the_same_loss_and_gradients():
    ids = torch.randint(0, 100, (2, 16))

    def loss_and_grads(checkpointing):
        model = tiny_model().train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            assert all(b.gradient_checkpointing for b in model.model.transformer.blocks)
        loss = torch.log_softmax(model(ids).logits, -1)[..., 3].mean()
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    (l0, g0), (l1, g1) = loss_and_grads(False), loss_and_grads(True)
    torch.testing.assert_close(l0, l1)
    for n in g0:
        torch.testing.assert_close(g0[n], g1[n], msg=n)


def test_grouped_query_attention_equals_repeated_kv_heads():
    gqa = tiny_model(n_kv_heads=2)
    full = tiny_model(n_kv_heads=4)
    sd = gqa.state_dict()
    for i in range(2):
        for n in ("k_proj", "v_proj"):
            w = sd[f"model.transformer.blocks.{i}.{n}.weight"].view(2, 16, 64)
            sd[f"model.transformer.blocks.{i}.{n}.weight"] = w.repeat_interleave(2, 0).reshape(64, 64)
    full.load_state_dict(sd)
    ids = torch.randint(0, 100, (2, 8))
    with torch.no_grad():
        torch.testing.assert_close(gqa(ids).logits, full(ids).logits, rtol=1e-5, atol=1e-5)


def test_weight_tying_uses_the_embedding_as_head():
    """One [N, d] parameter serves as embedding and head: the head's gradient lands in it (rows
    of tokens absent from the input get a gradient only through the head), and changing it
    changes the head."""
    tied, untied = tiny_model(weight_tying=True), tiny_model()
    assert sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in tied.parameters()) == 128 * 64
    assert "model.transformer.ff_out.weight" not in tied.state_dict()
    ids = torch.randint(0, 50, (2, 9), generator=torch.Generator().manual_seed(0))  # tokens 50.. never appear
    for model in (tied, untied):
        torch.log_softmax(model(ids).logits, -1)[..., 3].mean().backward()
    wte = tied.model.transformer.wte.weight
    assert wte.grad[60:].abs().sum(1).min() > 0  # every absent token's row: the head's gradient
    assert untied.model.transformer.wte.weight.grad[60:].abs().max() == 0  # untied: only the head gets it
    assert untied.model.transformer.ff_out.weight.grad[60:].abs().sum(1).min() > 0
    with torch.no_grad():
        before = tied(ids).logits
        wte[70] += 1.0  # a row no input token uses: only the head sees the change
        after = tied(ids).logits
    assert (after[..., 70] - before[..., 70]).abs().min() > 0
    torch.testing.assert_close(after[..., :70], before[..., :70])


def test_causal_training_model_never_sees_later_tokens():
    """The model the trainer builds for --training_method ar attends causally in a plain call
    (as the trainer makes it): changing a later token leaves earlier logits unchanged. The
    diffusion methods' model stays bidirectional."""
    from types import SimpleNamespace

    import llada_cpt

    model_args = SimpleNamespace(torch_dtype=None, model_name_or_path=None, with_lora=False, trust_remote_code=False)
    training_args = SimpleNamespace(deepspeed=None, bf16=False, fp16=False)
    ids = torch.randint(0, 100, (1, 12), generator=torch.Generator().manual_seed(1))
    changed = ids.clone()
    changed[0, 9] = (changed[0, 9] + 1) % 100
    for method in ("ar", "xdm"):
        torch.manual_seed(0)
        model = llada_cpt.load_model(model_args, tiny_model().config, method, training_args).eval()
        with torch.no_grad():
            a, b = model(input_ids=ids).logits, model(input_ids=changed).logits
        earlier_moved = (a[0, :9] - b[0, :9]).abs().max().item()
        if method == "ar":
            assert earlier_moved == 0
            assert (a[0, 9:] - b[0, 9:]).abs().max() > 1e-4
        else:
            assert earlier_moved > 1e-4


def test_save_and_reload_gives_identical_logits(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    again = transformers.AutoModel.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 100, (2, 8))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)


def test_unsupported_config_and_too_long_input_raise_clear_errors():
    with pytest.raises(ValueError, match="alibi"):
        LLaDAConfig(alibi=True)
    with pytest.raises(ValueError, match="n_heads"):
        LLaDAConfig(d_model=64, n_heads=5)
    with pytest.raises(ValueError, match="max_sequence_length 64"):
        tiny_model()(torch.zeros(1, 65, dtype=torch.long))


def test_scale_logits_in_the_forward_and_the_samplers_scorer_match_the_reference():
    """LLaDA's scale_logits divides the logits by sqrt(d_model): the forward and the sampler's
    scorer (both through logits_from_hidden) against the reference written from the weights."""
    from generate import _Scorer

    model = tiny_model(scale_logits=True, init_std=0.5)
    cfg = {name: getattr(model.config, name)
           for name in ("d_model", "n_heads", "n_layers", "rms_norm_eps", "rope_theta")}
    ids = torch.randint(0, 100, (2, 12), generator=torch.Generator().manual_seed(4))
    want = reference_forward(model.state_dict(), cfg, ids) / math.sqrt(cfg["d_model"])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits.double(), want, rtol=1e-4, atol=1e-4)
        positions = torch.tensor([[3, 7, 11], [0, 5, 6]])
        logits, pred, _, p_pred = _Scorer(model, None, 100, 0.0)(ids, positions)
    want = want.gather(1, positions[..., None].expand(-1, -1, want.shape[-1]))
    want[..., 100] = -math.inf  # the sampler never predicts the mask
    torch.testing.assert_close(logits.double(), want, rtol=1e-4, atol=1e-4)
    assert torch.equal(pred, want.argmax(-1))
    torch.testing.assert_close(p_pred, want.softmax(-1).max(-1).values, rtol=1e-4, atol=1e-6)
    unscaled = (want * math.sqrt(cfg["d_model"])).softmax(-1).max(-1).values
    assert (p_pred - unscaled).abs().min() > 0.01  # the scale matters
