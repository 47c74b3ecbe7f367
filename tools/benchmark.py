#!/usr/bin/env python
"""Time the jobs: pairs, folder transfer and video frames, ours vs the official per-pair loop.

    python tools/benchmark.py --ckpt pretrained_models/blendgan.pt --psp pretrained_models/psp_encoder.pt \
        --device cpu --batch 8 --faces 4 --styles 4 --pairs 8 --frames 16 --json-out bench.jsonl

Prints images/s, ms per image and effective GFLOP/s (FLOPs of the direct convolutions,
counted with ``torch.utils.flop_counter`` on the real networks) as a fraction of a measured float32
matmul peak on the same device, plus the process's peak RSS; appends one JSON line.

The "official loop" rows replay what the official scripts do per output, with our
modules: batch 1, the face and the style re-encoded for every (face, style) pair, the
natural and the stylized image synthesized separately.
"""
import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blendgan import BlendGAN, io  # noqa: E402
from blendgan import jobs, synthesis  # noqa: E402
from blendgan.runtime import PRECISIONS, configure_backends, cpu_name  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeat=1):
    """Best of ``repeat`` wall-clock runs of ``fn()`` (seconds)."""
    best = float("inf")
    for _ in range(repeat):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def matmul_peak(device, dtype=torch.float32, n=None, repeat=5):
    """Measured matmul throughput in GFLOP/s at the benchmark's precision (n×n×n products)."""
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    return 2 * n ** 3 / timed(lambda: a @ b, device, repeat) / 1e9


def count_flops(fn):
    """FLOPs of ``fn()`` in the direct formulation: counted with autograd on, where every
    convolution is a plain one.  The CPU's Winograd path does fewer multiplications for the
    same result, so the rates printed are effective ones (direct FLOPs over time)."""
    from torch.utils.flop_counter import FlopCounterMode
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} ({torch.get_num_threads()} threads)"


def synthetic_images(folder: Path, count: int, seed: int, size=(320, 288)):
    """Smooth random RGB images (the networks' cost does not depend on content)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        io.write_image(folder / f"{i:03d}.png", io.resize(small, size[0])[:size[1]], "png")
    return folder


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--psp", required=True)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--pairs", type=int, default=8, help="generated pairs")
    ap.add_argument("--faces", type=int, default=4)
    ap.add_argument("--styles", type=int, default=4)
    ap.add_argument("--frames", type=int, default=16, help="video frames")
    ap.add_argument("--baseline", action="store_true", help="also time the official per-pair loop")
    ap.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32",
                    help="as the blendgan commands: fp32 is strict float32 on CUDA too, tf32 allows TF32")
    ap.add_argument("--compile", action="store_true", help="torch.compile the synthesis network")
    ap.add_argument("--repeat", type=int, default=1, help="best of N runs (use 2 with --compile)")
    ap.add_argument("--json-out", default=None)
    a = ap.parse_args()
    configure_backends(a.precision)  # as the commands do: strict fp32 unless tf32, cuDNN autotuning

    model = BlendGAN.from_pretrained(a.ckpt, psp_encoder=a.psp, device=a.device, dtype=a.precision)
    dev = model.device
    if a.compile:
        model.compile_synthesis()
    S = model.size
    peak = matmul_peak(dev, model.dtype)
    tmp = Path(tempfile.mkdtemp(prefix="blendgan-bench-"))
    faces = synthetic_images(tmp / "faces", a.faces, 1)
    styles = synthetic_images(tmp / "styles", a.styles, 2, size=(300, 256))
    face_t = io.to_tensor(io.read_image(next(faces.iterdir())), dev)
    style_t = io.to_tensor(io.read_image(next(styles.iterdir())), dev)
    z = torch.randn(1, 512, device=dev)

    f_gen = count_flops(lambda: model.synthesize(z=z))
    f_style = count_flops(lambda: model.embed_style(style_t))
    f_psp = count_flops(lambda: model.encode_face(face_t))
    with torch.inference_mode():
        model.synthesize(z=z)  # warm-up
    rows = []

    def report(name, seconds, images, flops):
        rows.append({"workload": name, "images": images, "seconds": round(seconds, 4),
                     "images_per_s": round(images / seconds, 4), "ms_per_image": round(1000 * seconds / images, 2),
                     "gflop_per_s": round(flops / seconds / 1e9, 2),
                     "fraction_of_peak": round(flops / seconds / 1e9 / peak, 4)})

    with torch.inference_mode():
        # generate pairs: natural + stylized per pair
        secs = timed(lambda: jobs.run_pairs(model, tmp / "pairs", pics=a.pairs, batch_size=a.batch, overwrite=True,
                                         progress=False), dev, a.repeat)
        report("pairs (per pair)", secs, a.pairs, a.pairs * 2 * f_gen)
        # folder transfer: each face and style encoded once
        n = a.faces * a.styles
        secs = timed(lambda: jobs.run_transfer(model, faces, styles, tmp / "transfer", batch_size=a.batch,
                                            overwrite=True, progress=False), dev, a.repeat)
        report("transfer (per pair)", secs, n, n * f_gen + a.faces * f_psp + a.styles * f_style)
        # video frames: generator only, style code interpolated
        w_plus = model.encode_face(face_t)
        zs = model.embed_style(torch.cat([style_t, style_t.flip(3)]))
        alphas = np.linspace(0, 1, a.frames).tolist()
        secs = timed(lambda: [None for _ in synthesis.interpolation_frames(model, w_plus, zs[:1], zs[1:], alphas,
                                                                     batch_size=a.batch)], dev, a.repeat)
        report("video (per frame)", secs, a.frames, a.frames * f_gen)

        if a.baseline:
            def official_pairs():
                for _ in range(a.pairs):
                    zz = torch.randn(1, 512, device=dev)
                    model.synthesize(z=zz)
                    model.synthesize(z=zz, z_embed=zs[:1], add_weight_index=6)
            secs = timed(official_pairs, dev)
            report("official loop: pairs (per pair)", secs, a.pairs, a.pairs * 2 * f_gen)

            def official_transfer():
                for f in sorted(faces.iterdir()):
                    for s in sorted(styles.iterdir()):
                        ze = model.embed_style(io.to_tensor(io.read_image(s), dev))
                        wp = model.encode_face(io.to_tensor(io.read_image(f), dev))
                        model.synthesize(w_plus=wp, z_embed=ze, add_weight_index=6)
            secs = timed(official_transfer, dev)
            report("official loop: transfer (per pair)", secs, n, n * (f_gen + f_psp + f_style))

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    meta = {"device": device_name(dev), "size": S, "batch": a.batch, "precision": a.precision,
            "compile": a.compile,
            "torch": torch.__version__,
            "matmul_peak_gflop_s": round(peak, 1), "gflop_generator": round(f_gen / 1e9, 1),
            "gflop_style_encoder": round(f_style / 1e9, 1), "gflop_psp": round(f_psp / 1e9, 1),
            "peak_rss_mib": round(rss)}
    print(f"device: {meta['device']}   size {S}   batch {a.batch}   {a.precision}{' compiled' if a.compile else ''}   matmul peak {peak:.0f} GFLOP/s   "
          f"GFLOP/image: generator {meta['gflop_generator']}, style encoder {meta['gflop_style_encoder']}, "
          f"pSp {meta['gflop_psp']}   peak RSS {meta['peak_rss_mib']} MiB")
    print(f"{'workload':36s} {'images/s':>9s} {'ms/image':>9s} {'GFLOP/s':>9s} {'of peak':>8s}")
    for r in rows:
        print(f"{r['workload']:36s} {r['images_per_s']:9.3f} {r['ms_per_image']:9.1f} {r['gflop_per_s']:9.1f} "
              f"{100 * r['fraction_of_peak']:7.1f}%")
    emit_json(meta, rows, a.json_out)


def emit_json(meta: dict, rows: list, path=None) -> None:
    """Print one JSON line of ``meta`` and ``rows``; append it to ``path`` too when given."""
    line = json.dumps({**meta, "rows": rows})
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
