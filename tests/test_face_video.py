"""Stylizing the face in a video: smoothing, pasting back, GIFs, and whole videos (timestamps,
frame count, audio) with a stand-in model and with the 256px model (random weights).

The test video is made here: scikit-image's astronaut (public domain) moving a little from
frame to frame, with a 440 Hz tone.  Tests needing PyAV or dlib skip without them.
"""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from blendgan import align as A
from blendgan import io, jobs
from blendgan.errors import VideoError

FPS = 24
CARTOON = Path(__file__).resolve().parents[1] / "test_imgs" / "style_imgs" / "cartoon.png"


def face_frames(astronaut, n, size=(320, 240), face=True):
    """``n`` RGB frames [H, W, 3]: the astronaut's head drifting and turning a little."""
    w, h = size
    frames = []
    for i in range(n):
        if not face:
            frames.append(np.full((h, w, 3), 40 + 10 * i, np.uint8))
            continue
        m = cv2.getRotationMatrix2D((225, 120), 3 * np.sin(i), 1.3)
        m[:, 2] += (w / 2 - 225 + 2 * i, h / 2 - 120 + i)
        frames.append(cv2.warpAffine(astronaut, m, (w, h), borderMode=cv2.BORDER_REFLECT_101))
    return frames


def write_video(path, frames, fps=FPS, audio="aac", fmt=None):
    """Encode frames (H.264) and, unless ``audio`` is None, a 440 Hz mono tone as long as the video."""
    av = pytest.importorskip("av")
    out = av.open(str(path), "w", format=fmt)
    vs = out.add_stream("libx264", rate=fps)
    vs.height, vs.width = frames[0].shape[:2]
    vs.pix_fmt = "yuv420p"
    if audio:
        rate = 16000
        aus = out.add_stream(audio, rate=rate)
        aus.layout = "mono"
    for f in frames:
        for p in vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
            out.mux(p)
    for p in vs.encode():
        out.mux(p)
    if audio:
        t = np.arange(int(rate * len(frames) / fps)) / rate
        tone = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(tone, format="s16", layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        for p in aus.encode(frame):
            out.mux(p)
        for p in aus.encode(None):
            out.mux(p)
    out.close()
    return path


def probe(path):
    """(video codec, frame count, fps, audio codec or None, frames [T, H, W, 3]) of a file."""
    import av
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        audio = c.streams.audio[0].codec_context.name if c.streams.audio else None
        name, fps = v.codec_context.name, float(v.average_rate)
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    return name, len(frames), fps, audio, frames


class StandIn:
    """A model whose 'stylization' returns the aligned crop itself (``tint`` adds a colour)."""
    psp = object()
    device = torch.device("cpu")

    def __init__(self, size=256, tint=None):
        self.size, self.tint, self.faces = size, tint, 0

    def embed_style(self, x):
        return torch.zeros(1, 512)

    def encode_face(self, x):
        self.faces += x.shape[0]
        return torch.nn.functional.interpolate(x, size=self.size, mode="bilinear", align_corners=False)

    def synthesize(self, w_plus, z_embed, add_weight_index, strength=1.0, preserve_color=False):
        if self.tint is None:
            return w_plus
        return torch.tensor(self.tint, dtype=torch.float32).view(1, 3, 1, 1).expand_as(w_plus)


# -- pieces (no dlib, no PyAV) --------------------------------------------------------------------
def test_one_euro_filter():
    f = A.OneEuroFilter(fps=30, min_cutoff=1.0)
    x = np.array([[10.0, 20.0], [30.0, 40.0]])
    face = 200.0  # face size in px: 1 px of detector jitter on a 200 px face
    for _ in range(5):
        np.testing.assert_allclose(f(x, face), x)  # constant stays put
    rng = np.random.default_rng(0)
    noisy = [x + rng.normal(0, 1, x.shape) for _ in range(200)]
    out = np.stack([f(n, face) for n in noisy])
    assert out[20:].std(0).mean() < 0.5 * np.stack(noisy)[20:].std(0).mean()  # jitter is damped
    f.reset()
    f(x, face)
    moved = [f(x + 50, face) for _ in range(10)]  # a jump is followed within a few frames
    assert np.abs(moved[-1] - (x + 50)).max() < 1.0
    with pytest.raises(ValueError):
        A.OneEuroFilter(fps=0)


def test_paste_face_inverts_the_crop():
    rng = np.random.default_rng(1)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), (0, 0), 3)
    t = np.deg2rad(12)
    quad = (np.array([[-60, -60], [-60, 60], [60, 60], [60, -60]]) @ np.array(
        [[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])) + [170, 110]
    crop = A.crop_quad(frame, quad, 256)
    back = A.paste_face(frame, crop, quad)
    assert np.abs(back.astype(int) - frame).mean() < 0.5
    red = A.paste_face(frame, np.full((256, 256, 3), (255, 0, 0), np.uint8), quad)
    assert (red[110, 170] == (255, 0, 0)).all()  # the middle of the face is replaced
    assert (red[:20] == frame[:20]).all() and (red[:, :60] == frame[:, :60]).all()  # outside untouched
    mask = A.face_mask(64)
    assert mask.shape == (64, 64) and mask.min() >= 0 and mask.max() <= 1 and mask[34, 32] > 0.99
    assert mask[0, 0] < 0.01


def test_write_gif(tmp_path):
    from PIL import Image
    frames = [np.full((32, 48, 3), v, np.uint8) for v in (0, 80, 160, 240)]
    path = io.write_gif(iter(frames), tmp_path / "loop.gif", fps=10)
    with Image.open(path) as im:
        assert im.n_frames == 4 and im.size == (48, 32) and im.info["duration"] == 100
    assert [p.name for p in tmp_path.iterdir()] == ["loop.gif"]
    with pytest.raises(ValueError, match="no frames"):
        io.write_gif(iter(()), tmp_path / "empty.gif")
    assert not (tmp_path / "empty.gif").exists()


# -- whole videos ---------------------------------------------------------------------------------
def test_stylize_video_stand_in(aligner, astronaut, tmp_path):
    """Identity 'style': the output is the input again (so paste-back is right), with the
    same codec, frame count, frame rate and audio."""
    src = write_video(tmp_path / "face.mp4", face_frames(astronaut, 8))
    model = StandIn()
    out = jobs.stylize_video(model, src, np.zeros((8, 8, 3), np.uint8), tmp_path / "out.mp4", batch_size=3,
                          progress=False, aligner=aligner)
    name, n, fps, audio, frames = probe(out)
    _, _, src_fps, _, src_frames = probe(src)
    assert (name, n, fps, audio) == ("h264", 8, src_fps, "aac") and src_fps == FPS
    assert model.faces == 8
    assert np.abs(frames.astype(int) - src_frames).mean() < 3
    # a tint shows inside the face only
    out = jobs.stylize_video(StandIn(tint=(1.0, -1.0, -1.0)), src, np.zeros((8, 8, 3), np.uint8),
                          tmp_path / "red.mp4", progress=False, aligner=aligner, keep_audio=False)
    name, n, _, audio, frames = probe(out)
    assert (n, audio) == (8, None)
    diff = np.abs(frames.astype(int) - src_frames).mean(-1)
    assert diff[:, 100:140, 140:180].mean() > 60 and diff[:, :, :40].mean() < 3
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_stylize_video_no_face_and_other_containers(aligner, astronaut, tmp_path):
    """Frames without a face pass through; PCM audio in .mkv is re-encoded to AAC for .mp4;
    a .gif output works; unusable inputs give one-line errors."""
    src = write_video(tmp_path / "flat.mkv", face_frames(astronaut, 4, face=False), audio="pcm_s16le",
                      fmt="matroska")
    model = StandIn(tint=(1.0, 1.0, 1.0))
    out = jobs.stylize_video(model, src, np.zeros((8, 8, 3), np.uint8), tmp_path / "flat.mp4", progress=False,
                          aligner=aligner)
    name, n, _, audio, frames = probe(out)
    _, _, _, _, src_frames = probe(src)
    assert (name, n, audio, model.faces) == ("h264", 4, "aac", 0)
    assert np.abs(frames.astype(int) - src_frames).max() <= 3
    gif = jobs.stylize_video(StandIn(), write_video(tmp_path / "f.mp4", face_frames(astronaut, 3), audio=None),
                          np.zeros((8, 8, 3), np.uint8), tmp_path / "f.gif", progress=False, aligner=aligner)
    from PIL import Image
    with Image.open(gif) as im:
        assert im.n_frames == 3
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(VideoError, match="junk.mp4: cannot open as a video") as e:
        jobs.stylize_video(StandIn(), tmp_path / "junk.mp4", np.zeros((8, 8, 3), np.uint8), tmp_path / "o.mp4",
                        progress=False, aligner=aligner)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="must end in"):
        jobs.stylize_video(StandIn(), src, np.zeros((8, 8, 3), np.uint8), tmp_path / "o.avi", aligner=aligner)


@pytest.mark.slow  # about 40 s on 2 CPU cores: pSp + generator for 6 frames
def test_stylize_video_model(model, aligner, astronaut, tmp_path):
    """The 256px model (random weights): an H.264 file with every frame, the source fps and audio."""
    src = write_video(tmp_path / "face.mp4", face_frames(astronaut, 6, size=(256, 256)))
    out = jobs.stylize_video(model, src, CARTOON, tmp_path / "styled.mp4", batch_size=3,
                          progress=False, aligner=aligner)
    name, n, fps, audio, frames = probe(out)
    assert (name, n, fps, audio) == ("h264", 6, FPS, "aac")
    _, _, _, _, src_frames = probe(src)
    diff = np.abs(frames.astype(int) - src_frames).mean(-1)
    assert diff[:, 110:150, 110:150].mean() > 5  # the face changed
    assert diff[:, :, :8].mean() < 3             # left of the paste mask: the frame as it was
