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

import llada_cpt
from local_data import write_fineweb_like, write_jsonl
from xdlm_loss import corrupt as real_corrupt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def logged_losses(output_dir):
    with open(os.path.join(output_dir, "trainer_state.json")) as f:
        return [e["loss"] for e in json.load(f)["log_history"] if "loss" in e]


def run(cmd, cwd, timeout=900, **env):
    full_env = dict(os.environ, PYTHON=sys.executable, **env)
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout + proc.stderr


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


@pytest.fixture(scope="module")
def text_file(tmp_path_factory, corpus_texts):
    return write_jsonl(str(tmp_path_factory.mktemp("data") / "train.jsonl"), [{"text": t} for t in corpus_texts[:40]])


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
    assert "auto_map" not in json.load(open(os.path.join(out, "config.json")))


def test_paper_flags_under_deepspeed_zero2_with_two_processes_then_resume(tmp_path, corpus_texts, llada_dir):
    """The paper's command line, flag for flag (sizes shrunk to a CPU): two CPU processes,
    ZeRO-2, a streamed FineWeb-Edu-layout dataset; then resuming continues the step count."""
    data = write_fineweb_like(str(tmp_path / "fineweb-edu"), corpus_texts[:60])
    cmd = [os.path.join(os.path.dirname(sys.executable), "deepspeed"), "--num_gpus", "2", "--master_port", "29517",
           os.path.join(ROOT, "llada_cpt.py"),
           "--deepspeed", os.path.join(ROOT, "ds_zero2_bf16_config_simp.json"), "--config_name", llada_dir,
           "--tokenizer_name", llada_dir, "--model_name_or_path", llada_dir, "--dataset_name", data,
           "--dataset_config_name", "sample-10BT", "--streaming", "--block_size", "128",
           "--per_device_train_batch_size", "1", "--do_train", "--output_dir", "./checkpoints",
           "--bf16", "--gradient_accumulation_steps", "2", "--lr_scheduler_type", "constant_with_warmup",
           "--learning_rate", "2e-5", "--weight_decay", "0.1", "--max_grad_norm", "1.0", "--warmup_steps", "100",
           "--logging_steps", "2", "--save_steps", "1", "--dataloader_num_workers", "4",
           "--preprocessing_num_workers", "16", "--report_to", "wandb", "--remove_unused_columns", "False",
           "--ddp_find_unused_parameters", "False", "--load_best_model_at_end", "False", "--training_method", "xdm",
           "--trust_remote_code", "True"]
    env = dict(WANDB_DIR=str(tmp_path), TORCH_EXTENSIONS_DIR=os.path.join(ROOT, ".torch_extensions"))
    log = run(cmd + ["--overwrite_output_dir", "--max_steps", "2"], cwd=str(tmp_path), **env)
    assert "Total train batch size (w. parallel, distributed & accumulation) = 4" in log  # 1 x 2 accumulation x 2 ranks
    ckpt = tmp_path / "checkpoints"
    assert (ckpt / "checkpoint-2").is_dir() and any(p.name.startswith("global_step") for p in (ckpt / "checkpoint-2").iterdir())
    log = run(cmd + ["--max_steps", "3"], cwd=str(tmp_path), **env)
    assert "global step 2" in log
    state = json.load(open(ckpt / "trainer_state.json"))
    assert state["global_step"] == 3
    assert transformers.AutoModel.from_pretrained(str(ckpt)).config.model_type == "llada"


def test_lora_trains_adapters_on_lladas_modules_and_saves_a_merged_model(tmp_path, text_file, llada_dir):
    out = str(tmp_path / "lora")
    llada_cpt.main(base_args(out, text_file, llada_dir, "--with_lora", "--lora_r", "4"))
    from safetensors.torch import load_file

    adapter = load_file(os.path.join(out, "adapter", "adapter_model.safetensors"))
    assert adapter and all("lora_" in n for n in adapter)
    for name in llada_cpt.LLADA_MODULES:
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

    def spy(clean_ids, alpha_t, k, mask_id, vocab_size, generator=None, keep=None):
        noisy = real_corrupt(clean_ids, alpha_t, k, mask_id, vocab_size, generator=generator, keep=keep)
        seen.append((clean_ids, keep, noisy))
        return noisy

    monkeypatch.setattr(llada_cpt, "corrupt", spy)
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


def test_eval_reports_a_deterministic_nelbo_and_its_perplexity_bound(tmp_path, text_file, llada_dir):
    args = ["--model_name_or_path", llada_dir, "--validation_file", text_file, "--train_file", text_file,
            "--block_size", "64", "--do_eval", "--output_dir", str(tmp_path), "--report_to", "none",
            "--per_device_eval_batch_size", "4", "--max_eval_samples", "8", "--eval_mask_rates", "4"]
    first = llada_cpt.main(args).evaluate()
    again = llada_cpt.main(args).evaluate()
    assert first["eval_nelbo"] == again["eval_nelbo"]
    assert first["eval_ppl_bound"] == pytest.approx(torch.tensor(first["eval_nelbo"]).exp().item())


@pytest.mark.parametrize("extra, match", [
    (["--training_method", "diffusion"], "--training_method must be one of xdm, mdm, ar"),
    (["--xdlm_k", "1.5"], "--xdlm_k must lie in \\[0, 1\\]"),
    (["--training_method", "mdm", "--xdlm_k", "0.3"], "--xdlm_k applies to --training_method xdm only"),
    (["--block_size", "1024"], "--block_size 1024 exceeds the model's maximum sequence length 256"),
    (["--mask_token_id", "7"], "mask token ids disagree"),
    (["--text_column", "body"], "text column 'body' not in the train data"),
    (["--block_size", "200", "--max_train_samples", "1"], None),
    (["--model_implementation", "remote"], "--trust_remote_code True"),
    (["--with_lora", "--lora_target_modules", "q_proj,lm_head"], "--lora_target_modules must be"),
    (["--remove_unused_columns", "True"], "--remove_unused_columns must be False"),
])
def test_bad_input_fails_clearly_before_the_model_loads(tmp_path, text_file, llada_dir, monkeypatch, extra, match):
    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(llada_cpt, "load_model", no_model)
    if match is None:  # texts too short for any block: an empty training set
        tiny = write_jsonl(str(tmp_path / "short.jsonl"), [{"text": "x = 1"}] * 3)
        with pytest.raises(ValueError, match="training .*no block of 200 tokens"):
            llada_cpt.main(base_args(str(tmp_path), tiny, llada_dir, "--block_size", "200"))
        return
    with pytest.raises(ValueError, match=match):
        llada_cpt.main(base_args(str(tmp_path), text_file, llada_dir, *extra))


def test_mask_id_outside_the_vocabulary_and_missing_mask_id_fail_clearly(tokenizer):
    from modeling_llada import LLaDAConfig

    no_mask_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer, eos_token="<|endoftext|>")
    with pytest.raises(ValueError, match="mask token id 5000 is outside the model's vocabulary \\[0, 1088\\)"):
        llada_cpt.resolve_mask_id(LLaDAConfig(vocab_size=1088, mask_token_id=5000), no_mask_tok, None)
    with pytest.raises(ValueError, match="no mask token id"):
        llada_cpt.resolve_mask_id(LLaDAConfig(vocab_size=1088, mask_token_id=None), no_mask_tok, None)


def test_k_and_stratified_flags_reach_the_loss(tmp_path, text_file, llada_dir, monkeypatch):
    seen = []
    real_rate = llada_cpt.sample_mask_rate

    def spy_corrupt(clean_ids, alpha_t, k, *a, **kw):
        seen.append(("k", k))
        return real_corrupt(clean_ids, alpha_t, k, *a, **kw)

    def spy_rate(batch_size, stratified=False, **kw):
        seen.append(("stratified", stratified))
        return real_rate(batch_size, stratified=stratified, **kw)

    monkeypatch.setattr(llada_cpt, "corrupt", spy_corrupt)
    monkeypatch.setattr(llada_cpt, "sample_mask_rate", spy_rate)
    for extra, want in [(["--xdlm_k", "0.3"], {("k", 0.3), ("stratified", True)}),
                        (["--training_method", "mdm", "--stratified_t", "False"], {("k", 0.0), ("stratified", False)})]:
        seen.clear()
        llada_cpt.main(base_args(str(tmp_path / "o"), text_file, llada_dir, "--max_steps", "1", *extra))
        assert set(seen) == want
