#!/usr/bin/env python
"""Where a BlendGAN training step spends its time, and how long whole steps take.

    python tools/benchmark_train.py --size 32 --channels 64,64,32,32 --style-dim 32 --n-mlp 4 --batch 16
    python tools/benchmark_train.py --size 64 --channels 128,128,128,64,32 --style-dim 128 --batch 8

Builds a trainer on synthetic data (discs as faces, stripes as artworks, written to a
temporary folder) and reports, in ms of CPU time (the process's, all threads; a shared
machine's wall clock counts other work too), best of ``--repeat`` runs:

* the phases of a step, each run alone with the trainer's own modules: the fakes for the
  discriminator step (G forward, no grad); each discriminator's forward and backward on its
  real and fake batches (D_proj also on the mismatched pairs); the generator's forward and
  backward through the three discriminators; R1 of each discriminator; path length; the
  Adam updates;
* whole steps as the trainer runs them: a plain step, an R1 step and a path-length step, and
  the mean step of the default lazy intervals (R1 every 16, path length every 4).

Prints a table and one JSON line (``--json-out`` appends it to a file too).
"""
import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blendgan.runtime import DistEnv  # noqa: E402
from blendgan.train import GANConfig, losses  # noqa: E402
from blendgan.train.data import to_float  # noqa: E402
from blendgan.train.gan import GANTrainer  # noqa: E402
from blendgan.train.modules import requires_grad  # noqa: E402


def write_data(root: Path, size: int, n: int = 16) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    faces, arts = root / "faces", root / "arts"
    faces.mkdir()
    arts.mkdir()
    y, x = np.mgrid[:size, :size]
    for i in range(n):
        img = np.full((size, size, 3), rng.integers(0, 256, 3), np.uint8)
        cv2.circle(img, (size // 2, size // 2), int(rng.integers(size // 6, size // 2)),
                   tuple(int(v) for v in rng.integers(0, 256, 3)), -1)
        cv2.imwrite(str(faces / f"{i}.png"), img)
        f, c = rng.uniform(0.1, 0.8, 2), rng.uniform(0, 255, (2, 3))
        t = (np.sin(x * f[0] + y * f[1]) * 0.5 + 0.5)[..., None]
        cv2.imwrite(str(arts / f"{i}.png"), (c[0] * t + c[1] * (1 - t)).astype(np.uint8))
    return faces, arts


def best_ms(fn, repeat: int) -> float:
    """Best of ``repeat`` runs of ``fn()`` in ms of this process's CPU time (all its threads):
    on a shared machine the wall clock also counts other people's work."""
    fn()  # warm-up (allocator, one-off set-ups)
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best * 1000


def phases(t: GANTrainer, repeat: int) -> dict[str, float]:
    """Each piece of a step alone (see the module's doc), with the step's batch and modules."""
    c, b = t.config, t.config.batch
    face_b, style_b = t.face_loader.next(), t.style_loader.next()
    rf, ra = to_float(face_b.images), to_float(style_b.images)
    e = t.embeds[torch.as_tensor(style_b.indices)]
    e_mis = t.mismatched(style_b.indices)
    z1, z2, cross, noise = t.latents(b, True)
    with torch.no_grad():
        fake, _ = t.gstep(z1, z2, cross, e, noise)
    out: dict[str, float] = {}
    requires_grad(t.g, False)
    for d in (t.d_face, t.d_style, t.d_proj):
        requires_grad(d, True)
    with torch.no_grad():
        out["G forward for the D step"] = best_ms(lambda: t.gstep(z1, z2, cross, e, noise), repeat)

    def d_face():
        (t.d_face(rf).sum() + t.d_face(fake[:b]).sum()).backward()

    def d_style():
        (t.d_style(ra).sum() + t.d_style(fake[b:]).sum()).backward()

    def d_proj():
        try:
            real, mis = t.d_proj(ra, e, e_mis)
        except TypeError:  # a package from before the shared trunk: one pass per pair kind
            real, mis = t.d_proj(ra, e), t.d_proj(ra, e_mis)
        (real.sum() + mis.sum() + t.d_proj(fake[b:], e).sum()).backward()
    out["D_face fwd+bwd"] = best_ms(d_face, repeat)
    out["D_style fwd+bwd"] = best_ms(d_style, repeat)
    out["D_proj fwd+bwd (3 pair kinds)"] = best_ms(d_proj, repeat)
    for name, d, extra in (("face", t.d_face, ()), ("style", t.d_style, ()), ("proj", t.d_proj, (e,))):
        def r1(d=d, extra=extra):
            x = (rf if name == "face" else ra).detach().requires_grad_(True)
            losses.r1_penalty(d(x, *extra), x).backward()
        out[f"R1 D_{name}"] = best_ms(r1, repeat)
    requires_grad(t.g, True)
    for d in (t.d_face, t.d_style, t.d_proj):
        requires_grad(d, False)

    def g_step():
        fk, _ = t.gstep(z1, z2, cross, e, noise)
        (t.d_face(fk[:b]).sum() + t.d_style(fk[b:]).sum() + t.d_proj(fk[b:], e).sum()).backward()
    out["G fwd+bwd through the 3 D"] = best_ms(g_step, repeat)
    pb = max(1, b // c.path_batch_shrink)

    def path_length():
        z1_, z2_, cross_, noise_ = t.latents(pb, True)
        img, w = t.gstep(z1_, z2_, cross_, e[:pb], noise_)
        losses.path_length_penalty(img, w, t.pl_mean, c.pl_decay, t.gens["latent"], t.env)[0].backward()
    out["path length"] = best_ms(path_length, repeat)
    out["Adam G + D"] = best_ms(lambda: (t.g_optim.step(), t.d_optim.step()), repeat)
    return out


def whole_steps(t: GANTrainer, repeat: int) -> dict[str, float]:
    """Steps as the trainer runs them; the step number picks the regularisers (R1 when it is a
    multiple of ``d_reg_every``, path length of ``g_reg_every``)."""
    c = t.config
    kinds = {"plain step": 1, "path-length step": c.g_reg_every, "R1 + path-length step": 0}
    out = {}
    for name, step in kinds.items():
        def run(step=step):
            t.step = step
            t.train_step()
        out[name] = best_ms(run, repeat)
    plain, pl, both = out["plain step"], out["path-length step"], out["R1 + path-length step"]
    # default intervals (16 and 4): every 4th step has path length, every 16th both
    out["mean step (lazy intervals)"] = plain + (pl - plain) / c.g_reg_every + (both - pl) / c.d_reg_every
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--channels", default="64,64,32,32", help="widths from 4 px up ('' for config F)")
    p.add_argument("--style-dim", type=int, default=32)
    p.add_argument("--n-mlp", type=int, default=4)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default %(default)s)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--machine", default=platform.processor() or platform.machine(),
                   help="machine named in the JSON (e.g. '2-vCPU AMD EPYC VM')")
    p.add_argument("--json-out", default=None)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        faces, arts = write_data(Path(tmp), a.size)
        config = GANConfig(faces=str(faces), styles=str(arts), outdir=str(Path(tmp) / "run"), size=a.size,
                           style_dim=a.style_dim, n_mlp=a.n_mlp, channels=a.channels or None, batch=a.batch,
                           style_pool=min(64, a.size), device="cpu", workers=2, quiet=True, tensorboard="off")
        trainer = GANTrainer(config, DistEnv(), None, None, None)
        rows = {**phases(trainer, a.repeat), **whole_steps(trainer, a.repeat)}
        trainer.close()
    for name, ms in rows.items():
        print(f"{name:34s} {ms:9.1f} ms CPU")
    line = json.dumps({"benchmark": "train_step", "machine": a.machine, "threads": torch.get_num_threads(),
                       "torch": torch.__version__, "size": a.size, "channels": a.channels, "batch": a.batch,
                       "style_dim": a.style_dim, "rows_cpu_ms": {k: round(v, 2) for k, v in rows.items()}})
    if a.json_out:
        with open(a.json_out, "a") as f:
            f.write(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
