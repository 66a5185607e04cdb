import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, os.path.join(ROOT, "tests"))

# Offline, with caches in a temporary folder: no test may touch the network or ~/.cache.
_CACHE = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"xdlm-test-cache-{os.getpid()}")
for var, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                   "WANDB_MODE": "offline", "HF_HOME": os.path.join(_CACHE, "hf"),
                   "XDG_CACHE_HOME": os.path.join(_CACHE, "xdg"), "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ[var] = value


@pytest.fixture(scope="session")
def corpus_texts():
    import make_tiny

    return [text for _, text in make_tiny.stdlib_sources(1_500_000)]


@pytest.fixture(scope="session")
def tokenizer(corpus_texts):
    import make_tiny

    return make_tiny.train_tokenizer(corpus_texts[:150], 1024)


@pytest.fixture(scope="session")
def llada_dir(tmp_path_factory, tokenizer):
    """A tiny checkpoint folder in LLaDA's own format."""
    from llada_format import write_llada_checkpoint

    path = str(tmp_path_factory.mktemp("llada") / "LLaDA-tiny-Base")
    write_llada_checkpoint(path, tokenizer)
    return path
