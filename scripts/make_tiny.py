"""Builds the embedded tiny default: a corpus, a BPE tokenizer and a LLaDA-format config.

The corpus is the Python standard library's own source files, on every machine with
Python. Every 20th file (by sorted path) is held out for validation and prompts. The
tokenizer (byte-level BPE with LLaDA-style mask, eos and pad tokens) is trained on the
training part at first use, with only 512 tokens: a tiny model then sees each token often
enough to learn context, not just token frequencies, in a few CPU minutes. The config is a
few-million-parameter model with LLaDA's architecture and `config.json` field names.
Re-running reuses what exists (rebuilt when the settings in DIR/recipe.json differ).

usage: python scripts/make_tiny.py --out DIR
writes DIR/train.jsonl, DIR/valid.jsonl ({"text": ...} per source file) and DIR/model/
(config.json + tokenizer files), loadable as --config_name / --tokenizer_name.
"""
import argparse
import json
import os
import sysconfig

from experiment_common import EOS, MASK, PAD, write_llada_config

TINY_CONFIG = dict(d_model=192, n_layers=4, n_heads=6, n_kv_heads=6, mlp_hidden_size=512, max_sequence_length=512)


def stdlib_sources(max_bytes):
    root = sysconfig.get_paths()["stdlib"]
    skipped = ("test", "tests", "site-packages", "idle_test", "__pycache__")
    paths = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skipped)
        paths += [os.path.join(dirpath, f) for f in sorted(filenames) if f.endswith(".py")]
    total = 0
    for path in sorted(paths):
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (UnicodeDecodeError, OSError):
            continue
        if len(text) < 200:
            continue
        yield os.path.relpath(path, root), text
        total += len(text)
        if total >= max_bytes:
            return


def write_corpus(out, max_bytes):
    train, valid = [], []
    for i, (_, text) in enumerate(stdlib_sources(max_bytes)):
        (valid if i % 20 == 0 else train).append(text)
    for name, rows in (("train.jsonl", train), ("valid.jsonl", valid)):
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            for text in rows:
                f.write(json.dumps({"text": text}) + "\n")
    return train


def train_tokenizer(texts, vocab_size):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, PAD, MASK],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD, mask_token=MASK)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=".tiny")
    ap.add_argument("--corpus_bytes", type=int, default=6_000_000, help="how much stdlib source to use")
    ap.add_argument("--vocab_size", type=int, default=512,
                    help="small: with few tokens per block a tiny model sees each one often and learns context sooner")
    args = ap.parse_args()
    model_dir = os.path.join(args.out, "model")
    recipe = dict(corpus_bytes=args.corpus_bytes, vocab_size=args.vocab_size, config=TINY_CONFIG)
    recipe_file = os.path.join(args.out, "recipe.json")
    if os.path.exists(os.path.join(model_dir, "config.json")) and os.path.exists(recipe_file):
        with open(recipe_file) as f:
            if json.load(f) == recipe:
                return
        print(f"{args.out} was built with other settings: rebuilding it")
    os.makedirs(model_dir, exist_ok=True)
    train = write_corpus(args.out, args.corpus_bytes)
    tokenizer = train_tokenizer(train, args.vocab_size)
    tokenizer.save_pretrained(model_dir)
    write_llada_config(model_dir, tokenizer, **TINY_CONFIG)
    with open(recipe_file, "w") as f:
        json.dump(recipe, f)
    print(f"tiny corpus, tokenizer ({len(tokenizer)} tokens) and config written to {args.out}")


if __name__ == "__main__":
    main()
