"""The validation NELBO of a trained tiny model beside the cross-entropy of a unigram model,
both on the same seeded random sample of validation blocks.

The NELBO is the trainer's own evaluation (llada_cpt.py --do_eval: a fixed grid of mask
rates, fixed noise, --max_eval_samples blocks drawn at random). The unigram model is the
training tokens' frequencies (texts + eos, as the trainer packs them), add-one smoothed over
every token but the mask; a model that beats it uses context.

usage: python scripts/tiny_report.py --model_dir outputs/tiny --tiny_dir .tiny [--training_method xdm]
"""
import argparse
import json
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from experiment_common import validation_nelbo  # noqa: E402


def unigram_log_probs(tokenizer, train_file):
    """log p(token) from the training texts' token counts (texts + eos), add-one smoothed over
    every token id of the tokenizer except the mask; the mask gets -inf."""
    counts = torch.zeros(len(tokenizer), dtype=torch.float64)
    with open(train_file, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    for start in range(0, len(texts), 256):
        for ids in tokenizer(texts[start:start + 256], add_special_tokens=False)["input_ids"]:
            counts += torch.bincount(torch.tensor(ids + [tokenizer.eos_token_id]), minlength=len(tokenizer)).double()
    counts += 1
    counts[tokenizer.mask_token_id] = 0
    return (counts / counts.sum()).log()


def unigram_cross_entropy(log_probs, blocks):
    """Mean -log p(token) over every token of blocks (a list of id lists or a [B, L] tensor), in nats."""
    ids = torch.as_tensor(blocks).flatten()
    return float(-log_probs[ids].mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model_dir", default="outputs/tiny")
    ap.add_argument("--tiny_dir", default=".tiny")
    ap.add_argument("--training_method", default="xdm", choices=("xdm", "mdm"),
                    help="the loss whose NELBO is reported (xdm: k = 0.1)")
    ap.add_argument("--block_size", type=int, default=64)
    ap.add_argument("--max_eval_samples", type=int, default=256)
    args = ap.parse_args()
    for path in (os.path.join(args.model_dir, "config.json"), os.path.join(args.tiny_dir, "train.jsonl")):
        if not os.path.exists(path):
            sys.exit(f"{path} does not exist: train first (bash scripts/train_tiny.sh)")
    if args.max_eval_samples < 1:
        sys.exit(f"--max_eval_samples must be at least 1, got {args.max_eval_samples}")
    metrics, trainer = validation_nelbo(args.model_dir, args.tiny_dir, os.path.join(args.model_dir, "report"),
                                        args.training_method, args.block_size, args.max_eval_samples)
    blocks = trainer.eval_dataset["input_ids"]
    log_probs = unigram_log_probs(trainer.processing_class, os.path.join(args.tiny_dir, "train.jsonl"))
    unigram = unigram_cross_entropy(log_probs, blocks)
    nelbo = metrics["eval_nelbo"]
    print(f"\n--- validation, {len(blocks)} random blocks of {args.block_size} tokens (nats per token) ---")
    print(f"NELBO of the model: {nelbo:.3f}   unigram cross-entropy: {unigram:.3f}   ratio: {nelbo / unigram:.3f}")


if __name__ == "__main__":
    main()
