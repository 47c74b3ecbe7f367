"""Stylize the face in a video: track it, align each frame, restyle, paste it back.

Per frame: dlib finds the face (:class:`blendgan.align.FaceAligner`; the face followed is
the largest one, then whichever stays nearest), its 68 landmarks are smoothed over time
with a One-Euro filter (steady when the head is still, little lag when it moves), the
frame is cropped like FFHQ (:func:`blendgan.align.crop_quad`), the crop is inverted with
the pSp encoder and regenerated with the style's code, and the stylized face is warped
back into the frame with the inverse of the crop's transform under a feathered elliptic
mask.  Frames without a face are passed through unchanged.

Frames are decoded, processed in batches of ``batch_size`` faces and encoded as they
come, so memory does not depend on the video's length.  The output keeps the source's
frame timestamps (hence its frame rate) and, with ``keep_audio``, its audio: the packets
are copied when the output container takes the codec, else re-encoded to AAC.
"""
from __future__ import annotations

import functools
import logging
import os
from collections import deque
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np
import torch

from . import io
from .io import write_gif  # noqa: F401  (re-exported: part of this module's API)
from .align import FaceAligner, crop_quad, face_quad, quad_to_image_matrix
from .pipeline import DEFAULT_BATCH_SIZE, TRANSFER_ADD_WEIGHT_INDEX, JobReport, _fail, _inputs, write_failed

log = logging.getLogger("blendgan")

DEFAULT_ALIGN_SIZE = 256       # pSp's input size (it pools larger crops to 256 anyway)
DEFAULT_SMOOTH = 1.0           # One-Euro minimum cutoff (Hz): lower = steadier, more lag
SMOOTH_BETA = 20.0             # Hz added per face-width/s of landmark speed (less lag when moving)
SMOOTH_D_CUTOFF = 1.0          # cutoff (Hz) of the speed estimate
TRACK_JUMP = 0.5               # a box further than this (in box sizes) from the last face is a new face
MASK_CENTRE = (0.5, 0.53)      # paste mask in crop units (x, y): ellipse over face and hair
MASK_AXES = (0.40, 0.45)
MASK_FEATHER = 0.06            # Gaussian sigma of the mask edge, in crop units
DEFAULT_CRF = 18
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
# audio codecs the containers accept as they are (others are re-encoded to AAC)
COPYABLE_AUDIO = {
    "mp4": {"aac", "mp3", "alac", "opus", "flac", "ac3", "eac3"},
    "mov": {"aac", "mp3", "alac", "ac3", "eac3", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_f32le"},
    "matroska": {"aac", "mp3", "alac", "opus", "flac", "ac3", "eac3", "vorbis", "pcm_s16le", "pcm_s24le",
                 "pcm_f32le"},
}


LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


class VideoError(ValueError):
    """A video that cannot be used; the message is one line naming the file."""


# -- temporal smoothing -------------------------------------------------------------------------
class OneEuroFilter:
    """One-Euro filter (Casiez et al., CHI 2012) over point sets [K, 2] sampled at ``fps``.

    An exponential smoother whose cutoff rises with speed: ``min_cutoff`` Hz at rest, plus
    ``beta`` Hz per unit of speed.  Speed is the mean point speed divided by ``scale``
    (pass the face's size, so it is in face sizes per second) and is shared by all
    points, so the shape is smoothed as a whole and never distorted.
    """

    def __init__(self, fps: float, min_cutoff: float = DEFAULT_SMOOTH, beta: float = SMOOTH_BETA,
                 d_cutoff: float = SMOOTH_D_CUTOFF):
        if fps <= 0 or min_cutoff <= 0:
            raise ValueError(f"fps and min_cutoff must be > 0, got {fps}, {min_cutoff}")
        self.dt = 1.0 / fps
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None

    def _alpha(self, cutoff: float) -> float:
        tau = 1.0 / (2 * np.pi * cutoff)
        return 1.0 / (1.0 + tau / self.dt)

    def __call__(self, x: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """Next sample [K, 2] -> its smoothed value [K, 2] (the first sample passes as it is)."""
        x = np.asarray(x, dtype=np.float64)
        if self._x is None:
            self._x, self._dx = x.copy(), np.zeros_like(x)
            return x.copy()
        rate = (x - self._x) / self.dt
        self._dx = self._dx + self._alpha(self.d_cutoff) * (rate - self._dx)
        speed = float(np.linalg.norm(self._dx, axis=-1).mean()) / max(scale, 1e-6)
        self._x = self._x + self._alpha(self.min_cutoff + self.beta * speed) * (x - self._x)
        return self._x.copy()


class FaceTracker:
    """Landmarks [68, 2] of one face through a sequence of frames (None where it is not found).

    Starts on the largest confirmed face in the frame; then searches only around the last
    box and follows the nearest face there (within ``TRACK_JUMP`` box sizes); when that
    fails the whole frame is searched again and the smoothing restarts.  ``smooth``: the
    One-Euro filter's minimum cutoff in Hz; None/0: raw landmarks.
    """

    def __init__(self, aligner: FaceAligner, fps: float, smooth: float | None = DEFAULT_SMOOTH):
        self.aligner = aligner
        self.filter = OneEuroFilter(fps, smooth) if smooth else None
        self._box: tuple[float, float, float, float] | None = None

    def _pick(self, rgb: np.ndarray):
        if self._box is not None:  # look near the face followed so far
            cx, cy, s = _box_centre_size(self._box)

            def dist(b):
                bx, by, _ = _box_centre_size(b)
                return np.hypot(bx - cx, by - cy)
            near = [b for b in self.aligner.detect_near(rgb, self._box) if dist(b) <= TRACK_JUMP * s]
            if near:
                return min(near, key=dist)
            self.reset()  # lost it: search the whole frame, confirming candidates
        boxes = self.aligner.detect(rgb)
        return boxes[0] if boxes else None

    def reset(self) -> None:
        self._box = None
        if self.filter is not None:
            self.filter.reset()

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        box = self._pick(rgb)
        if box is None:
            self.reset()
            return None
        self._box = box
        lm = self.aligner.landmarks_in(rgb, box)
        if self.filter is None:
            return lm
        scale = float(np.hypot(*(lm[42:48].mean(0) - lm[36:42].mean(0)))) * 4  # about the face width
        return self.filter(lm, scale)


def _box_centre_size(box) -> tuple[float, float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, max(box[2] - box[0], box[3] - box[1])


# -- pasting back --------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def face_mask(size: int) -> np.ndarray:
    """Feathered ellipse over face and hair of an FFHQ crop: float32 [size, size] in [0, 1]."""
    ys, xs = (np.mgrid[:size, :size].astype(np.float32) + 0.5) / size
    r = np.hypot((xs - MASK_CENTRE[0]) / MASK_AXES[0], (ys - MASK_CENTRE[1]) / MASK_AXES[1])
    hard = (r <= 1.0).astype(np.float32)
    sigma = MASK_FEATHER * size
    soft = cv2.GaussianBlur(hard, (0, 0), sigmaX=sigma, sigmaY=sigma) if sigma >= 0.5 else hard
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


# -- frames -------------------------------------------------------------------------------------
def style_code(model, style) -> torch.Tensor:
    """A style image path, RGB uint8 [H, W, 3] or image tensor [1, 3, H, W] -> z_embed [1, 512];
    a [1, 512] tensor is taken as the code itself."""
    if isinstance(style, torch.Tensor):
        if style.ndim == 2:
            return style.to(model.device, torch.float32)
        return model.embed_style(style)
    if isinstance(style, np.ndarray):
        return model.embed_style(io.to_tensor(style, model.device))
    return model.embed_style(io.to_tensor(io.read_image(style), model.device))


@torch.inference_mode()
def stylize_frames(model, frames: Iterable[np.ndarray], z_embed: torch.Tensor, fps: float, *,
                   add_weight_index: int | None = TRANSFER_ADD_WEIGHT_INDEX, batch_size: int = DEFAULT_BATCH_SIZE,
                   align_size: int = DEFAULT_ALIGN_SIZE, smooth: float | None = DEFAULT_SMOOTH,
                   aligner: FaceAligner | None = None) -> Iterator[np.ndarray]:
    """Restyle the face in each RGB uint8 frame [H, W, 3]; yields frames [H, W, 3] in order.

    ``z_embed`` [1, 512] (from :func:`style_code`); ``fps`` sets the smoothing's time step.
    Up to ``batch_size`` faces are held back to run the networks in batches.
    """
    if model.psp is None:
        raise ValueError("video stylization needs the pSp encoder (load it with psp_encoder=...)")
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    tracker = FaceTracker((aligner or FaceAligner()).load(), fps, smooth)
    pending: list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]] = []  # frame, quad, crop

    def flush() -> Iterator[np.ndarray]:
        crops = [c for _, _, c in pending if c is not None]
        faces = iter(())
        if crops:
            w_plus = model.encode_face(io.to_tensor(np.stack(crops), model.device))
            faces = iter(io.to_uint8(model.synthesize(w_plus=w_plus, z_embed=z_embed,
                                                      add_weight_index=add_weight_index)))
        for frame, quad, crop in pending:
            yield frame if crop is None else paste_face(frame, next(faces), quad)
        pending.clear()

    for frame in frames:
        lm = tracker(frame)
        if lm is None:
            pending.append((frame, None, None))
        else:
            quad = face_quad(lm)
            pending.append((frame, quad, crop_quad(frame, quad, align_size)))
        faces = sum(c is not None for _, _, c in pending)
        if faces >= batch_size or (faces == 0 and pending) or len(pending) >= 4 * batch_size:
            yield from flush()  # bounded: at most 4 * batch_size frames are held
    yield from flush()


# -- files --------------------------------------------------------------------------------------
def _open_video(path: Path):
    import av
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise VideoError(f"{path}: cannot open as a video ({exc.strerror or type(exc).__name__})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: has no video stream")
    return container


def video_fps(stream) -> float:
    """Frame rate of a PyAV video stream (average, else guessed, else 30)."""
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else 30.0


@torch.inference_mode()
def stylize_video(model, input_video: str | os.PathLike, style_image, out_path: str | os.PathLike, *,
                  add_weight_index: int | None = TRANSFER_ADD_WEIGHT_INDEX, batch_size: int = DEFAULT_BATCH_SIZE,
                  align_size: int = DEFAULT_ALIGN_SIZE, smooth: float | None = DEFAULT_SMOOTH,
                  keep_audio: bool = True, crf: int = DEFAULT_CRF,
                  progress: bool = True, aligner: FaceAligner | None = None) -> Path:
    """Restyle the face in ``input_video`` with ``style_image`` (see :func:`style_code`); write
    ``out_path`` atomically and return it.

    ``.mp4``/``.m4v``/``.mov``/``.mkv``: H.264 (yuv420p, ``crf``; mp4/mov with ``+faststart``)
    with the source's timestamps and, with ``keep_audio``, its audio.  ``.gif``: a looping
    GIF at the source's frame rate (short clips; no audio).  Needs PyAV (``blendgan[video]``)
    and dlib (``blendgan[align]``).
    """
    try:
        import av
    except ImportError:
        raise VideoError('video input needs PyAV: pip install "blendgan[video]"') from None
    from tqdm.auto import tqdm
    input_video, out_path = Path(input_video), Path(out_path)
    if out_path.exists() and out_path.resolve() == input_video.resolve():
        raise ValueError(f"{out_path}: the output would replace the input video")
    suffix = out_path.suffix.lower()
    if suffix != ".gif" and suffix not in CONTAINERS:
        raise ValueError(f"{out_path}: output must end in .gif or {', '.join(CONTAINERS)}")
    if model.psp is None:
        raise ValueError("video stylization needs the pSp encoder (load it with psp_encoder=...)")
    aligner = (aligner or FaceAligner()).load()
    z_embed = style_code(model, style_image)
    src = _open_video(input_video)
    try:
        vin = src.streams.video[0]
        vin.thread_type = "AUTO"
        fps = video_fps(vin)
        ain = src.streams.audio[0] if keep_audio and src.streams.audio and suffix != ".gif" else None
        bar = tqdm(total=vin.frames or None, desc="video", unit="frame", disable=not progress)
        kwargs = dict(add_weight_index=add_weight_index, batch_size=batch_size, align_size=align_size,
                      smooth=smooth, aligner=aligner)
        if suffix == ".gif":
            frames = (f.to_ndarray(format="rgb24") for f in src.decode(vin))
            io.write_gif(_counted(stylize_frames(model, frames, z_embed, fps, **kwargs), bar), out_path, fps)
        else:
            with io.atomic_path(out_path) as tmp:
                _transcode(input_video, src, vin, ain, tmp, CONTAINERS[suffix], fps, crf, model, z_embed, kwargs,
                           bar)
        bar.close()
    except av.FFmpegError as exc:
        raise VideoError(f"{input_video}: video processing failed ({exc})") from None
    finally:
        src.close()
    return out_path


def stylize_video_folder(model, input_video: str | os.PathLike, style_dir: str | os.PathLike,
                         outdir: str | os.PathLike, *, gif: bool = False, overwrite: bool = False,
                         aligner: FaceAligner | None = None, **options) -> JobReport:
    """Restyle ``input_video`` with each style image of ``style_dir`` (an image or a folder):
    ``{clip}_v_{style}.mp4`` (``.gif`` with ``gif``) in ``outdir``; ``options`` go to
    :func:`stylize_video`.  Existing outputs are skipped unless ``overwrite``; a style that
    cannot be read, or an output that cannot be written, is reported and the others go on.
    A video that cannot be read stops the job (:class:`VideoError`)."""
    input_video = Path(input_video)
    styles = _inputs(style_dir, "style")
    outdir = io.prepare_outdir(outdir)
    names = io.output_stems(styles)
    aligner = (aligner or FaceAligner()).load()  # loaded once for every style
    report = JobReport()
    for s in styles:
        out = outdir / io.fit_name(f"{input_video.stem}_v_{names[s]}", ".gif" if gif else ".mp4")
        if out.exists() and not overwrite:
            report.skipped.append(out)
            continue
        try:
            report.written.append(stylize_video(model, input_video, s, out, aligner=aligner, **options))
        except io.ImageError as exc:
            _fail(report, s, exc)
        except OSError as exc:
            write_failed(report, out, exc)
    return report


def _counted(frames: Iterator[np.ndarray], bar) -> Iterator[np.ndarray]:
    for f in frames:
        bar.update(1)
        yield f


def _transcode(path: Path, src, vin, ain, tmp: Path, fmt: str, fps: float, crf: int, model, z_embed, kwargs,
               bar) -> None:
    """Decode ``src``, stylize its frames, encode them to ``tmp`` (H.264) with ``ain``'s audio."""
    import av
    from fractions import Fraction
    options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
    dst = av.open(str(tmp), mode="w", format=fmt, options=options)
    try:
        width, height = vin.codec_context.width // 2 * 2, vin.codec_context.height // 2 * 2
        vout = dst.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
        vout.options = {"crf": str(crf), "preset": "medium"}
        vout.codec_context.time_base = vin.time_base  # keep the source's timestamps as they are
        aout, resample = None, False
        if ain is not None:
            if ain.codec_context.name in COPYABLE_AUDIO[fmt]:
                aout = dst.add_stream_from_template(ain)
            else:
                aout, resample = dst.add_stream("aac", rate=ain.codec_context.sample_rate or 48000), True
                aout.layout = LAYOUTS.get(ain.codec_context.channels, "stereo")  # a standard layout
        stamps: deque = deque()  # (pts, time_base) of frames on their way through the network

        def frames() -> Iterator[np.ndarray]:
            streams = [vin] + ([ain] if ain is not None else [])
            for packet in src.demux(*streams):
                if packet.stream.type == "audio":
                    _audio(dst, packet, aout, resample)
                    continue
                for frame in packet.decode():
                    stamps.append((frame.pts, frame.time_base))
                    yield frame.to_ndarray(format="rgb24")[:height, :width]
            if resample:
                for packet in aout.encode(None):
                    dst.mux(packet)

        index = 0
        for rgb in stylize_frames(model, frames(), z_embed, fps, **kwargs):
            pts, time_base = stamps.popleft()
            out = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            if pts is None:  # no timestamp in the source: a constant rate
                pts, time_base = int(round(index / fps / vin.time_base)), vin.time_base
            out.pts, out.time_base = pts, time_base
            for packet in vout.encode(out):
                dst.mux(packet)
            index += 1
            bar.update(1)
        if index == 0:
            raise VideoError(f"{path}: no video frames decoded")
        for packet in vout.encode(None):
            dst.mux(packet)
    finally:
        dst.close()


def _audio(dst, packet, aout, resample: bool) -> None:
    """Copy an audio packet into ``dst`` (or decode and re-encode it to AAC)."""
    if resample:
        for frame in packet.decode():
            frame.pts = None  # the encoder counts samples itself
            for out in aout.encode(frame):
                dst.mux(out)
    elif packet.dts is not None and packet.size:
        packet.stream = aout
        dst.mux(packet)
