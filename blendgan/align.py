"""FFHQ-style face alignment: find faces, crop each to a square the way FFHQ was made.

The recipe (Karras et al., *A Style-Based Generator Architecture for GANs*, FFHQ): from the
68 landmarks take the eye centres and the mouth corners; the crop is a square rotated with
the face, of side ``2·max(2·|eye_to_eye|, 1.8·|eye_to_mouth|)``, centred at
``eye_avg + 0.1·eye_to_mouth``.  Very large faces are first shrunk by an integer factor
(antialiased); the region around the square is cut out with a margin; where the square
leaves the photo, the photo is mirrored outwards and the mirrored part is blurred and
faded to the median colour, so the crop has no hard black corners; the square is then
sampled (bilinear, supersampled up to 4x) and resized to the output size (Lanczos).

Landmarks come from dlib (``pip install "blendgan[align]"``: ``dlib-bin`` and
``face-recognition-models``, which ships dlib's 68-point predictor).  Candidates from
dlib's HOG detector are confirmed by its CNN face detector on a small crop around each
(cheap, and it removes the HOG detector's false alarms such as round badges).

Conventions: images are RGB uint8 [H, W, 3]; points are (x, y) in pixel coordinates of the
image they belong to (pixel centres at integers); a quad is [4, 2] in the order top-left,
bottom-left, bottom-right, top-right of the output square.
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from . import io

log = logging.getLogger("blendgan")

DEFAULT_SIZE = 1024
#: output sizes the models take without resizing: such square images are taken as aligned.
ALIGNED_SIZES = (256, 512, 1024)
INSTALL_HINT = 'pip install "blendgan[align]"'
PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
CNN_DETECTOR_FILE = "mmod_human_face_detector.dat"
DETECT_MAX_SIDE = 1024  # larger images are searched at this size (landmarks use full resolution)
VERIFY_CROP = 200       # CNN confirmation: the HOG box is seen at about half this size

# 68-point layout (iBUG 300-W, dlib's predictor)
LEFT_EYE = slice(36, 42)    # the eye on the image's left
RIGHT_EYE = slice(42, 48)
MOUTH_LEFT, MOUTH_RIGHT = 48, 54


class AlignmentUnavailable(ImportError):
    """dlib or its model files are missing; the message is one line with the install command."""


class NoFaceError(io.ImageError):
    """No face was found in an image (one line naming the file)."""


# -- geometry (no dlib needed) --------------------------------------------------------------------
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


# -- dlib -----------------------------------------------------------------------------------------
def model_dir() -> Path:
    """Folder of face-recognition-models' .dat files (found without importing that package,
    whose import needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise AlignmentUnavailable(f"face alignment needs face-recognition-models: {INSTALL_HINT}")
    return Path(spec.origin).parent / "models"


@functools.lru_cache(maxsize=None)
def _load_models(predictor_path: str | None):
    """(dlib module, HOG detector, CNN detector, 68-point predictor), loaded once per process."""
    try:
        import dlib
    except ImportError:
        raise AlignmentUnavailable(f"face alignment needs dlib: {INSTALL_HINT}") from None
    folder = model_dir()
    predictor = Path(predictor_path) if predictor_path else folder / PREDICTOR_FILE
    cnn = folder / CNN_DETECTOR_FILE
    for path in (predictor, cnn):
        if not path.is_file():
            raise AlignmentUnavailable(f"{path}: dlib model file missing (reinstall: {INSTALL_HINT})")
    return (dlib, dlib.get_frontal_face_detector(), dlib.cnn_face_detection_model_v1(str(cnn)),
            dlib.shape_predictor(str(predictor)))


class FaceAligner:
    """dlib face detection + 68 landmarks + FFHQ crop.

    The models are loaded on first use (once per process) and shared.  ``upsample``: times
    the HOG detector doubles the image (1, as FFHQ: finds faces down to about 40 px);
    images larger than ``detect_max_side`` are searched downscaled.  ``verify``: confirm
    each HOG candidate with dlib's CNN detector (removes false alarms, ~0.1 s per candidate).
    """

    def __init__(self, upsample: int = 1, verify: bool = True, detect_max_side: int = DETECT_MAX_SIDE,
                 predictor_path: str | os.PathLike | None = None):
        self.upsample = int(upsample)
        self.verify = verify
        self.detect_max_side = int(detect_max_side)
        self.predictor_path = str(predictor_path) if predictor_path else None

    def load(self) -> "FaceAligner":
        """Load the models now (raises :class:`AlignmentUnavailable` when the extra is missing)."""
        _load_models(self.predictor_path)
        return self

    @property
    def _models(self):
        return _load_models(self.predictor_path)

    # -- detection --------------------------------------------------------------------------
    def detect(self, rgb: np.ndarray, verify: bool | None = None) -> list[tuple[float, float, float, float]]:
        """Face boxes (left, top, right, bottom) in ``rgb`` [H, W, 3] pixels, largest first."""
        dlib, hog, _, _ = self._models
        img = _as_rgb_uint8(rgb)
        h, w = img.shape[:2]
        scale = min(1.0, self.detect_max_side / max(h, w))
        small = img if scale == 1.0 else cv2.resize(img, (max(int(round(w * scale)), 1), max(int(round(h * scale)), 1)),
                                                     interpolation=cv2.INTER_AREA)
        rects, _, _ = hog.run(np.ascontiguousarray(small), self.upsample, 0.0)
        boxes = [tuple(v / scale for v in (r.left(), r.top(), r.right() + 1, r.bottom() + 1)) for r in rects]
        if self.verify if verify is None else verify:
            boxes = [b for b in boxes if self.confirm(img, b)]
        return _largest_first(boxes)

    def detect_near(self, rgb: np.ndarray, box, margin: float = 1.0) -> list[tuple[float, float, float, float]]:
        """Face boxes within ``margin`` box sizes of ``box`` (left, top, right, bottom), largest first.

        Fast re-detection for tracking: only that region is searched, rescaled so the face
        spans about 120 px (no upsampling, no CNN confirmation).
        """
        _, hog, _, _ = self._models
        img = _as_rgb_uint8(rgb)
        h, w = img.shape[:2]
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        s = max(box[2] - box[0], box[3] - box[1], 1.0)
        reach = (0.5 + margin) * s
        x0, y0 = max(int(cx - reach), 0), max(int(cy - reach), 0)
        x1, y1 = min(int(np.ceil(cx + reach)), w), min(int(np.ceil(cy + reach)), h)
        if x1 - x0 < 8 or y1 - y0 < 8:
            return []
        k = 120.0 / s
        nw, nh = max(int(round((x1 - x0) * k)), 1), max(int(round((y1 - y0) * k)), 1)
        crop = cv2.resize(img[y0:y1, x0:x1], (nw, nh), interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
        kx, ky = nw / (x1 - x0), nh / (y1 - y0)
        rects, _, _ = hog.run(np.ascontiguousarray(crop), 0, 0.0)
        return _largest_first([(r.left() / kx + x0, r.top() / ky + y0, (r.right() + 1) / kx + x0,
                                (r.bottom() + 1) / ky + y0) for r in rects])

    def confirm(self, rgb: np.ndarray, box) -> bool:
        """Whether dlib's CNN detector also sees a face in a crop around ``box`` (rescaled so
        the box spans about half of VERIFY_CROP pixels)."""
        _, _, cnn, _ = self._models
        img = _as_rgb_uint8(rgb)
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        s = max(box[2] - box[0], box[3] - box[1])
        h, w = img.shape[:2]
        x0, y0 = max(int(cx - s), 0), max(int(cy - s), 0)
        x1, y1 = min(int(np.ceil(cx + s)), w), min(int(np.ceil(cy + s)), h)
        k = VERIFY_CROP / (2 * s)
        crop = cv2.resize(img[y0:y1, x0:x1], (max(int(round((x1 - x0) * k)), 1), max(int(round((y1 - y0) * k)), 1)),
                          interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
        for det in cnn(np.ascontiguousarray(crop), 0):
            r = det.rect  # the CNN box must overlap the candidate
            bx0, by0 = r.left() / k + x0, r.top() / k + y0
            bx1, by1 = (r.right() + 1) / k + x0, (r.bottom() + 1) / k + y0
            iw = min(bx1, box[2]) - max(bx0, box[0])
            ih = min(by1, box[3]) - max(by0, box[1])
            if iw > 0 and ih > 0 and iw * ih > 0.3 * min((bx1 - bx0) * (by1 - by0), s * s):
                return True
        return False

    def landmarks_in(self, rgb: np.ndarray, box) -> np.ndarray:
        """68 landmarks [68, 2] (float64, x/y) of the face in ``box`` (left, top, right, bottom)."""
        dlib, _, _, predictor = self._models
        rect = dlib.rectangle(int(round(box[0])), int(round(box[1])), int(round(box[2])) - 1, int(round(box[3])) - 1)
        shape = predictor(_as_rgb_uint8(rgb), rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)

    def landmarks(self, rgb: np.ndarray) -> list[np.ndarray]:
        """68 landmarks [68, 2] of every face in ``rgb`` [H, W, 3], largest face first."""
        img = _as_rgb_uint8(rgb)
        return [self.landmarks_in(img, box) for box in self.detect(img)]

    def align(self, rgb: np.ndarray, size: int = DEFAULT_SIZE, all_faces: bool = False) -> list[np.ndarray]:
        """FFHQ crops [size, size, 3] of the largest face (or of every face, largest first);
        an empty list when there is none."""
        faces = self.landmarks(rgb)
        return [align_face(rgb, lm, size) for lm in (faces if all_faces else faces[:1])]


def _largest_first(boxes):
    return sorted(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)


def _as_rgb_uint8(rgb: np.ndarray) -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        desc = f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise ValueError(f"expected an RGB uint8 [H, W, 3] image, got {desc}")
    return np.ascontiguousarray(rgb)


# -- files ----------------------------------------------------------------------------------------
def output_names(stem: str, count: int, fmt: str) -> list[str]:
    """``{stem}.{fmt}``, ``{stem}_1.{fmt}``, ... for ``count`` faces (largest first)."""
    return [io.fit_name(stem, f".{fmt}")] + [io.fit_name(f"{stem}_{i}", f".{fmt}") for i in range(1, count)]


def align_path(input_path: str | os.PathLike, out_dir: str | os.PathLike, size: int = DEFAULT_SIZE,
               all_faces: bool = False, fmt: str = "png", overwrite: bool = False, progress: bool = True,
               aligner: FaceAligner | None = None):
    """Align an image or every image of a folder into ``out_dir`` -> :class:`blendgan.pipeline.JobReport`.

    Writes ``{stem}.{fmt}`` for the largest face (``all_faces``: then ``{stem}_1``, ...,
    smaller faces).  Images without a face or that cannot be read are reported in one line
    and the batch goes on.  An image whose ``{stem}.{fmt}`` exists is skipped unless
    ``overwrite`` (it is written last, so its presence means the image was finished).
    """
    from tqdm.auto import tqdm

    from .pipeline import JobReport, _fail
    if fmt not in io.FORMATS:
        raise ValueError(f"format must be one of {io.FORMATS}, got {fmt!r}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    out_dir = Path(out_dir)
    images = io.list_images(input_path)
    aligner = (aligner or FaceAligner()).load()
    io.prepare_outdir(out_dir)
    report = JobReport()
    stems = io.output_stems(images)  # a.jpg and a.png -> a.jpg.png and a.png.png
    for path in tqdm(images, desc="align", unit="img", disable=not progress):
        stem = stems[path]
        first = out_dir / output_names(stem, 1, fmt)[0]
        if first.resolve() == path.resolve():
            _fail(report, path, ValueError(f"{path}: output would overwrite the input; choose another OUT_DIR"))
            continue
        if first.exists() and not overwrite:
            report.skipped.append(first)
            k = 1
            while (extra := out_dir / output_names(stem, k + 1, fmt)[k]).exists():
                report.skipped.append(extra)
                k += 1
            continue
        try:
            rgb = io.read_image(path)
            crops = aligner.align(rgb, size, all_faces=all_faces)
            if not crops:
                raise NoFaceError(f"{path}: no face found")
        except (io.ImageError, ValueError) as exc:
            _fail(report, path, exc)
            continue
        outs = [out_dir / name for name in output_names(stem, len(crops), fmt)]
        for out, crop in list(zip(outs, crops))[1:] + [(outs[0], crops[0])]:  # the main one last
            io.write_image(out, crop, fmt)
        report.written.extend(outs)
    return report


# -- command line ---------------------------------------------------------------------------------
def _size_arg(value: str) -> int:
    size = int(value)
    if size < 16:
        raise argparse.ArgumentTypeError(f"size must be >= 16, got {size}")
    return size


def add_subparser(subparsers) -> argparse.ArgumentParser:
    """Register ``align IN_DIR_OR_FILE OUT_DIR [--size 1024] [--all-faces] [--overwrite] [--format png]``."""
    p = subparsers.add_parser("align", help="FFHQ-style face crops of photos (needs blendgan[align])",
                              description="Find faces (dlib) and crop each like FFHQ: eyes level, "
                                          "fixed position and scale.")
    p.add_argument("input", metavar="IN_DIR_OR_FILE", help="photo or folder of photos")
    p.add_argument("outdir", metavar="OUT_DIR", help="output folder")
    p.add_argument("--size", type=_size_arg, default=DEFAULT_SIZE, help="output side in pixels (default %(default)s)")
    p.add_argument("--all-faces", action="store_true",
                   help="one crop per face ({stem}.png, {stem}_1.png, ... largest first); default: the largest")
    p.add_argument("--format", choices=io.FORMATS, default="png", help="output format (default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")
    p.add_argument("--quiet", action="store_true", help="no progress bar or info messages")
    p.set_defaults(func=cmd_align)
    return p


def cmd_align(a: argparse.Namespace) -> int:
    """Exit status: 0 all done, 1 some images failed (no face, unreadable), 2 unusable setup."""
    from .cli import finish
    try:
        aligner = FaceAligner().load()
    except AlignmentUnavailable as exc:
        print(f"blendgan: error: {exc}", file=sys.stderr)
        return 2
    report = align_path(a.input, a.outdir, size=a.size, all_faces=a.all_faces, fmt=a.format,
                        overwrite=a.overwrite, progress=not a.quiet, aligner=aligner)
    return finish(report, a.outdir)
