"""Make docs/paste_back.jpg: a photo with two faces before and after ``blendgan transfer
--paste-back --all-faces``.

The photo is scikit-image's astronaut (public domain) beside a smaller mirrored copy of
itself; the style is test_imgs/style_imgs/cartoon.png.  With the random-weight test
checkpoints (``make_checkpoint.py --size 256``) the pasted faces are noise: the figure shows
where they go and that the rest of the photo is kept, not a stylization::

    python tools/make_paste_back_figure.py --ckpt /tmp/ck/blendgan.pt --psp-encoder /tmp/ck/psp_encoder.pt
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np

from blendgan import io
from blendgan.cli import main as blendgan_main

ROOT = Path(__file__).resolve().parents[1]


def two_faces() -> np.ndarray:
    """RGB uint8 [512, 900, 3]: the astronaut, and beside it a copy mirrored and shrunk to 0.6."""
    from skimage import data
    astronaut = np.ascontiguousarray(data.astronaut()[..., :3])
    canvas = np.full((512, 900, 3), 70, np.uint8)
    canvas[:, :512] = astronaut
    canvas[100:407, 560:867] = cv2.resize(astronaut[:, ::-1], (307, 307), interpolation=cv2.INTER_AREA)
    return canvas


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--psp-encoder", required=True)
    p.add_argument("--out", default=str(ROOT / "docs" / "paste_back.jpg"))
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in", Path(tmp) / "out"
        src.mkdir()
        photo = two_faces()
        io.write_image(src / "two_astronauts.png", photo)
        rc = blendgan_main(["transfer", "--ckpt", a.ckpt, "--psp-encoder", a.psp_encoder, "--input", str(src),
                            "--style", str(ROOT / "test_imgs" / "style_imgs" / "cartoon.png"), "--outdir", str(out),
                            "--paste-back", "--all-faces", "--format", "png", "--device", a.device, "--quiet"])
        if rc != 0:
            return rc
        pasted = io.read_image(out / "two_astronauts_v_cartoon.png")
    gap = np.full((photo.shape[0], 8, 3), 255, np.uint8)
    figure = io.hstack([photo, gap, pasted])
    io.write_image(a.out, io.fit_within(figure, 1200), "jpg")
    print(a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
