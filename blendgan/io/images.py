"""Images: decoding, tensors, encoding.

Conventions (those of the official scripts): images are decoded as 8-bit RGB (grayscale
is replicated, alpha dropped, 16-bit reduced to 8-bit, EXIF orientation applied); an image
becomes a tensor by ``(x/255 − 0.5)/0.5``; a tensor becomes an image by
``clamp((x·0.5+0.5)·255, 0, 255)`` cast to uint8 (truncating).
"""
from __future__ import annotations

import os
import warnings
from io import BytesIO
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import torch

from ..errors import ImageError
from .files import atomic_path, not_regular

FORMATS = ("jpg", "png")
JPEG_QUALITY = 95  # cv2.imwrite's default, which the official scripts used
#: Largest input image accepted (pixels), checked from the file header before decoding: the
#: encoders pool to 256 px anyway, and a bigger image costs gigabytes of memory for nothing.
MAX_IMAGE_PIXELS = 1 << 27


# -- reading ----------------------------------------------------------------------------------
def read_bytes(path: str | os.PathLike, error: type[Exception] = ImageError) -> bytes:
    """The bytes of a regular file; anything else (a FIFO, which would block, a folder, a
    device, a symbolic link loop) or an unreadable file is ``error`` with one line naming it."""
    path = Path(path)
    reason = not_regular(path)
    if reason:
        raise error(reason)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to RGB uint8 [H, W, 3]."""
    return decode_image(read_bytes(path), str(path))


def _pillow_size(data: memoryview) -> tuple[int, int] | None:
    from PIL import Image
    with warnings.catch_warnings():  # Pillow warns from 89 Mpx; the limits here are ours
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(BytesIO(data)) as im:
                return im.size
        except Image.DecompressionBombError:
            limit = Image.MAX_IMAGE_PIXELS or 2**31
            return limit, limit
        except Exception:
            return None


def _radiance_size(data: memoryview) -> tuple[int, int] | None:
    """Radiance HDR: ``#?RADIANCE`` lines, an empty line, then ``-Y H +X W`` (or another order)."""
    head = bytes(data[:4096])
    if not head.startswith(b"#?"):
        return None
    _, sep, rest = head.partition(b"\n\n")
    words = rest.split(b"\n", 1)[0].split() if sep else []
    if len(words) != 4 or not all(w.isdigit() for w in words[1::2]):
        return None
    axes = {words[0][-1:]: int(words[1]), words[2][-1:]: int(words[3])}
    return (axes[b"X"], axes[b"Y"]) if set(axes) == {b"X", b"Y"} else None


def _pnm_size(data: memoryview) -> tuple[int, int] | None:
    """PFM (``PF``/``Pf``), PNM (``P1``-``P6``) and PAM (``P7`` with WIDTH/HEIGHT lines)."""
    head = bytes(data[:4096])
    if head[:1] != b"P" or head[1:2] not in (b"F", b"f", b"1", b"2", b"3", b"4", b"5", b"6", b"7"):
        return None
    lines = [line.split(b"#", 1)[0] for line in head.split(b"\n")]
    if head[1:2] == b"7":
        fields = dict(line.split(None, 1) for line in lines[1:] if len(line.split(None, 1)) == 2)
        try:
            return int(fields[b"WIDTH"]), int(fields[b"HEIGHT"])
        except (KeyError, ValueError):
            return None
    words = b" ".join(lines).split()[1:3]
    return (int(words[0]), int(words[1])) if len(words) == 2 and all(w.isdigit() for w in words) else None


def _exr_size(data: memoryview) -> tuple[int, int] | None:
    """OpenEXR: the ``dataWindow`` (box2i) attribute of the header."""
    head = bytes(data[:65536])
    if head[:4] != b"\x76\x2f\x31\x01":
        return None
    at = 8
    while at < len(head) and head[at:at + 1] != b"\x00":
        name_end = head.index(b"\x00", at)
        type_end = head.index(b"\x00", name_end + 1)
        size = int.from_bytes(head[type_end + 1:type_end + 5], "little")
        value = head[type_end + 5:type_end + 5 + size]
        if head[at:name_end] == b"dataWindow" and len(value) == 16:
            x0, y0, x1, y1 = (int.from_bytes(value[i:i + 4], "little", signed=True) for i in range(0, 16, 4))
            return x1 - x0 + 1, y1 - y0 + 1
        at = type_end + 5 + size
    return None


def header_size(data: bytes | np.ndarray, pillow_only: bool = False) -> tuple[int, int] | None:
    """(width, height) from an encoded image's header, without decoding pixels; None when the
    format is not recognised.  Pillow reads the common formats; the ones OpenCV also decodes
    (Radiance HDR, PFM, PAM, OpenEXR) are read here unless ``pillow_only``.  A size beyond
    Pillow's own bomb limit comes back as that limit squared, i.e. as too large for anything."""
    view = memoryview(data).cast("B")
    size = _pillow_size(view)
    if size is None and not pillow_only:
        for reader in (_radiance_size, _pnm_size, _exr_size):
            try:
                size = reader(view)
            except (ValueError, KeyError, IndexError):
                size = None
            if size is not None:
                break
    return size


def decode_image(data: bytes | np.ndarray, name: str, *, max_side: int | None = None,
                 known_size_only: bool = False) -> np.ndarray:
    """Encoded image bytes -> RGB uint8 [H, W, 3]; ``name`` (a path or a file name) starts
    every error message.

    The size in the header is checked before any pixel is decoded: at most
    :data:`MAX_IMAGE_PIXELS`, and ``max_side`` pixels a side when given; an image whose size
    cannot be read from its header is refused (its size is unknown until decoded).
    ``known_size_only`` takes only the formats Pillow reads (PNG, JPEG, WebP, BMP, TIFF ...).
    """
    data = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if data.size == 0:
        raise ImageError(f"{name}: empty file")
    dims = header_size(data, pillow_only=known_size_only)
    if dims is None:
        if known_size_only:
            raise ImageError(f"{name}: not an image in a supported format (PNG, JPEG, WebP, BMP, TIFF)")
        raise ImageError(f"{name}: not an image in a supported format (its size cannot be read before decoding)")
    check_size(name, *dims, max_side)
    try:
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as exc:  # OpenCV's own limits and decoder failures (multi-line messages)
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "decoder error"
        raise ImageError(f"{name}: not a decodable image ({reason})") from None
    if bgr is None:
        raise ImageError(f"{name}: not a decodable image (corrupt or unsupported format)")
    check_size(name, bgr.shape[1], bgr.shape[0], max_side)
    return np.ascontiguousarray(bgr[:, :, ::-1])


def check_size(name: str, width: int, height: int, max_side: int | None = None) -> None:
    """:class:`ImageError` naming ``name`` when ``width`` x ``height`` pixels are more than
    :data:`MAX_IMAGE_PIXELS` (or more than ``max_side`` a side)."""
    if max_side is not None and max(width, height) > max_side:
        raise ImageError(f"{name}: {width}×{height} px is too large (limit {max_side} px a side)")
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(f"{name}: image too large ({width}x{height}; at most {MAX_IMAGE_PIXELS} pixels)")


# -- tensors ----------------------------------------------------------------------------------
# The official cv2ten computed (x / 255 - 0.5) / 0.5 in float64, then cast to float32: the
# same 256 values, looked up instead (exact, and a third of the memory for large images).
TO_FLOAT = ((np.arange(256, dtype=np.float64) / 255.0 - 0.5) / 0.5).astype(np.float32)


def to_tensor(images: np.ndarray | Sequence[np.ndarray], device: torch.device | str = "cpu") -> torch.Tensor:
    """RGB uint8 [H, W, 3] (or a list / [N, H, W, 3] of equal size) -> [N, 3, H, W] in [-1, 1]."""
    arr = np.stack(images) if isinstance(images, (list, tuple)) else np.asarray(images)
    if arr.dtype != np.uint8:
        raise ValueError(f"to_tensor expects uint8 images, got {arr.dtype}")
    if arr.ndim == 3:
        arr = arr[None]
    x = TO_FLOAT[arr.transpose(0, 3, 1, 2)]
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


# -- geometry ---------------------------------------------------------------------------------
def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Resize RGB [H, W, 3] to [size, size, 3] with bilinear filtering (cv2 default)."""
    if image.shape[:2] == (size, size):
        return image
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)


def fit_within(image: np.ndarray, side: int) -> np.ndarray:
    """Downscale RGB [H, W, 3] so that its longer side is at most ``side`` (aspect kept)."""
    h, w = image.shape[:2]
    if max(h, w) <= side:
        return image
    k = side / max(h, w)
    return cv2.resize(image, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)


def hstack(panels: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate RGB images of equal height side by side."""
    return np.concatenate(panels, axis=1)


# -- writing ----------------------------------------------------------------------------------
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
