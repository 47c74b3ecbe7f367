#!/usr/bin/env python3
"""Regenerate the sample inputs in ``test_imgs/`` (faces and style images we may redistribute).

usage: python tools/make_test_imgs.py [--out test_imgs] [--seed 0]

Faces come from public-domain / CC0 photographs shipped with scikit-image
(``pip install scikit-image``); style images are rendered here, procedurally, from those
photographs or from noise.  See ``test_imgs/README.md`` for provenance and licences.

Everything is deterministic: randomness comes from one ``numpy.random.Generator`` per image,
seeded from ``--seed`` and the image name (the global RNGs are never touched), and OpenCV is
asked for single-threaded, fixed-order operations only.  Byte-identical output across
library versions is not promised (JPEG encoders differ), visually identical output is.
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

# Landmarks measured by hand on skimage.data.astronaut() (512x512, x/y in pixels):
# pupils and mouth corners, the five points FFHQ's alignment needs (eyes + mouth).
ASTRONAUT_EYES = ((204.0, 102.0), (246.0, 104.0))
ASTRONAUT_MOUTH = ((203.0, 140.0), (243.0, 141.0))
# A looser square (head and shoulders) for the cartoon rendering, inside the photo.
ASTRONAUT_BUST_BOX = (97, 0, 353, 256)  # x0, y0, x1, y1
# skimage.data.camera() (512x512, grey): a profile, so a plain square around the head.
CAMERA_HEAD_BOX = (123, 40, 313, 230)  # x0, y0, x1, y1

# Colours (RGB) of the flat, woodblock-like rendering, sorted dark -> light.
UKIYOE_PALETTE = np.array([(34, 32, 38), (40, 66, 112), (176, 60, 44), (96, 140, 150),
                           (214, 170, 96), (240, 228, 204)], dtype=np.float32)
# Pigments of the watercolour painting.
WATERCOLOUR_PIGMENTS = np.array([(52, 92, 160), (200, 72, 64), (232, 178, 60), (70, 140, 96),
                                 (130, 76, 150), (40, 150, 170), (214, 120, 150)], dtype=np.float32)


def rng_for(seed: int, name: str) -> np.random.Generator:
    """An independent generator per image, so adding an image never changes the others."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def source_images() -> dict[str, np.ndarray]:
    """The scikit-image photographs used (uint8 RGB); all public domain or CC0."""
    try:
        from skimage import data
    except ImportError:
        raise SystemExit("make_test_imgs.py needs scikit-image for its source photos: pip install scikit-image")
    grey = data.camera()
    return {"astronaut": data.astronaut()[..., :3], "camera": np.repeat(grey[..., None], 3, axis=2),
            "chelsea": data.chelsea()[..., :3]}


# -- geometry -----------------------------------------------------------------------------

def ffhq_align(img: np.ndarray, eyes, mouth, size: int, zoom: float = 1.0) -> np.ndarray:
    """Crop like FFHQ (Karras et al.'s ``align_images``) from eyes and mouth corners.

    The square has side ``2·max(2·|eye_to_eye|, 1.8·|eye_to_mouth|)``, is rotated with the
    eye line and centred at ``eye_avg + 0.1·eye_to_mouth``; ``zoom`` > 1 widens it.
    Borders outside the photo are reflected, as FFHQ pads.
    """
    eye_l, eye_r = (np.asarray(p, np.float64) for p in eyes)
    mouth_avg = (np.asarray(mouth[0], np.float64) + np.asarray(mouth[1], np.float64)) / 2
    eye_avg = (eye_l + eye_r) / 2
    eye_to_eye = eye_r - eye_l
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8) * zoom
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    src = np.float32([c - x - y, c - x + y, c + x - y])  # top-left, bottom-left, top-right
    dst = np.float32([[0, 0], [0, size], [size, 0]])
    matrix = cv2.getAffineTransform(src, dst)
    return cv2.warpAffine(img, matrix, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def square_crop(img: np.ndarray, box, size: int) -> np.ndarray:
    """Cut ``box`` (x0, y0, x1, y1) and resize it to ``size``×``size``."""
    x0, y0, x1, y1 = box
    interpolation = cv2.INTER_AREA if x1 - x0 > size else cv2.INTER_CUBIC
    return cv2.resize(img[y0:y1, x0:x1], (size, size), interpolation=interpolation)


# -- building blocks ----------------------------------------------------------------------

def kmeans_colours(img: np.ndarray, k: int, rng: np.random.Generator, iters: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Quantize an RGB image to ``k`` colours: (labels [H, W], centres [k, 3] float32)."""
    pixels = img.reshape(-1, 3).astype(np.float32)
    sample = pixels[rng.choice(len(pixels), size=min(20000, len(pixels)), replace=False)]
    centres = sample[rng.choice(len(sample), size=k, replace=False)].copy()
    for _ in range(iters):
        labels = ((sample[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
        for j in range(k):
            members = sample[labels == j]
            centres[j] = members.mean(0) if len(members) else sample[rng.integers(len(sample))]
    labels = np.concatenate([((chunk[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
                             for chunk in np.array_split(pixels, 16)])
    return labels.reshape(img.shape[:2]), centres


def smooth_noise(rng: np.random.Generator, shape, scale: float) -> np.ndarray:
    """Gaussian-blurred white noise, normalised to zero mean and unit standard deviation."""
    noise = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), scale)
    return (noise - noise.mean()) / (noise.std() + 1e-8)


def edge_preserving_smooth(img: np.ndarray, passes: int = 5) -> np.ndarray:
    out = img
    for _ in range(passes):
        out = cv2.bilateralFilter(out, 9, 40, 7)
    return out


def luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


# -- the style images -----------------------------------------------------------------------

def cartoon(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Posterized colours + dark ink edges (a comic / cel-shaded look)."""
    smooth = edge_preserving_smooth(img)
    labels, centres = kmeans_colours(smooth, 8, rng)
    hsv = cv2.cvtColor(to_uint8(centres[None]), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 1] = np.minimum(hsv[..., 1] * 1.35, 255)  # livelier colours
    centres = cv2.cvtColor(to_uint8(hsv), cv2.COLOR_HSV2RGB)[0].astype(np.float32)
    flat = centres[labels]
    grey = cv2.medianBlur(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), 7)
    edges = cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 9, 5)
    edges = cv2.erode(edges, np.ones((2, 2), np.uint8)).astype(np.float32) / 255
    return to_uint8(flat * edges[..., None])


def woodblock(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flat colours from a small traditional palette, ink outlines, paper and wood grain."""
    smooth = edge_preserving_smooth(img, passes=6)
    labels, centres = kmeans_colours(smooth, len(UKIYOE_PALETTE), rng)
    rank = np.argsort(np.argsort(luminance(centres)))  # darkest cluster -> darkest ink
    flat = UKIYOE_PALETTE[rank][labels]
    outline = cv2.Canny(cv2.cvtColor(smooth, cv2.COLOR_RGB2GRAY), 40, 110)
    outline = cv2.dilate(outline, np.ones((2, 2), np.uint8)) > 0
    flat[outline] = UKIYOE_PALETTE[0]
    h, w = labels.shape
    grain = cv2.resize(rng.standard_normal((h // 2, 8)).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    paper = 1 + 0.035 * smooth_noise(rng, (h, w), 1.2) + 0.03 * grain
    return to_uint8(flat * paper[..., None])


def pencil_sketch(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Graphite on cream paper: colour-dodge sketch plus diagonal hatching in the shadows."""
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    blur = cv2.GaussianBlur(255 - grey, (0, 0), 6)
    dodge = np.minimum(255, grey * 255 / np.maximum(255 - blur, 1))
    tone = cv2.GaussianBlur(grey, (0, 0), 3) / 255
    h, w = grey.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    jitter = 1.5 * smooth_noise(rng, (h, w), 4)
    hatch1 = (np.sin((xx + yy + jitter) * 2 * np.pi / 7) > 0.55) & (tone < 0.42)
    hatch2 = (np.sin((xx - yy + jitter) * 2 * np.pi / 6) > 0.6) & (tone < 0.24)
    lines = dodge - 70 * hatch1 - 70 * hatch2
    lines = cv2.GaussianBlur(lines, (0, 0), 0.6) + 6 * smooth_noise(rng, (h, w), 0.7)
    paper = np.array([244, 236, 220], np.float32) / 255
    return to_uint8(np.clip(lines, 0, 255)[..., None] * paper)


def watercolour(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Overlapping translucent pigment washes with darker dried edges, on grainy paper."""
    canvas = np.ones((height, width, 3), np.float32) * np.array([246, 241, 230], np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for _ in range(34):
        cy, cx = rng.uniform(-0.1, 1.1) * height, rng.uniform(-0.1, 1.1) * width
        radius = rng.uniform(0.08, 0.3) * min(height, width)
        warp = smooth_noise(rng, (height, width), rng.uniform(10, 25)) * radius * 0.35
        dist = np.hypot(yy - cy, xx - cx) + warp
        inside = np.clip((radius - dist) / 6, 0, 1)  # soft boundary, a few pixels wide
        rim = np.exp(-((dist - radius + 4) / 5) ** 2)  # pigment gathers where the wash dried
        alpha = (rng.uniform(0.18, 0.4) * inside + 0.25 * rim * inside)[..., None]
        pigment = WATERCOLOUR_PIGMENTS[rng.integers(len(WATERCOLOUR_PIGMENTS))] / 255
        canvas *= 1 - alpha * (1 - pigment)  # subtractive mixing, like layered glazes
    grain = 1 + 0.03 * smooth_noise(rng, (height, width), 0.8) + 0.02 * smooth_noise(rng, (height, width), 3)
    return to_uint8(cv2.GaussianBlur(canvas, (0, 0), 0.7) * grain[..., None])


# -- main -------------------------------------------------------------------------------------

def save(img: np.ndarray, path: Path) -> None:
    """Write RGB uint8 as PNG (optimized) or JPEG (quality 92, 4:4:4, no metadata)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(img, "RGB")
    if path.suffix.lower() == ".png":
        image.save(path, optimize=True)
    else:
        image.save(path, quality=92, subsampling=0)
    print(f"wrote {path} ({img.shape[1]}x{img.shape[0]}, {path.stat().st_size / 1024:.0f} KiB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "test_imgs"))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    cv2.setNumThreads(1)
    out = Path(a.out)
    src = source_images()
    faces, styles = out / "face_imgs", out / "style_imgs"

    astronaut = ffhq_align(src["astronaut"], ASTRONAUT_EYES, ASTRONAUT_MOUTH, 512)
    save(astronaut, faces / "astronaut_512.jpg")
    mirrored = ffhq_align(src["astronaut"][:, ::-1].copy(), [(511 - x, y) for x, y in ASTRONAUT_EYES[::-1]],
                          [(511 - x, y) for x, y in ASTRONAUT_MOUTH[::-1]], 256, zoom=1.1)
    save(mirrored, faces / "astronaut_mirrored_256.png")
    save(square_crop(src["camera"], CAMERA_HEAD_BOX, 256), faces / "cameraman_profile_grey_256.png")

    bust = square_crop(src["astronaut"], ASTRONAUT_BUST_BOX, 512)
    save(cartoon(bust, rng_for(a.seed, "cartoon")), styles / "cartoon.png")
    chelsea = src["chelsea"]
    h, w = chelsea.shape[:2]
    chelsea = cv2.resize(chelsea[:, (w - h) // 2:(w - h) // 2 + h], (512, 512), interpolation=cv2.INTER_CUBIC)
    save(woodblock(chelsea, rng_for(a.seed, "woodblock")), styles / "woodblock_cat.png")
    save(pencil_sketch(cv2.resize(src["camera"], (384, 384), interpolation=cv2.INTER_AREA),
                       rng_for(a.seed, "sketch")), styles / "pencil_sketch_384.jpg")
    save(watercolour(rng_for(a.seed, "watercolour"), 512, 384), styles / "watercolour_384x512.jpg")


if __name__ == "__main__":
    main()
