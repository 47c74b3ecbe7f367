"""FFHQ face alignment as geometry (no detector needed): the crop square of a face, cropping
it, and pasting a (restyled) crop back into the photo.

The recipe (Karras et al., *A Style-Based Generator Architecture for GANs*, FFHQ): from the
68 landmarks take the eye centres and the mouth corners; the crop is a square rotated with
the face, of side ``2·max(2·|eye_to_eye|, 1.8·|eye_to_mouth|)``, centred at
``eye_avg + 0.1·eye_to_mouth``.  Very large faces are first shrunk by an integer factor
(antialiased); the region around the square is cut out with a margin; where the square
leaves the photo, the photo is mirrored outwards and the mirrored part is blurred and
faded to the median colour, so the crop has no hard black corners; the square is then
sampled (bilinear, supersampled up to 4x) and resized to the output size (Lanczos).

Conventions: images are RGB uint8 [H, W, 3]; points are (x, y) in pixel coordinates of the
image they belong to (pixel centres at integers); a quad is [4, 2] in the order top-left,
bottom-left, bottom-right, top-right of the output square.
"""
from __future__ import annotations

import functools
from typing import Sequence

import cv2
import numpy as np

from .. import defaults

DEFAULT_SIZE = defaults.ALIGN_SIZE
ALIGNED_SIZES = defaults.ALIGNED_SIZES

# 68-point layout (iBUG 300-W, dlib's predictor)
LEFT_EYE = slice(36, 42)    # the eye on the image's left
RIGHT_EYE = slice(42, 48)
MOUTH_LEFT, MOUTH_RIGHT = 48, 54

MASK_CENTRE = (0.5, 0.53)      # paste mask in crop units (x, y): ellipse over face and hair
MASK_AXES = (0.40, 0.45)
MASK_FEATHER = 0.04            # Gaussian sigma of the mask edge, in crop units
MASK_REACH = 3.0               # the hard mask stops this many sigmas inside the crop's edge


# -- the crop -----------------------------------------------------------------------------------
def face_quad(landmarks: np.ndarray) -> np.ndarray:
    """68 landmarks [68, 2] -> the FFHQ crop square [4, 2] (TL, BL, BR, TR), float64."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks must be [68, 2], got {lm.shape}")
    eye_l, eye_r = lm[LEFT_EYE].mean(0), lm[RIGHT_EYE].mean(0)
    eye_avg = (eye_l + eye_r) / 2
    eye_to_eye = eye_r - eye_l
    mouth_avg = (lm[MOUTH_LEFT] + lm[MOUTH_RIGHT]) / 2
    eye_to_mouth = mouth_avg - eye_avg
    # x axis: the eye line plus the eye-to-mouth vector turned 90 degrees anticlockwise
    # ((dx, dy) -> (dy, -dx), image y down), so both cues set the face's rotation
    axis = eye_to_eye + np.array([eye_to_mouth[1], -eye_to_mouth[0]])
    axis = axis / np.hypot(*axis)
    half = axis * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    down = np.array([-half[1], half[0]])  # the x axis turned 90 degrees clockwise (image y down)
    centre = eye_avg + eye_to_mouth * 0.1
    return np.stack([centre - half - down, centre - half + down, centre + half + down, centre + half - down])


def quad_to_image_matrix(quad: np.ndarray, size: int) -> np.ndarray:
    """Affine [2, 3] taking pixel (i, j) of a ``size`` square crop to the image point it samples.

    Output pixel centres (i + 0.5)/size of the way along the quad's edges, as PIL's QUAD
    transform samples; use with ``cv2.WARP_INVERSE_MAP`` to crop, without it to paste back.
    """
    quad = np.asarray(quad, dtype=np.float64)
    ex = (quad[3] - quad[0]) / size  # one output pixel to the right
    ey = (quad[1] - quad[0]) / size  # one output pixel down
    origin = quad[0] + 0.5 * (ex + ey)
    return np.stack([ex, ey, origin], axis=1)


def _pil_resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS))


def _pad_reflect_soft(img: np.ndarray, pads: Sequence[int], qsize: float) -> np.ndarray:
    """Mirror ``img`` [H, W, 3] outwards by ``pads`` (left, top, right, bottom, all > 0); the
    mirrored part is blurred and faded to the median colour with the distance from the photo."""
    left, top, right, bottom = (int(p) for p in pads)
    out = np.pad(img.astype(np.float32), ((top, bottom), (left, right), (0, 0)), mode="reflect")
    h, w = out.shape[:2]
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    # 0 at the photo's edge, 1 at the outer edge of the padding, negative inside the photo
    mask = np.maximum(1.0 - np.minimum(xs / left, (w - 1 - xs) / right),
                      1.0 - np.minimum(ys / top, (h - 1 - ys) / bottom))[..., None]
    sigma = qsize * 0.02
    if sigma > 0:
        blurred = cv2.GaussianBlur(out, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
        out += (blurred - out) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    out += (np.median(out, axis=(0, 1)) - out) * np.clip(mask, 0.0, 1.0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def crop_quad(rgb: np.ndarray, quad: np.ndarray, size: int = DEFAULT_SIZE, padding: bool = True) -> np.ndarray:
    """Sample the square ``quad`` [4, 2] of ``rgb`` [H, W, 3] into a [size, size, 3] crop (FFHQ steps:
    shrink, cut out, mirror-pad, transform, resize)."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    img = np.ascontiguousarray(rgb)
    quad = np.asarray(quad, dtype=np.float64).copy()
    qsize = float(np.hypot(*(quad[3] - quad[0])))

    # shrink very large faces first (an antialiased resize, like FFHQ)
    shrink = int(np.floor(qsize / size * 0.5))
    if shrink > 1:
        h, w = img.shape[:2]
        nw, nh = max(int(round(w / shrink)), 1), max(int(round(h / shrink)), 1)
        img = _pil_resize(img, nw, nh)
        quad = (quad + 0.5) * [nw / w, nh / h] - 0.5
        qsize /= shrink

    # cut out the square's surroundings
    border = max(int(np.rint(qsize * 0.1)), 3)
    h, w = img.shape[:2]
    lo, hi = np.floor(quad.min(0)).astype(int), np.ceil(quad.max(0)).astype(int)
    x0, y0 = max(lo[0] - border, 0), max(lo[1] - border, 0)
    x1, y1 = min(hi[0] + border, w), min(hi[1] + border, h)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"face square {quad.round(1).tolist()} lies outside the {w}x{h} image")
    if x1 - x0 < w or y1 - y0 < h:
        img = img[y0:y1, x0:x1]
        quad -= [x0, y0]

    # mirror the photo outwards where the square leaves it
    h, w = img.shape[:2]
    lo, hi = np.floor(quad.min(0)).astype(int), np.ceil(quad.max(0)).astype(int)
    pads = np.maximum([border - lo[0], border - lo[1], hi[0] - w + border, hi[1] - h + border], 0)
    if padding and pads.max() > border - 4:
        pads = np.maximum(pads, int(np.rint(qsize * 0.3)))
        pads = np.maximum(pads, 1)
        img = _pad_reflect_soft(img, pads, qsize)
        quad += pads[:2]

    # sample the square (supersampled when it is larger than the output), then resize
    factor = int(np.clip(np.ceil(qsize / size), 1, 4))
    t = size * factor
    out = cv2.warpAffine(img, quad_to_image_matrix(quad, t), (t, t),
                         flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT_101)
    return _pil_resize(out, size, size) if factor > 1 else out


def align_face(rgb: np.ndarray, landmarks: np.ndarray, size: int = DEFAULT_SIZE) -> np.ndarray:
    """RGB [H, W, 3] and one face's 68 landmarks [68, 2] -> aligned crop [size, size, 3]."""
    return crop_quad(rgb, face_quad(landmarks), size)


def needs_alignment(rgb: np.ndarray) -> bool:
    """True unless ``rgb`` [H, W, 3] is already a square of 256, 512 or 1024 pixels (taken as aligned)."""
    h, w = rgb.shape[:2]
    return not (h == w and h in ALIGNED_SIZES)


# -- pasting back -------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def face_mask(size: int) -> np.ndarray:
    """Feathered ellipse over face and hair of an FFHQ crop: float32 [size, size] in [0, 1].

    The hard ellipse is first cut back (eroded) to ``MASK_REACH`` feather widths inside the
    crop's edge, then blurred: the mask falls smoothly to exactly 0 before the edge of the
    crop, so a pasted face leaves no step where the crop ends (the ellipse alone reaches past
    the crop's bottom edge, which left a seam under the chin).
    """
    ys, xs = (np.mgrid[:size, :size].astype(np.float32) + 0.5) / size
    r = np.hypot((xs - MASK_CENTRE[0]) / MASK_AXES[0], (ys - MASK_CENTRE[1]) / MASK_AXES[1])
    inset = MASK_REACH * MASK_FEATHER
    inside = (np.minimum(xs, 1 - xs) >= inset) & (np.minimum(ys, 1 - ys) >= inset)
    hard = ((r <= 1.0) & inside).astype(np.float32)
    sigma = MASK_FEATHER * size
    soft = (cv2.GaussianBlur(hard, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_CONSTANT)
            if sigma >= 0.5 else hard)
    soft = np.where(soft < 1 / 512, 0.0, np.minimum(soft, 1.0)).astype(np.float32)  # exact 0 outside
    soft.setflags(write=False)
    return soft


def paste_face(frame: np.ndarray, face: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Blend ``face`` [S, S, 3] (a restyled crop of ``quad`` [4, 2]) back into ``frame`` [H, W, 3]
    under :func:`face_mask`; returns a new frame [H, W, 3] (uint8)."""
    quad = np.asarray(quad, dtype=np.float64)
    side = float(np.hypot(*(quad[3] - quad[0])))  # the crop's side in frame pixels
    if face.shape[0] > 2 * side:  # shrink first, so the warp does not alias
        n = max(int(np.ceil(side)), 8)
        face = cv2.resize(face, (n, n), interpolation=cv2.INTER_AREA)
    s = face.shape[0]
    h, w = frame.shape[:2]
    x0, y0 = np.floor(quad.min(0)).astype(int) - 1
    x1, y1 = np.ceil(quad.max(0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return frame.copy()
    m = quad_to_image_matrix(quad, s)
    m[:, 2] -= (x0, y0)
    size = (x1 - x0, y1 - y0)
    warped = cv2.warpAffine(face, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(face_mask(s), m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=0.0)[..., None]
    out = frame.copy()
    roi = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(np.rint(roi + (warped.astype(np.float32) - roi) * alpha), 0, 255).astype(np.uint8)
    return out


def paste_faces(photo: np.ndarray, faces: Sequence[np.ndarray], quads: Sequence[np.ndarray]) -> np.ndarray:
    """Paste several restyled crops ``faces`` ([S, S, 3] each, of ``quads`` [4, 2] in the same
    order, largest face first as the aligner lists them) into ``photo`` [H, W, 3] with
    :func:`paste_face`; the last is pasted first, so the largest face is on top where masks
    overlap.  Returns a new photo [H, W, 3] (uint8); pixels outside every mask are unchanged."""
    if len(faces) != len(quads):
        raise ValueError(f"{len(faces)} faces for {len(quads)} quads")
    out = photo
    for face, quad in reversed(list(zip(faces, quads))):
        out = paste_face(out, face, quad)
    return out.copy() if out is photo else out
