"""Crash safety of llada_cpt.py: a run killed with SIGKILL at a random step, or while a checkpoint
is being written, and relaunched with the identical command, trains exactly as an uninterrupted
run (per-step losses, final weights, the noise drawn, the blocks seen); nothing is ever deleted.
One process, and two processes under DeepSpeed ZeRO-2 on CPU. Every killed run is a process of its
own (tests/recording.py); the one-process uninterrupted run and relaunches run in the test process."""
import json
import os
import random
import subprocess
import sys

import pytest
import torch
import transformers
from safetensors.torch import load_file

import llada_cpt
import recording
from checkpoints import CHECKPOINT_COMPLETE
from helpers import ROOT, free_port
from local_data import write_fineweb_like
from xdlm_loss import MASK_RATE_EPS


def launch(tmp_path, launcher_args, argv, kill_at="none:0", kill_rank=0, expect_killed=False):
    """Run tests/recording.py (llada_cpt.py recording its draws to tmp_path/draws) in a new
    process with one thread; returns its output."""
    env = dict(os.environ, PYTHONPATH=ROOT, KILL_AT=kill_at, KILL_RANK=str(kill_rank), DRAWS=str(tmp_path / "draws"),
               TORCH_EXTENSIONS_DIR=os.path.join(ROOT, ".torch_extensions"), OMP_NUM_THREADS="1")
    proc = subprocess.run([*launcher_args, os.path.join(ROOT, "tests", "recording.py"), *argv], cwd=str(tmp_path),
                          env=env, capture_output=True, text=True, timeout=900)
    log = proc.stdout + proc.stderr
    if expect_killed:
        assert proc.returncode != 0, "the run was meant to be killed\n" + log[-3000:]
    else:
        assert proc.returncode == 0, log[-6000:]
    return log


def run_here(tmp_path, argv, monkeypatch):
    """The same command in this process, recording its draws likewise, with one thread as the
    launched runs have (the kill itself needs a process of its own)."""
    monkeypatch.chdir(tmp_path)
    recording.install(str(tmp_path / "draws"), setattr=monkeypatch.setattr)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return llada_cpt.main(argv)
    finally:
        torch.set_num_threads(threads)


def draws(tmp_path):
    """(rank, step, micro) -> the draw; a relaunch's draw replaces the killed run's."""
    found = {}
    for name in sorted(os.listdir(tmp_path / "draws")):
        for line in open(tmp_path / "draws" / name):
            d = json.loads(line)
            found[(d["rank"], d["step"], d["micro"])] = d
    return found


def losses_and_weights(out):
    state = json.load(open(os.path.join(out, "trainer_state.json")))
    losses = {e["step"]: e["loss"] for e in state["log_history"] if "loss" in e}
    return losses, load_file(os.path.join(out, "model.safetensors"))


def assert_same_training(run, reference):
    (losses, weights), (ref_losses, ref_weights) = (losses_and_weights(run / "out"),
                                                    losses_and_weights(reference / "out"))
    assert losses.keys() == ref_losses.keys() and len(losses) > 0
    for step in ref_losses:
        assert losses[step] == pytest.approx(ref_losses[step], abs=1e-6), step
    assert weights.keys() == ref_weights.keys()
    for name in ref_weights:
        torch.testing.assert_close(weights[name], ref_weights[name], rtol=0, atol=1e-6)
    ref_draws, got = draws(reference), draws(run)
    assert got.keys() == ref_draws.keys()
    for key, d in ref_draws.items():  # the same blocks, in the same order, with the same noise
        assert got[key]["clean"] == d["clean"] and got[key]["noisy"] == d["noisy"], key
        assert got[key]["p_mask"] == pytest.approx(d["p_mask"], abs=1e-7), key


def assert_strata_covered_once(found, world, per_device, accumulation):
    """Per optimizer step, the t of all samples of all ranks and micro-steps are u + j / S
    (mod 1) for j = 0 .. S-1, each j exactly once, S = world x per-device x accumulation."""
    S = world * per_device * accumulation
    for step in {s for _, s, _ in found}:
        ts = [(p - MASK_RATE_EPS) / (1 - MASK_RATE_EPS)
              for (r, s, m), d in found.items() if s == step for p in d["p_mask"]]
        assert len(ts) == S, (step, ts)
        u = min(ts) % (1 / S)
        strata = sorted(round(((t - u) % 1.0) * S) for t in ts)
        assert strata == list(range(S)), (step, ts)
        assert all(abs(((t - u) % 1.0) * S - round(((t - u) % 1.0) * S)) < 1e-4 for t in ts), (step, ts)


def one_process_argv(data_file, model_dir, *extra):
    return ["--model_name_or_path", model_dir, "--train_file", data_file, "--block_size", "64",
            "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2", "--do_train",
            "--output_dir", "out", "--max_steps", "6", "--save_steps", "2", "--logging_steps", "1",
            "--report_to", "none", "--learning_rate", "1e-3", "--seed", "3", "--plot_loss", "False", *extra]


@pytest.fixture(scope="module")
def one_process_reference(tmp_path_factory, text_file, llada_dir):
    ref = tmp_path_factory.mktemp("uninterrupted")
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_here(ref, one_process_argv(text_file, llada_dir), monkeypatch)
    return ref


@pytest.mark.slow
def test_one_process_killed_at_a_random_step_resumes_exactly(tmp_path, text_file, llada_dir, one_process_reference,
                                                            monkeypatch, caplog):
    step = random.Random(9).randint(2, 4)  # killed inside optimizer step step + 1, after checkpoint-2
    argv = one_process_argv(text_file, llada_dir)
    launch(tmp_path, [sys.executable], argv, kill_at=f"step:{step}", expect_killed=True)
    assert not (tmp_path / "out" / "model.safetensors").exists()
    run_here(tmp_path, argv, monkeypatch)  # the relaunch
    assert f"Resuming from out/checkpoint-{step // 2 * 2}" in caplog.text
    assert_same_training(tmp_path, one_process_reference)
    assert_strata_covered_once(draws(tmp_path), world=1, per_device=2, accumulation=2)


@pytest.mark.slow
def test_one_process_killed_while_writing_a_checkpoint_skips_it_and_resumes_exactly(
        tmp_path, text_file, llada_dir, one_process_reference, monkeypatch, caplog):
    argv = one_process_argv(text_file, llada_dir, "--save_total_limit", "1")
    launch(tmp_path, [sys.executable], argv, kill_at="save:4", expect_killed=True)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-2", "checkpoint-4"]
    assert (out / "checkpoint-2" / CHECKPOINT_COMPLETE).exists()
    assert not (out / "checkpoint-4" / CHECKPOINT_COMPLETE).exists()
    run_here(tmp_path, argv, monkeypatch)  # the relaunch
    assert "checkpoint-4: incomplete" in caplog.text and "Resuming from out/checkpoint-2" in caplog.text
    assert_same_training(tmp_path, one_process_reference)
    moved = [p for p in out.iterdir() if p.name.startswith("incomplete-")]
    assert len(moved) == 1 and (moved[0] / "checkpoint-4").is_dir()  # kept, not deleted
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-6"]  # the limit


@pytest.mark.slow
def test_zero2_two_processes_killed_while_writing_a_checkpoint_resume_exactly(
        tmp_path, corpus_texts, llada_dir):
    """Two CPU processes (torchrun, gloo), ZeRO-2, a streamed dataset. Rank 1 dies after the
    ZeRO shards of checkpoint-4 are written; the relaunch resumes from checkpoint-2 and finishes.
    (A kill inside a step, rather than a save, resumes the same way: the one-process tests.)"""
    data = write_fineweb_like(str(tmp_path / "fineweb-edu"), corpus_texts[:40])
    argv = ["--deepspeed", os.path.join(ROOT, "ds_zero2_bf16_config_simp.json"), "--model_name_or_path", llada_dir,
            "--dataset_name", data, "--dataset_config_name", "sample-10BT", "--streaming", "--block_size", "64",
            "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "2", "--do_train",
            "--output_dir", "out", "--max_steps", "5", "--save_steps", "2", "--logging_steps", "1",
            "--report_to", "none", "--learning_rate", "1e-3", "--seed", "5", "--plot_loss", "False",
            "--max_eval_samples", "8"]  # held out from the stream's start (default 256: more than these 40 texts)
    torchrun = [os.path.join(os.path.dirname(sys.executable), "torchrun"), "--nproc_per_node", "2"]
    ref, run = tmp_path / "uninterrupted", tmp_path / "killed"
    ref.mkdir(), run.mkdir()
    launch(ref, torchrun + ["--master_port", str(free_port())], argv)
    launch(run, torchrun + ["--master_port", str(free_port())], argv, kill_at="save:4", kill_rank=1, expect_killed=True)
    # The surviving rank's failed save removes its own unfinished checkpoint-4; if it is left, it is incomplete.
    partial = run / "out" / "checkpoint-4"
    assert (run / "out" / "checkpoint-2" / CHECKPOINT_COMPLETE).exists()
    assert not (partial / CHECKPOINT_COMPLETE).exists()
    left = partial.exists()
    log = launch(run, torchrun + ["--master_port", str(free_port())], argv)
    assert "Resuming from out/checkpoint-2" in log
    assert not left or "checkpoint-4: incomplete" in log
    assert_same_training(run, ref)
    found = draws(ref)
    assert_strata_covered_once(found, world=2, per_device=1, accumulation=2)
    nested = []
    for step in range(5):  # the two ranks see different blocks and draw different t and noise
        a, b = found[(0, step, 0)], found[(1, step, 0)]
        assert a["clean"] != b["clean"] and a["p_mask"] != b["p_mask"]
        # One shared stream of uniforms would noise nested position sets (the lower rate's inside
        # the higher rate's); independent streams do not.
        hit_a, hit_b = ({i for i, (c, n) in enumerate(zip(d["clean"][0], d["noisy"][0])) if c != n} for d in (a, b))
        nested.append(hit_a <= hit_b or hit_b <= hit_a)
    assert not all(nested)
    # The stream is shuffled: the first block trained on is not the start of a data file.
    first_block = found[(0, 0, 0)]["clean"][0]
    tok = llada_cpt.AutoTokenizer.from_pretrained(llada_dir)
    starts = [tok(t, add_special_tokens=False)["input_ids"][:64] for t in (corpus_texts[0], corpus_texts[1])]
    assert first_block not in starts


def test_overwrite_output_dir_moves_earlier_checkpoints_aside_and_deletes_nothing(tmp_path, text_file, llada_dir):
    out = tmp_path / "out"
    for step, complete in ((3, True), (5, False)):
        (out / f"checkpoint-{step}").mkdir(parents=True)
        (out / f"checkpoint-{step}" / "weights.bin").write_bytes(bytes([step]) * 100)
        if complete:
            (out / f"checkpoint-{step}" / CHECKPOINT_COMPLETE).write_text(f"{step}\n")
    argv = one_process_argv(text_file, llada_dir, "--overwrite_output_dir", "--max_steps", "1", "--save_steps", "1",
                            "--save_total_limit", "1", "--gradient_accumulation_steps", "1")
    argv[argv.index("out")] = str(out)
    trainer = llada_cpt.main(argv)
    assert trainer.state.global_step == 1  # started afresh
    previous = [p for p in out.iterdir() if p.name.startswith("previous-")]
    assert len(previous) == 1
    for step in (3, 5):
        assert (previous[0] / f"checkpoint-{step}" / "weights.bin").read_bytes() == bytes([step]) * 100
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-1"]
    assert (out / "checkpoint-1" / CHECKPOINT_COMPLETE).exists()


def test_overwrite_output_dir_moves_the_previous_run_aside_before_anything_trains(tmp_path, text_file, llada_dir,
                                                                                 monkeypatch):
    """Everything a run leaves at the top of its folder, as real runs wrote it here (a full run with
    evaluation and its loss curve; then a LoRA run), goes with its checkpoints into one
    previous-<time>/ before the next run trains: from then on the folder no longer loads as the old
    model, and each previous run loads from its own folder."""
    out = tmp_path / "out"
    argv = one_process_argv(text_file, llada_dir, "--max_steps", "1", "--save_steps", "1",
                            "--gradient_accumulation_steps", "1", "--overwrite_output_dir")
    argv[argv.index("out")] = str(out)

    def left(exclude=()):
        return {name for name in os.listdir(out) if name != "run.lock" and name not in exclude}

    llada_cpt.main(argv + ["--do_eval", "--max_eval_samples", "4", "--eval_mask_rates", "2", "--plot_loss", "True"])
    full = left()
    assert {"model.safetensors", "all_results.json", "loss_curve.png", "checkpoint-1"} <= full, full
    llada_cpt.main(argv + ["--with_lora", "--lora_r", "4"])
    (first,) = [name for name in os.listdir(out) if name.startswith("previous-")]
    assert set(os.listdir(out / first)) == full
    lora = left(exclude={first})
    assert {"adapter", "model.safetensors", "checkpoint-1"} <= lora, lora

    def stop(*args, **kwargs):
        raise RuntimeError("stopped before the data and the model")

    monkeypatch.setattr(llada_cpt, "training_and_validation_blocks", stop)
    with pytest.raises(RuntimeError, match="stopped before"):
        llada_cpt.main(argv)
    (second,) = left(exclude={first})
    assert second.startswith("previous-") and set(os.listdir(out / second)) == lora
    with pytest.raises((OSError, ValueError)):  # no config, no weights
        transformers.AutoModel.from_pretrained(str(out))
    for previous in (first, second):
        assert transformers.AutoModel.from_pretrained(str(out / previous)).config.model_type == "llada"


def test_an_incomplete_checkpoint_named_by_resume_from_checkpoint_is_refused(
        tmp_path, text_file, llada_dir, monkeypatch):
    monkeypatch.setattr(llada_cpt, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "checkpoint-4").mkdir()
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text("{}")
    with pytest.raises(ValueError, match="checkpoint-4 is incomplete"):
        llada_cpt.main(one_process_argv(text_file, llada_dir, "--resume_from_checkpoint",
                                        str(tmp_path / "checkpoint-4")))


@pytest.mark.slow  # (the reference run it copies)
def test_a_relaunch_after_the_last_checkpoint_trains_no_step_past_max_steps(
        tmp_path, text_file, llada_dir, one_process_reference, monkeypatch, caplog):
    """Killed after checkpoint-6 (= --max_steps) but before the final model was written: the
    relaunch (in this process) writes checkpoint-6's model as the final model. The Trainer on
    its own would take a 7th optimizer step from there."""
    import shutil

    shutil.copytree(one_process_reference / "out", tmp_path / "out")
    os.remove(tmp_path / "out" / "model.safetensors")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(llada_cpt.XDLMTrainer, "training_mask_rate",
                        lambda *a: pytest.fail("a training step was taken"))
    llada_cpt.main(one_process_argv(text_file, llada_dir))
    assert "already reached --max_steps 6" in caplog.text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()
                  if p.name.startswith("checkpoint-"))[-1] == "checkpoint-6"
    weights, ref = (load_file(tmp_path / "out" / "model.safetensors"),
                    load_file(one_process_reference / "out" / "model.safetensors"))
    assert weights.keys() == ref.keys()
    for name in ref:
        torch.testing.assert_close(weights[name], ref[name], rtol=0, atol=0)


# The Trainer's private surface that checkpointing and the loss rely on (checkpoints.CheckpointingMixin,
# xdlm_trainer.XDLMTrainer), as transformers 5.24.0 has it. An upgrade that changes it can break resume
# silently (an override never called again, an argument shifted), so it is pinned here.
OVERRIDES = {"_maybe_log_save_evaluate", "_save_checkpoint", "_save_rng_state", "_load_rng_state", "compute_loss",
             "prediction_step", "evaluate", "get_decay_parameter_names"}
CALLED = {"_load_from_checkpoint": ("self", "resume_from_checkpoint")}  # private methods we call: leading parameters
RECHECK = ("transformers changed the Trainer surface this run relies on. Recheck, in transformers' trainer.py, "
           "_save_checkpoint (what it writes, that it rotates checkpoints by args.save_total_limit), "
           "_maybe_log_save_evaluate (called after every optimizer step with the loss summed since the last log), "
           "_save_rng_state / _load_rng_state (called with a checkpoint's folder when it is written and resumed), "
           "_load_from_checkpoint and training_step's use of model_accepts_loss_kwargs; adapt "
           "checkpoints.CheckpointingMixin and XDLMTrainer, run tests/test_resume.py in full (its slow tests kill "
           "and resume runs), then move the pin in requirements.txt")


def test_the_trainer_hooks_the_run_overrides_or_calls_keep_their_signatures():
    import inspect

    import transformers.trainer

    from checkpoints import CheckpointingMixin

    Trainer = transformers.Trainer
    ours = {name for cls in (CheckpointingMixin, llada_cpt.XDLMTrainer) for name, f in vars(cls).items()
            if callable(f) and name != "__init__" and hasattr(Trainer, name)}
    assert ours == OVERRIDES, f"methods of ours that override the Trainer's: {sorted(ours)}; {RECHECK}"
    source = inspect.getsource(transformers.trainer)
    for name in OVERRIDES:
        mine = next(vars(c)[name] for c in llada_cpt.XDLMTrainer.__mro__ if name in vars(c))
        params = inspect.signature(mine).parameters.values()
        named = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
        catch_all = any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)
        theirs = list(inspect.signature(getattr(Trainer, name)).parameters)
        assert (theirs[:len(named)] if catch_all else theirs) == named, f"{name}{theirs}, ours {named}; {RECHECK}"
        if name.startswith("_"):
            assert f"self.{name}(" in source, f"the Trainer no longer calls {name}; {RECHECK}"
    for name, leading in CALLED.items():
        theirs = tuple(inspect.signature(getattr(Trainer, name)).parameters)
        assert theirs[:len(leading)] == leading, f"{name}{theirs}; {RECHECK}"
    assert "save_total_limit=self.args.save_total_limit" in inspect.getsource(Trainer._save_checkpoint), RECHECK
    assert "self.model_accepts_loss_kwargs" in inspect.getsource(Trainer.training_step), RECHECK
