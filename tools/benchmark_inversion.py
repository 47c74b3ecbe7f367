#!/usr/bin/env python
"""Time face inversion and measure what it gives: seconds per face and reconstruction loss
(:mod:`blendgan.inversion`) for psp, optimize and pti.

    python tools/benchmark_inversion.py --ckpt pretrained_models/blendgan.pt \
        --psp pretrained_models/psp_encoder.pt --faces test_imgs/face_imgs --steps 100 --json-out inv.jsonl

Every face of ``--faces`` (an image or a folder) is inverted alone by each method; prints per
face and method the loss before (the pSp codes) and after and the seconds taken, then the
means, and appends one JSON line (with the machine, its CPU, threads and load average).
"""
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blendgan import BlendGAN, io  # noqa: E402
from blendgan.inversion import METHODS  # noqa: E402
from blendgan.runtime import cpu_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]



def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--psp", required=True, help="psp_encoder.pt")
    p.add_argument("--faces", default=str(ROOT / "test_imgs" / "face_imgs"), help="face image or folder")
    p.add_argument("--steps", type=int, default=100, help="--invert-steps (pti: as many again tuning)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma list (default %(default)s)")
    p.add_argument("--max-faces", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--json-out", default=None)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    methods = [m for m in a.methods.split(",") if m]
    if any(m not in METHODS for m in methods) or a.steps < 0:
        p.error(f"--methods must be from {METHODS} and --steps >= 0")
    model = BlendGAN.from_pretrained(a.ckpt, psp_encoder=a.psp, device=a.device)
    faces = io.input_images(a.faces, "face")[:a.max_faces]
    rows = []
    for path in faces:
        x = io.to_tensor(io.read_image(path), model.device)
        for method in methods:
            t = time.perf_counter()
            inv = model.invert(x, method, a.steps)
            seconds = time.perf_counter() - t
            rows.append({"face": path.name, "method": method, "loss_before": float(inv.start_loss),
                         "loss_after": float(inv.loss), "seconds": seconds})
            print(f"{path.name:36s} {method:9s} loss {float(inv.start_loss):.4f} -> {float(inv.loss):.4f}  "
                  f"{seconds:7.1f} s", flush=True)
            del inv
    summary = {}
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        summary[method] = {k: sum(r[k] for r in mine) / len(mine) for k in ("loss_before", "loss_after", "seconds")}
        print(f"mean {method:9s} loss {summary[method]['loss_before']:.4f} -> {summary[method]['loss_after']:.4f}  "
              f"{summary[method]['seconds']:7.1f} s per face")
    machine = {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
               "load_average": os.getloadavg(), "platform": platform.platform(), "torch": torch.__version__,
               "device": str(model.device)}
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['threads']} threads, "
          f"load average {machine['load_average'][0]:.1f} at the end")
    record = {"size": model.size, "steps": a.steps, "faces": len(faces), "machine": machine, "summary": summary,
              "rows": rows}
    if a.json_out:
        with open(a.json_out, "a") as f:
            f.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
