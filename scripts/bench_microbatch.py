"""Largest micro-batch that fits, with and without the fused loss, for a ~1B-parameter
LLaDA configuration (GPU): doubles the batch until forward + backward runs out of memory.
First checks that both paths give the same loss on the same batch and noise (exit status 1
if they disagree beyond the dtype's tolerance).

usage: python scripts/bench_microbatch.py [--L 4096] [--k 0.1] [--gradient_checkpointing]
       python scripts/bench_microbatch.py --tiny --device cpu --max_batch 4   (a smoke run)
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from modeling_llada import LLaDAConfig, LLaDAModelLM  # noqa: E402
from plan import LLADA_1B  # noqa: E402
from xdlm_loss import FUSED_LOSS_TOLERANCE, corrupt, linear_xdlm_loss, stratified_mask_rate, xdlm_loss  # noqa: E402

TINY = dict(d_model=64, n_layers=2, n_heads=4, n_kv_heads=4, mlp_hidden_size=128, vocab_size=4096,
            embedding_size=4096, max_sequence_length=256, mask_token_id=4000)


def step(model, batch, L, k, fused, device, seed=0):
    """One forward + backward of a random batch (fixed by seed); returns the loss."""
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


def largest_batch(model, L, k, fused, device, max_batch):
    best, batch = 0, 1
    while batch <= max_batch:
        try:
            step(model, batch, L, k, fused, device)
            if device == "cuda":
                torch.cuda.synchronize()
            best = batch
            batch *= 2
        except torch.OutOfMemoryError:
            break
        finally:
            if device == "cuda":
                torch.cuda.empty_cache()
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--L", type=int, default=None, help="sequence length (default: the model maximum)")
    ap.add_argument("--k", type=float, default=0.1)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16", choices=sorted(FUSED_LOSS_TOLERANCE))
    ap.add_argument("--max_batch", type=int, default=1024)
    ap.add_argument("--gradient_checkpointing", action="store_true")
    ap.add_argument("--tiny", action="store_true", help="a tiny configuration instead of ~1B (for a smoke run)")
    args = ap.parse_args(argv)
    cfg = LLaDAConfig(**(TINY if args.tiny else LLADA_1B))
    L = args.L or cfg.max_sequence_length
    model = LLaDAModelLM(cfg).to(device=args.device, dtype=getattr(torch, args.dtype))
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    n = sum(p.numel() for p in model.parameters())
    print(f"{n / 1e9:.2f}B parameters, L={L}, {args.dtype}, k={args.k}, gradient checkpointing "
          f"{'on' if args.gradient_checkpointing else 'off'}, device {args.device}")
    reference, fused = (step(model, 1, L, args.k, f, args.device) for f in (False, True))
    difference = abs(fused / reference - 1)
    print(f"loss at micro-batch 1, same batch and noise: reference {reference:.6g}, fused {fused:.6g}, "
          f"relative difference {difference:.1e} (tolerance {FUSED_LOSS_TOLERANCE[args.dtype]:g})")
    if not difference <= FUSED_LOSS_TOLERANCE[args.dtype]:
        sys.exit("the fused and reference losses disagree")
    results = {}
    for fused in (False, True):
        results[fused] = largest_batch(model, L, args.k, fused, args.device, args.max_batch)
        print(f"{'fused' if fused else 'reference'} loss: largest micro-batch {results[fused]}")
    if results[False]:
        print(f"fused / reference micro-batch: {results[True] / results[False]:.1f}x")


if __name__ == "__main__":
    main()
