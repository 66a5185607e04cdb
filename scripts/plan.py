"""Will it fit, and how long will it take: per-GPU memory and step time of XDLM training of
a LLaDA model under DeepSpeed ZeRO, from the model's shape alone (nothing runs on a GPU).

usage: python scripts/plan.py --model llada-8b --gpus 8 --gpu a100-80gb --block_size 4096 \
           --per_device_train_batch_size 1 --gradient_accumulation_steps 64 [--gradient_checkpointing] \
           [--fused_loss False] [--with_lora] [--mfu 0.4] [--nodes 2]
       python scripts/plan.py --model path/to/config.json ...      (a LLaDA config.json; other configs are refused)
       python scripts/plan.py --paper_table                        (the table of docs/planning.md)

Memory is modelled from the ops of modeling_llada.py and xdlm_loss.py (what autograd keeps
for backward, and the largest temporaries of the loss); tests/test_plan.py checks the count
against autograd's own saved tensors and the total against measured memory on CPU, and
scripts/gpu_check.sh against torch.cuda.max_memory_allocated on a GPU. What those checks measure
is defined here too (xdlm_step, resident_memory), so that no benchmark imports another.
"""
import argparse
import inspect
import json
import math
import os
import sys
from dataclasses import dataclass, fields

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # the library (modeling_llada, xdlm_loss), imported where needed
    sys.path.insert(0, ROOT)
GIB = 2 ** 30

# LLaDA-8B-Base's shape (its config.json), the ~1.1B shape with LLaDA's vocabulary (the
# embedding and head are 0.52B of it) that scripts/bench_microbatch.py and scripts/gpu_check.py
# run with random weights, and the tiny shape of their smoke runs on CPU (--tiny).
LLADA_8B = dict(d_model=4096, n_layers=32, n_heads=32, n_kv_heads=32, mlp_hidden_size=12288, vocab_size=126464,
                embedding_size=126464, max_sequence_length=4096, mask_token_id=126336)
LLADA_1B = dict(d_model=2048, n_layers=12, n_heads=16, n_kv_heads=16, mlp_hidden_size=5632, vocab_size=126464,
                embedding_size=126464, max_sequence_length=4096, mask_token_id=126336)
LLADA_TINY = dict(d_model=64, n_layers=2, n_heads=4, n_kv_heads=4, mlp_hidden_size=128, vocab_size=4096,
                  embedding_size=4096, max_sequence_length=256, mask_token_id=4000)
# Dense bf16 tensor-core peak (TFLOP/s, without sparsity) and memory of the GPUs docs/planning.md plans for.
GPUS = {
    "a100-40gb": dict(mem_gib=40, tflops=312),
    "a100-80gb": dict(mem_gib=80, tflops=312),
    "h100-80gb": dict(mem_gib=80, tflops=989),   # SXM
    "h200": dict(mem_gib=141, tflops=989),
}
# Fixed per-GPU memory outside the model's tensors: CUDA context and kernels (~0.5-1 GiB),
# NCCL communicator buffers (~0.5 GiB). An assumption, not measured here.
CONTEXT_GIB = 1.5
# The caching allocator rounds and fragments: reserved memory runs above the live tensors,
# most for the short-lived activation and loss buffers. An assumption, not measured here.
FRAGMENTATION = 0.10
# Adam in DeepSpeed's mixed precision: float32 master weights (4 bytes) + two float32 moments (8).
MASTER_BYTES, ADAM_BYTES = 4, 8
# DeepSpeed's default bucket size (its config documentation; runtime/zero/config.py): what a run
# gets for reduce_bucket_size or allgather_bucket_size left out of its config, or set to "auto"
# (DeepSpeed drops "auto" values), except reduce_bucket_size "auto", which the HF Trainer fills
# with the model's hidden_size^2 before DeepSpeed reads it. overlap_comm defaults to false below ZeRO-3.
DEEPSPEED_BUCKET_SIZE = 500_000_000
# Keys of LLaDA-8B-Base's config.json that LLaDAConfig keeps as they came and nothing here reads:
# OLMo's settings for training and initialisation, none of which changes the shape.
LLADA_UNREAD_KEYS = frozenset((
    "alibi_bias_max", "attention_dropout", "attention_layer_norm", "attention_layer_norm_with_affine",
    "bias_for_layer_norm", "block_group_size", "embedding_dropout", "flash_attention", "init_cutoff_factor",
    "init_device", "init_fn", "input_emb_norm", "layer_norm_with_affine", "multi_query_attention", "precision",
    "residual_dropout", "rope_full_precision"))
# The keys that decide a shape and that LLaDAConfig would otherwise fill with LLaDA-8B's defaults:
# a config.json must give (one of) each.
SHAPE_KEYS = (("d_model",), ("n_layers",), ("n_heads",), ("mlp_hidden_size", "mlp_ratio"),
              ("vocab_size", "embedding_size"))


@dataclass
class Shape:
    """The dimensions of a LLaDA model that memory and FLOPs depend on."""
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    mlp_hidden_size: int
    embedding_size: int
    weight_tying: bool = False
    include_bias: bool = False
    include_qkv_bias: bool = False
    max_sequence_length: int = None

    def __post_init__(self):
        for name in ("d_model", "n_layers", "n_heads", "n_kv_heads", "mlp_hidden_size", "embedding_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.d_model % self.n_heads or self.n_heads % self.n_kv_heads:
            raise ValueError(f"d_model ({self.d_model}) must divide by n_heads ({self.n_heads}), "
                             f"and n_heads by n_kv_heads ({self.n_kv_heads})")

    @classmethod
    def from_config(cls, config):
        """From a LLaDAConfig (or anything with its fields)."""
        return cls(config.d_model, config.n_layers, config.n_heads, config.n_kv_heads, config.mlp_hidden_size,
                   config.embedding_size, bool(config.weight_tying), bool(config.include_bias),
                   bool(config.include_qkv_bias), config.max_sequence_length)

    @property
    def head_dim(self):
        return self.d_model // self.n_heads

    @property
    def kv_dim(self):
        return self.n_kv_heads * self.head_dim

    def layer_params(self):
        d, H, kv = self.d_model, self.mlp_hidden_size, self.kv_dim
        n = 2 * d + 2 * d * d + 2 * d * kv + 3 * d * H  # two norms, q/attn_out, k/v, the SwiGLU
        if self.include_bias or self.include_qkv_bias:
            n += d + 2 * kv
        if self.include_bias:
            n += d + 2 * H + d
        return n

    def matmul_params(self):
        """Weights used in matrix products: the blocks' projections and the output head (the
        embedding's weight when tied); not the norms, biases or the embedding lookup."""
        d, H, kv = self.d_model, self.mlp_hidden_size, self.kv_dim
        return self.n_layers * (2 * d * d + 2 * d * kv + 3 * d * H) + self.embedding_size * d

    def embedding_params(self):
        return self.embedding_size * self.d_model

    def head_params(self):
        return 0 if self.weight_tying else self.embedding_size * self.d_model + self.include_bias * self.embedding_size

    def params(self):
        return self.embedding_params() + self.n_layers * self.layer_params() + self.d_model + self.head_params()

    def lora_params(self, r):
        """LoRA's A [r, in] and B [out, r] on each targeted projection of every block."""
        d, H, kv = self.d_model, self.mlp_hidden_size, self.kv_dim
        per_layer = sum(r * (i + o) for i, o in ((d, d), (d, kv), (d, kv), (d, d), (d, H), (d, H), (H, d)))
        return self.n_layers * per_layer


def load_shape(model):
    """A built-in name (llada-8b, llada-1b) or the path of a LLaDA config.json (or its folder)."""
    if model == "llada-8b":
        return Shape.from_config(_llada_config(LLADA_8B))
    if model == "llada-1b":
        return Shape.from_config(_llada_config(LLADA_1B))
    path = os.path.join(model, "config.json") if os.path.isdir(model) else model
    if not os.path.isfile(path):
        raise ValueError(f"--model must be llada-8b, llada-1b or a LLaDA config.json (or its folder), got {model!r}")
    config = read_json_object(path, "--model")
    if config.get("model_type") != "llada":
        raise ValueError(f"--model {path}: model_type {config.get('model_type')!r}; the planner plans LLaDA models "
                         "(model_type 'llada')")
    unknown = sorted(set(config) - known_config_keys())
    if unknown:
        raise ValueError(f"--model {path}: keys the planner does not know: {', '.join(unknown)} (it knows "
                         "LLaDAConfig's arguments, the keys of LLaDA-8B-Base's config.json and transformers' own)")
    missing = [" or ".join(group) for group in SHAPE_KEYS if all(config.get(key) is None for key in group)]
    if missing:
        raise ValueError(f"--model {path} lacks keys that decide the shape: {', '.join(missing)}")
    return Shape.from_config(_llada_config(config))


def known_config_keys():
    """What a LLaDA config.json may hold: LLaDAConfig's arguments, what transformers writes into
    every config it saves (and torch_dtype, the name transformers 4 wrote the dtype under), and
    the keys of LLaDA-8B-Base's config.json that nothing here reads."""
    from modeling_llada import LLaDAConfig

    arguments = set(inspect.signature(LLaDAConfig.__init__).parameters) - {"self", "kwargs"}
    return arguments | set(LLaDAConfig().to_dict()) | {"torch_dtype"} | LLADA_UNREAD_KEYS


def _llada_config(config):
    from modeling_llada import LLaDAConfig  # its derived fields (n_kv_heads, mlp_hidden_size, embedding_size)

    return LLaDAConfig(**config)


def read_json_object(path, flag):
    """The JSON object in the file the flag names; a missing, unreadable, empty or non-JSON file,
    or one that holds no object, is a ValueError naming the flag and the file."""
    try:
        with open(path) as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{flag} {path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    if not text.strip():
        raise ValueError(f"{flag} {path} is empty; it must hold a JSON object")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{flag} {path} is not JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag} {path} must hold a JSON object, not a {type(value).__name__}")
    return value


def zero_settings(ds_config, path, hidden_size):
    """reduce_bucket_size, allgather_bucket_size and overlap_comm as a training run gets them from
    the DeepSpeed config ds_config (read from path), and a note for each that the file leaves to
    a default or to "auto"."""
    zero = ds_config.get("zero_optimization", {})
    if not isinstance(zero, dict):
        raise ValueError(f"--deepspeed {path}: zero_optimization must be a JSON object, got {zero!r}")
    settings, notes = {}, []
    for key in ("reduce_bucket_size", "allgather_bucket_size", "overlap_comm"):
        value = zero.get(key, "auto")
        given = '"auto"' if key in zero else "not given"
        if key == "overlap_comm" and value == "auto":
            settings[key] = False
            notes.append(f"{key} {given}: false (DeepSpeed's default below ZeRO-3)")
        elif key == "reduce_bucket_size" and value == "auto" and key in zero:
            settings[key] = hidden_size ** 2
            notes.append(f'{key} "auto": {settings[key]:,} (d_model^2: the HF Trainer fills "auto" with hidden_size^2)')
        elif value == "auto":
            settings[key] = DEEPSPEED_BUCKET_SIZE
            notes.append(f"{key} {given}: {settings[key]:,} (DeepSpeed's default)")
        elif key == "overlap_comm":
            if not isinstance(value, bool):
                raise ValueError(f'--deepspeed {path}: zero_optimization.{key} must be true, false or "auto", '
                                 f"got {value!r}")
            settings[key] = value
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value < math.inf \
                    or value != int(value):
                raise ValueError(f'--deepspeed {path}: zero_optimization.{key} must be a positive integer or "auto", '
                                 f"got {value!r}")
            settings[key] = int(value)
    return settings, [f"--deepspeed {path}: {note}" for note in notes]


# ---------------------------------------------------------------------------
# Activations: what autograd keeps for backward, counted from modeling_llada.py's forward
# ---------------------------------------------------------------------------

def layer_saved_bytes_per_token(shape, s, attention="flash", math_bytes=None):
    """Bytes one LLaDABlock keeps for backward per token, weights in s-byte dtype.

    - each of the two LLaDARMSNorms: its input in float32 (x.float(), kept by pow and by the
      multiply; for float32 weights it is the input itself), 1/rms [T, 1] float32, and the
      normed tensor cast back (kept by the weight multiply): 4d + 4 + s d;
    - the two norms' outputs, the inputs of q/k/v_proj and of ff_proj/up_proj: 2 s d;
    - attention, "flash" (PyTorch's fused SDPA kernel, on GPU and, since torch 2.x, on CPU;
      flash-attn likewise): q and k after rotary (rotary's float32 temporaries are not
      kept), v, the output (its [B, L, heads, hd] layout makes attn_out's input a view of it),
      and the float32 log-sum-exp per head: s (2 d + 2 kv) + 4 heads. "math" (the unfused
      fallback) keeps q, k, v in math_bytes (float32 on CPU for half inputs, else s), the
      softmax probabilities [heads, L] per token in math_bytes, and attn_out's input, a
      contiguous copy of the output: math_bytes (d + 2 kv + heads L) + s d (L is added by
      the caller, see activation_bytes);
    - the SwiGLU: ff_proj's output (silu's input), up_proj's output and silu's output (both
      kept by their product), the product (ff_out's input): 4 s H.
    """
    d, H, kv, nh = shape.d_model, shape.mlp_hidden_size, shape.kv_dim, shape.n_heads
    base = 2 * (4 * d + 4 + s * d) + 2 * s * d + 4 * s * H
    if attention == "flash":
        return base + s * (2 * d + 2 * kv) + 4 * nh
    m = s if math_bytes is None else math_bytes
    return base + m * (d + 2 * kv) + s * d


def attention_math_bytes_per_token(shape, L, s, math_bytes=None):
    """The part of the math path that grows with L: the [heads, L] softmax probabilities."""
    return (s if math_bytes is None else math_bytes) * shape.n_heads * L


def shared_saved_bytes_per_token(shape, s):
    """Kept once per step, not per layer: the input ids (int64, for the embedding's backward),
    rotary cos and sin (float32 [B, 1, L, hd], shared by all blocks), and ln_f as any norm."""
    return 8 + 2 * 4 * shape.head_dim + 4 * shape.d_model + 4 + s * shape.d_model


def lora_saved_bytes_per_token(shape, s, r):
    """PEFT's LoRA on a projection of input width i keeps dropout's output (s i) and mask
    (1 byte i) and A's output (s r). Added to the full model's count this is an upper bound:
    frozen weights need fewer saved inputs (tests: within 20%, about 10% over)."""
    d, H = shape.d_model, shape.mlp_hidden_size
    widths = (d, d, d, d, d, d, H)  # inputs of q, k, v, attn_out, ff_proj, up_proj, ff_out
    return sum((s + 1) * i + s * r for i in widths)


def fused_chunk_tokens(tokens):
    """linear_xdlm_loss's default chunk: 1/32 of the tokens, at least 16 (never more than all)."""
    return min(tokens, max(16, -(-tokens // 32)))


def loss_bytes(shape, tokens, s, fused, head_trainable=True):
    """The loss's extra memory at its peak, beyond the blocks' saved activations.

    Both paths hold the final hidden states [T, d] while the loss runs. XDLM with k > 0.
    fused (linear_xdlm_loss): the hidden-state and head-weight gradient buffers it fills
    during the forward pass (s T d, s N d), and one chunk of c tokens: its float32 logits,
    turned in place into u, plus g'(u) and the product u g'(u) at the peak, 3 c N float32;
    the sum of g over vocabulary slices of at most 8192 adds ~4.25 slices (g's temporaries)
    on top of u, which only matters when N is small.
    reference (logits, then xdlm_loss): float32 logits F = T N 4 bytes. The forward keeps
    log p, exp(log p + log U) and u (3 F) after the bf16 logits (s/4 F) and the slices of g;
    the backward of the sum of g forms u g'(u) in three F-sized temporaries while those 3 F
    are still held: 6 F, the larger.
    """
    N, d = shape.embedding_size, shape.d_model
    hidden = s * tokens * d
    slice_ = min(N, 8192)
    if fused:
        c = fused_chunk_tokens(tokens)
        chunk = max(3 * c * N * 4, (c * N + 4.25 * c * slice_) * 4)
        return hidden + s * tokens * d + s * N * d * head_trainable + chunk
    F = tokens * N * 4
    forward = (s / 4 + 3) * F + 4.25 * tokens * slice_ * 4
    return hidden + max(forward, 6 * F)


def layer_backward_bytes(shape, tokens, s, weights_trainable=True):
    """Temporaries while a block runs backward: the SwiGLU's three [T, H] gradients, the
    residual stream's gradient in float32 inside the norms' backward and its s-byte copy, and
    one weight gradient (ff_out's, the largest) before DeepSpeed moves it into a bucket."""
    d, H = shape.d_model, shape.mlp_hidden_size
    return tokens * (3 * s * H + (4 + s) * d) + s * H * d * weights_trainable


def activation_bytes(shape, batch, L, s=2, fused=True, checkpointing=False, attention="flash", math_bytes=None,
                     lora_r=0):
    """Peak memory of one micro-batch's forward + backward beyond the weights (and beyond
    gradients once accumulated: ZeRO-2 moves each into its bucket as it is formed).
    Returns dict(saved, loss, backward, peak) in bytes."""
    T = batch * L
    layer = layer_saved_bytes_per_token(shape, s, attention, math_bytes)
    if attention == "math":
        layer += attention_math_bytes_per_token(shape, L, s, math_bytes)
    if lora_r:
        layer += lora_saved_bytes_per_token(shape, s, lora_r)
    layer_total = T * layer
    shared = T * shared_saved_bytes_per_token(shape, s)
    trainable = not lora_r
    backward = layer_backward_bytes(shape, T, s, weights_trainable=trainable)
    if checkpointing:
        # Each block keeps only its input; backward recomputes one block at a time.
        saved = shape.n_layers * T * s * shape.d_model + shared
        backward += layer_total
    else:
        saved = shape.n_layers * layer_total + shared
    loss = loss_bytes(shape, T, s, fused, head_trainable=trainable)
    return dict(saved=saved, loss=loss, backward=backward, peak=saved + max(loss, backward))


def flops_per_token(shape, L, lora_r=0):
    """Model FLOPs per token of a training step: 6 x (matmul parameters) + bidirectional
    attention 12 x layers x L x d (QK^T and AV, 2 L d each, forward and twice in backward).
    With LoRA the frozen weights need the forward and the input gradients only (4 per
    parameter), the adapters all three (6)."""
    matmul = shape.matmul_params()
    dense = 4 * matmul + 6 * shape.lora_params(lora_r) if lora_r else 6 * matmul
    return dense + 12 * shape.n_layers * L * shape.d_model


# ---------------------------------------------------------------------------
# What the checks of these counts measure (scripts/gpu_check.py, bench_microbatch.py, bench_loss.py)
# ---------------------------------------------------------------------------

def xdlm_step(model, batch, L, k, fused, device, seed=0):
    """One forward + backward of XDLM training on a random batch (fixed by seed): the step whose
    memory activation_bytes counts and whose FLOPs flops_per_token counts. Returns the loss."""
    import torch

    from xdlm_loss import corrupt, linear_xdlm_loss, stratified_mask_rate, xdlm_loss

    cfg = model.config
    g = torch.Generator(device=device).manual_seed(seed)
    ids = torch.randint(0, cfg.mask_token_id, (batch, L), device=device, generator=g)
    u = torch.rand(1, generator=g, device=device)  # one offset: the batch's mask rates spread evenly
    alpha = 1 - stratified_mask_rate(u, torch.arange(batch, device=device), batch)
    noisy = corrupt(ids, alpha, k, cfg.mask_token_id, cfg.embedding_size, generator=g)
    if fused:
        loss = linear_xdlm_loss(model.final_hidden(noisy), model.output_head_weight, noisy, ids, alpha, k,
                                cfg.mask_token_id) / noisy.numel()
    else:
        loss = xdlm_loss(model(noisy).logits, noisy, ids, alpha, k, cfg.mask_token_id).mean()
    loss.backward()
    model.zero_grad(set_to_none=True)
    return loss.item()


def resident_memory():
    """(current, peak) resident bytes of this process: VmRSS and VmHWM of /proc/self/status
    (Linux). The peak is the process's lifetime one: measure in a fresh process (gpu_check.py
    forks one per step) or reset it first (reset_peak_resident_memory)."""
    found = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) * 1024
    if len(found) != 2:
        raise RuntimeError("no VmRSS/VmHWM in /proc/self/status: measuring CPU memory needs Linux")
    return found["VmRSS"], found["VmHWM"]


def reset_peak_resident_memory():
    """Linux: writing 5 to /proc/self/clear_refs sets the peak (VmHWM) to the current size."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


# ---------------------------------------------------------------------------
# The whole GPU: weights, ZeRO-partitioned optimizer state, buckets, activations, overhead
# ---------------------------------------------------------------------------

@dataclass
class Plan:
    """A training run to plan; every argument is checked here."""
    shape: Shape
    gpus: int = 8
    nodes: int = 1
    gpu_mem_gib: float = 80.0
    gpu_tflops: float = 312.0
    block_size: int = 4096
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int = 64
    max_steps: int = 1000
    zero: int = 2
    fused_loss: bool = True
    gradient_checkpointing: bool = False
    with_lora: bool = False
    lora_r: int = 16
    mfu: float = 0.4
    reduce_bucket_size: int = 200_000_000
    allgather_bucket_size: int = 200_000_000
    overlap_comm: bool = True

    def __post_init__(self):
        self.check_settings({f.name: getattr(self, f.name) for f in fields(self) if f.name != "shape"})
        limit = self.shape.max_sequence_length
        if limit is not None and self.block_size > limit:
            raise ValueError(f"--block_size {self.block_size} exceeds the model's max_sequence_length {limit}")

    @staticmethod
    def check_settings(settings):
        """Each of a run's settings (field name: value) against what it allows, the shape aside, so
        that the command line is checked before any file is read: a ValueError naming the flag."""
        for name, value in settings.items():
            if name in ("gpus", "nodes", "block_size", "per_device_train_batch_size", "gradient_accumulation_steps",
                        "max_steps", "lora_r", "reduce_bucket_size", "allgather_bucket_size"):
                if not isinstance(value, int) or value < 1:
                    raise ValueError(f"--{name} must be a positive integer, got {value!r}")
            elif name in ("gpu_mem_gib", "gpu_tflops"):
                if not 0 < value < math.inf:
                    raise ValueError(f"--{name} must be a positive finite number, got {value!r}")
            elif name == "zero" and value not in (0, 1, 2):
                raise ValueError(f"--zero must be 0, 1 or 2 (DeepSpeed ZeRO stage), got {value!r}")
            elif name == "mfu" and not 0 < value <= 1:
                raise ValueError(f"--mfu must lie in (0, 1], got {value!r}")

    @property
    def world(self):
        return self.gpus * self.nodes

    def trainable_params(self):
        return self.shape.lora_params(self.lora_r) if self.with_lora else self.shape.params()

    def memory(self, micro_batch=None):
        """Per-GPU bytes by component, and the peak of the backward and optimizer-step phases."""
        b = micro_batch or self.per_device_train_batch_size
        P, Pt, W = self.shape.params(), self.trainable_params(), self.world
        s = 2  # bf16 weights and gradients
        grads_part = W if self.zero >= 2 else 1
        state_part = W if self.zero >= 1 else 1
        act = activation_bytes(self.shape, b, self.block_size, s, self.fused_loss, self.gradient_checkpointing,
                               lora_r=self.lora_r if self.with_lora else 0)
        rows = {
            "bf16 weights": s * P,
            "bf16 gradients (accumulated" + (", partitioned)" if grads_part > 1 else ")"): s * Pt / grads_part,
            "float32 master weights": MASTER_BYTES * Pt / state_part,
            "Adam moments (float32)": ADAM_BYTES * Pt / state_part,
            "gradient buckets": s * min(Pt, self.reduce_bucket_size) * (2 if self.overlap_comm else 1),
            "activations kept for backward": act["saved"],
            "loss transient, " + ("fused" if self.fused_loss else "reference") + " (*)": act["loss"],
            "blocks' backward transient" + (", one block recomputed" if self.gradient_checkpointing else "") + " (*)":
                act["backward"],
            "CUDA context, NCCL": CONTEXT_GIB * GIB,
            "allocator fragmentation": FRAGMENTATION * (act["peak"]),
        }
        static = sum(list(rows.values())[:5]) + rows["CUDA context, NCCL"] + rows["allocator fragmentation"]
        backward_phase = static + act["peak"]
        # The optimizer step runs after backward: the float32 copy of this GPU's gradient
        # partition and the bf16 all-gather bucket of the updated weights.
        step_phase = static + MASTER_BYTES * Pt / grads_part + s * min(P, self.allgather_bucket_size)
        return rows, max(backward_phase, step_phase), act

    def fits(self, micro_batch=None):
        return self.memory(micro_batch)[1] <= self.gpu_mem_gib * GIB

    def largest_micro_batch(self, limit=4096):
        """The largest micro-batch that fits (0 if none): memory only grows with it, so bisect."""
        if not self.fits(1):
            return 0
        lo, hi = 1, 2
        while hi <= limit and self.fits(hi):
            lo, hi = hi, hi * 2
        hi = min(hi, limit + 1)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if self.fits(mid) else (lo, mid)
        return lo

    def tokens_per_step(self):
        return self.world * self.per_device_train_batch_size * self.gradient_accumulation_steps * self.block_size

    def flops_per_step(self):
        return (flops_per_token(self.shape, self.block_size, self.lora_r if self.with_lora else 0)
                * self.tokens_per_step())

    def step_seconds(self):
        """At the given MFU (model FLOPs over peak); checkpointing recomputes the blocks' forward,
        hardware FLOPs the MFU does not count, so it costs that much more time."""
        recompute = 1.0
        if self.gradient_checkpointing:
            shape = self.shape
            block = shape.n_layers * (2 * shape.layer_params() + 4 * self.block_size * shape.d_model)
            recompute += block * self.tokens_per_step() / self.flops_per_step()
        return self.flops_per_step() * recompute / (self.world * self.gpu_tflops * 1e12 * self.mfu)


def report(plan, notes=()):
    """The plan as text; notes (what a file left to a default) end it."""
    rows, peak, _ = plan.memory()
    b = plan.per_device_train_batch_size
    lines = [f"{plan.world} GPUs ({plan.nodes} node(s) x {plan.gpus}) of {plan.gpu_mem_gib:g} GiB, "
             f"{plan.gpu_tflops:g} TFLOP/s bf16; {plan.shape.params() / 1e9:.2f}B parameters "
             f"({plan.trainable_params() / 1e9:.3g}B trainable); ZeRO-{plan.zero}; L = {plan.block_size}, "
             f"micro-batch {b}; loss {'fused' if plan.fused_loss else 'reference'}; gradient checkpointing "
             f"{'on' if plan.gradient_checkpointing else 'off'}", "", "| per GPU | GiB |", "| --- | ---: |"]
    lines += [f"| {name} | {value / GIB:.2f} |" for name, value in rows.items()]
    lines += [f"| **peak (backward or optimizer step)** | **{peak / GIB:.2f}** |", "",
              "(*) only the larger of the two counts in the peak: they do not coexist", ""]
    largest = plan.largest_micro_batch()
    step = plan.step_seconds()
    lines += [f"fits: {'yes' if peak <= plan.gpu_mem_gib * GIB else 'NO'}; largest micro-batch that fits: {largest}",
              f"tokens per optimizer step: {plan.tokens_per_step():,}",
              f"FLOPs per step: {plan.flops_per_step():.3e}",
              f"step time at MFU {plan.mfu:g}: {step:.1f} s; "
              f"{plan.max_steps} steps: {step * plan.max_steps / 3600:.1f} h"]
    return "\n".join(lines + list(notes))


def paper_table(mfu=0.4):
    """LLaDA-8B, the paper's run (L 4096, micro-batch 1 x 64 accumulated, 1000 steps, ZeRO-2)
    on 8 GPUs of three kinds, fused loss and checkpointing on and off."""
    shape = load_shape("llada-8b")
    lines = ["| 8 x GPU | loss | checkpointing | peak GiB / GPU (micro-batch 1) | fits | largest micro-batch | "
             "step s | 1000 steps h |", "| --- | --- | --- | ---: | --- | ---: | ---: | ---: |"]
    for gpu in ("a100-40gb", "a100-80gb", "h100-80gb"):
        for ckpt in (False, True):
            for fused in (True, False):
                plan = Plan(shape, gpu_mem_gib=GPUS[gpu]["mem_gib"], gpu_tflops=GPUS[gpu]["tflops"],
                            fused_loss=fused, gradient_checkpointing=ckpt, mfu=mfu)
                peak = plan.memory()[1]
                step = plan.step_seconds()
                lines.append(f"| {gpu.upper()} | {'fused' if fused else 'reference'} | {'on' if ckpt else 'off'} | "
                             f"{peak / GIB:.1f} | {'yes' if plan.fits() else 'no'} | {plan.largest_micro_batch()} | "
                             f"{step:.0f} | {step * plan.max_steps / 3600:.1f} |")
    return "\n".join(lines)


def bool_arg(value):
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {value!r}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="llada-8b", help="llada-8b, llada-1b, or a LLaDA config.json (or its folder)")
    ap.add_argument("--gpu", choices=sorted(GPUS), default="a100-80gb", help="sets --gpu_mem_gib and --gpu_tflops")
    ap.add_argument("--gpu_mem_gib", type=float, help="memory per GPU (default: the --gpu's)")
    ap.add_argument("--gpu_tflops", type=float, help="dense bf16 peak per GPU (default: the --gpu's)")
    ap.add_argument("--gpus", type=int, default=8, help="GPUs per node")
    ap.add_argument("--nodes", type=int, default=1)
    ap.add_argument("--block_size", type=int, default=4096)
    ap.add_argument("--per_device_train_batch_size", type=int, default=1)
    ap.add_argument("--gradient_accumulation_steps", type=int, default=64)
    ap.add_argument("--max_steps", type=int, default=1000)
    ap.add_argument("--zero", type=int, default=2, help="DeepSpeed ZeRO stage: 0, 1 or 2")
    ap.add_argument("--fused_loss", type=bool_arg, default=True)
    ap.add_argument("--gradient_checkpointing", action="store_true")
    ap.add_argument("--with_lora", action="store_true")
    ap.add_argument("--lora_r", type=int, default=16)
    ap.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilisation (see docs/planning.md)")
    ap.add_argument("--deepspeed", default=os.path.join(ROOT, "ds_zero2_bf16_config_simp.json"),
                    help="DeepSpeed config whose bucket sizes and overlap_comm to use (\"auto\" or left out: as the "
                         "run gets them; the output says which)")
    ap.add_argument("--paper_table", action="store_true", help="print the table of docs/planning.md and exit")
    args = ap.parse_args(argv)
    try:
        if args.paper_table:
            Plan.check_settings({"mfu": args.mfu})
            defaults = vars(ap.parse_args([]))
            ignored = [name for name, value in vars(args).items() if name not in ("paper_table", "mfu")
                       and value != defaults[name]]
            if ignored:
                raise ValueError(f"--paper_table prints the paper's fixed settings and takes only --mfu; got "
                                 f"{', '.join('--' + name for name in ignored)}")
            print(paper_table(args.mfu))
            return
        print(report(*make_plan(args)))
    except ValueError as e:  # bad input: one line naming the flag or file, no traceback
        sys.exit(f"plan.py: {e}")


def make_plan(args):
    """The command line's Plan and the notes on its DeepSpeed settings, checked in order of cost:
    the numbers, then the files."""
    gpu = GPUS[args.gpu]
    settings = dict(gpus=args.gpus, nodes=args.nodes,
                    gpu_mem_gib=args.gpu_mem_gib if args.gpu_mem_gib is not None else gpu["mem_gib"],
                    gpu_tflops=args.gpu_tflops if args.gpu_tflops is not None else gpu["tflops"],
                    block_size=args.block_size, per_device_train_batch_size=args.per_device_train_batch_size,
                    gradient_accumulation_steps=args.gradient_accumulation_steps, max_steps=args.max_steps,
                    zero=args.zero, fused_loss=args.fused_loss, gradient_checkpointing=args.gradient_checkpointing,
                    with_lora=args.with_lora, lora_r=args.lora_r, mfu=args.mfu)
    Plan.check_settings(settings)
    ds_config = read_json_object(args.deepspeed, "--deepspeed")
    shape = load_shape(args.model)
    zero, notes = zero_settings(ds_config, args.deepspeed, shape.d_model)
    return Plan(shape, **settings, **zero), notes


if __name__ == "__main__":
    main()
