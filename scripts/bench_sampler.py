"""The sampler's modes side by side in one run: the exact sampler (cache="none"), the prefix
and dual KV caches, and each with a confidence threshold. For each: wall time, tokens per
second, model passes (full and cached-span), the time ratio to the exact sampler, and the
agreement of its completions with the exact sampler's (identical completion tokens, identical
completions).

Default: the trained tiny default (outputs/tiny, written by scripts/train_tiny.sh), prompts of
768 held-out tokens (.tiny/valid.jsonl, written by scripts/make_tiny.py), gen length 256,
block 32, 256 steps, batch 2. The tiny model was trained on 64-token blocks with
max_sequence_length 512; RoPE has no learned positions, so the ceiling is raised at load to
prompt + gen length (a 1024-token sequence is out of distribution for it either way; the
timing does not depend on that).

`--random tiny|8b` times a model of that shape with random weights instead (random prompts):
8b is LLaDA-8B's shape, for a GPU (`--dtype bfloat16`). Random weights are never confident,
so a threshold changes nothing there.

usage: python scripts/bench_sampler.py [--model outputs/tiny] [--prompt_length 768] [--threads N]
"""
import argparse
import dataclasses
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from experiment_common import RANDOM_SHAPES, SAMPLER_MODES, held_out_prompts, require_at_least_one  # noqa: E402
from generate import SamplerSettings, generate, load_model, sampling_device_and_dtype  # noqa: E402
from modeling_llada import LLaDAConfig, LLaDAModelLM  # noqa: E402


def parse_modes(text):
    names = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in names if m not in SAMPLER_MODES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"--modes: choose a comma-separated subset of {', '.join(SAMPLER_MODES)}, "
                                         f"got {text!r}")
    return ["exact"] + [m for m in names if m != "exact"]  # the reference always runs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "outputs", "tiny"),
                    help="checkpoint folder (default outputs/tiny)")
    ap.add_argument("--tiny_dir", default=os.path.join(ROOT, ".tiny"),
                    help="folder with valid.jsonl (held-out prompts)")
    ap.add_argument("--random", choices=RANDOM_SHAPES, default=None,
                    help="random weights of this shape instead of --model")
    ap.add_argument("--prompt_length", type=int, default=768)
    ap.add_argument("--batch", type=int, default=2, help="prompts sampled together (default 2)")
    ap.add_argument("--gen_length", type=int, default=256)
    ap.add_argument("--block_length", type=int, default=32)
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--k", type=float, default=0.0, help="sampler k (0: LLaDA's sampler)")
    ap.add_argument("--modes", type=parse_modes, default=list(SAMPLER_MODES),
                    help=f"comma-separated subset of {', '.join(SAMPLER_MODES)}")
    ap.add_argument("--dtype", default=None, help="default: bfloat16 on GPU, float32 on CPU")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's own choice)")
    args = ap.parse_args(argv)
    require_at_least_one(ap, args, ("threads", "batch", "prompt_length"))
    try:  # each mode replaces the cache and threshold of these
        base = SamplerSettings(steps=args.steps, gen_length=args.gen_length, block_length=args.block_length, k=args.k)
    except ValueError as e:
        ap.error("--" + str(e))
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    length = args.prompt_length + args.gen_length
    if args.random:
        device, dtype = sampling_device_and_dtype(dtype=args.dtype)
        torch.manual_seed(0)
        config = LLaDAConfig(**RANDOM_SHAPES[args.random], max_sequence_length=length)
        with torch.device(device):
            model = LLaDAModelLM(config).to(dtype).eval()
        vocab = [i for i in range(config.vocab_size) if i != config.mask_token_id]
        pick = torch.randint(0, len(vocab), (args.batch, args.prompt_length),
                             generator=torch.Generator().manual_seed(0))
        prompts = torch.tensor(vocab)[pick].to(device)
        source = f"random weights, {args.random} shape"
    else:
        if not os.path.exists(os.path.join(args.model, "config.json")):
            sys.exit(f"--model {args.model}: no checkpoint there "
                     "(train it with scripts/train_tiny.sh, or use --random tiny)")
        model, tokenizer, device = load_model(args.model, args.dtype)
        if model.config.max_sequence_length < length:
            print(f"raising max_sequence_length {model.config.max_sequence_length} -> {length} "
                  "(RoPE: no learned positions)")
            model.config.max_sequence_length = length
        prompts = held_out_prompts(tokenizer, args.tiny_dir, args.batch, args.prompt_length).to(device)
        source = f"{args.model}, held-out prompts from {args.tiny_dir}/valid.jsonl"

    generate(model, prompts[:, :8], dataclasses.replace(base, steps=base.blocks))  # warm-up
    results = {}
    for name in args.modes:
        settings = dataclasses.replace(base, **SAMPLER_MODES[name])
        stats = {}
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = generate(model, prompts, settings, stats=stats)
        if device == "cuda":
            torch.cuda.synchronize()
        results[name] = (time.perf_counter() - start, out[:, args.prompt_length:], stats)
        print(f"  {name}: {results[name][0]:.2f} s", flush=True)

    ref_time, ref_out, _ = results["exact"]
    print(f"\n{source}; batch {args.batch}, prompt {args.prompt_length}, gen {args.gen_length}, block "
          f"{args.block_length}, {args.steps} steps, k = {args.k}; {str(model.dtype).replace('torch.', '')} on "
          f"{device} ({torch.get_num_threads()} threads)\n")
    print("| mode | time s | tokens/s | speed-up vs exact | steps used | full / span forwards "
          "| identical tokens | identical completions |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, (seconds, out, stats) in results.items():
        same_tokens = (out == ref_out).double().mean().item()
        same_rows = (out == ref_out).all(-1).double().mean().item()
        print(f"| {name} | {seconds:.2f} | {out.numel() / seconds:.1f} | {ref_time / seconds:.2f}x | {stats['steps']} "
              f"| {stats['full_forwards']} / {stats['span_forwards']} "
              f"| {100 * same_tokens:.1f}% | {100 * same_rows:.0f}% |")


if __name__ == "__main__":
    main()
