"""``blendgan video`` on face images: each face moving through random styles, or (``--ramp``)
each face × style with the strength ramping from the face to the stylized result."""
from __future__ import annotations

import functools
import random
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import defaults, io
from ..controls import Strength, check_strength
from ..errors import UsageError
from ..model import BlendGAN
from ..runtime import Shard
from ..session import Session, Style
from ..synthesis import slide_window, strength_ramp, style_tour, transition_alphas
from .refine import check_invert, invert_record, refine_face
from .report import JobReport, claim_outdir, fail, model_tag, overlapped, write_failed


@torch.inference_mode()
def run_video(model: BlendGAN, input_dir: str | Path, style_dir: str | Path, outdir: str | Path,
              add_weight_index: int | None = defaults.VIDEO_ADD_WEIGHT_INDEX, n_styles: int = defaults.VIDEO_STYLES,
              seed: int = defaults.SEED, fps: float = defaults.VIDEO_FPS,
              transition_steps: int = defaults.VIDEO_TRANSITION_STEPS, hold_frames: int = defaults.VIDEO_HOLD_FRAMES,
              batch_size: int = defaults.BATCH_SIZE, overwrite: bool = False, progress: bool = True,
              cache_dir: str | Path | None = None, shard: Shard = Shard(), align: str = "never",
              layout: str = "triptych", gif: bool = False, strength: Strength = defaults.STRENGTH,
              preserve_color: bool = False, invert: str = defaults.INVERT_METHOD,
              invert_steps: int | None = None) -> JobReport:
    """Write ``{face}.mp4`` per face: [input | sliding style window | output] (``layout``
    ``'triptych'``) or the output alone (``'output'``) while the style moves through
    ``n_styles`` styles picked at random (with repeats, as the official script:
    ``random.Random(seed).choices``, one draw per face in name order).  Faces and styles are
    resized to the model's size before encoding, as the official script did.  ``gif`` writes
    ``{face}.gif`` instead (short loops).  A ``shard`` renders every ``world``-th video.
    ``strength`` and ``preserve_color``: see :mod:`blendgan.controls`; ``invert`` and
    ``invert_steps``: how faces are inverted (:mod:`blendgan.inversion`)."""
    if layout not in defaults.VIDEO_LAYOUTS:
        raise UsageError(f"layout must be one of {defaults.VIDEO_LAYOUTS}, got {layout!r}")
    check_strength(strength, model.n_latent)
    invert_steps = check_invert(invert, invert_steps)
    faces, styles = io.input_images(input_dir, "face"), io.input_images(style_dir, "style")
    session = Session(model, align=align, cache_dir=cache_dir)
    outdir = io.prepare_outdir(outdir)
    claim_outdir(outdir, "video", {
        "model": model_tag(model), "add_weight_index": add_weight_index, "styles": [s.name for s in styles],
        "n_styles": n_styles, "seed": seed, "fps": fps, "transition_steps": transition_steps,
        "hold_frames": hold_frames, "layout": layout, "strength": strength, "preserve_color": preserve_color,
        "align": align, **invert_record(invert, invert_steps)}, overwrite)
    report = JobReport()

    @functools.lru_cache(maxsize=64)
    def style(path: Path) -> Style:
        """Panel [S, S, 3] and code [1, 512] of a style, made once per job (styles repeat)."""
        return session.style(path, size=model.size)

    rng = random.Random(seed)
    alphas = transition_alphas(transition_steps, hold_frames)
    names = io.output_stems(faces)
    unreadable: set[Path] = set()  # styles that failed once: reported once, not read again
    for k, f in enumerate(tqdm(faces, desc="video", unit="video", disable=not progress)):
        chosen = rng.choices(styles, k=n_styles)  # drawn even when skipping, so resumes pick the same
        out = outdir / io.fit_name(names[f], ".gif" if gif else ".mp4")
        if not shard.mine(k):
            continue
        if io.is_done(out) and not overwrite:
            report.skipped.append(out)
            continue
        try:
            face = refine_face(session, session.face(f, size=model.size), invert, invert_steps)
        except io.ImageError as exc:
            fail(report, f, exc)
            continue
        tour: list[Style] = []
        for s in chosen:
            if s in unreadable:
                continue
            try:
                tour.append(style(s))
            except io.ImageError as exc:
                fail(report, s, exc)
                unreadable.add(s)
        if len(tour) < 2:
            fail(report, f, ValueError(f"{f}: needs at least 2 readable style images, got {len(tour)}"))
            continue

        def frames() -> Iterator[np.ndarray]:
            """Batches of RGB frames [B, H, W, 3]: every transition, then the last frame held."""
            made = ((k, sl, io.to_uint8_async(images)) for k, sl, images in
                    style_tour(session.model_for(face), face.w_plus, [s.z_embed for s in tour], alphas,
                               add_weight_index=add_weight_index, batch_size=batch_size, strength=strength,
                               preserve_color=preserve_color))
            last = None
            for k, sl, images in overlapped(made, model.device):
                outs = images()
                if layout == "triptych":
                    outs = np.stack([io.hstack([face.image, slide_window(tour[k].image, tour[k + 1].image, a), img])
                                     for a, img in zip(alphas[sl], outs)])
                yield outs
                last = outs[-1]
            yield np.repeat(last[None], hold_frames, axis=0)

        try:
            io.write_video(frames(), out, fps)
        except OSError as exc:  # this video is lost (already cleaned up); the others may still be written
            write_failed(report, out, exc)
            continue
        report.written.append(out)
    return report


@torch.inference_mode()
def run_ramp(model: BlendGAN, input_dir: str | Path, style_dir: str | Path, outdir: str | Path,
             add_weight_index: int | None = defaults.VIDEO_ADD_WEIGHT_INDEX, fps: float = defaults.VIDEO_FPS,
             transition_steps: int = defaults.VIDEO_TRANSITION_STEPS, hold_frames: int = defaults.VIDEO_HOLD_FRAMES,
             batch_size: int = defaults.BATCH_SIZE, overwrite: bool = False, progress: bool = True,
             cache_dir: str | Path | None = None, shard: Shard = Shard(), align: str = "never",
             layout: str = "triptych", gif: bool = False, strength: float = defaults.STRENGTH,
             preserve_color: bool = False, invert: str = defaults.INVERT_METHOD,
             invert_steps: int | None = None) -> JobReport:
    """Write ``{face}_v_{style}_ramp.mp4`` for every face × style: the strength ramps from 0
    (the face) to ``strength`` (the stylized result) along the official sigmoid transition
    (``transition_steps`` frames), is held ``hold_frames`` frames, then ramps back, so the
    video loops.  ``layout`` ``'triptych'`` shows [input | style | output].  A ``shard``
    renders every ``world``-th video.  ``invert``, ``invert_steps``: see :func:`run_video`."""
    if layout not in defaults.VIDEO_LAYOUTS:
        raise UsageError(f"layout must be one of {defaults.VIDEO_LAYOUTS}, got {layout!r}")
    invert_steps = check_invert(invert, invert_steps)
    peak = check_strength(strength)
    if not isinstance(peak, float):
        raise UsageError("a strength ramp needs one strength, not one per layer")
    faces, styles = io.input_images(input_dir, "face"), io.input_images(style_dir, "style")
    session = Session(model, align=align, cache_dir=cache_dir)
    outdir = io.prepare_outdir(outdir)
    claim_outdir(outdir, "ramp", {
        "model": model_tag(model), "add_weight_index": add_weight_index, "fps": fps,
        "transition_steps": transition_steps, "hold_frames": hold_frames, "layout": layout,
        "strength": peak, "preserve_color": preserve_color, "align": align,
        **invert_record(invert, invert_steps)}, overwrite)
    report = JobReport()
    up = [peak * a for a in transition_alphas(transition_steps, hold_frames)]
    strengths = up + up[::-1]
    face_names, style_names = io.output_stems(faces), io.output_stems(styles)
    pairs = [(f, s) for f in faces for s in styles]
    encoded: dict = {}
    for k, (f, s) in enumerate(tqdm(pairs, desc="ramp", unit="video", disable=not progress)):
        out = outdir / io.fit_name(f"{face_names[f]}_v_{style_names[s]}_ramp", ".gif" if gif else ".mp4")
        if not shard.mine(k):
            continue
        if io.is_done(out) and not overwrite:
            report.skipped.append(out)
            continue
        try:
            for path, encode in ((f, session.face), (s, session.style)):
                if path not in encoded:
                    encoded[path] = encode(path, size=model.size)
                    if path == f:
                        encoded[path] = refine_face(session, encoded[path], invert, invert_steps)
        except io.ImageError as exc:
            fail(report, path, exc)
            encoded[path] = None
            continue
        face, style = encoded[f], encoded[s]
        if face is None or style is None:
            continue

        def frames() -> Iterator[np.ndarray]:
            made = ((sl, io.to_uint8_async(images)) for sl, images in
                    strength_ramp(session.model_for(face), face.w_plus, style.z_embed, strengths, add_weight_index=add_weight_index,
                                  batch_size=batch_size, preserve_color=preserve_color))
            for _, images in overlapped(made, model.device):
                outs = images()
                yield outs if layout == "output" else np.stack([io.hstack([face.image, style.image, o])
                                                                for o in outs])

        try:
            io.write_video(frames(), out, fps)
        except OSError as exc:  # this video is lost (already cleaned up); the others may still be written
            write_failed(report, out, exc)
            continue
        report.written.append(out)
    return report
