"""A native LLaDA model for current transformers.

Reads LLaDA checkpoints unchanged (their `config.json` fields and the weight names
`model.transformer.wte`, `model.transformer.blocks.{i}.q_proj` ... `ff_out`,
`model.transformer.ln_f`, `model.transformer.ff_out`) without running the hub's remote
code. Attention is bidirectional through PyTorch SDPA and honours `attention_mask`;
`causal=True` gives the autoregressive variant. flash-attn is used when it is installed
and applicable, never required. Importing this module registers the classes with
transformers' Auto classes for model_type "llada".
"""
import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, CausalLMOutputWithPast

try:  # optional: only on CUDA machines where it was built
    from flash_attn import flash_attn_func
except ImportError:  # pragma: no cover - depends on the machine
    flash_attn_func = None


# The Auto-class pointers of LLaDA's hub checkpoints (GSAI-ML/LLaDA-8B-Base) at its own code files.
# Every config keeps them, so a saved checkpoint loads with trust_remote_code=True in LLaDA's tools
# once configuration_llada.py and modeling_llada.py from the hub sit beside config.json. Without
# trust_remote_code, transformers prefers the classes registered at the bottom of this file.
LLADA_AUTO_MAP = {"AutoConfig": "configuration_llada.LLaDAConfig", "AutoModel": "modeling_llada.LLaDAModelLM",
                  "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM"}


class LLaDAConfig(PretrainedConfig):
    """LLaDA's configuration, with the field names of its `config.json` (fields this model does
    not use, such as init_fn or flash_attention, are kept and saved as they came)."""

    model_type = "llada"

    def __init__(
        self,
        d_model=4096,
        n_heads=32,
        n_kv_heads=None,
        n_layers=32,
        mlp_hidden_size=None,
        mlp_ratio=4,
        vocab_size=126464,
        embedding_size=None,
        max_sequence_length=4096,
        rope_theta=500000.0,
        rms_norm_eps=1e-5,
        weight_tying=False,
        include_bias=False,
        include_qkv_bias=False,
        block_type="llama",
        activation_type="silu",
        layer_norm_type="rms",
        rope=True,
        alibi=False,
        scale_logits=False,
        init_std=0.02,
        mask_token_id=126336,
        causal=False,
        use_cache=False,
        pad_token_id=None,
        eos_token_id=None,
        **kwargs,
    ):
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads or n_heads
        self.n_layers = n_layers
        self.mlp_ratio = mlp_ratio
        self.mlp_hidden_size = mlp_hidden_size or mlp_ratio * d_model
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size or vocab_size
        self.max_sequence_length = max_sequence_length
        self.rope_theta = rope_theta
        self.rms_norm_eps = rms_norm_eps
        self.weight_tying = weight_tying
        self.include_bias = include_bias
        self.include_qkv_bias = include_qkv_bias
        self.block_type = block_type
        self.activation_type = activation_type
        self.layer_norm_type = layer_norm_type
        self.rope = rope
        self.alibi = alibi
        self.scale_logits = scale_logits
        self.init_std = init_std
        self.mask_token_id = mask_token_id
        self.causal = causal
        self.use_cache = use_cache  # LLaDA has no KV cache; kept so its config.json round-trips
        kwargs.setdefault("tie_word_embeddings", False)  # tying is LLaDA's own `weight_tying`
        kwargs.setdefault("auto_map", dict(LLADA_AUTO_MAP))
        super().__init__(pad_token_id=pad_token_id, eos_token_id=eos_token_id, **kwargs)
        supported = dict(block_type="llama", activation_type="silu", layer_norm_type="rms", rope=True, alibi=False)
        for name, value in supported.items():
            if getattr(self, name) != value:
                raise ValueError(f"LLaDAConfig.{name}={getattr(self, name)!r} is not supported; "
                                 f"this model implements {name}={value!r}")
        if self.d_model % self.n_heads or self.n_heads % self.n_kv_heads:
            raise ValueError(f"d_model ({d_model}) must divide by n_heads ({n_heads}), "
                             f"and n_heads by n_kv_heads ({self.n_kv_heads})")

    @property
    def max_position_embeddings(self):
        return self.max_sequence_length

    @property
    def hidden_size(self):
        return self.d_model

    @property
    def num_hidden_layers(self):
        return self.n_layers

    @property
    def num_attention_heads(self):
        return self.n_heads


class LLaDARMSNorm(nn.Module):
    """RMS norm in float32, cast back, then scaled by the weight (LLaDA's order)."""

    def __init__(self, size, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(size))

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rotary_cos_sin(position_ids, head_dim, theta):
    """cos, sin [B, 1, L, head_dim] in float32 for rotate-half RoPE."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=position_ids.device, dtype=torch.float32) / head_dim)
    freqs = position_ids.float()[..., None] * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)[:, None]
    return emb.cos(), emb.sin()


def apply_rotary(x, cos, sin):
    x1, x2 = x.float().chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return (x.float() * cos + rotated * sin).to(x.dtype)


class LLaDABlock(GradientCheckpointingLayer):
    """LLaDA's LLaMA block: x + attn(attn_norm(x)), then x + ff_out(silu(ff_proj(h)) * up_proj(h))."""

    def __init__(self, config):
        super().__init__()
        d, hd = config.d_model, config.d_model // config.n_heads
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, hd
        qkv_bias = config.include_bias or config.include_qkv_bias
        self.attn_norm = LLaDARMSNorm(d, config.rms_norm_eps)
        self.q_proj = nn.Linear(d, d, bias=qkv_bias)
        self.k_proj = nn.Linear(d, config.n_kv_heads * hd, bias=qkv_bias)
        self.v_proj = nn.Linear(d, config.n_kv_heads * hd, bias=qkv_bias)
        self.attn_out = nn.Linear(d, d, bias=config.include_bias)
        self.ff_norm = LLaDARMSNorm(d, config.rms_norm_eps)
        self.ff_proj = nn.Linear(d, config.mlp_hidden_size, bias=config.include_bias)
        self.up_proj = nn.Linear(d, config.mlp_hidden_size, bias=config.include_bias)
        self.ff_out = nn.Linear(config.mlp_hidden_size, d, bias=config.include_bias)

    def attention(self, x, cos, sin, attn_mask, causal, cache=None):
        B, L, _ = x.shape
        q = self.q_proj(x).view(B, L, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, L, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, L, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.update(self, k, v)
        if (flash_attn_func is not None and attn_mask is None and q.is_cuda
                and q.dtype in (torch.float16, torch.bfloat16)):
            out = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                  causal=causal).transpose(1, 2)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=causal and attn_mask is None,
                                                 enable_gqa=self.n_kv_heads != self.n_heads)
        return self.attn_out(out.transpose(1, 2).reshape(B, L, -1))

    def forward(self, x, cos, sin, attn_mask=None, causal=False, cache=None):
        x = x + self.attention(self.attn_norm(x), cos, sin, attn_mask, causal, cache)
        h = self.ff_norm(x)
        return x + self.ff_out(F.silu(self.ff_proj(h)) * self.up_proj(h))


class KVCache:
    """Every layer's keys and values (after rotary) over a whole sequence [B, H_kv, L, head_dim],
    for forwards over a span of its positions (`LLaDAModelLM.span_hidden`).

    A full forward with `final_hidden(..., cache=KVCache())` fills it. A span forward writes the
    span's fresh keys and values over their cached rows and attends, bidirectionally, over all
    L rows: the span sees itself as it is now and every other position as it was when last
    written. With keys cached from the same sequence it equals the full forward exactly; the
    only approximation is staleness. Also keeps the rotary positions and the padding mask."""

    def __init__(self):
        self.layers = {}  # block -> (keys, values)
        self.position_ids = self.keep = None
        self.span = None  # (start, end) being written by the current span forward

    def update(self, block, k, v):
        if self.span is None:  # filling: the full sequence's keys and values
            self.layers[block] = (k, v)
            return k, v
        keys, values = self.layers[block]
        start, end = self.span
        keys[:, :, start:end] = k
        values[:, :, start:end] = v
        return keys, values


class LLaDAModel(nn.Module):
    """Holds `transformer` = {wte, blocks, ln_f, ff_out} as in LLaDA's checkpoints."""

    def __init__(self, config):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.embedding_size, config.d_model),
            blocks=nn.ModuleList(LLaDABlock(config) for _ in range(config.n_layers)),
            ln_f=LLaDARMSNorm(config.d_model, config.rms_norm_eps),
        ))
        if not config.weight_tying:
            self.transformer["ff_out"] = nn.Linear(config.d_model, config.embedding_size, bias=config.include_bias)


class LLaDAModelLM(PreTrainedModel):
    """LLaDA with its output head. `forward` returns logits [B, L, embedding_size];
    `final_hidden` and `output_head_weight` expose the pieces a fused loss needs."""

    config_class = LLaDAConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["LLaDABlock"]

    def __init__(self, config):
        super().__init__(config)
        self.model = LLaDAModel(config)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.transformer.wte

    def set_input_embeddings(self, value):
        self.model.transformer.wte = value

    def get_output_embeddings(self):
        return None if self.config.weight_tying else self.model.transformer.ff_out

    @property
    def output_head_weight(self):
        """The output head's weight [N, d] (the embedding when weights are tied)."""
        t = self.model.transformer
        return t.wte.weight if self.config.weight_tying else t.ff_out.weight

    def final_hidden(self, input_ids, attention_mask=None, causal=None, cache=None):
        """The final normed hidden states [B, L, d]; logits = logits_from_hidden(final_hidden).
        With `cache` (an empty KVCache), every layer's keys and values are kept in it."""
        causal = self.config.causal if causal is None else causal
        B, L = input_ids.shape
        if L > self.config.max_sequence_length:
            raise ValueError(f"sequence length {L} exceeds the model's max_sequence_length "
                             f"{self.config.max_sequence_length}")
        if cache is not None and causal:
            raise ValueError("a KVCache is for the bidirectional model (causal=False)")
        attn_mask = keep = None
        if attention_mask is not None and not bool(attention_mask.all()):
            keep = attention_mask.bool()
            # Positions count real tokens only, so a left-padded sequence sees the same rotary
            # phases as unpadded (RoPE is relative anyway; this makes it exact).
            position_ids = (keep.long().cumsum(-1) - 1).clamp_min(0)
            attn_mask = keep[:, None, None, :].expand(B, 1, L, L)
            if causal:
                attn_mask = attn_mask & torch.ones(L, L, dtype=torch.bool, device=input_ids.device).tril()
            # Every query may see itself, so pad rows stay finite; real rows never see pads.
            attn_mask = attn_mask | torch.eye(L, dtype=torch.bool, device=input_ids.device)
        else:
            position_ids = torch.arange(L, device=input_ids.device)[None].expand(B, L)
        if cache is not None:
            cache.layers, cache.position_ids, cache.keep, cache.span = {}, position_ids, keep, None
        cos, sin = rotary_cos_sin(position_ids, self.config.d_model // self.config.n_heads, self.config.rope_theta)
        x = self.model.transformer.wte(input_ids)
        for block in self.model.transformer.blocks:
            x = block(x, cos, sin, attn_mask, causal, cache)
        return self.model.transformer.ln_f(x)

    def span_hidden(self, span_ids, start, cache):
        """Final hidden states [B, S, d] of positions start .. start+S-1 holding `span_ids`,
        attending over the span and the cached keys and values of every other position (see
        KVCache; the span's rows of the cache are overwritten)."""
        B, S = span_ids.shape
        L = cache.position_ids.shape[1]
        if not cache.layers or start < 0 or start + S > L:
            raise ValueError(f"span [{start}, {start + S}) must lie within the cached sequence of length {L}"
                             if cache.layers else "the KVCache is empty: fill it with final_hidden(..., cache=cache)")
        attn_mask = None
        if cache.keep is not None:
            attn_mask = cache.keep[:, None, None, :].expand(B, 1, S, L).clone()
            at = torch.arange(S, device=span_ids.device)
            attn_mask[:, :, at, start + at] = True  # every query sees itself (pad rows stay finite)
        cos, sin = rotary_cos_sin(cache.position_ids[:, start:start + S], self.config.d_model // self.config.n_heads,
                                  self.config.rope_theta)
        cache.span = (start, start + S)
        x = self.model.transformer.wte(span_ids)
        for block in self.model.transformer.blocks:
            x = block(x, cos, sin, attn_mask, False, cache)
        cache.span = None
        return self.model.transformer.ln_f(x)

    def scaled_hidden(self, hidden):
        """What the output head multiplies: the final hidden states, times 1/sqrt(d_model) when
        the config has `scale_logits` (LLaDA's option). The forward, the fused loss and the
        sampler all take logits as scaled_hidden(h) @ output_head_weight.T."""
        return hidden * (1 / math.sqrt(self.config.d_model)) if self.config.scale_logits else hidden

    def logits_from_hidden(self, hidden, out=None):
        """Logits [..., N] of final hidden states: the one place the output head is applied (the
        forward and the sampler use it); `out` is an optional preallocated result tensor."""
        return torch.matmul(self.scaled_hidden(hidden), self.output_head_weight.t(), out=out)

    def forward(self, input_ids, attention_mask=None, causal=None, return_hidden=False):
        """Logits [B, L, N]; with return_hidden=True the final hidden states instead (for a fused
        loss through wrappers such as DeepSpeed's engine or PEFT, which only call forward)."""
        hidden = self.final_hidden(input_ids, attention_mask, causal)
        if return_hidden:
            return BaseModelOutput(last_hidden_state=hidden)
        return CausalLMOutputWithPast(logits=self.logits_from_hidden(hidden))


AutoConfig.register("llada", LLaDAConfig, exist_ok=True)
AutoModel.register(LLaDAConfig, LLaDAModelLM, exist_ok=True)
AutoModelForCausalLM.register(LLaDAConfig, LLaDAModelLM, exist_ok=True)
