"""Stylize the face in a video: track it, align each frame, restyle, paste it back.

Per frame: dlib finds the face (:class:`blendgan.align.FaceTracker`: the largest face, then
whichever stays nearest, landmarks smoothed over time), the frame is cropped like FFHQ
(:func:`blendgan.align.crop_quad`), the crop is inverted with the pSp encoder and
regenerated with the style's code, and the stylized face is warped back into the frame
under a feathered elliptic mask (:func:`blendgan.align.paste_face`).  Frames without a face
are passed through unchanged.

Frames are decoded, processed in batches of ``batch_size`` faces and encoded as they
come, so memory does not depend on the video's length.  The output keeps the source's
frame timestamps (hence its frame rate) and, with ``keep_audio``, its audio: the packets
are copied when the output container takes the codec, else re-encoded to AAC.
"""
from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from .. import defaults, io
from ..align import FaceAligner, FaceTracker, crop_quad, face_quad, paste_face
from ..align.track import DEFAULT_SMOOTH
from ..controls import Strength, check_strength
from ..errors import DependencyError, UsageError, VideoError
from ..io.images import check_size
from ..io.video import CONTAINERS, DEFAULT_CRF
from .refine import check_invert, invert_record, stylize_crops
from .report import JobReport, claim_outdir, fail, model_tag, write_failed

DEFAULT_ALIGN_SIZE = defaults.FACE_VIDEO_ALIGN_SIZE
# audio codecs the containers accept as they are (others are re-encoded to AAC)
COPYABLE_AUDIO = {
    "mp4": {"aac", "mp3", "alac", "opus", "flac", "ac3", "eac3"},
    "mov": {"aac", "mp3", "alac", "ac3", "eac3", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_f32le"},
    "matroska": {"aac", "mp3", "alac", "opus", "flac", "ac3", "eac3", "vorbis", "pcm_s16le", "pcm_s24le",
                 "pcm_f32le"},
}
LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


def is_video_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` is taken as a video of a face (:data:`blendgan.defaults.VIDEO_INPUT_SUFFIXES`)."""
    return Path(path).suffix.lower() in defaults.VIDEO_INPUT_SUFFIXES


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
                   add_weight_index: int | None = defaults.TRANSFER_ADD_WEIGHT_INDEX, batch_size: int = defaults.BATCH_SIZE,
                   align_size: int = DEFAULT_ALIGN_SIZE, smooth: float | None = DEFAULT_SMOOTH,
                   aligner: FaceAligner | None = None, strength: Strength = defaults.STRENGTH,
                   preserve_color: bool = False, invert: str = defaults.INVERT_METHOD,
                   invert_steps: int | None = None) -> Iterator[np.ndarray]:
    """Restyle the face in each RGB uint8 frame [H, W, 3]; yields frames [H, W, 3] in order.

    ``z_embed`` [1, 512] (from :func:`style_code`); ``fps`` sets the smoothing's time step.
    Up to ``batch_size`` faces are held back to run the networks in batches.  ``strength``
    and ``preserve_color``: see :mod:`blendgan.controls`.  ``invert`` other than 'psp'
    refines each frame's crop, one at a time (:mod:`blendgan.inversion`; slow: every frame
    is optimised).
    """
    invert_steps = check_invert(invert, invert_steps)
    if model.psp is None:
        raise UsageError("video stylization needs the pSp encoder (load it with psp_encoder=...)")
    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}")
    check_strength(strength)  # (a per-layer list's length is the model's to check)
    tracker = FaceTracker((aligner or FaceAligner()).load(), fps, smooth)
    pending: list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]] = []  # frame, quad, crop

    def flush() -> Iterator[np.ndarray]:
        crops = [c for _, _, c in pending if c is not None]
        faces = iter(())
        if crops and invert != "psp":
            faces = iter(stylize_crops(model, np.stack(crops), invert, invert_steps, lambda w, m: io.to_uint8(
                m.synthesize(w_plus=w, z_embed=z_embed, add_weight_index=add_weight_index, strength=strength,
                             preserve_color=preserve_color))[0]))
        elif crops:
            w_plus = model.encode_face(io.to_tensor(np.stack(crops), model.device))
            faces = iter(io.to_uint8(model.synthesize(w_plus=w_plus, z_embed=z_embed,
                                                      add_weight_index=add_weight_index, strength=strength,
                                                      preserve_color=preserve_color)))
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
    reason = io.not_regular(path)
    if reason:  # a FIFO would block the demuxer, a device never end
        raise VideoError(reason)
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise VideoError(f"{path}: cannot open as a video ({exc.strerror or type(exc).__name__})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: has no video stream")
    ctx = container.streams.video[0].codec_context
    try:  # the frame size is known from the stream before any frame is decoded
        check_size(f"{path}: frames", ctx.width, ctx.height)
    except io.ImageError as exc:
        container.close()
        raise VideoError(str(exc)) from None
    return container


def video_fps(stream) -> float:
    """Frame rate of a PyAV video stream (average, else guessed, else 30)."""
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else 30.0


@torch.inference_mode()
def stylize_video(model, input_video: str | os.PathLike, style_image, out_path: str | os.PathLike, *,
                  add_weight_index: int | None = defaults.TRANSFER_ADD_WEIGHT_INDEX, batch_size: int = defaults.BATCH_SIZE,
                  align_size: int = DEFAULT_ALIGN_SIZE, smooth: float | None = DEFAULT_SMOOTH,
                  keep_audio: bool = True, crf: int = DEFAULT_CRF,
                  progress: bool = True, aligner: FaceAligner | None = None, strength: Strength = defaults.STRENGTH,
                  preserve_color: bool = False, invert: str = defaults.INVERT_METHOD,
                  invert_steps: int | None = None) -> Path:
    """Restyle the face in ``input_video`` with ``style_image`` (see :func:`style_code`); write
    ``out_path`` atomically and return it (``strength``, ``preserve_color``: see :mod:`blendgan.controls`;
    ``invert``, ``invert_steps``: see :func:`stylize_frames`).

    ``.mp4``/``.m4v``/``.mov``/``.mkv``: H.264 (yuv420p, ``crf``; mp4/mov with ``+faststart``)
    with the source's timestamps and, with ``keep_audio``, its audio.  ``.gif``: a looping
    GIF at the source's frame rate (short clips; no audio).  Needs PyAV (``blendgan[video]``)
    and dlib (``blendgan[align]``).
    """
    try:
        import av
    except ImportError:
        raise DependencyError('video input needs PyAV: pip install "blendgan[video]"') from None
    from tqdm.auto import tqdm
    input_video, out_path = Path(input_video), Path(out_path)
    if io.same_file(out_path, input_video):
        raise UsageError(f"{out_path}: the output would replace the input video")
    suffix = out_path.suffix.lower()
    if suffix != ".gif" and suffix not in CONTAINERS:
        raise UsageError(f"{out_path}: output must end in .gif or {', '.join(CONTAINERS)}")
    if model.psp is None:
        raise UsageError("video stylization needs the pSp encoder (load it with psp_encoder=...)")
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
                      smooth=smooth, aligner=aligner, strength=strength, preserve_color=preserve_color,
                      invert=invert, invert_steps=invert_steps)
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
    styles = io.input_images(style_dir, "style")
    outdir = io.prepare_outdir(outdir)
    pixels = {k: v for k, v in options.items()  # not how it looks
              if k not in ("progress", "batch_size", "invert", "invert_steps")}
    pixels.update(invert_record(options.get("invert", defaults.INVERT_METHOD), options.get("invert_steps")))
    claim_outdir(outdir, "face video", {"model": model_tag(model), "video": input_video.name, **pixels}, overwrite)
    names = io.output_stems(styles)
    aligner = (aligner or FaceAligner()).load()  # loaded once for every style
    report = JobReport()
    for s in styles:
        out = outdir / io.fit_name(f"{input_video.stem}_v_{names[s]}", ".gif" if gif else ".mp4")
        if io.is_done(out) and not overwrite:
            report.skipped.append(out)
            continue
        try:
            report.written.append(stylize_video(model, input_video, s, out, aligner=aligner, **options))
        except io.ImageError as exc:
            fail(report, s, exc)
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
    dst = av.open(str(tmp), mode="w", format=fmt, options=io.container_options(fmt))
    try:
        width, height = vin.codec_context.width // 2 * 2, vin.codec_context.height // 2 * 2
        vout = io.add_h264_stream(dst, width, height, fps, crf)
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
