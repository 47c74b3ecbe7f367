"""Images, folders and video files.

Conventions (those of the official scripts): images are decoded as 8-bit RGB (grayscale
is replicated, alpha dropped, 16-bit reduced to 8-bit, EXIF orientation applied); an image
becomes a tensor by ``(x/255 − 0.5)/0.5``; a tensor becomes an image by
``clamp((x·0.5+0.5)·255, 0, 255)`` cast to uint8 (truncating).  Every file is written
atomically: to a temporary file in the destination folder, then renamed.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import secrets
import warnings
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np
import torch

log = logging.getLogger("blendgan")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
FORMATS = ("jpg", "png")
JPEG_QUALITY = 95  # cv2.imwrite's default, which the official scripts used
#: Largest input image accepted (pixels), checked from the file header before decoding: the
#: encoders pool to 256 px anyway, and a bigger image costs gigabytes of memory for nothing.
MAX_IMAGE_PIXELS = 1 << 27
#: Longest output file name in bytes (the limit of common filesystems).
MAX_NAME_BYTES = 255


class ImageError(ValueError):
    """An input image that cannot be used; the message is one line naming the file."""


# -- reading ----------------------------------------------------------------------------------
def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to RGB uint8 [H, W, 3]."""
    path = Path(path)
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if data.size == 0:
        raise ImageError(f"{path}: empty file")
    _check_pixels(path)
    try:
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as exc:  # OpenCV's own limits and decoder failures (multi-line messages)
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "decoder error"
        raise ImageError(f"{path}: not a decodable image ({reason})") from None
    if bgr is None:
        raise ImageError(f"{path}: not a decodable image (corrupt or unsupported format)")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _check_pixels(path: Path) -> None:
    """Refuse an image larger than :data:`MAX_IMAGE_PIXELS`, judged by its header (Pillow
    reads only the header; formats Pillow does not know are left to OpenCV)."""
    from PIL import Image
    try:
        with warnings.catch_warnings():  # Pillow warns from 89 Mpx; the limit here is ours
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
    except Image.DecompressionBombError:  # Pillow's own limit, far above ours
        raise ImageError(f"{path}: image too large (at most {MAX_IMAGE_PIXELS} pixels)") from None
    except Exception:
        return
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(f"{path}: image too large ({width}x{height}; at most {MAX_IMAGE_PIXELS} pixels)")


def is_image_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files of ``folder`` sorted by name (or ``[folder]`` if it is an image file).

    Other files are skipped with a warning; hidden files are ignored.
    """
    folder = Path(folder)
    if folder.is_file():
        if not is_image_path(folder):
            raise ImageError(f"{folder}: not an image file (expected one of {', '.join(IMAGE_EXTENSIONS)})")
        return [folder]
    if not folder.is_dir():
        raise ImageError(f"{folder}: no such file or directory")
    images = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.is_dir():
            continue
        if is_image_path(entry):
            images.append(entry)
        else:
            log.warning("%s: skipped, not an image file", entry)
    return images


# The official cv2ten computed (x / 255 - 0.5) / 0.5 in float64, then cast to float32: the
# same 256 values, looked up instead (exact, and a third of the memory for large images).
_TO_FLOAT = ((np.arange(256, dtype=np.float64) / 255.0 - 0.5) / 0.5).astype(np.float32)


def to_tensor(images: np.ndarray | Sequence[np.ndarray], device: torch.device | str = "cpu") -> torch.Tensor:
    """RGB uint8 [H, W, 3] (or a list / [N, H, W, 3] of equal size) -> [N, 3, H, W] in [-1, 1]."""
    arr = np.stack(images) if isinstance(images, (list, tuple)) else np.asarray(images)
    if arr.dtype != np.uint8:
        raise ValueError(f"to_tensor expects uint8 images, got {arr.dtype}")
    if arr.ndim == 3:
        arr = arr[None]
    x = _TO_FLOAT[arr.transpose(0, 3, 1, 2)]
    return torch.from_numpy(x).to(device)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] in [-1, 1] -> RGB uint8 [N, H, W, 3] (clamped, truncated)."""
    return to_uint8_async(images)()


def to_uint8_async(images: torch.Tensor) -> Callable[[], np.ndarray]:
    """Start :func:`to_uint8` of ``images`` [N, 3, H, W]; returns a function that waits for it
    and gives the RGB uint8 [N, H, W, 3] array.

    On a GPU the conversion is queued behind the work that makes ``images`` and the result is
    copied into pinned host memory without blocking the host, so a job can queue its next
    batch before waiting for this one (the GPU stays busy while the host writes images).
    Elsewhere the conversion happens at once."""
    x = (images.detach().float() * 0.5 + 0.5) * 255
    x = x.clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    if x.device.type != "cuda":
        host = x.cpu().numpy()
        return lambda: host
    copy = x.to("cpu", non_blocking=True)  # a non-blocking copy to the host lands in pinned memory
    done = torch.cuda.Event()
    done.record(torch.cuda.current_stream(x.device))

    def wait() -> np.ndarray:
        done.synchronize()
        return copy.numpy()
    return wait


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Resize RGB [H, W, 3] to [size, size, 3] with bilinear filtering (cv2 default)."""
    if image.shape[:2] == (size, size):
        return image
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)


# -- naming -----------------------------------------------------------------------------------
def output_stems(paths: Sequence[Path]) -> dict[Path, str]:
    """The name each input contributes to output names: its stem, or its whole file name
    where several inputs share a stem (``a.jpg`` and ``a.png`` -> ``a.jpg``, ``a.png``)."""
    counts: dict[str, int] = {}
    for p in paths:
        counts[p.stem] = counts.get(p.stem, 0) + 1
    return {p: p.stem if counts[p.stem] == 1 else p.name for p in paths}


def fit_name(stem: str, suffix: str) -> str:
    """``stem + suffix``, with the stem cut and tagged by a hash of it when the name would be
    longer than :data:`MAX_NAME_BYTES` (``suffix`` includes its dot)."""
    name = stem + suffix
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    tag = "~" + hashlib.sha256(stem.encode()).hexdigest()[:10]
    room = MAX_NAME_BYTES - len((tag + suffix).encode())
    return stem.encode()[:room].decode("utf-8", "ignore") + tag + suffix


def prepare_outdir(path: str | os.PathLike) -> Path:
    """Create output folder ``path`` if needed and check that files can be made in it;
    raises ``OSError`` with one line naming the folder (before any work is done)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OSError(f"{path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        temp_beside(path / "probe").unlink()
    except OSError as exc:
        raise OSError(exc.errno, f"{path}: cannot write in this folder ({exc.strerror or exc})") from None
    return path


# -- writing ----------------------------------------------------------------------------------
def temp_beside(path: Path) -> Path:
    """Create an empty hidden temporary file in ``path``'s folder (same filesystem)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:  # a fixed-length name: any name that fits the folder has a temporary that fits
        tmp = path.parent / f".blendgan-{secrets.token_hex(4)}.part{path.suffix[:16]}"
        try:  # mode 0o666 minus the umask, like any new file (mkstemp would make it 0o600)
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    An interrupted or failed write leaves no partial file under the final name.
    """
    path = Path(path)
    tmp = temp_beside(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def encode_image(image: np.ndarray, fmt: str = "jpg") -> bytes:
    """RGB uint8 [H, W, 3] -> encoded JPEG (quality 95) or PNG bytes."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if fmt == "jpg" else []
    ok, buf = cv2.imencode(f".{fmt}", np.ascontiguousarray(image[:, :, ::-1]), params)
    if not ok:
        raise RuntimeError(f"could not encode a {image.shape} image as {fmt}")
    return buf.tobytes()


def write_image(path: str | os.PathLike, image: np.ndarray, fmt: str | None = None) -> Path:
    """Atomically write RGB uint8 [H, W, 3]; ``fmt`` defaults to the path's extension."""
    path = Path(path)
    fmt = fmt or path.suffix.lower().lstrip(".").replace("jpeg", "jpg")
    data = encode_image(image, fmt)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def hstack(panels: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate RGB images of equal height side by side."""
    return np.concatenate(panels, axis=1)


# -- video ------------------------------------------------------------------------------------
def write_gif(frames: Iterable[np.ndarray], path: str | os.PathLike, fps: float = 15) -> Path:
    """Write RGB uint8 frames [H, W, 3] as a looping GIF, atomically (Pillow).

    For short loops: Pillow keeps every frame until the file is written, and GIF stores
    frame durations in hundredths of a second (fps is rounded accordingly).
    """
    from PIL import Image
    path = Path(path)
    images = (Image.fromarray(np.ascontiguousarray(f)) for f in frames)
    first = next(images, None)
    if first is None:
        raise ValueError(f"{path}: no frames to write")
    with atomic_path(path) as tmp:
        first.save(tmp, format="GIF", save_all=True, append_images=images, duration=int(round(1000 / fps)),
                   loop=0)
    return path


def video_backend() -> str:
    """``'pyav'`` (H.264, browser-playable) when PyAV is installed, else ``'opencv'`` (mp4v)."""
    return "pyav" if importlib.util.find_spec("av") is not None else "opencv"


class VideoWriter:
    """Stream RGB uint8 frames into an .mp4, written atomically on :meth:`close`.

    With PyAV: H.264 (libx264), yuv420p, ``+faststart`` — plays in browsers.  Without it:
    OpenCV's MPEG-4 Part 2 (``mp4v``), which most desktop players accept.  Frames are
    encoded as they arrive, so memory does not grow with the video length.
    """

    def __init__(self, path: str | os.PathLike, fps: float = 30, crf: int = 18, backend: str | None = None):
        self.path = Path(path)
        self.fps = fps
        self.crf = crf
        self.backend = backend or video_backend()
        self._tmp = temp_beside(self.path)
        self._container = self._stream = self._cv = None
        self._closed = False
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def _open(self, height: int, width: int) -> None:
        if self.backend == "pyav":
            import av
            self._container = av.open(str(self._tmp), mode="w", format="mp4",
                                      options={"movflags": "+faststart"})
            rate = Fraction(self.fps).limit_denominator(1001)
            self._stream = self._container.add_stream("libx264", rate=rate)
            self._stream.width, self._stream.height = width, height
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": str(self.crf), "preset": "medium"}
        else:
            self._cv = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height))
            if not self._cv.isOpened():
                raise RuntimeError(f"{self.path}: OpenCV could not open an mp4v video writer")

    def write(self, frames: np.ndarray) -> None:
        """Append RGB uint8 frames [T, H, W, 3] (or one [H, W, 3]); H, W are made even."""
        if frames.ndim == 3:
            frames = frames[None]
        h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2  # yuv420p needs even sizes
        frames = frames[:, :h, :w]
        if self._size is None:
            self._open(h, w)
            self._size = (h, w)
        elif self._size != (h, w):
            raise ValueError(f"{self.path}: frame size {w}x{h} differs from the video's "
                             f"{self._size[1]}x{self._size[0]}")
        for frame in frames:
            if self._container is not None:
                import av
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                for packet in self._stream.encode(vf):
                    self._container.mux(packet)
            else:
                self._cv.write(np.ascontiguousarray(frame[:, :, ::-1]))
            self.frames += 1

    def close(self, ok: bool = True) -> None:
        """Flush and move the file into place (``ok``), or discard it.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._container is not None:
                if ok:
                    for packet in self._stream.encode():
                        self._container.mux(packet)
                self._container.close()
            if self._cv is not None:
                self._cv.release()
            if ok and self.frames == 0:
                raise RuntimeError(f"{self.path}: no frames were written")
            if ok:
                os.replace(self._tmp, self.path)
        finally:
            self._container = self._cv = None
            if self._tmp.exists():
                self._tmp.unlink()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close(ok=True)
        else:
            try:
                self.close(ok=False)
            except Exception:  # the original exception matters more
                pass
