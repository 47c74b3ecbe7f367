#!/usr/bin/env python
"""Stylize every face of a folder with every style of another, with onnxruntime, numpy and
Pillow only (no PyTorch, no blendgan), from the graphs ``blendgan export`` writes:

    pip install onnxruntime numpy pillow
    python examples/onnx_stylize.py --onnx onnx/ --faces test_imgs/face_imgs \
        --styles test_imgs/style_imgs --outdir outputs/onnx

writes ``{face}_v_{style}.png``: the stylized face, size × size, as ``blendgan transfer`` computes
it (the transfer job's default ``add_weight_index`` from ``blendgan.json``, or
``--add-weight-index``; ``none`` for the learned blend weights only).

The steps, which an app ports as they are:

1. read an image as RGB, ``(x/255 − 0.5)/0.5``, NCHW float32 (:func:`to_input`);
2. adaptive-average-pool it to 256×256, as the official encoders do with any input size
   (:func:`adaptive_avg_pool`);
3. ``psp_encoder.onnx``: face -> ``w_plus``; ``style_encoder.onnx``: style -> ``z_embed``;
4. ``face_weight`` [n_latent]: ``add_weight`` of ``blendgan.json`` with its first
   ``add_weight_index`` entries set to 1 (:func:`face_weight`); 1 keeps a layer the face's,
   0 makes it the style's, so any per-layer strength is a choice of these numbers;
5. ``synthesis.onnx`` (w_plus, z_embed, face_weight) -> image in [-1, 1];
6. ``clamp((x·0.5 + 0.5)·255, 0, 255)`` cast to uint8 (:func:`to_uint8`).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def to_input(path: Path) -> np.ndarray:
    """An image file -> [1, 3, H, W] float32 in [-1, 1] (turned upright by its EXIF
    orientation, as OpenCV reads it in blendgan; computed in float64 as the official code)."""
    with Image.open(path) as image:
        rgb = np.asarray(ImageOps.exif_transpose(image).convert("RGB"), dtype=np.float64)
    return ((rgb / 255.0 - 0.5) / 0.5).astype(np.float32).transpose(2, 0, 1)[None]


def _pool_axis(x: np.ndarray, axis: int, out: int) -> np.ndarray:
    """Adaptive average pooling along one axis: output i averages inputs
    [floor(i·L/out), ceil((i+1)·L/out)), as torch's adaptive_avg_pool2d."""
    length = x.shape[axis]
    if length == out:
        return x
    i = np.arange(out)
    start = (i * length) // out
    end = -((-(i + 1) * length) // out)
    sums = np.cumsum(x, axis=axis, dtype=np.float64)
    sums = np.concatenate([np.zeros_like(np.take(sums, [0], axis=axis)), sums], axis=axis)
    window = np.take(sums, end, axis=axis) - np.take(sums, start, axis=axis)
    shape = [1] * x.ndim
    shape[axis] = out
    return (window / (end - start).reshape(shape)).astype(np.float32)


def adaptive_avg_pool(x: np.ndarray, size: int = 256) -> np.ndarray:
    """[N, C, H, W] -> [N, C, size, size] (the official encoders' input pooling)."""
    return _pool_axis(_pool_axis(x, 2, size), 3, size)


def face_weight(meta: dict, add_weight_index: int | None) -> np.ndarray:
    """[n_latent] float32: the learned blend weights, the first ``add_weight_index`` set to 1."""
    weight = np.asarray(meta["add_weight"], dtype=np.float32).copy()
    if add_weight_index is not None:
        weight[:add_weight_index] = 1.0
    return weight


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[N, 3, S, S] in [-1, 1] -> [N, S, S, 3] uint8 (clamped, truncated as the official code)."""
    return np.clip((images * 0.5 + 0.5) * 255, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


class Stylizer:
    """The three graphs of an exported folder, on onnxruntime's CPU provider."""

    def __init__(self, onnx_dir: Path, threads: int = 0):
        self.meta = json.loads((onnx_dir / "blendgan.json").read_text(encoding="utf-8"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        graphs = self.meta["graphs"]

        def session(name: str) -> ort.InferenceSession:
            return ort.InferenceSession(str(onnx_dir / graphs[name]["file"]), options,
                                        providers=["CPUExecutionProvider"])

        self.psp = session("psp_encoder")
        self.style_encoder = session("style_encoder")
        self.synthesis = session("synthesis")

    def encode_face(self, images: np.ndarray) -> np.ndarray:
        pooled = adaptive_avg_pool(images, self.meta["encoder_size"])
        return self.psp.run(None, {"image": pooled})[0]

    def encode_style(self, images: np.ndarray) -> np.ndarray:
        pooled = adaptive_avg_pool(images, self.meta["encoder_size"])
        return self.style_encoder.run(None, {"image": pooled})[0]

    def render(self, w_plus: np.ndarray, z_embed: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """w_plus [N, n_latent, 512], z_embed [N, 512], weight [n_latent] or [N, n_latent]."""
        weight = np.broadcast_to(weight, (w_plus.shape[0], self.meta["n_latent"])).astype(np.float32)
        return self.synthesis.run(None, {"w_plus": w_plus, "z_embed": z_embed, "face_weight": weight})[0]


def images_in(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def stylize_folder(onnx_dir: Path, faces: Path, styles: Path, outdir: Path,
                   add_weight_index: int | None = -1, batch_size: int = 4) -> list[Path]:
    """Every face × every style -> ``outdir/{face}_v_{style}.png``; returns the paths.
    ``add_weight_index`` -1 means the default of ``blendgan.json``."""
    model = Stylizer(onnx_dir)
    index = model.meta["add_weight_index"] if add_weight_index == -1 else add_weight_index
    weight = face_weight(model.meta, index)
    face_paths, style_paths = images_in(faces), images_in(styles)
    # each image is encoded once (one at a time: the files may differ in size)
    codes = {p: model.encode_face(to_input(p))[0] for p in face_paths}
    embeds = {p: model.encode_style(to_input(p))[0] for p in style_paths}
    pairs = [(f, s) for f in face_paths for s in style_paths]
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start:start + batch_size]
        images = model.render(np.stack([codes[f] for f, _ in batch]), np.stack([embeds[s] for _, s in batch]),
                              weight)
        for (f, s), pixels in zip(batch, to_uint8(images)):
            out = outdir / f"{f.stem}_v_{s.stem}.png"
            tmp = out.with_name(f".{out.name}.tmp")
            Image.fromarray(pixels).save(tmp, format="PNG")
            tmp.replace(out)  # never a half-written image under the final name
            written.append(out)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--onnx", type=Path, required=True, help="folder written by `blendgan export`")
    p.add_argument("--faces", type=Path, required=True, help="face image or folder (FFHQ-aligned)")
    p.add_argument("--styles", type=Path, required=True, help="style image or folder")
    p.add_argument("--outdir", type=Path, default=Path("outputs/onnx"))
    p.add_argument("--add-weight-index", default="-1",
                   help="first N W+ layers stay pure face; 'none' = learned weights only "
                        "(default: blendgan.json's)")
    p.add_argument("--batch-size", type=int, default=4)
    a = p.parse_args(argv)
    index = None if a.add_weight_index.lower() == "none" else int(a.add_weight_index)
    for path in stylize_folder(a.onnx, a.faces, a.styles, a.outdir, index, a.batch_size):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
