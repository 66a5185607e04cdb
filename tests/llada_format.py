"""Writes checkpoint folders exactly as LLaDA ships them (its config.json fields, its weight
names, a tokenizer), at a tiny size, independently of modeling_llada."""
import json
import math
import os

import torch
from safetensors.torch import save_file

# LLaDA-8B-Base's config.json with tiny dimensions (every field it ships, same names).
LLADA_CONFIG = {
    "activation_type": "silu", "alibi": False, "alibi_bias_max": 8.0, "architectures": ["LLaDAModelLM"],
    "attention_dropout": 0.0, "attention_layer_norm": False, "attention_layer_norm_with_affine": True,
    "auto_map": {"AutoConfig": "configuration_llada.LLaDAConfig", "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM",
                 "AutoModel": "modeling_llada.LLaDAModelLM"},
    "bias_for_layer_norm": False, "block_group_size": 1, "block_type": "llama", "d_model": 64,
    "embedding_dropout": 0.0, "embedding_size": 1088, "eos_token_id": 0, "flash_attention": False,
    "include_bias": False, "include_qkv_bias": False, "init_cutoff_factor": None, "init_device": "meta",
    "init_fn": "mitchell", "init_std": 0.02, "input_emb_norm": False, "layer_norm_type": "rms",
    "layer_norm_with_affine": True, "mask_token_id": 2, "max_sequence_length": 256, "mlp_hidden_size": 96,
    "mlp_ratio": 4, "model_type": "llada", "multi_query_attention": None, "n_heads": 4, "n_kv_heads": 4,
    "n_layers": 2, "pad_token_id": 0, "precision": "amp_bf16", "residual_dropout": 0.0, "rms_norm_eps": 1e-05,
    "rope": True, "rope_full_precision": True, "rope_theta": 500000.0, "scale_logits": False,
    "transformers_version": "4.46.3", "use_cache": False, "vocab_size": 1088, "weight_tying": False,
}
BLOCK_WEIGHTS = ("attn_norm", "q_proj", "k_proj", "v_proj", "attn_out", "ff_norm", "ff_proj", "up_proj", "ff_out")


def llada_state_dict(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    d, h, n = cfg["d_model"], cfg["mlp_hidden_size"], cfg["embedding_size"]
    kv = d // cfg["n_heads"] * cfg["n_kv_heads"]
    shapes = {"attn_norm": (d,), "q_proj": (d, d), "k_proj": (kv, d), "v_proj": (kv, d), "attn_out": (d, d),
              "ff_norm": (d,), "ff_proj": (h, d), "up_proj": (h, d), "ff_out": (d, h)}
    sd = {"model.transformer.wte.weight": torch.randn(n, d, generator=g) * 0.5,
          "model.transformer.ln_f.weight": 1 + 0.1 * torch.randn(d, generator=g),
          "model.transformer.ff_out.weight": torch.randn(n, d, generator=g) * 0.2}
    for i in range(cfg["n_layers"]):
        for name in BLOCK_WEIGHTS:
            shape = shapes[name]
            w = (1 + 0.1 * torch.randn(shape, generator=g) if len(shape) == 1
                 else torch.randn(shape, generator=g) / shape[1] ** 0.5)
            sd[f"model.transformer.blocks.{i}.{name}.weight"] = w
    return sd


def write_llada_checkpoint(path, tokenizer, dtype=torch.bfloat16, **overrides):
    """A LLaDA-format folder: config.json, model.safetensors (LLaDA names), tokenizer files."""
    cfg = dict(LLADA_CONFIG, **overrides)
    cfg.update(mask_token_id=tokenizer.mask_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    sd = {k: v.to(dtype).contiguous() for k, v in llada_state_dict(cfg).items()}
    save_file(sd, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(path)
    return cfg, sd


def reference_forward(sd, cfg, ids):
    """LLaDA's forward from its weights alone: RMSNorm (float32, then weight), rotate-half RoPE,
    bidirectional softmax attention, SwiGLU (silu on ff_proj), untied head."""
    d, H = cfg["d_model"], cfg["n_heads"]
    hd = d // H
    eps = cfg["rms_norm_eps"]
    w = {k: v.double() for k, v in sd.items()}

    def rms(x, weight):
        return weight * x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)

    L = ids.shape[1]
    pos = torch.arange(L, dtype=torch.float64)
    inv = 1.0 / cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = torch.cat([pos[:, None] * inv, pos[:, None] * inv], -1)

    def rope(x):
        half = hd // 2
        rot = torch.cat([-x[..., half:], x[..., :half]], -1)
        return x * ang.cos() + rot * ang.sin()

    x = w["model.transformer.wte.weight"][ids]
    for i in range(cfg["n_layers"]):
        p = lambda n: w[f"model.transformer.blocks.{i}.{n}.weight"]  # noqa: E731, B023 (used in this iteration only)
        h = rms(x, p("attn_norm"))
        q, k, v = ((h @ p(n).T).view(*ids.shape, H, hd).transpose(1, 2) for n in ("q_proj", "k_proj", "v_proj"))
        att = torch.softmax(rope(q) @ rope(k).transpose(-1, -2) / math.sqrt(hd), -1)
        x = x + (att @ v).transpose(1, 2).reshape(*ids.shape, d) @ p("attn_out").T
        h = rms(x, p("ff_norm"))
        x = x + (torch.nn.functional.silu(h @ p("ff_proj").T) * (h @ p("up_proj").T)) @ p("ff_out").T
    return rms(x, w["model.transformer.ln_f.weight"]) @ w["model.transformer.ff_out.weight"].T
