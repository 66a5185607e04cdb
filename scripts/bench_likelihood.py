"""likelihood.estimate batched across requests against one request at a time, and the standard
error per forward of its two estimators.

1. Requests per second, at equal mc_num on the same items: "one at a time" is LLaDA's way
   (eval_llada.py: every forward holds batch_size draws of one request; estimate() per request
   with draws_per_forward = batch_size), "batched" packs the draws of many requests into each
   forward (draws_per_forward, padded). Both make identical draws: the largest difference of
   their estimates is printed (float rounding only).
2. The standard error per forward of the masked and the XDLM estimator on the same items: the
   standard error times the square root of the sequences run per request (mc_num, one more for
   XDLM's clean answer at k > 0, twice that with cfg): what one forward's worth of draws gives.

Default: random weights of the tests' tiny shape (`--random test`: width 32, 2 layers, vocabulary
101) on random items, float32 on CPU; `--random tiny` is the tiny default's shape (width 192,
4 layers, vocabulary 512). `--model DIR` times a checkpoint instead, on items cut from the
texts of `--texts FILE.jsonl` (a "text" field per line; random token ids without it).

usage: python scripts/bench_likelihood.py [--random test|tiny | --model DIR [--texts FILE]] [--items 32]
           [--mc_num 32] [--batch_size 8] [--draws_per_forward 256] [--cfg 0] [--k 0.1] [--threads N]
           [--repeats 5]
"""
import argparse
import json
import math
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from experiment_common import RANDOM_SHAPES, require_at_least_one  # noqa: E402
from generate import load_model  # noqa: E402
from likelihood import check_settings, estimate  # noqa: E402
from modeling_llada import LLaDAConfig, LLaDAModelLM  # noqa: E402

SHAPES = {
    "test": dict(d_model=32, n_layers=2, n_heads=4, n_kv_heads=4, mlp_hidden_size=48, vocab_size=101,
                 embedding_size=101, mask_token_id=100),
    "tiny": RANDOM_SHAPES["tiny"],
}


def make_items(n, context_range, answer_range, vocab, mask_id, seed, texts=None, tokenizer=None):
    """n (context, answer) pairs of lengths drawn from the ranges: consecutive tokens of the texts,
    or random ids other than the mask."""
    g = torch.Generator().manual_seed(seed)
    streams = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts] if texts else None
    items = []
    for i in range(n):
        C = int(torch.randint(context_range[0], context_range[1] + 1, (1,), generator=g))
        L = int(torch.randint(answer_range[0], answer_range[1] + 1, (1,), generator=g))
        if streams:
            tokens = [t for t in streams[i % len(streams)] if t != mask_id]
            if len(tokens) < C + L:
                sys.exit(f"--texts: text {i % len(streams)} has {len(tokens)} tokens, fewer than {C + L}")
            start = int(torch.randint(0, len(tokens) - C - L + 1, (1,), generator=g))
            ids = tokens[start:start + C + L]
        else:
            ids = [x if x < mask_id else x + 1 for x in torch.randint(0, vocab - 1, (C + L,), generator=g).tolist()]
        items.append((ids[:C], ids[C:]))
    return items


def counting_forwards(model):
    """Counts the model's forward passes (final_hidden calls) in model.forwards."""
    model.forwards = 0
    final_hidden = model.final_hidden

    def counted(*args, **kwargs):
        model.forwards += 1
        return final_hidden(*args, **kwargs)

    model.final_hidden = counted
    return model


def timed(model, fn):
    model.forwards = 0
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start, model.forwards


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--random", choices=SHAPES, default=None, help="random weights of this shape (default: test)")
    ap.add_argument("--model", default=None, help="a checkpoint folder instead of random weights")
    ap.add_argument("--texts", default=None, help="with --model: a JSONL of texts to cut the items from")
    ap.add_argument("--items", type=int, default=32)
    ap.add_argument("--context", type=int, nargs=2, default=(16, 64), metavar=("MIN", "MAX"), help="context tokens")
    ap.add_argument("--answer", type=int, nargs=2, default=(2, 8), metavar=("MIN", "MAX"), help="answer tokens")
    ap.add_argument("--mc_num", type=int, default=32)
    ap.add_argument("--batch_size", type=int, default=8, help="draws per systematic group (LLaDA's batch_size)")
    ap.add_argument("--draws_per_forward", type=int, default=256, help="the batched estimator's pack size")
    ap.add_argument("--cfg", type=float, default=0.0)
    ap.add_argument("--k", type=float, default=0.1, help="the XDLM estimator's k in part 2")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--dtype", default=None, help="with --model: default bfloat16 on GPU, float32 on CPU")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's own choice)")
    ap.add_argument("--repeats", type=int, default=5, help="time each way this many times, alternating; the fastest")
    args = ap.parse_args(argv)
    if args.model and args.random:
        ap.error("--model and --random exclude each other")
    if args.texts and not args.model:
        ap.error("--texts needs --model (a tokenizer)")
    require_at_least_one(ap, args, ("items", "threads", "repeats"))
    for name in ("context", "answer"):
        lo, hi = getattr(args, name)
        if not 0 <= lo <= hi or (name == "answer" and lo < 1):
            ap.error(f"--{name} {lo} {hi}: need {1 if name == 'answer' else 0} <= MIN <= MAX")
    settings = dict(mc_num=args.mc_num, batch_size=args.batch_size, cfg=args.cfg, seed=args.seed)
    try:  # before anything loads
        check_settings(**settings, draws_per_forward=args.draws_per_forward)
        check_settings(estimator="xdlm", k=args.k, **settings)
    except ValueError as e:
        ap.error("--" + str(e))
    if args.texts and not os.path.exists(args.texts):
        ap.error(f"--texts {args.texts}: no such file")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    length = args.context[1] + args.answer[1]
    if args.model:
        if not os.path.exists(os.path.join(args.model, "config.json")):
            ap.error(f"--model {args.model}: no checkpoint there (config.json missing)")
        model, tokenizer, device = load_model(args.model, args.dtype)
        texts = None
        if args.texts:
            with open(args.texts, encoding="utf-8") as f:
                texts = [json.loads(line)["text"] for line in f if line.strip()]
        source = f"{args.model}" + (f", items cut from {args.texts}" if texts else ", random items")
    else:
        shape = args.random or "test"
        torch.manual_seed(0)
        model = LLaDAModelLM(LLaDAConfig(**SHAPES[shape], max_sequence_length=max(64, length))).eval()
        tokenizer, texts, device = None, None, "cpu"
        source = f"random weights, {shape} shape, random items"
    if model.config.max_sequence_length < length:
        ap.error(f"--context/--answer: up to {length} tokens exceed the model's max_sequence_length "
                 f"{model.config.max_sequence_length}")
    mask_id = model.config.mask_token_id
    items = make_items(args.items, args.context, args.answer, model.output_head_weight.shape[0], mask_id, args.seed,
                       texts, tokenizer)
    counting_forwards(model)

    estimate(model, items[:2], mc_num=args.batch_size, batch_size=args.batch_size)  # warm-up
    alone_s = batched_s = math.inf
    for _ in range(args.repeats):  # alternating, so that a noisy moment of the machine hits both ways alike
        alone, seconds, alone_f = timed(model, lambda: [estimate(model, [item], draws_per_forward=args.batch_size,
                                                                 **settings)[0] for item in items])
        alone_s = min(alone_s, seconds)
        batched, seconds, batched_f = timed(model, lambda: estimate(model, items,
                                                                    draws_per_forward=args.draws_per_forward,
                                                                    **settings))
        batched_s = min(batched_s, seconds)
    diff = max(abs(a.log_likelihood - b.log_likelihood) for a, b in zip(alone, batched))

    print(f"\n{source}; {args.items} items (context {args.context[0]}-{args.context[1]}, answer {args.answer[0]}-"
          f"{args.answer[1]} tokens), mc_num {args.mc_num}, batch_size {args.batch_size}, cfg {args.cfg}; "
          f"{str(model.dtype).replace('torch.', '')} on {device}, {torch.get_num_threads()} threads\n")
    print("| way | forwards | time s | requests/s |")
    print("| --- | --- | --- | --- |")
    print(f"| one request at a time (draws_per_forward = batch_size = {args.batch_size}) | {alone_f} | {alone_s:.2f} "
          f"| {len(items) / alone_s:.1f} |")
    print(f"| batched (draws_per_forward = {args.draws_per_forward}) | {batched_f} | {batched_s:.2f} "
          f"| {len(items) / batched_s:.1f} |")
    print(f"\nspeed-up {alone_s / batched_s:.2f}x; estimates identical up to {diff:.1e} (max |difference|, the same "
          "draws)\n")

    print("| estimator | mean log-likelihood | mean standard error | sequences per request "
          "| standard error per forward |")
    print("| --- | --- | --- | --- | --- |")
    for name, extra in (("masked", dict()), (f"xdlm k={args.k}", dict(estimator="xdlm", k=args.k))):
        est = batched if not extra else estimate(model, items, draws_per_forward=args.draws_per_forward, **settings,
                                                 **extra)
        sequences = (args.mc_num + (1 if extra and args.k > 0 else 0)) * (2 if args.cfg > 0 else 1)
        se = [e.standard_error for e in est]
        mean_se = sum(se) / len(se)
        print(f"| {name} | {sum(e.log_likelihood for e in est) / len(est):.3f} | {mean_se:.4f} | {sequences} "
              f"| {mean_se * math.sqrt(sequences):.4f} |")


if __name__ == "__main__":
    main()
