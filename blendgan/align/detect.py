"""Face detection and landmarks with dlib (``pip install "blendgan[align]"``: ``dlib-bin`` and
``face-recognition-models``, which ships dlib's 68-point predictor).

Candidates from dlib's HOG detector are confirmed by its CNN face detector on a small crop
around each (cheap, and it removes the HOG detector's false alarms such as round badges);
:meth:`FaceAligner.align` then crops each face like FFHQ (:mod:`blendgan.align.geometry`).
"""
from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np

from ..errors import AlignmentUnavailable
from .geometry import DEFAULT_SIZE, align_face, face_quad

INSTALL_HINT = 'pip install "blendgan[align]"'
PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
CNN_DETECTOR_FILE = "mmod_human_face_detector.dat"
DETECT_MAX_SIDE = 1024  # larger images are searched at this size (landmarks use full resolution)
VERIFY_CROP = 200       # CNN confirmation: the HOG box is seen at about half this size


def model_dir() -> Path:
    """Folder of face-recognition-models' .dat files (found without importing that package,
    whose import needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise AlignmentUnavailable(f"face alignment needs face-recognition-models: {INSTALL_HINT}")
    return Path(spec.origin).parent / "models"


@functools.lru_cache(maxsize=None)
def load_models(predictor_path: str | None):
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
        load_models(self.predictor_path)
        return self

    @property
    def _models(self):
        return load_models(self.predictor_path)

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


    def quads(self, rgb: np.ndarray, all_faces: bool = False) -> list[np.ndarray]:
        """FFHQ crop squares [4, 2] (:func:`blendgan.align.face_quad`) of the largest face in
        ``rgb`` [H, W, 3], or of every face, largest first; an empty list when there is none.
        Landmarks are found only for the faces returned."""
        img = _as_rgb_uint8(rgb)
        boxes = self.detect(img)
        return [face_quad(self.landmarks_in(img, box)) for box in (boxes if all_faces else boxes[:1])]


def _largest_first(boxes):
    return sorted(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)


def _as_rgb_uint8(rgb: np.ndarray) -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        desc = f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise ValueError(f"expected an RGB uint8 [H, W, 3] image, got {desc}")
    return np.ascontiguousarray(rgb)
