"""Checks scripts/plan.py against measurement on one device, in one table: activation + loss
memory of a training step (predicted vs measured) with the fused and the reference loss;
tokens per second and MFU; the largest micro-batch with and without the fused loss; and the
fused vs reference loss alone (scripts/bench_loss.py) at L = 4096, d = 4096. The micro-batch
search (scripts/bench_microbatch.py) and the loss alone each run in their own process, whose
--json output this reads.

usage: bash scripts/gpu_check.sh                         (GPU: the ~1.1B shape, random weights, L = 4096)
       bash scripts/gpu_check.sh --device cpu --tiny     (a smoke run at tiny sizes)

Memory of a step is measured as the growth of the peak over what the process held after the
model and its inputs were made: torch.cuda.max_memory_allocated on a GPU; on CPU the peak
resident size (VmHWM) of a fresh forked process, since the peak is a lifetime one. Each
parameter's gradient is released as soon as it is accumulated, as DeepSpeed ZeRO-2 moves it
into a bucket, so the growth is the activations and the loss (what the planner predicts).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from modeling_llada import LLaDAConfig, LLaDAModelLM  # noqa: E402
from plan import (  # noqa: E402
    GIB,
    LLADA_1B,
    LLADA_TINY,
    Shape,
    activation_bytes,
    flops_per_token,
    loss_bytes,
    resident_memory,
    xdlm_step,
)

K = 0.1  # the paper's XDLM mixing ratio
# Dense bf16 peak TFLOP/s by device name, for MFU (SXM parts).
PEAK_TFLOPS = {"H200": 989, "H100": 989, "A100": 312}


def make_model(fields, dtype, device, checkpointing):
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build in the final dtype: a float32 copy would set the peak
    try:
        model = LLaDAModelLM(LLaDAConfig(**fields)).to(device)
    finally:
        torch.set_default_dtype(default)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    return model


def measure_step(fields, batch, L, fused, checkpointing, device, dtype=torch.bfloat16):
    """Peak memory growth (bytes) of one forward + backward beyond the model and its inputs."""
    model = make_model(fields, dtype, device, checkpointing)
    hooks = [p.register_post_accumulate_grad_hook(lambda p: setattr(p, "grad", None)) for p in model.parameters()]
    xdlm_step(model, 1, 16, K, fused, device)  # load the kernels at a tiny size first
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before, hwm_before = resident_memory()
    xdlm_step(model, batch, L, K, fused, device)
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resident_memory()[1]
        if peak <= hwm_before:
            raise RuntimeError("the step did not raise the process's peak memory: the measurement is void")
    for h in hooks:
        h.remove()
    return peak - before


def measure_in_fresh_process(fields, batch, L, fused, checkpointing):
    """CPU: measure in a forked child, whose lifetime peak starts at the parent's current size."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read)
        code = 0
        try:
            result = measure_step(fields, batch, L, fused, checkpointing, "cpu")
        except Exception as e:  # report to the parent, never fall back into its code
            result, code = repr(e), 1
        with os.fdopen(write, "w") as f:
            json.dump(result, f)
        os._exit(code)
    os.close(write)
    with os.fdopen(read) as f:
        result = json.load(f)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"measurement failed: {result}")
    return result


def memory_case(fields, batch, L, fused, checkpointing, device):
    """Predicted and measured activation + loss memory of one step (bytes)."""
    shape = Shape.from_config(LLaDAConfig(**fields))
    # PyTorch's fused SDPA kernel runs on both CPU and GPU here (no attention mask in training).
    predicted = activation_bytes(shape, batch, L, 2, fused, checkpointing, attention="flash")["peak"]
    if device == "cpu":
        measured = measure_in_fresh_process(fields, batch, L, fused, checkpointing)
    else:
        measured = measure_step(fields, batch, L, fused, checkpointing, device)
        torch.cuda.empty_cache()
    return predicted, measured


def tokens_per_second(fields, L, device, repeats):
    model = make_model(fields, torch.bfloat16, device, False)
    xdlm_step(model, 1, L, K, True, device)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        xdlm_step(model, 1, L, K, True, device)
    if device == "cuda":
        torch.cuda.synchronize()
    return repeats * L / (time.perf_counter() - t)


def size(n):
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / 2 ** 20:.1f} MiB"


def predicted_largest_batch(shape, L, fused, budget, max_batch):
    """The planner's largest power-of-two micro-batch (as bench_microbatch searches) whose
    activations + loss fit into budget bytes."""
    best, b = 0, 1
    while b <= max_batch and activation_bytes(shape, b, L, 2, fused)["peak"] <= budget:
        best, b = b, b * 2
    return best


def run_json(script, *args):
    """A benchmark of scripts/ in its own process (its memory cannot mix with this one's): its --json output."""
    proc = subprocess.run([sys.executable, os.path.join(HERE, script), *map(str, args), "--json"],
                          capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{script} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (a smoke run, e.g. on CPU)")
    ap.add_argument("--L", type=int, help="sequence length (default 4096; 64 with --tiny)")
    ap.add_argument("--loss_L", type=int, help="L of the loss-alone comparison (default 4096; 128 with --tiny)")
    ap.add_argument("--loss_d", type=int, help="d of the loss-alone comparison (default 4096; 64 with --tiny)")
    ap.add_argument("--max_batch", type=int, help="the micro-batch search's ceiling (default 256; 2 with --tiny)")
    ap.add_argument("--repeats", type=int,
                    help="timed repeats of the step and of the loss alone (default 5; 1 with --tiny)")
    ap.add_argument("--peak_tflops", type=float, help="device's dense bf16 peak (default: by its name on GPUs)")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no GPU is visible; use --device cpu --tiny for a smoke run")
    for name in ("L", "loss_L", "loss_d", "max_batch", "repeats", "peak_tflops"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            sys.exit(f"--{name} must be positive, got {value}")
    fields = dict(LLADA_TINY if args.tiny else LLADA_1B)
    L = args.L or (64 if args.tiny else 4096)
    fields["max_sequence_length"] = max(fields["max_sequence_length"], L)
    shape = Shape.from_config(LLaDAConfig(**fields))
    loss_L = args.loss_L or (128 if args.tiny else 4096)
    repeats = args.repeats or (1 if args.tiny else 5)
    loss_d = args.loss_d or (64 if args.tiny else 4096)
    max_batch = args.max_batch or (2 if args.tiny else 256)
    peak = args.peak_tflops
    if peak is None and args.device == "cuda":
        name = torch.cuda.get_device_name()
        peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"{device_name}: {shape.params() / 1e6:,.0f}M-parameter LLaDA shape {fields}, bf16, random weights, "
          f"k = {K}, {time.strftime('%Y-%m-%d')}")
    rows = []
    for fused in (True, False):
        predicted, measured = memory_case(fields, 1, L, fused, False, args.device)
        rows.append((f"activations + loss, L = {L}, micro-batch 1, {'fused' if fused else 'reference'} loss",
                     size(predicted), f"{size(measured)} ({measured / predicted - 1:+.0%})"))

    tps = tokens_per_second(fields, L, args.device, repeats)
    achieved = tps * flops_per_token(shape, L) / 1e12
    mfu = f"{achieved / peak:.1%} of {peak:g} TFLOP/s" if peak else "n/a (no --peak_tflops)"
    rows.append((f"tokens/s, L = {L}, micro-batch 1, fused (forward + backward)", "", f"{tps:,.0f}"))
    rows.append(("model TFLOP/s, MFU", "", f"{achieved:.1f}, {mfu}"))

    if args.device == "cuda":
        torch.cuda.empty_cache()  # leave the search's process all the memory this one does not hold
    search = run_json("bench_microbatch.py", "--L", L, "--k", K, "--device", args.device, "--dtype", "bfloat16",
                      "--max_batch", max_batch, *(["--tiny"] if args.tiny else []))
    for fused in (True, False):
        measured = search["largest_micro_batch"]["fused" if fused else "reference"]
        budget = search["activation_budget_bytes"]
        predicted = predicted_largest_batch(shape, L, fused, budget, max_batch) if budget is not None else "n/a"
        rows.append((f"largest micro-batch (powers of 2 up to {max_batch}), {'fused' if fused else 'reference'} loss",
                     str(predicted), str(measured)))

    shape_loss = Shape(loss_d, 1, 1, 1, 1, fields["embedding_size"])
    bench = run_json("bench_loss.py", "--L", loss_L, "--d", loss_d, "--N", fields["embedding_size"],
                     "--dtypes", "bfloat16", "--device", args.device, "--repeats", repeats)["dtypes"]["bfloat16"]
    logits = loss_L * fields["embedding_size"] * 4
    for fused in (True, False):
        # bench_loss counts the transient beyond the inputs and their two gradients.
        grads = 2 * loss_L * loss_d + 2 * fields["embedding_size"] * loss_d
        extra = loss_bytes(shape_loss, loss_L, 2, fused) - 2 * loss_L * loss_d - grads
        measured = f"{bench['fused_transient_over_logits' if fused else 'reference_transient_over_logits']:.3f}"
        rows.append((f"loss alone, L = {loss_L}, d = {loss_d}: transient / float32 logits, "
                     f"{'fused' if fused else 'reference'}", f"{extra / logits:.2f}", measured))
    rows.append(("loss alone: time fused / reference", "", f"{bench['time_fused_over_reference']:.3f}"))

    width = max(len(r[0]) for r in rows)
    print(f"| {'quantity':<{width}} | predicted | measured |")
    print(f"| {'-' * width} | --- | --- |")
    for r in rows:
        print(f"| {r[0]:<{width}} | {r[1]} | {r[2]} |")


if __name__ == "__main__":
    main()
