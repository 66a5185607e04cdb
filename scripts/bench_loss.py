"""Fused linear + XDLM loss against the reference path, side by side in one run.

reference: logits = hidden @ W.T, then xdlm_loss(...).sum(), forward + backward
fused:     linear_xdlm_loss(hidden, W, ...), forward + backward
Each path runs in its own process (so one's memory cannot hide in the other's). Transient
memory is the process's peak memory minus what it held before the loss (the inputs) and
minus the input gradients, which both paths must hold; it is reported as a fraction of
the float32 logits [B, L, N]. Also checks that loss and gradients agree: a disagreement
beyond the dtype's tolerance exits with status 1 (memory and time targets are only reported).

usage: python scripts/bench_loss.py [--L 1024 --d 256 --N 126464 --k 0.1] [--device cuda] [--json]
(--json: one JSON object on stdout instead of the text, with per dtype the measured ratios,
relative errors and the tolerance, for scripts/gpu_check.py and the tests)
(on a GPU the peak is torch.cuda.max_memory_allocated; on CPU the process's peak RSS, VmHWM)
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from plan import reset_peak_resident_memory, resident_memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child(args):
    import torch

    sys.path.insert(0, ROOT)
    from xdlm_loss import corrupt, linear_xdlm_loss, xdlm_loss

    torch.manual_seed(0)
    dev, dtype = args.device, getattr(torch, args.dtype)
    mask_id = args.N - 128
    # warm up the kernels on small shapes so that library start-up is not counted
    small = torch.randn(4, 8, args.d, device=dev, dtype=dtype, requires_grad=True)
    w_small = torch.randn(64, args.d, device=dev, dtype=dtype, requires_grad=True)
    run_path(args.path, small, w_small, torch.randint(0, 32, (4, 8), device=dev), 40, 0.1, xdlm_loss, linear_xdlm_loss,
             corrupt)

    hidden = (torch.randn(args.B, args.L, args.d, device=dev) * 2).to(dtype).requires_grad_()
    weight = (torch.randn(args.N, args.d, device=dev) / args.d ** 0.5).to(dtype).requires_grad_()
    clean = torch.randint(0, mask_id, (args.B, args.L), device=dev)
    grad_bytes = hidden.numel() * hidden.element_size() + weight.numel() * weight.element_size()
    if dev == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        reset_peak_resident_memory()
        before = resident_memory()[0]
    loss, gh, gw = run_path(args.path, hidden, weight, clean, mask_id, args.k, xdlm_loss, linear_xdlm_loss, corrupt)
    if dev == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resident_memory()[1]
    transient = peak - before - grad_bytes
    times = []
    for _ in range(args.repeats):
        hidden.grad = weight.grad = None
        t = time.perf_counter()
        run_path(args.path, hidden, weight, clean, mask_id, args.k, xdlm_loss, linear_xdlm_loss, corrupt)
        if dev == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    torch.save({"loss": loss, "gh": gh, "gw": gw}, args.out)
    print(json.dumps({"transient": transient, "time": statistics.median(times)}))


def run_path(path, hidden, weight, clean, mask_id, k, xdlm_loss, linear_xdlm_loss, corrupt):
    import torch

    g = torch.Generator(device=hidden.device).manual_seed(1)
    B = hidden.shape[0]
    alpha = torch.rand(B, generator=g, device=hidden.device) * 0.9 + 0.05
    noisy = corrupt(clean, alpha, k, mask_id, weight.shape[0], generator=g)
    hidden.grad = weight.grad = None
    if path == "reference":
        loss = xdlm_loss(hidden @ weight.t(), noisy, clean, alpha, k, mask_id).sum()
    else:
        loss = linear_xdlm_loss(hidden, weight, noisy, clean, alpha, k, mask_id)
    loss.backward()
    return loss.detach(), hidden.grad, weight.grad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--B", type=int, default=1)
    ap.add_argument("--L", type=int, default=1024)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--N", type=int, default=126464)
    ap.add_argument("--k", type=float, default=0.1)
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the text")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--dtype", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    import tempfile

    import torch

    sys.path.insert(0, ROOT)
    from xdlm_loss import FUSED_LOSS_TOLERANCE

    logits_bytes = args.B * args.L * args.N * 4
    say = (lambda *a: None) if args.json else print
    say(f"B={args.B} L={args.L} d={args.d} N={args.N} k={args.k} on {args.device}; "
        f"float32 logits = {logits_bytes / 2**20:.0f} MiB")
    ok, parity, report = True, True, dict(shape=dict(B=args.B, L=args.L, d=args.d, N=args.N, k=args.k),
                                          device=args.device, logits_bytes=logits_bytes, dtypes={})
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in args.dtypes.split(","):
            res = {}
            for path in ("reference", "fused"):
                out = os.path.join(tmp, f"{path}-{dtype}.pt")
                cmd = [sys.executable, __file__, "--child", "--path", path, "--dtype", dtype, "--out", out,
                       "--device", args.device, "--repeats", str(args.repeats)] + \
                      [f"--{n}={getattr(args, n)}" for n in ("B", "L", "d", "N", "k")]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode:
                    sys.exit(f"{path} {dtype} failed:\n{proc.stderr[-3000:]}")
                res[path] = dict(json.loads(proc.stdout.strip().splitlines()[-1]), **torch.load(out))
            ref, fus = res["reference"], res["fused"]
            rel = lambda a, b: ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()  # noqa: E731
            errs = [abs(fus["loss"].item() / ref["loss"].item() - 1), rel(fus["gh"], ref["gh"]),
                    rel(fus["gw"], ref["gw"])]
            mem_ratio = fus["transient"] / logits_bytes
            time_ratio = fus["time"] / ref["time"]
            tol = FUSED_LOSS_TOLERANCE[dtype]
            report["dtypes"][dtype] = dict(
                reference_transient_over_logits=ref["transient"] / logits_bytes, fused_transient_over_logits=mem_ratio,
                time_fused_over_reference=time_ratio,
                relative_error=dict(zip(("loss", "grad_hidden", "grad_head_weight"), errs)), tolerance=tol)
            say(f"{dtype}: transient memory reference {ref['transient'] / logits_bytes:.2f}x logits, "
                f"fused {mem_ratio:.3f}x logits (fused/reference {fus['transient'] / ref['transient']:.3f}; "
                f"target <= 0.25x logits); time fused/reference {time_ratio:.3f} (target <= 1.10); "
                f"relative error loss {errs[0]:.1e}, grad hidden {errs[1]:.1e}, grad weight {errs[2]:.1e} "
                f"(tolerance {tol:g})")
            parity &= max(errs) <= tol
            ok &= mem_ratio <= 0.25 and time_ratio <= 1.10
    report.update(parity=parity, targets_met=ok and parity)
    if args.json:
        print(json.dumps(report))
    say("all targets met" if ok and parity else "some targets missed")
    if not parity:
        sys.exit("fused and reference losses or gradients disagree beyond the tolerance")


if __name__ == "__main__":
    main()
