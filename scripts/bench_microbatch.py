"""Largest micro-batch that fits, with and without the fused loss, for a ~1B-parameter
LLaDA configuration (GPU): doubles the batch until forward + backward runs out of memory.
First checks that both paths give the same loss on the same batch and noise (exit status 1
if they disagree beyond the dtype's tolerance).

usage: python scripts/bench_microbatch.py [--L 4096] [--k 0.1] [--gradient_checkpointing] [--json]
       python scripts/bench_microbatch.py --tiny --device cpu --max_batch 4   (a smoke run)
(--json: one JSON object on stdout instead of the text, with the losses, the largest micro-batches
and, on a GPU, the memory a step had for activations and the loss, for scripts/gpu_check.py)
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from modeling_llada import LLaDAConfig, LLaDAModelLM  # noqa: E402
from plan import LLADA_1B, LLADA_TINY, xdlm_step  # noqa: E402
from xdlm_loss import FUSED_LOSS_TOLERANCE  # noqa: E402


def largest_batch(model, L, k, fused, device, max_batch):
    best, batch = 0, 1
    while batch <= max_batch:
        try:
            xdlm_step(model, batch, L, k, fused, device)
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
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the text")
    args = ap.parse_args(argv)
    fields = dict(LLADA_TINY if args.tiny else LLADA_1B)
    L = args.L or fields["max_sequence_length"]
    fields["max_sequence_length"] = max(fields["max_sequence_length"], L)
    cfg = LLaDAConfig(**fields)
    torch.manual_seed(0)
    model = LLaDAModelLM(cfg).to(device=args.device, dtype=getattr(torch, args.dtype))
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    n = sum(p.numel() for p in model.parameters())
    budget = None
    if args.device == "cuda":
        # What a step has for activations and the loss: the memory free beside the weights, less
        # the gradients its backward forms (as large as the weights).
        budget = torch.cuda.mem_get_info()[0] - n * model.dtype.itemsize
    say = (lambda *a: None) if args.json else print
    say(f"{n / 1e9:.2f}B parameters, L={L}, {args.dtype}, k={args.k}, gradient checkpointing "
        f"{'on' if args.gradient_checkpointing else 'off'}, device {args.device}")
    reference, fused = (xdlm_step(model, 1, L, args.k, f, args.device) for f in (False, True))
    difference = abs(fused / reference - 1)
    tolerance = FUSED_LOSS_TOLERANCE[args.dtype]
    say(f"loss at micro-batch 1, same batch and noise: reference {reference:.6g}, fused {fused:.6g}, "
        f"relative difference {difference:.1e} (tolerance {tolerance:g})")
    if not difference <= tolerance:
        sys.exit("the fused and reference losses disagree")
    results = {}
    for fused_loss in (False, True):
        results[fused_loss] = largest_batch(model, L, args.k, fused_loss, args.device, args.max_batch)
        say(f"{'fused' if fused_loss else 'reference'} loss: largest micro-batch {results[fused_loss]}")
    if results[False]:
        say(f"fused / reference micro-batch: {results[True] / results[False]:.1f}x")
    if args.json:
        print(json.dumps(dict(parameters=n, L=L, dtype=args.dtype, k=args.k, device=args.device,
                              loss=dict(reference=reference, fused=fused, relative_difference=difference,
                                        tolerance=tolerance),
                              largest_micro_batch=dict(reference=results[False], fused=results[True]),
                              activation_budget_bytes=budget)))


if __name__ == "__main__":
    main()
