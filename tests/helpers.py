"""Helpers the test modules share (the shared fixtures are in conftest.py). Test modules import
from here, never from each other."""
import os
import socket
import sys

import torch

from modeling_llada import LLaDAConfig, LLaDAModelLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The tiny shape of the unit tests: vocabulary 101 (the mask is the last id), 2 layers.
TINY_SHAPE = dict(d_model=32, n_heads=4, n_kv_heads=4, n_layers=2, mlp_hidden_size=48, vocab_size=101,
                  embedding_size=101, max_sequence_length=64, mask_token_id=100)


def tiny_model(dtype=torch.float32, **overrides):
    """A randomly initialised native LLaDA model (seed 0) of TINY_SHAPE with `overrides`, in eval mode."""
    torch.manual_seed(0)
    return LLaDAModelLM(LLaDAConfig(**dict(TINY_SHAPE, **overrides))).to(dtype).eval()


def sharpened(model, factor):
    """`model` with its output head, so its logits, multiplied by `factor` (in place): many top
    probabilities then lie within 1e-7 of 1, where float32 cannot tell them apart."""
    with torch.no_grad():
        model.output_head_weight.mul_(factor)
    return model


def run_main(main, argv, capsys):
    """A script's main(argv) in this process, as its command line would run: (exit code, stdout,
    stderr). argparse's errors and sys.exit("message") end in SystemExit; the message goes to
    stderr as the interpreter would print it. (What only a new process shows, the entry point and
    the environment, is left to the tests that launch generate.py, the trainer and the shell scripts.)"""
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code
        if isinstance(code, str):
            print(code, file=sys.stderr)
            code = 1
    captured = capsys.readouterr()
    return code or 0, captured.out, captured.err


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_left_padded_batch_equals_each_prompt_alone(model, singles, **settings):
    """generate() on prompts [1, n_i] left-padded (id 0) into one batch gives each prompt's own
    completion, and leaves prompts and padding untouched."""
    from generate import generate

    P = max(s.shape[1] for s in singles)
    batch = torch.cat([torch.cat([torch.zeros(1, P - s.shape[1], dtype=torch.long), s], 1) for s in singles])
    mask = torch.cat([torch.cat([torch.zeros(1, P - s.shape[1]), torch.ones(1, s.shape[1])], 1)
                      for s in singles]).long()
    out = generate(model, batch, attention_mask=mask, **settings)
    for i, s in enumerate(singles):
        alone = generate(model, s, **settings)
        assert torch.equal(out[i, P:], alone[0, s.shape[1]:]), i
        assert torch.equal(out[i, :P], batch[i])
