"""A run never looks fine when it is not: divergence stops it, a relaunch cannot continue another
run, one run per output folder, the source is never the destination, every check runs before
tokenization and the model build, JSON values have the command line's types, the mask id comes
from what was given, and failures say what happened. Through llada_cpt.main's command line (and a
JSON file where types matter), with the tiny LLaDA-format checkpoint of conftest."""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import transformers

import checkpoints
import llada_cpt
from checkpoints import NonFiniteTraining
from helpers import ROOT
from local_data import write_jsonl


def tiny_args(out, model_dir, data_file, *extra):
    """Two optimizer steps of batch 2 x 64 tokens, a checkpoint after each (constant schedule, so
    --max_steps may grow on resume)."""
    return ["--model_name_or_path", model_dir, "--train_file", data_file, "--block_size", "64",
            "--per_device_train_batch_size", "2", "--do_train", "--output_dir", out, "--max_steps", "2",
            "--logging_steps", "1", "--save_steps", "1", "--report_to", "none", "--learning_rate", "1e-3",
            "--lr_scheduler_type", "constant", "--plot_loss", "False", "--seed", "0", *extra]


@pytest.fixture
def nothing_expensive(monkeypatch):
    """Tokenization and the model build fail the test if they are reached."""
    def reached(what):
        def fail(*args, **kwargs):
            raise AssertionError(f"{what} ran before the check")
        return fail

    monkeypatch.setattr(llada_cpt, "training_and_validation_blocks", reached("tokenization"))
    monkeypatch.setattr(llada_cpt, "load_model", reached("the model build"))


def file_bytes(path):
    with open(path, "rb") as f:
        return f.read()


# --- 1. non-finite values stop the run --------------------------------------------------------

def test_a_diverging_run_stops_naming_the_step_and_the_last_checkpoint_and_saves_nothing_after(
        tmp_path, text_file, llada_dir):
    out = str(tmp_path / "out")
    with pytest.raises(NonFiniteTraining) as caught:
        llada_cpt.main(tiny_args(out, llada_dir, text_file, "--learning_rate", "1e8", "--max_steps", "6"))
    message = str(caught.value)
    step = int(message.split("diverged at step ")[1].split(":")[0])
    saved = sorted(int(name.split("-")[1]) for name in os.listdir(out) if name.startswith("checkpoint-"))
    assert saved == list(range(1, step)), (saved, message)  # one checkpoint per step before it, none from it on
    assert all(checkpoints.is_complete(os.path.join(out, f"checkpoint-{s}")) for s in saved)
    if saved:
        assert f"last complete checkpoint is {os.path.join(out, f'checkpoint-{saved[-1]}')}" in message
    assert not os.path.exists(os.path.join(out, "model.safetensors"))  # no final model
    # every weight of the checkpoints kept is finite (they come from steps before the divergence)
    from safetensors.torch import load_file
    for s in saved:
        assert all(torch.isfinite(w).all()
                   for w in load_file(os.path.join(out, f"checkpoint-{s}", "model.safetensors")).values())


def test_a_divergence_between_logs_logs_the_mean_loss_of_the_steps_since_the_last_log(tmp_path, text_file, llada_dir,
                                                                                      monkeypatch):
    """Logged every 3 steps; the 5th step's gradient is inf while its loss is finite: the stop logs
    the mean training loss of steps 4 and 5, as the Trainer's own log would have."""
    seen, real = {}, llada_cpt.XDLMTrainer.compute_loss

    def compute_loss(self, model, inputs, *args, **kwargs):
        loss = real(self, model, inputs, *args, **kwargs)
        seen.setdefault("trainer", self)
        seen[self.state.global_step + 1] = loss.item()
        if self.state.global_step + 1 == 5:
            weight = next(p for p in model.parameters() if p.requires_grad)
            weight.register_hook(lambda grad: torch.full_like(grad, float("inf")))
        return loss

    monkeypatch.setattr(llada_cpt.XDLMTrainer, "compute_loss", compute_loss)
    with pytest.raises(NonFiniteTraining, match="diverged at step 5: .*gradient norm inf"):
        llada_cpt.main(tiny_args(str(tmp_path / "out"), llada_dir, text_file, "--max_steps", "6",
                                 "--logging_steps", "3", "--save_strategy", "no"))
    logged = [e for e in seen["trainer"].state.log_history if "loss" in e]
    assert [e["step"] for e in logged] == [3, 5]
    assert logged[-1]["loss"] == pytest.approx((seen[4] + seen[5]) / 2, rel=1e-6)


# --- 2. run identity ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, text_file, llada_dir):
    """A finished two-step xdm run with checkpoints 1 and 2: {output_dir: ..., argv: ...}."""
    out = str(tmp_path_factory.mktemp("finished") / "out")
    argv = tiny_args(out, llada_dir, text_file)
    llada_cpt.main(argv)
    return out, argv


def copy_run(finished_run, tmp_path):
    out, argv = finished_run
    copy = str(tmp_path / "out")
    shutil.copytree(out, copy)
    return copy, [copy if a == out else a for a in argv]


def test_a_relaunch_with_other_defining_settings_refuses_and_lists_each_difference(
        finished_run, tmp_path, nothing_expensive):
    out, argv = copy_run(finished_run, tmp_path)
    before = sorted(os.listdir(out))
    with pytest.raises(ValueError) as caught:
        llada_cpt.main(argv + ["--training_method", "ar", "--per_device_train_batch_size", "4", "--with_lora"])
    message = str(caught.value)
    for line in ("training_method: 'xdm' in the checkpoint, 'ar' now", "k: 0.1 in the checkpoint, None now",
                 "per_device_train_batch_size: 2 in the checkpoint, 4 now",
                 "with_lora: False in the checkpoint, True now"):
        assert line in message, message
    assert "--output_dir" in message and "--overwrite_output_dir" in message
    assert "learning_rate" not in message and "seed" not in message  # unchanged settings are not listed
    assert sorted(os.listdir(out)) == before  # nothing moved, nothing written


def test_a_lora_relaunch_onto_a_full_checkpoint_without_recorded_settings_refuses(
        finished_run, tmp_path, nothing_expensive):
    out, argv = copy_run(finished_run, tmp_path)
    os.remove(os.path.join(out, "checkpoint-2", checkpoints.RUN_FILE))  # as an earlier version wrote it
    with pytest.raises(ValueError, match="checkpoint-2 holds full weights but this launch trains LoRA adapters"):
        llada_cpt.main(argv + ["--with_lora"])


def test_settings_that_may_change_on_resume_do_not_count(finished_run, tmp_path):
    out, argv = copy_run(finished_run, tmp_path)
    trainer = llada_cpt.main(argv + ["--max_steps", "3", "--logging_steps", "2", "--save_steps", "3",
                                     "--dataloader_num_workers", "1"])
    assert trainer.state.global_step == 3  # resumed from checkpoint-2 and trained one more step
    assert checkpoints.is_complete(os.path.join(out, "checkpoint-3"))
    with open(os.path.join(out, "checkpoint-3", checkpoints.RUN_FILE)) as f:
        assert json.load(f)["training_method"] == "xdm"


def test_every_flag_defines_the_run_or_is_free_to_change_on_resume(text_file):
    """The resume contract: each field of the four argument dataclasses (TrainingArguments' own
    included, so a transformers upgrade that adds one fails here too) is recorded by run_identity
    or named in FREE_ON_RESUME, never both: a new flag fails this test until it is classified."""
    import dataclasses

    flags = {f.name for cls in (llada_cpt.ModelArguments, llada_cpt.DataTrainingArguments, llada_cpt.XDLMArguments,
                                llada_cpt.XDLMTrainingArguments) for f in dataclasses.fields(cls) if f.init}
    identity = checkpoints.run_identity(*llada_cpt.parse_args(tiny_args("out", "a-model", text_file)))
    recorded = {"xdlm_k" if key == "k" else key for key in identity} - {"world_size"}  # (not a flag: the launcher's)
    free = checkpoints.FREE_ON_RESUME
    assert not recorded & free, f"both recorded and free: {sorted(recorded & free)}"
    assert not (recorded | free) - flags, f"not flags: {sorted((recorded | free) - flags)}"
    assert flags <= recorded | free, (f"unclassified: {sorted(flags - recorded - free)}: record each in "
                                      "checkpoints.run_identity if it changes what is trained, else name it in "
                                      "checkpoints.FREE_ON_RESUME")


def test_the_training_page_lists_every_setting_that_defines_a_run(text_file):
    """docs/training.md's "Which settings define a run" names, as a flag, every setting run_identity
    records (k as --xdlm_k's value, and the world size, which is the launcher's): the page's list
    is the code's own."""
    text = open(os.path.join(ROOT, "docs", "training.md")).read()
    paragraph = text[text.index("**Which settings define a run.**"):].split("\n\n")[0]
    identity = checkpoints.run_identity(*llada_cpt.parse_args(tiny_args("out", "a-model", text_file)))
    missing = [key for key in identity if key not in ("k", "world_size") and f"`--{key}`" not in paragraph]
    assert not missing, f"docs/training.md's list of the settings that define a run lacks {missing}"


def test_a_relaunch_that_adds_do_eval_continues_the_same_training_stream(finished_run, tmp_path, text_file, llada_dir):
    """Two steps, then a relaunch to four with --do_eval (no validation file: the validation split is
    cut from the training file either way): steps 3 and 4 are those of an uninterrupted run."""
    uninterrupted = str(tmp_path / "uninterrupted")
    llada_cpt.main(tiny_args(uninterrupted, llada_dir, text_file, "--max_steps", "4"))
    out, argv = copy_run(finished_run, tmp_path)
    trainer = llada_cpt.main(argv + ["--max_steps", "4", "--do_eval", "--max_eval_samples", "16"])
    assert any("eval_nelbo" in e for e in trainer.state.log_history)  # it did evaluate

    def losses(folder):
        with open(os.path.join(folder, "trainer_state.json")) as f:
            return {e["step"]: e["loss"] for e in json.load(f)["log_history"] if "loss" in e}

    resumed, reference = losses(out), losses(uninterrupted)
    assert sorted(resumed) == sorted(reference) == [1, 2, 3, 4]
    for step in (3, 4):
        assert resumed[step] == pytest.approx(reference[step], abs=1e-6), step


def a_checkpoint_of(out, argv):
    """out/checkpoint-2 as a run launched with argv leaves it, as far as a relaunch reads it before
    loading anything: its recorded settings, a trainer state and the completion marker."""
    folder = os.path.join(out, "checkpoint-2")
    os.makedirs(folder)
    with open(os.path.join(folder, checkpoints.RUN_FILE), "w") as f:
        json.dump(checkpoints.run_identity(*llada_cpt.parse_args(argv)), f)
    with open(os.path.join(folder, "trainer_state.json"), "w") as f:
        json.dump({"global_step": 2}, f)
    with open(os.path.join(folder, checkpoints.CHECKPOINT_COMPLETE), "w") as f:
        f.write("2\n")


STREAM = ["--streaming", "--max_steps", "2"]
CHANGES_THE_TRAINING = [  # (the run's flags, the relaunch's extra flags, the difference named)
    ([], ["--data_seed", "123"], "data_seed: None in the checkpoint, 123 now"),
    (STREAM, ["--shuffle_buffer_size", "100"], "shuffle_buffer_size: 10000 in the checkpoint, 100 now"),
    (STREAM, ["--max_eval_samples", "16"], "max_eval_samples: None in the checkpoint, 16 now"),
    (STREAM, ["--dataloader_num_workers", "2"], "dataloader_num_workers: 0 in the checkpoint, 2 now"),
    ([], ["--validation_split_percentage", "10"], "validation_split_percentage: 5 in the checkpoint, 10 now"),
    ([], ["--preprocessing_num_workers", "2"], "preprocessing_num_workers: None in the checkpoint, 2 now"),
    ([], ["--max_grad_norm", "0.5"], "max_grad_norm: 1.0 in the checkpoint, 0.5 now"),
    ([], ["--adam_beta2", "0.95"], "adam_beta2: 0.999 in the checkpoint, 0.95 now"),
    (["--lr_scheduler_type", "constant_with_warmup", "--warmup_steps", "0.5"], ["--max_steps", "4"],
     "max_steps: 2 in the checkpoint, 4 now"),  # the warmup is a fraction of the steps
]


@pytest.mark.parametrize("run, relaunch, difference", CHANGES_THE_TRAINING)
def test_a_relaunch_that_would_change_the_training_data_or_trajectory_is_refused(tmp_path, text_file, llada_dir,
                                                                              nothing_expensive, run, relaunch,
                                                                              difference):
    out = str(tmp_path / "out")
    argv = tiny_args(out, llada_dir, text_file, *run)
    a_checkpoint_of(out, argv)
    with pytest.raises(AssertionError, match="tokenization ran"):  # the same command passes the check (and is
        llada_cpt.main(argv)                                        # stopped at the tokenization)
    with pytest.raises(ValueError) as caught:
        llada_cpt.main(argv + relaunch)
    assert difference in str(caught.value) and len(str(caught.value).splitlines()) == 3, str(caught.value)


# --- 3. one run per output folder ------------------------------------------------------------------

@pytest.mark.slow
def test_a_second_launch_into_a_folder_in_use_fails_at_once_naming_the_holder(
        tmp_path, text_file, llada_dir, monkeypatch):
    """A real first launch (a separate process, training for long) and a second one in this process."""
    out = str(tmp_path / "out")
    argv = tiny_args(out, llada_dir, text_file, "--max_steps", "100000", "--save_strategy", "no")
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    first = subprocess.Popen([sys.executable, os.path.join(ROOT, "llada_cpt.py"), *argv], cwd=str(tmp_path), env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lock = os.path.join(out, checkpoints.LOCK_FILE)
        deadline = time.time() + 120
        while not (os.path.exists(lock) and f"pid {first.pid}," in open(lock).read()):
            assert first.poll() is None and time.time() < deadline, "the first launch never took the lock"
            time.sleep(0.2)
        monkeypatch.setattr(llada_cpt, "load_model", lambda *a, **k: pytest.fail("the model was built"))
        before = sorted(os.listdir(out))
        with pytest.raises(RuntimeError) as caught:
            llada_cpt.main(tiny_args(out, llada_dir, text_file, "--overwrite_output_dir"))
        message = str(caught.value)
        assert f"pid {first.pid}," in message and os.uname().nodename in message and "started " in message
        assert sorted(os.listdir(out)) == before
        assert first.poll() is None  # the first run goes on
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # the lock died with its process (kill -9): the folder can be claimed again
    args = llada_cpt.parse_args(tiny_args(out, llada_dir, text_file))[3]
    with checkpoints.output_dir_claimed(args):
        assert f"pid {os.getpid()}," in open(os.path.join(out, checkpoints.LOCK_FILE)).read()


def eval_only_args(out, model_dir, data_file):
    return ["--model_name_or_path", model_dir, "--train_file", data_file, "--block_size", "64", "--do_eval",
            "--output_dir", out, "--max_eval_samples", "4", "--eval_mask_rates", "2", "--report_to", "none"]


def test_an_evaluation_alone_is_refused_a_training_runs_folder_before_the_work(finished_run, tmp_path, text_file,
                                                                               nothing_expensive):
    """Finished (its records at the top) or training now (no checkpoint yet, the lock held): the
    evaluation's numbers would mix with the training run's all_results.json; nothing is written."""
    out, _ = copy_run(finished_run, tmp_path)
    before = {name: file_bytes(os.path.join(out, name)) for name in os.listdir(out) if name.endswith(".json")}
    records = "trainer_state.json, train_results.json, checkpoint-1, checkpoint-2"
    with pytest.raises(ValueError, match=f"--output_dir {out} holds a training run \\({records}\\).*its own"):
        llada_cpt.main(eval_only_args(out, out, text_file))
    assert {name: file_bytes(os.path.join(out, name)) for name in os.listdir(out) if name.endswith(".json")} == before
    starting = str(tmp_path / "starting")
    args = llada_cpt.parse_args(tiny_args(starting, "a-model", text_file))[3]
    with checkpoints.output_dir_claimed(args):  # a training run that has just taken the folder
        with pytest.raises(ValueError, match=f"holds a training run \\(run.lock, held by the run training into it "
                                             f"\\(host {os.uname().nodename}, pid {os.getpid()},"):
            llada_cpt.main(eval_only_args(starting, finished_run[0], text_file))
    with pytest.raises(AssertionError, match="tokenization ran"):  # the lock released: an empty folder is anyone's
        llada_cpt.main(eval_only_args(starting, finished_run[0], text_file))


# --- 4. the source is never the destination --------------------------------------------------------

@pytest.mark.parametrize("where", ["model folder", "its parent"])
@pytest.mark.parametrize("flag", ["--model_name_or_path", "--config_name", "--tokenizer_name"])
def test_output_dir_that_is_or_contains_a_source_folder_is_refused(
        tmp_path, text_file, llada_dir, nothing_expensive, flag, where):
    model = str(tmp_path / "models" / "tiny")
    shutil.copytree(llada_dir, model)
    weights = file_bytes(os.path.join(model, "model.safetensors"))
    out = model if where == "model folder" else str(tmp_path / "models")
    argv = tiny_args(out, llada_dir, text_file, flag, model)
    with pytest.raises(ValueError, match=f"--output_dir {out} {'is' if out == model else 'contains'} "
                                         f"the folder of {flag} {model}"):
        llada_cpt.main(argv)
    assert file_bytes(os.path.join(model, "model.safetensors")) == weights
    assert sorted(os.listdir(model)) == sorted(os.listdir(llada_dir))


# --- 5-6. every check before the expensive work -------------------------------------------------------

def zero_layer_model(tmp_path, llada_dir):
    folder = str(tmp_path / "zero-layers")
    shutil.copytree(llada_dir, folder)
    config = json.load(open(os.path.join(folder, "config.json")))
    json.dump(dict(config, n_layers=0), open(os.path.join(folder, "config.json"), "w"))
    return folder


BEFORE_THE_WORK = [
    (["--max_steps", "-3"], "--max_steps must be a positive number of optimizer steps, or -1 .*got -3"),
    (["--max_steps", "0"], "--max_steps must be .*got 0"),
    (["--learning_rate", "-1"], "--learning_rate must be a positive number, got -1.0"),
    (["--learning_rate", "nan"], "--learning_rate must be a positive number, got nan"),
    (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size must be at least 1, got 0"),
    (["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps must be at least 1, got 0"),
    (["--max_grad_norm", "nan"], "--max_grad_norm must be a number >= 0 \\(0: no clipping\\), got nan"),
    (["--weight_decay", "-1"], "--weight_decay must be a number >= 0, got -1.0"),
    (["--resume_from_checkpoint", "/nope"], "--resume_from_checkpoint /nope is not a folder"),
    # a real write fails there, even as root
    (["--output_dir", "/proc/self"], "--output_dir /proc/self is not writable"),
    (["--model_implementation", "remote", "--trust_remote_code", "True"],
     "--model_implementation remote: .*points at configuration_llada.py, which is not in the folder"),
]


@pytest.mark.parametrize("extra, match", BEFORE_THE_WORK)
def test_bad_settings_fail_clearly_before_tokenization_and_the_model_build(
        tmp_path, text_file, llada_dir, nothing_expensive, extra, match):
    with pytest.raises(ValueError, match=match):
        llada_cpt.main(tiny_args(str(tmp_path / "out"), llada_dir, text_file, *extra))


def test_a_mask_id_that_is_the_eos_or_pad_id_is_refused_before_the_work(tmp_path, text_file, llada_dir, tokenizer,
                                                                       nothing_expensive):
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    assert eos is not None and pad is not None and eos != pad
    for token_id, name in ((eos, "eos"), (pad, "pad")):
        with pytest.raises(ValueError, match=f"mask token id {token_id} \\(from --mask_token_id\\) is the tokenizer's "
                                             f"{name} token id: the eos after every packed text"):
            llada_cpt.main(tiny_args(str(tmp_path / "out"), llada_dir, text_file, "--mask_token_id", str(token_id)))


def test_output_dir_that_is_a_file_fails_before_the_work(tmp_path, text_file, llada_dir, nothing_expensive):
    (tmp_path / "out").write_text("not a folder")
    with pytest.raises(ValueError, match=f"--output_dir {tmp_path / 'out'} is a file"):
        llada_cpt.main(tiny_args(str(tmp_path / "out"), llada_dir, text_file))


def test_zero_layers_empty_data_and_dtype_auto_from_scratch_fail_before_the_work(
        tmp_path, text_file, llada_dir, nothing_expensive):
    with pytest.raises(ValueError, match="has 0 layers: a model needs at least one"):
        llada_cpt.main(tiny_args(str(tmp_path / "out"), zero_layer_model(tmp_path, llada_dir), text_file))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match=f"--train_file {empty} is empty"):
        llada_cpt.main(tiny_args(str(tmp_path / "out"), llada_dir, str(empty)))
    scratch = ["--config_name", llada_dir, "--tokenizer_name", llada_dir]
    argv = [a for a in tiny_args(str(tmp_path / "out"), llada_dir, text_file)]
    argv = argv[2:] + scratch + ["--torch_dtype", "auto"]  # no --model_name_or_path
    with pytest.raises(ValueError, match="--torch_dtype auto takes the checkpoint's dtype"):
        llada_cpt.main(argv)


def test_torch_dtype_applies_when_training_from_scratch(tmp_path, text_file, llada_dir):
    argv = tiny_args(str(tmp_path / "out"), llada_dir, text_file, "--max_steps", "1", "--save_strategy", "no")
    argv = argv[2:] + ["--config_name", llada_dir, "--tokenizer_name", llada_dir, "--torch_dtype", "bfloat16"]
    trainer = llada_cpt.main(argv)
    assert {p.dtype for p in trainer.model.parameters()} == {torch.bfloat16}


# --- 7. JSON values take the command line's types ---------------------------------------------------------

def json_argv(tmp_path, argv, **overrides):
    """The command line as a JSON file (flags with values, then switches as true), with overrides."""
    values, i = {}, 0
    while i < len(argv):
        if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            values[argv[i][2:]], i = argv[i + 1], i + 2
        else:
            values[argv[i][2:]], i = True, i + 1
    for key in ("block_size", "per_device_train_batch_size", "max_steps", "logging_steps", "save_steps", "seed"):
        values[key] = int(values[key])
    values.update(plot_loss=False, learning_rate=float(values["learning_rate"]))
    values.update(overrides)
    path = tmp_path / "args.json"
    path.write_text(json.dumps(values))
    return [str(path)]


@pytest.mark.parametrize("key, value, allowed", [
    ("overwrite_output_dir", "false", "true or false"), ("fused_loss", "false", "true or false or null"),
    ("block_size", "64", "an integer or null"), ("block_size", 64.5, "an integer or null"),
    ("learning_rate", "1e-3", "a number"), ("max_steps", True, "an integer"), ("train_file", 3, "a string or null"),
])
def test_json_values_of_the_wrong_type_are_refused_naming_the_key(
        tmp_path, text_file, llada_dir, nothing_expensive, key, value, allowed):
    argv = json_argv(tmp_path, tiny_args(str(tmp_path / "out"), llada_dir, text_file), **{key: value})
    with pytest.raises(ValueError,
                       match=f'"{key}" must be {allowed} \\(as on the command line\\), got {json.dumps(value)}'):
        llada_cpt.main(argv)


def test_json_values_of_the_right_types_parse_as_the_command_line(tmp_path, text_file, llada_dir):
    argv = tiny_args(str(tmp_path / "out"), llada_dir, text_file, "--fused_loss", "False",
                     "--overwrite_output_dir", "False")
    from_json = llada_cpt.parse_args(json_argv(tmp_path, argv[:-4], fused_loss=False, overwrite_output_dir=False))
    for a, b in zip(llada_cpt.parse_args(argv), from_json):
        assert a == b
    assert from_json[2].fused_loss is False and from_json[3].overwrite_output_dir is False


# --- 8. mask id resolution -------------------------------------------------------------------

def model_without_mask_field(tmp_path, llada_dir):
    folder = str(tmp_path / "no-mask-field")
    shutil.copytree(llada_dir, folder)
    config = json.load(open(os.path.join(folder, "config.json")))
    del config["mask_token_id"]
    json.dump(config, open(os.path.join(folder, "config.json"), "w"))
    return folder


def test_a_config_without_mask_token_id_takes_the_tokenizers_and_saves_it(tmp_path, text_file, llada_dir):
    folder = model_without_mask_field(tmp_path, llada_dir)
    tokenizer_mask = transformers.AutoTokenizer.from_pretrained(folder).mask_token_id
    assert tokenizer_mask is not None and tokenizer_mask != 126336  # LLaDAConfig's class default, never given here
    out = str(tmp_path / "out")
    trainer = llada_cpt.main(tiny_args(out, folder, text_file, "--max_steps", "1", "--save_strategy", "no"))
    assert trainer.mask_id == tokenizer_mask
    assert json.load(open(os.path.join(out, "config.json")))["mask_token_id"] == tokenizer_mask


def test_mask_id_order_flag_then_config_then_tokenizer(tmp_path, text_file, llada_dir, monkeypatch):
    folder = model_without_mask_field(tmp_path, llada_dir)
    tokenizer_mask = transformers.AutoTokenizer.from_pretrained(folder).mask_token_id

    def mask_id(model_dir, *extra):
        model_args, data_args, xdlm_args, _ = llada_cpt.parse_args(tiny_args(str(tmp_path / "o"), model_dir,
                                                                             text_file, *extra))
        return llada_cpt.load_config_and_tokenizer(model_args, data_args, xdlm_args)[2]

    assert mask_id(folder) == tokenizer_mask
    assert mask_id(folder, "--mask_token_id", "7") == 7  # the flag wins over the tokenizer
    config = json.load(open(os.path.join(folder, "config.json")))
    json.dump(dict(config, mask_token_id=5), open(os.path.join(folder, "config.json"), "w"))
    with pytest.raises(ValueError, match="mask token ids disagree: .*config's mask_token_id.: 5.*pass --mask_token_id"):
        mask_id(folder)  # config and tokenizer were both given and differ
    assert mask_id(folder, "--mask_token_id", "9") == 9  # the flag chooses


# --- 9. failures that say what happened ------------------------------------------------------------

def test_a_full_disk_during_a_save_says_so_and_leaves_no_partial_checkpoint(
        tmp_path, text_file, llada_dir, monkeypatch):
    real_save = transformers.Trainer._save_optimizer_and_scheduler

    def save_filling_the_disk(self, output_dir):
        if self.state.global_step == 2:
            with open(os.path.join(output_dir, "optimizer.pt"), "wb") as f:
                f.write(b"\0" * 1000)  # part of the file got written
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(self, output_dir)

    monkeypatch.setattr(transformers.Trainer, "_save_optimizer_and_scheduler", save_filling_the_disk)
    out = str(tmp_path / "out")
    with pytest.raises(OSError) as caught:
        llada_cpt.main(tiny_args(out, llada_dir, text_file, "--max_steps", "3"))
    message = str(caught.value)
    first = os.path.join(out, "checkpoint-1")
    size = sum(os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(first) for n in names)
    assert caught.value.errno == errno.ENOSPC and "no space left" in message
    assert f"while saving {os.path.join(out, 'checkpoint-2')}" in message and " bytes free" in message
    assert f"the last checkpoint, {first}, takes {size} bytes" in message
    assert sorted(n for n in os.listdir(out) if n.startswith(("checkpoint-", "incomplete-"))) == ["checkpoint-1"]
    assert checkpoints.is_complete(first)


def test_a_null_text_names_the_file_row_and_column(tmp_path, llada_dir, corpus_texts, monkeypatch):
    import data

    monkeypatch.setattr(data, "tokenize_and_pack", lambda *a, **k: pytest.fail("tokenization ran before the check"))
    monkeypatch.setattr(llada_cpt, "load_model", lambda *a, **k: pytest.fail("the model was built"))
    rows = [{"text": t} for t in corpus_texts[:10]]
    rows[6] = {"text": None}
    data = write_jsonl(str(tmp_path / "holes.jsonl"), rows)
    with pytest.raises(ValueError, match=f"--train_file {data}: row 7 \\(counting from 1\\), column 'text': "
                                         "expected text \\(a string\\), got null"):
        llada_cpt.main(tiny_args(str(tmp_path / "out"), llada_dir, data))
    numbers = write_jsonl(str(tmp_path / "numbers.jsonl"), [{"text": i} for i in range(5)])
    with pytest.raises(ValueError, match="row 1 \\(counting from 1\\), column 'text': "
                                         "expected text \\(a string\\), got 0"):
        llada_cpt.main(tiny_args(str(tmp_path / "out"), llada_dir, numbers))
    # among strings, a number (or another type) is more than Arrow reads into one column: named all the same
    rows = [{"text": t, "id": i} for i, t in enumerate(corpus_texts[:10])]
    rows[3]["text"] = 7
    mixed = write_jsonl(str(tmp_path / "mixed.jsonl"), rows)
    with pytest.raises(ValueError, match=f"--train_file {mixed}: row 4 \\(counting from 1\\), column 'text': "
                                         "expected text \\(a string\\), got 7"):
        llada_cpt.main(tiny_args(str(tmp_path / "out"), llada_dir, mixed))
    rows[3]["text"], rows[8]["id"] = "x = 1", "id-8"  # a column not read changes type
    mixed = write_jsonl(str(tmp_path / "mixed-ids.jsonl"), rows)
    with pytest.raises(ValueError, match=f"--train_file {mixed}: row 9 \\(counting from 1\\), column 'id': "
                                         "expected a number \\(as in the rows before\\), got 'id-8'"):
        llada_cpt.main(tiny_args(str(tmp_path / "out"), llada_dir, mixed))


def test_a_damaged_checkpoint_names_the_file_and_the_way_back_to_the_previous_one(finished_run, tmp_path, monkeypatch):
    out, argv = copy_run(finished_run, tmp_path)
    weights = os.path.join(out, "checkpoint-2", "model.safetensors")
    data = file_bytes(weights)
    with open(weights, "wb") as f:
        f.write(data[: len(data) // 2])  # truncated; its completion marker is still there
    monkeypatch.setattr(llada_cpt, "load_model", lambda *a, **k: pytest.fail("the model was built"))
    with pytest.raises(ValueError) as caught:
        llada_cpt.main(argv + ["--max_steps", "3"])
    message = str(caught.value)
    aside = os.path.join(out, "damaged-checkpoint-2")
    assert f"{weights} is damaged" in message
    assert (f"`mv {os.path.join(out, 'checkpoint-2')} {aside}`" in message
            and os.path.join(out, "checkpoint-1") in message)
    # the way named works: once moved, the relaunch resumes from checkpoint-1
    os.rename(os.path.join(out, "checkpoint-2"), aside)
    args = llada_cpt.parse_args(argv + ["--max_steps", "3"])
    assert checkpoints.prepare_output_dir(args[3], checkpoints.run_identity(*args)) == os.path.join(out, "checkpoint-1")
    with pytest.raises(ValueError, match=f"--resume_from_checkpoint {os.path.join(out, 'checkpoint-1')}"):
        llada_cpt.main(argv + ["--resume_from_checkpoint", aside])  # the explicit way names the flag


# --- logs and leftovers ------------------------------------------------------------------------

class ModelBuildReached(Exception):
    pass


def test_the_paper_launchers_flags_trigger_no_warning_of_ours(tmp_path, llada_dir, corpus_texts, monkeypatch, caplog):
    """The flags scripts/train_llada_xdlm.sh passes to llada_cpt.py (DeepSpeed's config left out:
    it needs the launcher), on a local stand-in of its dataset (of 40 texts: 8 held out from the
    stream's start for validation, not 256), up to the model build."""
    import shlex

    from local_data import write_fineweb_like

    script = open(os.path.join(ROOT, "scripts", "train_llada_xdlm.sh")).read()
    flags = shlex.split(script.split("llada_cpt.py", 1)[1].split('"$@"')[0].replace("\\\n", " "))
    values = {"$LLADA": llada_dir, "$DATA": write_fineweb_like(str(tmp_path / "fineweb"), corpus_texts[:40]),
              "$OUT": str(tmp_path / "checkpoints")}
    flags = [values.get(f, f) for f in flags]
    i = flags.index("--deepspeed")
    argv = flags[:i] + flags[i + 2:] + ["--max_steps", "2", "--block_size", "128", "--max_eval_samples", "8"]

    def reached(*args, **kwargs):
        raise ModelBuildReached

    monkeypatch.setattr(llada_cpt, "load_model", reached)
    with caplog.at_level("WARNING"), pytest.raises(ModelBuildReached):
        llada_cpt.main(argv)
    ours = [r for r in caplog.records
            if r.name in ("llada_cpt", "__main__", *llada_cpt.MODULE_LOGGERS) and r.levelno >= 30]
    assert not ours, [r.getMessage() for r in ours]


def test_the_model_config_is_read_and_printed_once(tmp_path, text_file, llada_dir, caplog):
    model_args, data_args, xdlm_args, training_args = llada_cpt.parse_args(
        tiny_args(str(tmp_path / "out"), llada_dir, text_file))
    llada_cpt.setup_logging(training_args, xdlm_args)
    with caplog.at_level("INFO"):
        llada_cpt.load_config_and_tokenizer(model_args, data_args, xdlm_args)
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("loading configuration file") for m in messages) == 1, messages
    assert sum(m.startswith("Model config") for m in messages) == 1, messages


def test_a_quick_start_rerun_trains_again_and_keeps_the_previous_model_aside(tmp_path, text_file, llada_dir):
    """scripts/train_tiny.sh's flags for llada_cpt.py, twice into one output folder: no checkpoints
    (--save_strategy no), and the first run's model in one previous-<time>/ (nothing deleted)."""
    flags = subprocess.run(["bash", "-c", 'source scripts/common.sh && printf "%s\\n" "${TINY_TRAIN_FLAGS[@]}"'],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    out = str(tmp_path / "tiny")
    argv = ["--config_name", llada_dir, "--tokenizer_name", llada_dir, "--train_file", text_file, *flags,
            "--output_dir", out, "--max_steps", "2", "--per_device_train_batch_size", "2", "--plot_loss", "False"]
    for _ in range(2):
        trainer = llada_cpt.main(argv)
        assert [e["step"] for e in trainer.state.log_history if "loss" in e] == [1, 2]  # trained from step 0 again
    assert not [n for n in os.listdir(out) if n.startswith("checkpoint-")], os.listdir(out)
    (previous,) = [n for n in os.listdir(out) if n.startswith("previous-")]
    assert os.path.isfile(os.path.join(out, "model.safetensors"))
    assert os.path.isfile(os.path.join(out, previous, "model.safetensors"))


def test_a_world_size_change_only_warns(finished_run, caplog):
    """The checkpoint's own settings with another world size: resumable, with the documented warning."""
    out, _ = finished_run
    checkpoint = os.path.join(out, "checkpoint-2")
    with open(os.path.join(checkpoint, checkpoints.RUN_FILE)) as f:
        recorded = json.load(f)
    assert recorded["world_size"] == 1
    with caplog.at_level("WARNING"):
        checkpoints.check_same_run(checkpoint, dict(recorded, world_size=8), 8, explicit=False)
    assert "written by 1 processes, resumed by 8" in caplog.text
    with pytest.raises(ValueError, match="seed: 0 in the checkpoint, 1 now"):
        checkpoints.check_same_run(checkpoint, dict(recorded, world_size=8, seed=1), 8, explicit=False)


def test_a_checkpoint_that_records_fewer_settings_compares_those_it_records(finished_run, tmp_path, caplog):
    """run_settings.json as an earlier version wrote it, without the settings recorded since: those
    are named in a warning and not compared; the others still are."""
    out, _ = copy_run(finished_run, tmp_path)
    checkpoint = os.path.join(out, "checkpoint-2")
    with open(os.path.join(checkpoint, checkpoints.RUN_FILE)) as f:
        identity = json.load(f)
    with open(os.path.join(checkpoint, checkpoints.RUN_FILE), "w") as f:
        json.dump({k: v for k, v in identity.items() if k not in ("data_seed", "adam_beta2")}, f)
    with caplog.at_level("WARNING"):
        checkpoints.check_same_run(checkpoint, dict(identity, data_seed=7), 1, explicit=False)
    assert "does not record data_seed, adam_beta2 (an earlier version" in caplog.text
    with pytest.raises(ValueError, match="seed: 0 in the checkpoint, 1 now"):
        checkpoints.check_same_run(checkpoint, dict(identity, seed=1), 1, explicit=False)
