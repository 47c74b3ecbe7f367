#!/usr/bin/env python
"""Time the generator's 3×3 layers in CPU inference: Winograd F(4×4, 3×3) with the C++
transforms and with the PyTorch ones, against oneDNN's direct convolution, at every layer
shape of a config-F generator (or, with ``--encoders``, at every stride-1 3×3 convolution
shape of the style encoder and the pSp encoder on ``--batch`` 256-px images, then both whole
encoders with their rule against all-direct).

Each row is one ``StyledConv`` (modulated conv, noise, bias, leaky ReLU) on a batch of
NHWC activations, timed the three ways with the same weights; ``rule`` says which path the
generator takes for that shape (``StyledConv.uses_winograd``), so the table shows whether the
rule picks the faster path on this machine.  Prints a table naming the CPU and thread count
and one JSON line (``--json-out`` appends it to a file).

    python tools/benchmark_winograd.py --size 256 --batch 4
    python tools/benchmark_winograd.py --size 1024 --batch 2 --min-res 64
    python tools/benchmark_winograd.py --encoders
"""
import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blendgan.models.generator import channel_table  # noqa: E402
from blendgan.models.layers import StyledConv, WinogradConv2d  # noqa: E402
from blendgan.models.psp import PSPEncoder  # noqa: E402
from blendgan.models.style_encoder import StyleEncoder  # noqa: E402
from blendgan.ops import extensions  # noqa: E402
from benchmark import device_name, emit_json  # noqa: E402  (tools/benchmark.py)


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


PATHS = ("winograd", "winograd_pytorch", "direct")


def encoder_convs(nets, img):
    """(label, layer, input) of each distinct stride-1 3×3 convolution shape met by ``nets``
    ((name, module) pairs) on ``img``, the label ending in its count."""
    found = {}

    def record(name):
        def hook(conv, args):
            x = args[0]
            if conv.kernel_size == (3, 3) and conv.stride == (1, 1):
                key = (name, conv.in_channels, conv.out_channels, x.shape[-1])
                found.setdefault(key, [conv, x.detach().clone(), 0])[2] += 1
        return hook

    for name, net in nets:
        hooks = [m.register_forward_pre_hook(record(name)) for m in net.modules() if isinstance(m, WinogradConv2d)]
        with torch.inference_mode():
            net(img)
        for h in hooks:
            h.remove()
    return [(f"{name} {res}px x{count}", conv, x.contiguous(memory_format=torch.channels_last))
            for (name, _, _, res), (conv, x, count) in found.items()]


def timed_paths(run, reps, route):
    """Median seconds of ``run()`` per path of :data:`PATHS`: Winograd with the C++ transforms,
    Winograd with the PyTorch transforms (as if the extension were unavailable), direct.
    ``route(path)`` is a context manager sending the layers down that path."""
    times = {}
    with torch.inference_mode():
        for path in PATHS:
            pytorch = mock.patch.object(extensions, "use_native_cpu", lambda name: False) \
                if path == "winograd_pytorch" else contextlib.nullcontext()
            with route(path), pytorch:
                times[path] = median_seconds(run, reps)
    return times


def row(label, cin, cout, shape, times, rule):
    return {"layer": label, "in": cin, "out": cout, "input": list(shape),
            **{f"{path}_ms": round(1000 * times[path], 2) for path in PATHS},
            "speedup": round(times["direct"] / times["winograd"], 2), "rule": "winograd" if rule else "direct"}


def time_encoders(a):
    """Rows per convolution shape of the two encoders, then one row per whole encoder (its
    rule against every convolution direct)."""
    gen = torch.Generator().manual_seed(0)
    img = torch.randn(a.batch, 3, 256, 256, generator=gen)
    nets = (("style", StyleEncoder().eval()), ("psp", PSPEncoder(14).eval()))
    rows = []
    for label, conv, x in encoder_convs(nets, img):
        with torch.inference_mode():
            rule = conv.uses_winograd(x)
        times = timed_paths(lambda: conv(x), a.reps,
                            lambda path: mock.patch.object(conv, "uses_winograd", lambda _x: path != "direct"))
        rows.append(row(label, conv.in_channels, conv.out_channels, x.shape, times, rule))
    for name, net in nets:
        times = timed_paths(lambda: net(img), a.reps, lambda path: contextlib.nullcontext() if path != "direct"
                            else mock.patch.object(WinogradConv2d, "uses_winograd", lambda self, x: False))
        rows.append(row(f"{name} (whole, rule)", 3, 0, img.shape, times, True))
    return rows


def generator_layers(a):
    """Rows per 3×3 layer shape of the generator."""
    gen = torch.Generator().manual_seed(0)
    rows = []
    for label, cin, cout, res, up in layer_shapes(a.size, a.min_res):
        layer = StyledConv(cin, cout, 3, 512, upsample=up)
        x = torch.randn(a.batch, cin, res, res, generator=gen).contiguous(memory_format=torch.channels_last)
        style = torch.randn(a.batch, 512, generator=gen)
        out_res = 2 * res if up else res
        noise = torch.randn(1, 1, out_res, out_res, generator=gen)
        rule = layer.uses_winograd(x)
        times = timed_paths(lambda: layer(x, style, noise), a.reps,
                            lambda path: mock.patch.object(layer, "uses_winograd", lambda _x: path != "direct"))
        rows.append(row(label, cin, cout, x.shape, times, rule))
    return rows


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
    ap.add_argument("--encoders", action="store_true",
                    help="time the style encoder's and pSp's convolutions instead (256-px input; --batch images)")
    a = ap.parse_args(argv)
    rows = time_encoders(a) if a.encoders else generator_layers(a)
    meta = {"device": device_name(torch.device("cpu")), "torch": torch.__version__,
            "size": 256 if a.encoders else a.size, "encoders": a.encoders, "batch": a.batch,
            "transforms": extensions.cpu_backend_info()}
    what = "encoders 256px" if a.encoders else f"generator {a.size}px"
    print(f"{meta['device']}   torch {meta['torch']}   {what}   batch {a.batch}")
    print(f"Winograd transforms: {meta['transforms']}")
    print(f"{'layer':20s} {'in':>4s} {'out':>4s} {'winograd ms':>12s} {'(PyTorch tr.)':>13s} {'direct ms':>10s} "
          f"{'speedup':>8s}  rule")
    for r in rows:
        print(f"{r['layer']:20s} {r['in']:4d} {r['out']:4d} {r['winograd_ms']:12.1f} {r['winograd_pytorch_ms']:13.1f} "
              f"{r['direct_ms']:10.1f} {r['speedup']:7.2f}x  {r['rule']}")
    emit_json(meta, rows, a.json_out)


if __name__ == "__main__":
    main()
