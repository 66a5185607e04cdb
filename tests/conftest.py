import os
import sys

import pytest

# Offline, with caches in a temporary folder: no test may touch the network or ~/.cache. Set
# before anything imports huggingface_hub, which reads them at import time.
_CACHE = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"xdlm-test-cache-{os.getpid()}")
for var, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                   "WANDB_MODE": "offline", "HF_HOME": os.path.join(_CACHE, "hf"),
                   "XDG_CACHE_HOME": os.path.join(_CACHE, "xdg"), "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ[var] = value

from helpers import ROOT  # noqa: E402  (tests/ is on the path: pytest put it there for this file)

sys.path.insert(0, os.path.join(ROOT, "scripts"))


@pytest.fixture(scope="session")
def corpus_texts():
    import make_tiny

    return [text for _, text in make_tiny.stdlib_sources(1_500_000)]


@pytest.fixture(scope="session")
def tokenizer(corpus_texts):
    import make_tiny

    return make_tiny.train_tokenizer(corpus_texts[:150], 1024)


@pytest.fixture(scope="session")
def text_file(tmp_path_factory, corpus_texts):
    """A JSONL training file of 40 texts (one "text" field each)."""
    from local_data import write_jsonl

    return write_jsonl(str(tmp_path_factory.mktemp("data") / "train.jsonl"), [{"text": t} for t in corpus_texts[:40]])


@pytest.fixture(scope="session")
def llada_dir(tmp_path_factory, tokenizer):
    """A tiny checkpoint folder in LLaDA's own format."""
    from llada_format import write_llada_checkpoint

    path = str(tmp_path_factory.mktemp("llada") / "LLaDA-tiny-Base")
    write_llada_checkpoint(path, tokenizer)
    return path
