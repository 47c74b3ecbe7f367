#!/usr/bin/env python
"""Show that training learns, on a 2-core CPU in minutes (:mod:`blendgan.train.proof`).

    pip install -e ".[proof,train]"
    python tools/proof_of_learning.py --outdir runs/proof --docs docs

Makes the toy data (scikit-learn's digits as faces, the same digits in four procedural style
families as artworks), trains the style encoder and then BlendGAN at 32 px, measures every
checkpoint, and writes ``OUTDIR/proof.json`` (the curves) and ``OUTDIR/grid.png`` (real
digits, natural samples, one stylized row per style family); ``--docs DIR`` copies both there
as ``proof_of_learning.{json,png}``.  Prints the curves and the verdict; exits 1 when a
measure did not move the right way (see ``Margins``).
"""
import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blendgan.train.proof import Margins, ProofSettings, run, verdict  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--outdir", default="runs/proof", help="run folder (default %(default)s)")
    p.add_argument("--docs", default=None, metavar="DIR", help="copy the grid and the curves here")
    p.add_argument("--gan-steps", type=int, default=ProofSettings.gan_steps)
    p.add_argument("--encoder-steps", type=int, default=ProofSettings.encoder_steps)
    p.add_argument("--code-contrast", type=float, default=ProofSettings.code_contrast,
                   help="the style encoder's --code-contrast (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default %(default)s: on a shared machine more threads only spin)")
    p.add_argument("--resume", action="store_true", help="continue a stopped run in --outdir")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    outdir = Path(a.outdir)
    if not a.resume and ((outdir / "gan").exists() or (outdir / "encoder").exists()):
        print(f"{outdir}: holds an earlier run; give a new --outdir (or --resume it)", file=sys.stderr)
        return 2
    settings = ProofSettings(seed=a.seed, gan_steps=a.gan_steps, gan_every=max(1, a.gan_steps // 6),
                             encoder_steps=a.encoder_steps, encoder_every=max(1, a.encoder_steps // 3),
                             code_contrast=a.code_contrast)
    t = time.perf_counter()
    curves = run(outdir, settings, resume=a.resume)
    seconds = time.perf_counter() - t
    curves["seconds"] = round(seconds, 1)
    curves["machine"] = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    curves["load_average"] = os.getloadavg()   # other processes' share of the CPUs (1, 5, 15 min)
    (outdir / "proof.json").write_text(json.dumps(curves, indent=1) + "\n")
    for rec in curves["encoder"]:
        print(f"encoder step {rec['step']:5d}  family retrieval {rec['retrieval']:.3f}")
    for rec in curves["gan"]:
        print(f"gan step {rec['step']:5d}  FD {rec['fd']:8.2f}  KD {rec['kd']:9.3f}  style branch: family acc "
              f"{rec['family_accuracy']:.3f} (chance {rec['family_chance']:.3f}), reference acc "
              f"{rec['style_accuracy']:.3f} (chance {rec['style_chance']:.3f});  blend: family acc "
              f"{rec['blend_family_accuracy']:.3f}, reference acc {rec['blend_style_accuracy']:.3f};  "
              f"add_weight {rec['add_weight']:.3f}")
    failed = verdict(curves, Margins())
    print(f"{seconds:.0f} s;", "learned" if not failed else "NOT learned: " + "; ".join(failed))
    if a.docs:
        docs = Path(a.docs)
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(outdir / "grid.png", docs / "proof_of_learning.png")
        shutil.copyfile(outdir / "proof.json", docs / "proof_of_learning.json")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
