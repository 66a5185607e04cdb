"""Sampling overhead: time of `generate` over the time of the 32 model forward passes it
cannot avoid, measured side by side (interleaved, median of repeats) on a tiny random
LLaDA model: batch 8, prompt 32, gen 256, block 256, 32 steps.

usage: python scripts/bench_sampler.py [--repeats 5] [--threads N]
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from generate import generate  # noqa: E402
from modeling_llada import LLaDAConfig, LLaDAModelLM  # noqa: E402

# The embedded tiny default's architecture (scripts/make_tiny.py), random weights.
TINY = dict(d_model=192, n_layers=4, n_heads=6, n_kv_heads=6, mlp_hidden_size=512, vocab_size=8192,
            embedding_size=8192, max_sequence_length=512, mask_token_id=8191, rope_theta=10000.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--gen_length", type=int, default=256)
    ap.add_argument("--block_length", type=int, default=256)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's own choice)")
    args = ap.parse_args()
    if args.threads is not None:
        if args.threads < 1:
            ap.error(f"--threads must be a positive integer, got {args.threads}")
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = LLaDAModelLM(LLaDAConfig(**TINY)).eval()
    prompt = torch.randint(0, 8000, (args.batch, args.prompt))
    full = torch.cat([prompt, torch.full((args.batch, args.gen_length), 100)], 1)

    def forwards():
        with torch.no_grad():
            for _ in range(args.steps):
                model(full).logits

    runs = {"forwards": forwards}
    for k in (0.0, 0.1):
        runs[f"generate k={k}"] = lambda k=k: generate(model, prompt, steps=args.steps, gen_length=args.gen_length,
                                                       block_length=args.block_length, k=k)
    times = {name: [] for name in runs}
    for fn in runs.values():  # warm-up
        fn()
    for _ in range(args.repeats):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    base = statistics.median(times["forwards"])
    print(f"{args.steps} forward passes of [{args.batch}, {args.prompt + args.gen_length}]: median {base:.3f} s "
          f"({torch.get_num_threads()} threads, {args.repeats} repeats)")
    for name in runs:
        if name != "forwards":
            ratios = [t / f for t, f in zip(times[name], times["forwards"])]
            print(f"{name}: time / forwards = {statistics.median(times[name]) / base:.3f} "
                  f"(per-repeat ratios {', '.join(f'{r:.3f}' for r in ratios)}; target <= 1.05)")


if __name__ == "__main__":
    main()
