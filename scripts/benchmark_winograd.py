#!/usr/bin/env python
"""Time the generator's 3×3 layers in CPU inference: Winograd F(4×4, 3×3) with the C++
transforms and with the PyTorch ones, against oneDNN's direct convolution, at every layer
shape of a config-F generator.

Each row is one ``StyledConv`` (modulated conv, noise, bias, leaky ReLU) on a batch of
NHWC activations, timed the three ways with the same weights; ``rule`` says which path the
generator takes for that shape (``StyledConv.uses_winograd``), so the table shows whether the
rule picks the faster path on this machine.  Prints a table naming the CPU and thread count
and one JSON line (``--json-out`` appends it to a file).

    python scripts/benchmark_winograd.py --size 256 --batch 4
    python scripts/benchmark_winograd.py --size 1024 --batch 2 --min-res 64
"""
import argparse
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blendgan.models.generator import channel_table  # noqa: E402
from blendgan.models.layers import StyledConv  # noqa: E402
from blendgan.ops import _build  # noqa: E402
from benchmark import device_name, emit_json  # noqa: E402  (scripts/benchmark.py)


def layer_shapes(size, min_res):
    """(label, in channels, out channels, input resolution, upsample) of each 3×3 layer."""
    ch = channel_table(2)
    shapes, res = [], 4
    while res < size:
        res *= 2
        if res >= min_res:
            shapes.append((f"up {res // 2}->{res}", ch[res // 2], ch[res], res // 2, True))
            shapes.append((f"conv {res}", ch[res], ch[res], res, False))
    return shapes


def median_seconds(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256, help="generator resolution (default 256)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--min-res", type=int, default=8, help="smallest output resolution timed")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json-out", type=Path, default=None)
    a = ap.parse_args(argv)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for label, cin, cout, res, up in layer_shapes(a.size, a.min_res):
        layer = StyledConv(cin, cout, 3, 512, upsample=up)
        x = torch.randn(a.batch, cin, res, res, generator=gen).contiguous(memory_format=torch.channels_last)
        style = torch.randn(a.batch, 512, generator=gen)
        out_res = 2 * res if up else res
        noise = torch.randn(1, 1, out_res, out_res, generator=gen)
        rule = layer.uses_winograd(x)
        times = {}
        with torch.inference_mode():
            for path in ("winograd", "winograd_pytorch", "direct"):
                layer.uses_winograd = (lambda _x: path != "direct")
                # the PyTorch transforms: as if the C++ extension were unavailable
                with mock.patch.object(_build, "use_native_cpu", lambda name: False) if path == "winograd_pytorch" \
                        else mock.patch.object(_build, "_lock", _build._lock):
                    times[path] = median_seconds(lambda: layer(x, style, noise), a.reps)
        rows.append({"layer": label, "in": cin, "out": cout, "input": [a.batch, cin, res, res],
                     "winograd_ms": round(1000 * times["winograd"], 2),
                     "winograd_pytorch_ms": round(1000 * times["winograd_pytorch"], 2),
                     "direct_ms": round(1000 * times["direct"], 2),
                     "speedup": round(times["direct"] / times["winograd"], 2), "rule": "winograd" if rule else "direct"})
    meta = {"device": device_name(torch.device("cpu")), "torch": torch.__version__, "size": a.size, "batch": a.batch,
            "transforms": _build.cpu_backend_info()}
    print(f"{meta['device']}   torch {meta['torch']}   generator {a.size}px   batch {a.batch}")
    print(f"Winograd transforms: {meta['transforms']}")
    print(f"{'layer':16s} {'in':>4s} {'out':>4s} {'winograd ms':>12s} {'(PyTorch tr.)':>13s} {'direct ms':>10s} "
          f"{'speedup':>8s}  rule")
    for r in rows:
        print(f"{r['layer']:16s} {r['in']:4d} {r['out']:4d} {r['winograd_ms']:12.1f} {r['winograd_pytorch_ms']:13.1f} "
              f"{r['direct_ms']:10.1f} {r['speedup']:7.2f}x  {r['rule']}")
    emit_json(meta, rows, a.json_out)


if __name__ == "__main__":
    main()
