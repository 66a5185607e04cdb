"""The data a newcomer points --dataset_name at (a hub-snapshot folder, or the Arrow cache an
earlier load_dataset left), checkpoints that LLaDA's own remote code can load, and the count of
conditional pairs dropped for an over-long prompt."""
import glob
import inspect
import json
import logging
import os
import shutil
import subprocess
import sys

import datasets
import pytest
import torch
import transformers

import data
import llada_cpt
import model_config
from llada_format import LLADA_CONFIG, reference_forward
from local_data import write_fineweb_like, write_jsonl
from modeling_llada import LLaDAConfig, LLaDAModelLM


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory, corpus_texts):
    """A folder laid out as `hf download HuggingFaceFW/fineweb-edu --repo-type dataset --include "sample/10BT/*"
    --include README.md` leaves it."""
    return write_fineweb_like(str(tmp_path_factory.mktemp("hub") / "fineweb-edu"), corpus_texts[:60])


@pytest.fixture(scope="module")
def arrow_cache(tmp_path_factory, snapshot):
    """The Arrow cache folder `datasets` itself writes when it loads the snapshot's config sample-10BT."""
    cache = str(tmp_path_factory.mktemp("hf_datasets_cache"))
    datasets.load_dataset(snapshot, "sample-10BT", cache_dir=cache)
    (folder,) = [os.path.join(cache, d) for d in os.listdir(cache) if os.path.isdir(os.path.join(cache, d))]
    assert glob.glob(os.path.join(folder, "sample-10BT", "*", "*", "*.arrow"))  # CONFIG/VERSION/HASH/*.arrow
    return folder


def data_args(**kw):
    return llada_cpt.DataTrainingArguments(**kw)


@pytest.mark.parametrize("streaming", [False, True])
def test_arrow_cache_folder_yields_the_texts_written(arrow_cache, corpus_texts, llada_dir, streaming):
    # load_dataset itself reads this layout as a config named 'default' and fails on sample-10BT
    with pytest.raises(ValueError, match="BuilderConfig 'sample-10BT' not found"):
        datasets.load_dataset(arrow_cache, "sample-10BT")
    args = data_args(dataset_name=arrow_cache, dataset_config_name="sample-10BT", streaming=streaming,
                     validation_split_percentage=0)  # no validation split cut from train: every text trains
    raw = data.load_raw_datasets(args, llada_cpt.ModelArguments(model_name_or_path=llada_dir), 0, False)
    want = (datasets.IterableDataset if streaming else datasets.Dataset)
    assert isinstance(raw["train"], want) and list(raw) == ["train"]
    assert sorted(row["text"] for row in raw["train"]) == sorted(corpus_texts[:60])
    # the config is the only one cached: it may be left out
    args = data_args(dataset_name=arrow_cache, streaming=streaming, validation_split_percentage=0)
    raw = data.load_raw_datasets(args, llada_cpt.ModelArguments(model_name_or_path=llada_dir), 0, False)
    assert len(list(raw["train"])) == 60


def paper_argv(llada_dir, dataset, output_dir):
    """scripts/train_llada_xdlm.sh flag for flag but --deepspeed (the script's ZeRO-2 launch is
    test_training's), sizes shrunk (block 128, accumulation 2, 2 steps, a loss logged each step, 8
    texts held out for validation from the stream's start instead of 256); reporting to none, as
    logging backends are not what is tested here."""
    return ["--config_name", llada_dir,
            "--tokenizer_name", llada_dir, "--model_name_or_path", llada_dir, "--dataset_name", dataset,
            "--dataset_config_name", "sample-10BT", "--streaming", "--block_size", "128",
            "--per_device_train_batch_size", "1", "--do_train", "--output_dir", output_dir, "--overwrite_output_dir",
            "--bf16", "--gradient_accumulation_steps", "2", "--lr_scheduler_type", "constant_with_warmup",
            "--learning_rate", "2e-5", "--weight_decay", "0.1", "--max_grad_norm", "1.0", "--warmup_steps", "100",
            "--logging_steps", "1", "--save_steps", "100", "--max_steps", "2", "--dataloader_num_workers", "4",
            "--report_to", "none", "--remove_unused_columns", "False",
            "--ddp_find_unused_parameters", "False", "--load_best_model_at_end", "False", "--training_method", "xdm",
            "--trust_remote_code", "True", "--max_eval_samples", "8"]


@pytest.fixture(scope="module")
def paper_runs(tmp_path_factory, llada_dir, snapshot, arrow_cache):
    """The paper's flags on each layout, in this process: {layout: output_dir}."""
    outputs = {}
    for layout, dataset in [("hub snapshot", snapshot), ("arrow cache", arrow_cache)]:
        outputs[layout] = str(tmp_path_factory.mktemp(layout.replace(" ", "_")) / "checkpoints")
        llada_cpt.main(paper_argv(llada_dir, dataset, outputs[layout]))
    return outputs


@pytest.mark.parametrize("layout", ["hub snapshot", "arrow cache"])
def test_paper_flags_train_on_either_layout(paper_runs, layout):
    with open(os.path.join(paper_runs[layout], "trainer_state.json")) as f:
        state = json.load(f)
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    assert state["global_step"] == 2 and len(losses) == 2
    assert all(0 < loss < 100 for loss in losses), losses


@pytest.mark.parametrize("card, data, match", [
    ("# a dataset card without a configs header\n", "weights.bin", "is a local folder in neither layout accepted: "
     ".*hub snapshot.*README.md whose YAML header lists `configs`.*Arrow cache folder"),
    (None, "000_00000.parquet", "holds data files but no README.md whose YAML header lists `configs`, "
     "so no config 'sample-10BT'"),  # `hf download --include "sample/10BT/*"` without README.md
])
def test_a_folder_of_neither_layout_fails_naming_the_layouts(
        tmp_path, llada_dir, snapshot, monkeypatch, card, data, match):
    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the data was checked")

    monkeypatch.setattr(llada_cpt, "load_model", no_model)
    folder = tmp_path / "fineweb-edu"
    (folder / "sample" / "10BT").mkdir(parents=True)
    if card is not None:
        (folder / "README.md").write_text(card)
    shutil.copy(os.path.join(snapshot, "sample", "10BT", "000_00000.parquet"), folder / "sample" / "10BT" / data)
    args = ["--model_name_or_path", llada_dir, "--dataset_name", str(folder), "--dataset_config_name", "sample-10BT",
            "--do_train", "--output_dir", str(tmp_path / "out"), "--max_steps", "1", "--report_to", "none"]
    with pytest.raises(ValueError, match=match):
        llada_cpt.main(args)


def test_an_arrow_cache_without_the_config_asked_for_names_those_it_has(arrow_cache, llada_dir):
    args = data_args(dataset_name=arrow_cache, dataset_config_name="sample-100BT")
    with pytest.raises(ValueError,
                       match=r"set --dataset_config_name to one of its configs \(sample-10BT\), got 'sample-100BT'"):
        data.load_raw_datasets(args, llada_cpt.ModelArguments(model_name_or_path=llada_dir), 0, False)


# A stand-in for the configuration_llada.py / modeling_llada.py that LLaDA ships on the hub: its
# class names and module tree (so its weight names), computing the tests' own from-scratch forward
# (llada_format.reference_forward, copied in), and importing nothing from this repository.
REMOTE_CONFIG_CODE = """
from transformers import PretrainedConfig


class LLaDAConfig(PretrainedConfig):
    model_type = "llada"
"""
REMOTE_MODEL_CODE = """
import math

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_llada import LLaDAConfig

{reference_forward}

class LLaDAModelLM(PreTrainedModel):
    config_class = LLaDAConfig
    base_model_prefix = "model"

    def __init__(self, config):
        super().__init__(config)
        d, h, n = config.d_model, config.mlp_hidden_size, config.embedding_size
        kv = d // config.n_heads * config.n_kv_heads
        shapes = dict(q_proj=(d, d), k_proj=(d, kv), v_proj=(d, kv), attn_out=(d, d), ff_proj=(d, h),
                      up_proj=(d, h), ff_out=(h, d))

        def block():
            layers = {{name: nn.Linear(*shape, bias=False) for name, shape in shapes.items()}}
            return nn.ModuleDict(dict(attn_norm=nn.RMSNorm(d), ff_norm=nn.RMSNorm(d), **layers))

        self.model = nn.Module()
        self.model.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(n, d), blocks=nn.ModuleList(block() for _ in range(config.n_layers)),
            ln_f=nn.RMSNorm(d), ff_out=nn.Linear(d, n, bias=False)))
        self.post_init()

    def forward(self, input_ids, **kwargs):
        logits = reference_forward(self.state_dict(), self.config.to_dict(), input_ids)
        return CausalLMOutputWithPast(logits=logits.float())
"""

# What LLaDA's own scripts do, in a process that never imported this repository's modeling_llada
# (once it is imported, transformers prefers the registered class even with trust_remote_code=True).
LOAD_WITH_REMOTE_CODE = """
import sys, torch, transformers
folder, ids, out = sys.argv[1:]
model, info = transformers.AutoModel.from_pretrained(folder, trust_remote_code=True, dtype=torch.float32,
                                                     output_loading_info=True)
with torch.no_grad():
    logits = model.eval()(torch.load(ids)).logits
torch.save(dict(cls=type(model).__module__ + "." + type(model).__name__, info=info, logits=logits,
                native_imported="modeling_llada" in sys.modules), out)
"""


def with_lladas_code(checkpoint, folder):
    """A copy of the checkpoint with the stand-in code files beside its config.json."""
    shutil.copytree(checkpoint, folder)
    with open(os.path.join(folder, "configuration_llada.py"), "w") as f:
        f.write(REMOTE_CONFIG_CODE)
    with open(os.path.join(folder, "modeling_llada.py"), "w") as f:
        f.write(REMOTE_MODEL_CODE.format(reference_forward=inspect.getsource(reference_forward)))
    return folder


def test_model_implementation_remote_runs_the_checkpoints_own_code(llada_dir, tmp_path):
    folder = with_lladas_code(llada_dir, str(tmp_path / "with-lladas-code"))
    model_args = llada_cpt.ModelArguments(model_name_or_path=folder, model_implementation="remote",
                                          trust_remote_code=True)
    config = model_config.load_config(model_args)
    training_args = transformers.TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none")
    model = llada_cpt.load_model(model_args, config, "xdm", training_args)
    for obj in (config, model):
        assert type(obj).__module__.startswith("transformers_modules."), type(obj)


@pytest.mark.slow
def test_saved_checkpoint_loads_with_lladas_remote_code_and_natively_to_the_same_logits(paper_runs, tmp_path):
    saved = os.path.join(paper_runs["arrow cache"], "config.json")
    with open(saved) as f:
        config = json.load(f)
    assert set(LLADA_CONFIG) <= set(config), set(LLADA_CONFIG) - set(config)  # LLaDA's fields all kept
    assert config["auto_map"] == LLADA_CONFIG["auto_map"]  # LLaDA-8B-Base's pointers at its code files

    folder = with_lladas_code(paper_runs["arrow cache"], str(tmp_path / "with-lladas-code"))
    ids = torch.randint(0, LLADA_CONFIG["vocab_size"], (2, 24), generator=torch.Generator().manual_seed(0))
    torch.save(ids, str(tmp_path / "ids.pt"))
    proc = subprocess.run([sys.executable, "-c", LOAD_WITH_REMOTE_CODE, folder, "ids.pt", "remote.pt"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    remote = torch.load(str(tmp_path / "remote.pt"), weights_only=False)
    assert remote["cls"].startswith("transformers_modules.") and remote["cls"].endswith(".modeling_llada.LLaDAModelLM")
    assert not remote["native_imported"]
    assert not remote["info"]["missing_keys"] and not remote["info"]["unexpected_keys"], remote["info"]

    for trust in (None, True):  # here `import modeling_llada` has run: the native model, whatever the flag
        native = transformers.AutoModel.from_pretrained(folder, dtype=torch.float32, trust_remote_code=trust)
        assert type(native) is LLaDAModelLM
        assert type(transformers.AutoConfig.from_pretrained(folder, trust_remote_code=trust)) is LLaDAConfig
        with torch.no_grad():
            got = native.eval()(ids).logits
        assert got.shape == remote["logits"].shape == (2, 24, LLADA_CONFIG["embedding_size"])
        torch.testing.assert_close(got, remote["logits"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("streaming", [False, True])
def test_dropped_over_long_prompts_are_counted_in_the_log(tmp_path, llada_dir, tokenizer, caplog, streaming):
    block_size = 16
    short, long = "def f(x):\n    return x", "x = [1, 2, 3]\n" * 12
    rows = [{"prompt": long if i % 4 == 1 else short, "answer": f" + {i}"} for i in range(10)]
    too_long = sum(len(tokenizer(r["prompt"], add_special_tokens=False)["input_ids"]) >= block_size for r in rows)
    assert too_long == 3  # rows 1, 5 and 9
    args = data_args(train_file=write_jsonl(str(tmp_path / "pairs.jsonl"), rows), prompt_column="prompt",
                     streaming=streaming, validation_split_percentage=0)  # all ten pairs train
    raw = data.load_raw_datasets(args, llada_cpt.ModelArguments(model_name_or_path=llada_dir), 0, False)
    training_args = transformers.TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none")
    caplog.set_level(logging.INFO, logger="data")
    blocks = list(data.tokenize_and_pack(raw, tokenizer, args, block_size, training_args)["train"])
    assert len(blocks) == 10 - too_long
    want = "dropped 3 of 10 (prompt, answer) pairs" + (" of a batch" if streaming else "")
    assert want in caplog.text, caplog.text
