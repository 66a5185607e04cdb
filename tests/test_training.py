"""llada_cpt.py end to end on CPU, offline: the tiny default, the paper's flags under
DeepSpeed ZeRO-2 with two processes, resume, LoRA, conditional data, AR, evaluation,
and clear errors for bad input."""
import json
import os
import subprocess
import sys

import pytest
import torch
import transformers

import data
import llada_cpt
import model_config
import xdlm_trainer
from checkpoints import CHECKPOINT_COMPLETE
from helpers import ROOT, free_port
from local_data import write_fineweb_like, write_jsonl
from xdlm_loss import MASK_RATE_EPS
from xdlm_loss import corrupt as real_corrupt


def logged_losses(output_dir):
    with open(os.path.join(output_dir, "trainer_state.json")) as f:
        return [e["loss"] for e in json.load(f)["log_history"] if "loss" in e]


def run(cmd, cwd, timeout=900, **env):
    full_env = dict(os.environ, PYTHON=sys.executable, **env)
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_tiny_default_trains_loss_falls_and_saves_a_loadable_checkpoint(tmp_path):
    out = str(tmp_path / "tiny")
    log = run(["bash", "scripts/train_tiny.sh", "--max_steps", "40", "--output_dir", out], cwd=ROOT)
    losses = logged_losses(out)
    assert len(losses) == 40
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last <= 0.9 * first, (first, last)  # measured 0.83 (lr 1e-3, 20 warmup steps)
    assert os.path.getsize(os.path.join(out, "loss_curve.png")) > 1000
    assert os.path.exists(os.path.join(out, "model.safetensors"))
    assert "eval_nelbo" in log and "unigram cross-entropy" in log
    model = transformers.AutoModel.from_pretrained(out)
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert model.config.model_type == "llada" and tok.mask_token_id == model.config.mask_token_id


def base_args(out, data_file, model_dir, *extra):
    return ["--model_name_or_path", model_dir, "--train_file", data_file, "--block_size", "64",
            "--per_device_train_batch_size", "2", "--do_train", "--output_dir", out, "--overwrite_output_dir",
            "--max_steps", "3", "--logging_steps", "1", "--report_to", "none", "--save_strategy", "no",
            "--learning_rate", "1e-3", *extra]


def test_trained_model_reloads_to_identical_logits(tmp_path, text_file, llada_dir):
    out = str(tmp_path / "out")
    trainer = llada_cpt.main(base_args(out, text_file, llada_dir))
    model = trainer.model.eval()
    again = transformers.AutoModel.from_pretrained(out, dtype=torch.float32).eval()
    ids = torch.randint(0, 1000, (2, 32))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)
        base = transformers.AutoModel.from_pretrained(llada_dir, dtype=torch.float32)
        assert not torch.equal(base(ids).logits, again(ids).logits)  # it did train
    # LLaDA's pointers at its own code files are kept (used only with trust_remote_code, see test_data_layouts)
    assert json.load(open(os.path.join(out, "config.json")))["auto_map"]["AutoModel"] == "modeling_llada.LLaDAModelLM"


@pytest.mark.slow
def test_paper_script_trains_under_zero2_with_two_processes(tmp_path, corpus_texts, llada_dir):
    """scripts/train_llada_xdlm.sh, the paper's flags (sizes shrunk to a CPU by extra flags): two
    CPU processes, ZeRO-2, a streamed FineWeb-Edu-layout dataset, one launch. The script's
    save_total_limit keeps the last 3 checkpoints. (Killed and relaunched under ZeRO-2, training
    resumes exactly: test_resume.py.)"""
    data = write_fineweb_like(str(tmp_path / "fineweb-edu"), corpus_texts[:60])
    out = tmp_path / "checkpoints"
    cmd = ["bash", os.path.join(ROOT, "scripts", "train_llada_xdlm.sh"), "--block_size", "128",
           "--gradient_accumulation_steps", "2", "--max_steps", "5", "--save_steps", "1", "--logging_steps", "1",
           "--max_eval_samples", "8"]  # texts held out from the stream's start (default 256: more than these 60)
    env = dict(LLADA=llada_dir, DATA=data, OUT=str(out), NUM_GPUS="2", MASTER_PORT=str(free_port()),
               WANDB_DIR=str(tmp_path), TORCH_EXTENSIONS_DIR=os.path.join(ROOT, ".torch_extensions"))
    log = run(cmd, cwd=str(tmp_path), **env)
    assert "Total train batch size (w. parallel, distributed & accumulation) = 4" in log  # 1 x 2 accumulation x 2 ranks
    assert json.load(open(out / "trainer_state.json"))["global_step"] == 5
    assert (sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint-"))
            == [f"checkpoint-{i}" for i in (3, 4, 5)])
    assert all((out / f"checkpoint-{i}" / CHECKPOINT_COMPLETE).exists() for i in (3, 4, 5))
    assert any(p.name.startswith("global_step") for p in (out / "checkpoint-5").iterdir())
    assert transformers.AutoModel.from_pretrained(str(out)).config.model_type == "llada"


def test_lora_trains_adapters_on_lladas_modules_and_saves_a_merged_model(tmp_path, text_file, llada_dir):
    out = str(tmp_path / "lora")
    llada_cpt.main(base_args(out, text_file, llada_dir, "--with_lora", "--lora_r", "4"))
    from safetensors.torch import load_file

    adapter = load_file(os.path.join(out, "adapter", "adapter_model.safetensors"))
    assert adapter and all("lora_" in n for n in adapter)
    for name in llada_cpt.LORA_MODULES:
        assert any(f".blocks.1.{name}.lora_A" in n for n in adapter), name
    assert not any("transformer.ff_out.lora" in n for n in adapter)  # the output head keeps its weights
    merged = transformers.AutoModel.from_pretrained(out, dtype=torch.float32)
    base = transformers.AutoModel.from_pretrained(llada_dir, dtype=torch.float32)
    q0 = "model.transformer.blocks.0.q_proj.weight"
    assert not torch.equal(merged.state_dict()[q0], base.state_dict()[q0])


def test_conditional_data_never_noises_the_prompt(tmp_path, llada_dir, monkeypatch):
    rows = [{"prompt": f"def f{i}(x):\n    return x +", "answer": f" {i}\n\nprint(f{i}(2))"} for i in range(20)]
    data = write_jsonl(str(tmp_path / "pairs.jsonl"), rows)
    seen = []

    def spy(clean_ids, alpha_t, k, mask_id, vocab_size, generator=None, prompt_mask=None):
        noisy = real_corrupt(clean_ids, alpha_t, k, mask_id, vocab_size, generator=generator, prompt_mask=prompt_mask)
        seen.append((clean_ids, prompt_mask, noisy))
        return noisy

    monkeypatch.setattr(xdlm_trainer, "corrupt", spy)
    llada_cpt.main(base_args(str(tmp_path / "o"), data, llada_dir, "--prompt_column", "prompt"))
    assert seen
    for clean, keep, noisy in seen:
        assert keep is not None and keep[:, 0].all() and (~keep).any()
        assert torch.equal(noisy[keep], clean[keep])


def test_mdm_and_ar_train(tmp_path, text_file, llada_dir):
    for method in ("mdm", "ar"):
        out = str(tmp_path / method)
        llada_cpt.main(base_args(out, text_file, llada_dir, "--training_method", method))
        assert len(logged_losses(out)) == 3
    assert json.load(open(os.path.join(tmp_path, "ar", "config.json")))["causal"] is True


def test_eval_reports_a_deterministic_nelbo_and_its_perplexity_bound(tmp_path, text_file, llada_dir, monkeypatch):
    args = ["--model_name_or_path", llada_dir, "--validation_file", text_file, "--train_file", text_file,
            "--block_size", "64", "--do_eval", "--output_dir", str(tmp_path), "--report_to", "none",
            "--per_device_eval_batch_size", "4", "--max_eval_samples", "8", "--eval_mask_rates", "4"]
    tokenized, tokenize_and_pack = [], data.tokenize_and_pack
    monkeypatch.setattr(data, "tokenize_and_pack", lambda raw, *a: tokenized.extend(raw) or tokenize_and_pack(raw, *a))
    trainer = llada_cpt.main(args)
    assert tokenized == ["validation"]  # an evaluation alone never tokenizes the training data
    first, again = trainer.evaluate(), trainer.evaluate()  # the same trainer: the global RNG has moved on
    assert first["eval_nelbo"] == again["eval_nelbo"]
    assert first["eval_ppl_bound"] == pytest.approx(torch.tensor(first["eval_nelbo"]).exp().item())


def argv_to_json(argv, path):
    """The same arguments as a JSON file for `python llada_cpt.py args.json`."""
    args, i = {}, 0
    while i < len(argv):
        name = argv[i][2:]
        if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            value, i = argv[i + 1], i + 2
            for parse in (int, float, {"True": True, "False": False}.__getitem__):
                try:
                    value = parse(value)
                    break
                except (ValueError, KeyError):
                    pass
        else:
            value, i = True, i + 1
        args[name] = value
    with open(path, "w") as f:
        json.dump(args, f)
    return [path]


BAD_INPUT = [
    (["--training_method", "diffusion"], "--training_method must be one of xdm, mdm, ar"),
    (["--xdlm_k", "1.5"], "--xdlm_k must lie in \\[0, 1\\]"),
    (["--training_method", "mdm", "--xdlm_k", "0.3"], "--xdlm_k applies to --training_method xdm only"),
    (["--training_method", "ar", "--fused_loss", "True"], "--fused_loss applies to --training_method xdm or mdm"),
    (["--block_size", "1024"], "--block_size 1024 exceeds the model's maximum sequence length 256"),
    (["--block_size", "1"], "--block_size must be at least 2"),
    (["--text_column", "body"], "text column 'body' not in the train data"),
    (["--model_implementation", "remote"], "--trust_remote_code True"),
    (["--model_implementation", "remote", "--trust_remote_code", "True", "--training_method", "ar"],
     "--training_method ar needs causal attention"),
    (["--with_lora", "--lora_target_modules", "q_proj,lm_head"], "--lora_target_modules must be"),
    (["--remove_unused_columns", "True"], "--remove_unused_columns must be False"),
    (["--label_smoothing_factor", "0.1"], "--label_smoothing_factor must be 0, got 0.1"),
    (["--torch_dtype", "int8"], "--torch_dtype must be"),
    (["--eval_mask_rates", "0"], "--eval_mask_rates must be at least 1"),
    (["--shuffle_buffer_size", "100"], "--shuffle_buffer_size applies to --streaming only"),
    (["--streaming", "--max_steps", "-1"], "--streaming has no length: set --max_steps"),
    (["--train_file", "missing.jsonl"], "--train_file missing.jsonl does not exist"),
]


@pytest.mark.parametrize("via", ["command line", "json file"])
@pytest.mark.parametrize("extra, match", BAD_INPUT)
def test_bad_input_fails_clearly_before_the_model_loads(tmp_path, text_file, llada_dir, monkeypatch, extra, match, via):
    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(llada_cpt, "load_model", no_model)
    monkeypatch.chdir(tmp_path)
    argv = base_args(str(tmp_path), text_file, llada_dir, *extra)
    with pytest.raises(ValueError, match=match):
        llada_cpt.main(argv if via == "command line" else argv_to_json(argv, str(tmp_path / "args.json")))


def test_texts_too_short_for_a_block_fail_clearly(tmp_path, llada_dir, monkeypatch):
    monkeypatch.setattr(llada_cpt, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    tiny = write_jsonl(str(tmp_path / "short.jsonl"), [{"text": "x = 1"}] * 3)
    with pytest.raises(ValueError, match="training .*no block of 200 tokens"):
        llada_cpt.main(base_args(str(tmp_path), tiny, llada_dir, "--block_size", "200"))


@pytest.mark.parametrize("extra", [[], ["--training_method", "ar"],
                                   ["--training_method", "mdm", "--stratified_t", "False"],
                                   ["--model_implementation", "remote", "--trust_remote_code", "True"]])
def test_command_line_and_json_file_give_the_same_arguments_and_derived_defaults(tmp_path, text_file, llada_dir, extra):
    argv = base_args(str(tmp_path), text_file, llada_dir, *extra)
    from_argv = llada_cpt.parse_args(argv)
    from_json = llada_cpt.parse_args(argv_to_json(argv, str(tmp_path / "args.json")))
    for a, b in zip(from_argv, from_json):
        assert a == b
    model_args, data_args, xdlm_args, training_args = from_json
    assert training_args.use_cpu is (not torch.cuda.is_available())
    assert training_args.remove_unused_columns is False
    assert xdlm_args.fused_loss is None  # decided once, when the config is read
    assert xdlm_args.xdlm_k == (0.1 if "--training_method" not in extra else None)
    if "remote" not in extra:  # (this model folder has no code of its own to load a remote config from)
        llada_cpt.load_config_and_tokenizer(model_args, data_args, xdlm_args)
        assert xdlm_args.fused_loss is ("ar" not in extra)  # on wherever it applies: xdm and mdm on the native model


def test_mask_id_outside_the_vocabulary_and_missing_mask_id_fail_clearly(tokenizer):
    from modeling_llada import LLaDAConfig

    no_mask_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer,
                                                       eos_token="<|endoftext|>")
    with pytest.raises(ValueError, match="mask token id 5000 is outside the model's vocabulary \\[0, 1088\\)"):
        model_config.resolve_mask_id(LLaDAConfig(vocab_size=1088, mask_token_id=5000), no_mask_tok, None)
    with pytest.raises(ValueError, match="no mask token id"):
        model_config.resolve_mask_id(LLaDAConfig(vocab_size=1088, mask_token_id=None), no_mask_tok, None)


def test_k_and_stratified_flags_reach_the_loss(tmp_path, text_file, llada_dir, monkeypatch):
    """Per step (batch 2, one process, no accumulation) stratified t are u and u + 1/2 (mod 1);
    independent t almost never are."""
    seen = []

    def spy_corrupt(clean_ids, alpha_t, k, *a, **kw):
        seen.append((k, ((1 - alpha_t - MASK_RATE_EPS) / (1 - MASK_RATE_EPS)).tolist()))
        return real_corrupt(clean_ids, alpha_t, k, *a, **kw)

    monkeypatch.setattr(xdlm_trainer, "corrupt", spy_corrupt)
    for extra, k, stratified in [(["--xdlm_k", "0.3"], 0.3, True),
                                 (["--training_method", "mdm", "--stratified_t", "False"], 0.0, False)]:
        seen.clear()
        llada_cpt.main(base_args(str(tmp_path / "o"), text_file, llada_dir, *extra))
        assert len(seen) == 3 and {k_seen for k_seen, _ in seen} == {k}
        half_apart = [abs((t1 - t0) % 1.0 - 0.5) < 1e-5 for _, (t0, t1) in seen]
        assert all(half_apart) if stratified else not any(half_apart)
