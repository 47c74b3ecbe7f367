"""Image decoding, folder listing, tensor conversion, atomic writes and video files."""
from __future__ import annotations

import logging
import os
import stat
from contextlib import contextmanager

import cv2
import numpy as np
import pytest
import torch

from blendgan import io


def rgb_pattern(h: int = 12, w: int = 17, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def smooth_pattern(h: int = 32, w: int = 48) -> np.ndarray:
    """A smooth RGB gradient that survives JPEG well; the three channels differ."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), 255 - x * 255 // (w - 1)], -1).astype(np.uint8)


def cv2_write(path, rgb_or_other: np.ndarray, bgr_order: bool = True):
    """Write with OpenCV directly (independent of blendgan.io); RGB(A) input is reordered."""
    img = rgb_or_other
    if bgr_order and img.ndim == 3:
        img = img[:, :, [2, 1, 0, 3][: img.shape[2]]]
    assert cv2.imwrite(str(path), np.ascontiguousarray(img))


@contextmanager
def umask(value: int):
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


# -- read_image -------------------------------------------------------------------------------
def test_read_rgb_png_round_trip(tmp_path):
    img = rgb_pattern()
    cv2_write(tmp_path / "a.png", img)
    out = io.read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (12, 17, 3)
    assert out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out, img)  # RGB order, not BGR


def test_read_grayscale_png(tmp_path):
    gray = rgb_pattern()[:, :, 0]
    cv2_write(tmp_path / "g.png", gray)
    out = io.read_image(str(tmp_path / "g.png"))  # str paths work too
    assert out.shape == (12, 17, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)


def test_read_rgba_png_drops_alpha(tmp_path):
    rgb = rgb_pattern(seed=1)
    alpha = np.random.default_rng(2).integers(0, 256, rgb.shape[:2], dtype=np.uint8)
    alpha[0, 0] = 0  # fully transparent pixel keeps its colour
    cv2_write(tmp_path / "rgba.png", np.dstack([rgb, alpha]))
    out = io.read_image(tmp_path / "rgba.png")
    assert out.shape == (12, 17, 3)
    np.testing.assert_array_equal(out, rgb)


def test_read_16bit_png(tmp_path):
    rgb16 = np.random.default_rng(3).integers(0, 65536, (9, 11, 3), dtype=np.uint16)
    rgb16[0, 0] = (0, 255, 65535)
    cv2_write(tmp_path / "deep.png", rgb16)
    out = io.read_image(tmp_path / "deep.png")
    assert out.dtype == np.uint8 and out.shape == (9, 11, 3)
    np.testing.assert_array_equal(out, (rgb16 >> 8).astype(np.uint8))
    assert tuple(out[0, 0]) == (0, 0, 255)


def test_read_jpeg(tmp_path):
    img = smooth_pattern()
    cv2_write(tmp_path / "s.jpg", img)
    cv2_write(tmp_path / "s2.JPEG", img)
    for name in ("s.jpg", "s2.JPEG"):
        out = io.read_image(tmp_path / name)
        assert out.shape == img.shape
        assert np.abs(out.astype(int) - img).mean() < 3  # lossy, but RGB order and content kept


def test_read_applies_exif_orientation(tmp_path):
    PIL_Image = pytest.importorskip("PIL.Image")
    img = smooth_pattern(16, 24)  # landscape
    exif = PIL_Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    PIL_Image.fromarray(img).save(tmp_path / "rot.jpg", quality=95, exif=exif.tobytes())
    out = io.read_image(tmp_path / "rot.jpg")
    assert out.shape == (24, 16, 3)
    want = np.rot90(img, k=-1)  # clockwise
    assert np.abs(out.astype(int) - want).mean() < 4


def _assert_one_line_naming(excinfo, path):
    msg = str(excinfo.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    assert str(path) in msg


@pytest.mark.parametrize("kind", ["corrupt", "empty", "missing", "directory", "truncated"])
def test_read_bad_files_raise_image_error(tmp_path, kind):
    path = tmp_path / "bad.png"
    if kind == "corrupt":
        path.write_bytes(np.random.default_rng(4).integers(0, 256, 500, dtype=np.uint8).tobytes())
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "directory":
        path.mkdir()
    elif kind == "truncated":
        ok, buf = cv2.imencode(".png", rgb_pattern(40, 40))
        path.write_bytes(buf.tobytes()[:10])
    with pytest.raises(io.ImageError) as excinfo:
        io.read_image(path)
    assert isinstance(excinfo.value, ValueError)  # ImageError is a ValueError
    _assert_one_line_naming(excinfo, path)


def _png_claiming(path, width: int, height: int) -> None:
    """A small valid PNG whose header (IHDR) then claims ``width`` x ``height``."""
    import struct
    import zlib
    ok, buf = cv2.imencode(".png", rgb_pattern(4, 4))
    data = bytearray(buf.tobytes())
    data[16:24] = struct.pack(">II", width, height)  # IHDR payload starts at byte 16
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


def test_read_refuses_images_too_large_from_their_header(tmp_path, monkeypatch):
    huge = tmp_path / "huge.png"
    _png_claiming(huge, 50000, 50000)  # a few hundred bytes, 2.5 gigapixels once decoded
    with pytest.raises(io.ImageError) as excinfo:
        io.read_image(huge)
    _assert_one_line_naming(excinfo, huge)
    assert "too large" in str(excinfo.value)
    medium = tmp_path / "medium.png"
    _png_claiming(medium, 12000, 12000)
    with pytest.raises(io.ImageError, match=r"too large \(12000x12000"):
        io.read_image(medium)
    fine = tmp_path / "fine.png"
    cv2_write(fine, rgb_pattern(20, 30))
    assert io.read_image(fine).shape == (20, 30, 3)
    monkeypatch.setattr(io.images, "MAX_IMAGE_PIXELS", 599)
    with pytest.raises(io.ImageError, match="too large"):
        io.read_image(fine)


def test_read_turns_decoder_exceptions_into_one_line(tmp_path, monkeypatch):
    path = tmp_path / "odd.png"
    cv2_write(path, rgb_pattern())

    def boom(*args):
        raise cv2.error("OpenCV(5.0.0) imgcodecs/loadsave.cpp:77: error: (-215:Assertion failed)\n"
                        "pixels <= CV_IO_MAX_IMAGE_PIXELS in function 'validateInputImageSize'\n")
    monkeypatch.setattr(io.images.cv2, "imdecode", boom)
    with pytest.raises(io.ImageError) as excinfo:
        io.read_image(path)
    _assert_one_line_naming(excinfo, path)
    assert "validateInputImageSize" in str(excinfo.value)


# -- names ------------------------------------------------------------------------------------
def test_output_stems_keep_inputs_apart(tmp_path):
    paths = [tmp_path / n for n in ("a.jpg", "a.png", "B.png", "b.jpg", "c.png")]
    assert list(io.output_stems(paths).values()) == ["a.jpg", "a.png", "B", "b", "c"]


def test_fit_name_and_temporaries_fit_long_names(tmp_path):
    stem = "顔" * 100  # 300 bytes in UTF-8
    name = io.fit_name(stem, ".png")
    assert len(name.encode()) == io.MAX_NAME_BYTES and name.endswith(".png") and name.startswith("顔" * 70)
    assert io.fit_name(stem + "x", ".png") != name  # cut names stay distinct
    assert io.fit_name("short", ".png") == "short.png"
    legal = tmp_path / ("顔" * 80 + ".png")  # 244 bytes: legal, and so must be its temporary
    io.write_image(legal, rgb_pattern(), "png")
    assert np.array_equal(io.read_image(legal), rgb_pattern())
    with pytest.raises(OSError):
        (tmp_path / name.replace(".png", "x.png")).write_bytes(b"")  # the limit is real here


# -- list_images ------------------------------------------------------------------------------
def test_list_images(tmp_path, caplog):
    for name in ("b.png", "a.jpg", "c.JPEG", "d.webp", "e.bmp"):
        (tmp_path / name).write_bytes(b"x")  # listing does not decode
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "README").write_text("hi")
    (tmp_path / ".hidden.png").write_bytes(b"x")
    (tmp_path / ".DS_Store").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inner.png").write_bytes(b"x")
    (tmp_path / "folder.png").mkdir()  # a directory with an image-like name
    with caplog.at_level(logging.WARNING, logger="blendgan"):
        out = io.list_images(tmp_path)
    assert [p.name for p in out] == ["a.jpg", "b.png", "c.JPEG", "d.webp", "e.bmp"]
    assert all(p.parent == tmp_path for p in out)
    warned = [r for r in caplog.records if r.name == "blendgan" and r.levelno == logging.WARNING]
    messages = " ".join(r.getMessage() for r in warned)
    assert len(warned) == 2
    assert "notes.txt" in messages and "README" in messages
    for quiet in (".hidden.png", ".DS_Store", "sub", "folder.png", "inner.png"):
        assert quiet not in messages


def test_list_images_empty_folder(tmp_path):
    assert io.list_images(tmp_path) == []


def test_list_images_single_file(tmp_path):
    path = tmp_path / "one.png"
    path.write_bytes(b"x")
    assert io.list_images(path) == [path]
    assert io.list_images(str(path)) == [path]


def test_list_images_errors(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hi")
    with pytest.raises(io.ImageError) as excinfo:
        io.list_images(text)
    _assert_one_line_naming(excinfo, text)
    missing = tmp_path / "nope"
    with pytest.raises(io.ImageError) as excinfo:
        io.list_images(missing)
    _assert_one_line_naming(excinfo, missing)


# -- tensors ----------------------------------------------------------------------------------
def test_to_tensor():
    imgs = np.stack([rgb_pattern(5, 7, seed=s) for s in range(2)])
    imgs[0, 0, 0] = (0, 128, 255)
    want = (imgs.astype(np.float64).transpose(0, 3, 1, 2) / 255 - 0.5) / 0.5
    for arg in (imgs, list(imgs), tuple(imgs)):
        out = io.to_tensor(arg)
        assert out.dtype == torch.float32 and tuple(out.shape) == (2, 3, 5, 7)
        np.testing.assert_allclose(out.numpy(), want, rtol=0, atol=1e-7)
    single = io.to_tensor(imgs[0])
    assert tuple(single.shape) == (1, 3, 5, 7)
    assert single[0, 0, 0, 0].item() == -1.0 and single[0, 2, 0, 0].item() == 1.0
    assert abs(single[0, 1, 0, 0].item() - 1 / 255) < 1e-7
    # channel order: the R plane of the tensor is channel 0 of the RGB array
    np.testing.assert_allclose(single[0, 0].numpy(), imgs[0, :, :, 0] / 127.5 - 1, atol=1e-6)


def _value_for(pixel: float) -> float:
    """The tensor value that maps to ``pixel`` (before truncation)."""
    return pixel / 255 * 2 - 1


def test_to_tensor_is_the_official_float64_formula_bit_for_bit():
    every = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    want = torch.from_numpy((every.transpose(2, 0, 1) / 255.0 - 0.5) / 0.5).float()
    assert torch.equal(io.to_tensor(every)[0], want)
    with pytest.raises(ValueError, match="uint8"):
        io.to_tensor(every.astype(np.float32))


def test_to_uint8_truncates_and_clamps():
    vals = torch.tensor([_value_for(254.9), _value_for(254.2), _value_for(0.6), _value_for(100.99),
                         1.0, -1.0, 1.5, -3.0, 100.0])
    x = vals.view(1, 1, 1, -1).expand(2, 3, 1, -1).contiguous()
    out = io.to_uint8(x)
    assert out.dtype == np.uint8 and out.shape == (2, 1, 9, 3)
    assert out[0, 0, :, 0].tolist() == [254, 254, 0, 100, 255, 0, 255, 0, 255]
    # channels come out last and in order
    x = torch.stack([torch.full((2, 2), -1.0), torch.zeros(2, 2), torch.ones(2, 2)])[None]
    assert io.to_uint8(x)[0, 0, 0].tolist() == [0, 127, 255]


def test_to_uint8_does_not_modify_input():
    x = torch.tensor([[[[2.0, -2.0]]]]).expand(1, 3, 1, 2).contiguous()
    before = x.clone()
    io.to_uint8(x)
    assert torch.equal(x, before)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))])
def test_to_uint8_async_gives_what_to_uint8_gives(device):
    """The started conversion, fetched later, is the same array; on CUDA the host copy is
    pinned and the later GPU work queued before the fetch does not change it."""
    x = torch.randn(3, 3, 8, 5, generator=torch.Generator().manual_seed(4)).to(device)
    want = io.to_uint8(x.cpu())
    fetch = io.to_uint8_async(x)
    x.mul_(-1)                                   # later work on the same stream
    got = fetch()
    assert got.dtype == np.uint8 and np.array_equal(got, want)


def test_uint8_round_trip_within_one_level():
    """image -> tensor -> image follows the official float32 ten2cv (clamp, then truncate):
    every value comes back as itself or one level lower, never higher."""
    v = np.arange(256, dtype=np.uint8)
    img = np.stack([v.reshape(16, 16)] * 3, -1)
    back = io.to_uint8(io.to_tensor(img))[0]
    diff = back.astype(int) - img
    assert set(np.unique(diff)) <= {-1, 0}
    assert back[0, 0, 0] == 0 and back[-1, -1, 0] == 255
    # independent float32 evaluation of clamp((x*0.5+0.5)*255).astype(uint8)
    x = ((img.astype(np.float64) / 255 - 0.5) / 0.5).astype(np.float32)
    want = np.clip((x * np.float32(0.5) + np.float32(0.5)) * np.float32(255), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(back, want)


# -- atomic writes ----------------------------------------------------------------------------
def _leftovers(folder):
    return sorted(p.name for p in folder.rglob("*") if ".part" in p.name)


def test_write_image_png_exact_and_jpg(tmp_path):
    img = rgb_pattern(20, 30, seed=5)
    png = io.write_image(tmp_path / "deep" / "er" / "x.png", img)
    assert png == tmp_path / "deep" / "er" / "x.png" and png.is_file()
    np.testing.assert_array_equal(io.read_image(png), img)
    # independent decoder: OpenCV gives BGR
    np.testing.assert_array_equal(cv2.imread(str(png))[:, :, ::-1], img)
    smooth = smooth_pattern()
    for name in ("y.jpg", "z.jpeg"):
        jpg = io.write_image(tmp_path / name, smooth)
        assert jpg.read_bytes()[:2] == b"\xff\xd8"  # JPEG magic
        assert np.abs(io.read_image(jpg).astype(int) - smooth).mean() < 2
    # explicit format overrides the extension
    io.write_image(tmp_path / "w.img", img, fmt="png")
    assert (tmp_path / "w.img").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _leftovers(tmp_path) == []


def test_write_image_overwrites(tmp_path):
    path = tmp_path / "x.png"
    io.write_image(path, rgb_pattern(seed=6))
    img = rgb_pattern(seed=7)
    io.write_image(path, img)
    np.testing.assert_array_equal(io.read_image(path), img)


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_write_image_mode_respects_umask(tmp_path, mask, mode):
    with umask(mask):
        path = io.write_image(tmp_path / "m.png", rgb_pattern())
    assert stat.S_IMODE(path.stat().st_mode) == mode


def test_write_image_encode_failure_leaves_nothing(tmp_path, monkeypatch):
    def boom(image, fmt="jpg"):
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(io.images, "encode_image", boom)
    target = tmp_path / "out" / "x.png"
    with pytest.raises(RuntimeError, match="encoder exploded"):
        io.write_image(target, rgb_pattern())
    assert not target.exists()
    assert list(tmp_path.rglob("*")) in ([], [tmp_path / "out"])


def test_write_image_bad_format(tmp_path):
    with pytest.raises(ValueError, match="format"):
        io.write_image(tmp_path / "x.gif", rgb_pattern())
    assert list(tmp_path.iterdir()) == []


def test_write_failure_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "x.png"
    old = rgb_pattern(seed=8)
    io.write_image(path, old)
    real_write_bytes = type(path).write_bytes

    def half_write(self, data):
        real_write_bytes(self, data[: len(data) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(type(path), "write_bytes", half_write)
    with pytest.raises(OSError, match="disk full"):
        io.write_image(path, rgb_pattern(seed=9))
    monkeypatch.undo()
    np.testing.assert_array_equal(io.read_image(path), old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


def test_atomic_path(tmp_path):
    target = tmp_path / "sub" / "f.bin"
    with io.atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target and tmp.exists()
        tmp.write_bytes(b"hello")
        assert not target.exists()  # nothing under the final name until the body succeeds
    assert target.read_bytes() == b"hello"
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.bin"]

    with pytest.raises(KeyError):
        with io.atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise KeyError("boom")
    assert not tmp.exists()
    assert target.read_bytes() == b"hello"
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.bin"]


# -- video ------------------------------------------------------------------------------------
COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]


def color_frames(count: int, h: int, w: int, start: int = 0) -> np.ndarray:
    return np.stack([np.full((h, w, 3), COLORS[(start + i) % len(COLORS)], np.uint8) for i in range(count)])


def test_video_pyav_h264(tmp_path):
    av = pytest.importorskip("av")
    path = tmp_path / "vid" / "out.mp4"
    with io.VideoWriter(path, fps=24, backend="pyav") as writer:
        writer.write(color_frames(4, 33, 45))
        assert writer.frames == 4
        writer.write(color_frames(1, 33, 45, start=4)[0])  # a single [H, W, 3] frame
        writer.write(color_frames(3, 33, 45, start=5))
        assert writer.frames == 8
        assert not path.exists()  # written atomically on close
    assert path.is_file()
    assert _leftovers(tmp_path) == [] and sorted(p.name for p in path.parent.iterdir()) == ["out.mp4"]

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.format.name == "yuv420p"
        assert (stream.codec_context.width, stream.codec_context.height) == (44, 32)
        assert stream.average_rate == 24
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(decoded) == 8
    for i, frame in enumerate(decoded):
        assert frame.shape == (32, 44, 3)
        want = np.array(COLORS[i % len(COLORS)])
        assert np.abs(frame.reshape(-1, 3).mean(0) - want).max() < 12, (i, frame.reshape(-1, 3).mean(0))


def test_video_pyav_fractional_fps(tmp_path):
    av = pytest.importorskip("av")
    path = tmp_path / "ntsc.mp4"
    with io.VideoWriter(path, fps=30000 / 1001, backend="pyav") as writer:
        writer.write(color_frames(3, 16, 16))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert abs(float(stream.average_rate) - 30000 / 1001) < 1e-3
        assert sum(1 for _ in container.decode(stream)) == 3


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_video_exception_leaves_nothing(tmp_path, backend):
    if backend == "pyav":
        pytest.importorskip("av")
    path = tmp_path / "bad.mp4"
    with pytest.raises(ZeroDivisionError):
        with io.VideoWriter(path, backend=backend) as writer:
            writer.write(color_frames(3, 16, 16))
            1 / 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_video_exception_before_first_frame_leaves_nothing(tmp_path, backend):
    if backend == "pyav":
        pytest.importorskip("av")
    with pytest.raises(ZeroDivisionError):
        with io.VideoWriter(tmp_path / "bad.mp4", backend=backend):
            1 / 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_video_zero_frames_raises(tmp_path, backend):
    if backend == "pyav":
        pytest.importorskip("av")
    path = tmp_path / "empty.mp4"
    writer = io.VideoWriter(path, backend=backend)
    with pytest.raises(RuntimeError, match="no frames"):
        writer.close()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="no frames"):
        with io.VideoWriter(path, backend=backend):
            pass
    assert list(tmp_path.iterdir()) == []


def test_video_opencv_fallback(tmp_path):
    path = tmp_path / "cv.mp4"
    with io.VideoWriter(path, fps=10, backend="opencv") as writer:
        writer.write(color_frames(2, 33, 45))
        writer.write(color_frames(3, 33, 45, start=2))
        assert not path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cv.mp4"]
    cap = cv2.VideoCapture(str(path))
    try:
        assert cap.isOpened()
        assert int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 44
        assert int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == 32
        assert abs(cap.get(cv2.CAP_PROP_FPS) - 10) < 1e-3
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    assert len(frames) == 5
    for i, bgr in enumerate(frames):
        want = np.array(COLORS[i % len(COLORS)])
        assert np.abs(bgr[:, :, ::-1].reshape(-1, 3).mean(0) - want).max() < 12


def test_video_explicit_close_inside_with(tmp_path):
    pytest.importorskip("av")
    path = tmp_path / "v.mp4"
    with io.VideoWriter(path, backend="pyav") as writer:
        writer.write(color_frames(2, 16, 16))
        writer.close()
    assert path.is_file()


def test_video_opencv_frame_size_change_is_not_silent(tmp_path):
    path = tmp_path / "v.mp4"
    try:
        with io.VideoWriter(path, backend="opencv") as writer:
            writer.write(color_frames(2, 16, 16))
            writer.write(color_frames(3, 32, 32))
    except (ValueError, RuntimeError):
        return  # rejecting the mismatched frames is fine
    cap = cv2.VideoCapture(str(path))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    assert count == writer.frames == 5
