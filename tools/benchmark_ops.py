#!/usr/bin/env python
"""Time our CUDA ops against the PyTorch reference paths at the 1024px StyleGAN2 generator's shapes.

Rows (channel_multiplier 2: 512 channels up to 64px, then 256, 128, 64, 32 at 128..1024px):

* ``bias_act``  fused bias + lrelu on each layer's activations      [N, C(r), r, r], r = 4..1024
* ``blur``      the FIR blur after each upsampling transposed conv  [N, C(r), r+1, r+1] -> [N, C(r), r, r]
                (up=1, pad=(1,1), 4x4 kernel * 4)
* ``torgb_up``  ToRGB skip upsampling                              [N, 3, r/2, r/2] -> [N, 3, r, r]
                (up=2, pad=(2,1), 4x4 kernel * 4)
* ``up2``       the same 2x FIR upsampling on C(r) channels         [N, C(r), r/2, r/2] -> [N, C(r), r, r]

For each: forward and forward+backward, ours vs reference, median milliseconds.  Prints a
table (with the device name) and one JSON line with every number (``--json-out`` also
appends that line to a file).  Without CUDA only the reference path is timed on CPU.

    python tools/benchmark_ops.py --quick            # small shapes (r <= 32), any device
    python tools/benchmark_ops.py --batch 4 --dtype fp16
"""
import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blendgan.ops import extensions, fused_bias_act_ref, upfirdn2d_ref  # noqa: E402

CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128, 512: 64, 1024: 32}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def blur_kernel(device, dtype):
    k = torch.tensor([1.0, 3.0, 3.0, 1.0], device=device, dtype=torch.float32)
    k = k[:, None] * k[None, :]
    return (k / k.sum() * 4).to(dtype)


def workloads(resolutions, batch):
    """(op, label, input shape, kwargs) for every benchmarked layer."""
    out = []
    for r in resolutions:
        out.append(("bias_act", f"[{batch},{CHANNELS[r]},{r},{r}]", (batch, CHANNELS[r], r, r), {}))
    upsampled = [r for r in resolutions if r >= 8]
    for r in upsampled:
        out.append(("blur", f"[{batch},{CHANNELS[r]},{r + 1},{r + 1}]", (batch, CHANNELS[r], r + 1, r + 1),
                    dict(up=(1, 1), down=(1, 1), pad=(1, 1, 1, 1))))
    for r in upsampled:
        out.append(("torgb_up", f"[{batch},3,{r // 2},{r // 2}]", (batch, 3, r // 2, r // 2),
                    dict(up=(2, 2), down=(1, 1), pad=(2, 1, 2, 1))))
    for r in upsampled:
        out.append(("up2", f"[{batch},{CHANNELS[r]},{r // 2},{r // 2}]", (batch, CHANNELS[r], r // 2, r // 2),
                    dict(up=(2, 2), down=(1, 1), pad=(2, 1, 2, 1))))
    return out


def timer(fn, device, reps, min_time=0.2):
    """Median milliseconds of ``fn()`` (warm-up first; at least 3 runs, at most ``reps``)."""
    fn()
    fn()
    times = []
    start_all = time.perf_counter()
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        if len(times) >= 3 and time.perf_counter() - start_all > max(min_time, 0) and device.type != "cuda":
            break
    return statistics.median(times)


def make_fns(op, shape, kwargs, impl, device, dtype):
    """(forward, forward+backward) closures for one workload and implementation."""
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(shape, device=device, dtype=dtype, generator=gen)
    if op == "bias_act":
        b = torch.randn(shape[1], device=device, dtype=dtype, generator=gen)
        if impl == "ours":
            from blendgan.ops import bias_act_cuda
            call = lambda x, b: bias_act_cuda.bias_act(x, b, "lrelu", 0.2, math.sqrt(2), 1)
        else:
            call = lambda x, b: fused_bias_act_ref(x, b, "lrelu", 0.2, math.sqrt(2), 1)
        xg, bg = x.clone().requires_grad_(), b.clone().requires_grad_()
        grad = torch.randn(shape, device=device, dtype=dtype, generator=gen)

        def fwd():
            with torch.no_grad():
                return call(x, b)

        def fwd_bwd():
            call(xg, bg).backward(grad)
            xg.grad = bg.grad = None
        return fwd, fwd_bwd

    k = blur_kernel(device, dtype)
    if impl == "ours":
        from blendgan.ops import upfirdn2d_cuda
        call = lambda x: upfirdn2d_cuda.upfirdn2d(x, k, kwargs["up"], kwargs["down"], kwargs["pad"])
    else:
        call = lambda x: upfirdn2d_ref(x, k, kwargs["up"], kwargs["down"], kwargs["pad"])
    xg = x.clone().requires_grad_()
    with torch.no_grad():
        out_shape = call(x).shape
    grad = torch.randn(out_shape, device=device, dtype=dtype, generator=gen)

    def fwd():
        with torch.no_grad():
            return call(x)

    def fwd_bwd():
        call(xg).backward(grad)
        xg.grad = None
    return fwd, fwd_bwd


def fmt(v):
    return f"{'-':>9}" if v is None else f"{v:9.3f}"


def ratio(ref, ours):
    return "-" if ref is None or ours is None else f"{ref / ours:6.2f}x"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes only (resolution <= 32)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 4, or 2 with --quick)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--reps", type=int, default=20, help="timed repetitions per measurement")
    parser.add_argument("--max-res", type=int, default=1024, help="largest resolution to time")
    parser.add_argument("--json-out", type=Path, default=None, help="also append the JSON line here")
    args = parser.parse_args(argv)

    batch = args.batch or (2 if args.quick else 4)
    max_res = min(args.max_res, 32 if args.quick else 1024)
    resolutions = [r for r in CHANNELS if r <= max_res]
    dtype = DTYPES[args.dtype]

    notes = []
    if torch.cuda.is_available():
        device = torch.device("cuda")
        device_name = torch.cuda.get_device_name()
        impls = ["ours", "ref"]
        for name in ("bias_act", "upfirdn2d"):
            if extensions.get_module(name) is None:
                notes.append(f"our {name} kernel is unavailable ({extensions.failures.get(name)}); reference only")
        if notes:
            impls = ["ref"]
    else:
        device = torch.device("cpu")
        device_name = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
        impls = ["ref"]
        notes.append("CUDA is unavailable: timing the PyTorch reference path on CPU only")
        if dtype != torch.float32:
            notes.append(f"{args.dtype} on CPU is slow and unrepresentative; consider fp32")

    print(f"device: {device_name}")
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), dtype {args.dtype}, batch {batch}")
    for note in notes:
        print(f"note: {note}")
    header = (f"{'op':<9} {'input':<22} {'ours fwd':>9} {'ref fwd':>9} {'speedup':>8} "
              f"{'ours f+b':>9} {'ref f+b':>9} {'speedup':>8}   (ms, median)")
    print(header)
    print("-" * len(header))

    results = []
    for op, label, shape, kwargs in workloads(resolutions, batch):
        row = {"op": op, "shape": list(shape), **{k: list(v) for k, v in kwargs.items()}}
        for impl in ("ours", "ref"):
            if impl not in impls:
                row[f"{impl}_fwd_ms"] = row[f"{impl}_fwd_bwd_ms"] = None
                continue
            try:
                fwd, fwd_bwd = make_fns(op, shape, kwargs, impl, device, dtype)
                row[f"{impl}_fwd_ms"] = timer(fwd, device, args.reps)
                row[f"{impl}_fwd_bwd_ms"] = timer(fwd_bwd, device, args.reps)
            except torch.OutOfMemoryError:
                row[f"{impl}_fwd_ms"] = row[f"{impl}_fwd_bwd_ms"] = None
                row[f"{impl}_error"] = "out of memory"
            finally:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        results.append(row)
        print(f"{op:<9} {label:<22} {fmt(row['ours_fwd_ms'])} {fmt(row['ref_fwd_ms'])} "
              f"{ratio(row['ref_fwd_ms'], row['ours_fwd_ms']):>8} {fmt(row['ours_fwd_bwd_ms'])} "
              f"{fmt(row['ref_fwd_bwd_ms'])} {ratio(row['ref_fwd_bwd_ms'], row['ours_fwd_bwd_ms']):>8}",
              flush=True)

    record = {"benchmark": "blendgan_ops", "device": device_name, "cuda": device.type == "cuda",
              "torch": torch.__version__, "dtype": args.dtype, "batch": batch, "quick": args.quick,
              "notes": notes, "results": results}
    line = json.dumps(record)
    print(line)
    if args.json_out is not None:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        with args.json_out.open("a") as fh:
            fh.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
