"""The demo page: a ``gradio.Blocks`` around a :class:`blendgan.web.studio.Studio`.

Pick or upload a face and a style, move the sliders, generate, download the PNG; a second tab
renders a short video of the face moving through two or more styles.  One job at a time per
model (the page's queue runs one event at a time, and the session's lock guards the
networks); analytics, SSR, sharing and the MCP server are off: nothing leaves the machine.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Sequence

from .. import defaults, io
from ..errors import BlendGANError, DependencyError, printable
from .studio import MAX_STRENGTH, VIDEO_FPS, VIDEO_HOLD, VIDEO_MAX_FRAMES, VIDEO_STEPS, Studio, describe
from .uploads import list_examples

log = logging.getLogger("blendgan")

HISTORY_SIZE = 8                      # results shown in the "last results" gallery
GRADIO_CACHE_CLEANUP = (600, 3600)    # Gradio's copies: checked every 10 min, removed after 1 h
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "test_imgs"


def import_gradio():
    """``import gradio``, or :class:`blendgan.errors.DependencyError` with the install command."""
    try:
        import gradio
    except ImportError:
        raise DependencyError('the web demo needs Gradio: pip install "blendgan[web]"') from None
    return gradio


INTRO = """\
# BlendGAN
Pick or upload a **face** and a **style**, then **Generate**. *add_weight_index* keeps the first
N of the {n_latent} W+ layers pure face (more of the face's structure); *style strength* scales the
style part of the blend (1 = the official result, 0 = the face alone, up to 2 = further toward the
style); *keep the face's colours* leaves its fine layers unstylized; a second style can be mixed in.
The Video tab uses the same strength and colour setting. Everything runs on this machine
({device}, {size}px); one job runs at a time.
"""


class Handlers:
    """The page's callbacks: :class:`Studio` calls with their failures turned into messages.

    A :class:`blendgan.errors.BlendGANError` (a bad upload, no face found ...) becomes
    ``gradio.Error`` with its one line (no stack trace in the
    page); anything unexpected is logged with its traceback on the server and reported in one
    line.  Notes (e.g. "2 faces found") are shown with ``gradio.Warning``.
    """

    def __init__(self, studio: Studio, gr, face_examples: Sequence[Path] = (), style_examples: Sequence[Path] = ()):
        self.studio, self.gr = studio, gr
        self.face_examples, self.style_examples = list(face_examples), list(style_examples)

    def _guard(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except BlendGANError as exc:
            raise self.gr.Error(printable(str(exc)), print_exception=False) from None
        except self.gr.Error:
            raise
        except Exception as exc:  # never a stack trace in the page
            log.exception("web demo: unexpected error")
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise self.gr.Error(f"internal error ({type(exc).__name__}{': ' + first if first else ''}); "
                                "see the server log", print_exception=False) from None

    def _notes(self, notes: Sequence[str]) -> None:
        for note in notes:
            self.gr.Warning(printable(note))

    # faces
    def face_upload(self, path):
        """Uploaded face file -> (face ref, preview, status)."""
        if not path:
            raise self.gr.Error("no file received", print_exception=False)
        ref, preview, notes = self._guard(self.studio.load_face, path)
        self._notes(notes)
        return ref, preview, f"Face: **{describe(ref)}**"

    def face_pick(self, index):
        """Gallery index of an example face -> (face ref, preview, status)."""
        if index is None or not 0 <= int(index) < len(self.face_examples):
            raise self.gr.Error("pick one of the example faces", print_exception=False)
        return self.face_upload(str(self.face_examples[int(index)]))

    def face_random(self):
        """A new random face -> (face ref, preview, status)."""
        ref, preview = self._guard(self.studio.random_face)
        return ref, preview, f"Face: **{describe(ref)}** (seed {ref['seed']})"

    # styles
    def style_upload(self, path):
        """Uploaded style file -> (style ref, preview, status)."""
        if not path:
            raise self.gr.Error("no file received", print_exception=False)
        ref, preview = self._guard(self.studio.load_style, path)
        return ref, preview, f"Style: **{describe(ref)}**"

    def style_pick(self, index):
        """Gallery index of an example style -> (style ref, preview, status)."""
        if index is None or not 0 <= int(index) < len(self.style_examples):
            raise self.gr.Error("pick one of the example styles", print_exception=False)
        return self.style_upload(str(self.style_examples[int(index)]))

    def style_random(self):
        """A new random style code -> (style ref, no preview, status)."""
        ref = self._guard(self.studio.random_style)
        return ref, None, f"Style: **{describe(ref)}** (seed {ref['seed']}; a random code has no picture)"

    # the second style of a mix
    def mix_pick(self, name):
        """Name of an example style (or "none") -> (second style ref, status)."""
        by_name = {p.stem: p for p in self.style_examples}
        if not name or name not in by_name:
            return None, "Second style: none"
        ref, _ = self._guard(self.studio.load_style, str(by_name[name]))
        return ref, f"Second style: **{describe(ref)}**"

    def mix_upload(self, path):
        """Uploaded second style -> (second style ref, status)."""
        if not path:
            raise self.gr.Error("no file received", print_exception=False)
        ref, _ = self._guard(self.studio.load_style, path)
        return ref, f"Second style: **{describe(ref)}**"

    # generation
    def generate(self, face_ref, style_ref, add_weight_index, strength, preserve_color, mix_ref, mix, history):
        """-> (result PNG path, download path, history gallery, history state, status)."""
        t0 = time.perf_counter()
        image = self._guard(self.studio.render, face_ref, style_ref, add_weight_index, strength, preserve_color,
                            mix_ref, mix)
        i, s = int(round(float(add_weight_index))), float(strength)
        mixed = isinstance(mix_ref, dict) and float(mix or 0) > 0
        style_name = (f"{describe(style_ref)}+{describe(mix_ref)}" if mixed else describe(style_ref))
        stem = f"{describe(face_ref)}_x_{style_name}_i{i}_s{s:.2f}{'_pc' if preserve_color else ''}"
        path = self._guard(self.studio.save_png, image, stem)
        history = dict(history) if isinstance(history, dict) else {"n": 0, "items": []}
        n = history["n"] + 1
        caption = f"#{n} {describe(face_ref)} × {style_name}, i={i}, s={s:.2f}"
        items = [(str(path), caption)] + [it for it in history.get("items", []) if Path(it[0]).exists()]
        history = {"n": n, "items": items[:HISTORY_SIZE]}
        extras = (", colours kept" if preserve_color else "") + (
            f", {float(mix):.0%} {describe(mix_ref)}" if mixed else "")
        status = (f"**Result #{n}**: {describe(face_ref)} × {describe(style_ref)}, add_weight_index {i}, "
                  f"strength {s:.2f}{extras} ({time.perf_counter() - t0:.1f} s)")
        return str(path), str(path), history["items"], history, status

    def maybe_generate(self, face_ref, style_ref, add_weight_index, strength, preserve_color, mix_ref, mix, history):
        """:meth:`generate` when both a face and a style are chosen; otherwise nothing changes."""
        if not isinstance(face_ref, dict) or not isinstance(style_ref, dict):
            return (self.gr.skip(),) * 5
        return self.generate(face_ref, style_ref, add_weight_index, strength, preserve_color, mix_ref, mix, history)

    # video
    def video(self, face_ref, style_names, uploads, use_current, style_ref, add_weight_index, steps, hold, fps,
              strength=1.0, preserve_color=False, progress=None):
        """-> (mp4 path, status).  Styles: the chosen examples, the uploads, and optionally the
        style of the image tab, in that order."""
        refs = []
        by_name = {p.stem: p for p in self.style_examples}
        for name in style_names or []:
            if name in by_name:
                refs.append(self._guard(self.studio.load_style, str(by_name[name]))[0])
        for path in uploads or []:
            refs.append(self._guard(self.studio.load_style, str(path))[0])
        if use_current and isinstance(style_ref, dict):
            refs.append(style_ref)
        if not isinstance(face_ref, dict):
            raise self.gr.Error("choose a face in the Image tab first", print_exception=False)
        t0 = time.perf_counter()
        report = None if progress is None else (
            lambda done, total: progress(done / total, desc=f"frame {done}/{total}"))
        path = self._guard(self.studio.render_video, face_ref, refs, add_weight_index, steps, hold, fps, report,
                           strength, preserve_color)
        if io.video_backend() != "pyav":
            self.gr.Warning('this video is MPEG-4 (mp4v), which browsers may not play; '
                            'pip install "blendgan[video]" for H.264')
        return str(path), (f"**Video**: {describe(face_ref)} through {len(refs)} styles "
                           f"({time.perf_counter() - t0:.1f} s)")


def _select_index(evt) -> int | None:
    index = getattr(evt, "index", None)
    if isinstance(index, (list, tuple)):
        index = index[0] if index else None
    return index


def build_app(model, *, face_examples: str | os.PathLike | None = EXAMPLES_DIR / "face_imgs",
              style_examples: str | os.PathLike | None = EXAMPLES_DIR / "style_imgs",
              studio: Studio | None = None, title: str = "BlendGAN"):
    """The demo page for a loaded :class:`blendgan.BlendGAN` (a ``gradio.Blocks``, queued one
    event at a time).  ``face_examples`` / ``style_examples``: folders shown as galleries
    (default: the repository's ``test_imgs``; None or missing hides them).  ``studio``: an
    existing :class:`Studio` (else one is made; it is kept as ``demo.studio``)."""
    gr = import_gradio()
    studio = studio or Studio(model)
    faces, styles = list_examples(face_examples), list_examples(style_examples)
    h = Handlers(studio, gr, faces, styles)
    n_latent = model.n_latent

    # Gradio keeps its own copies of uploads and results (face photos among them): checked every
    # 10 minutes, removed once an hour old, and all removed when the server closes
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=GRADIO_CACHE_CLEANUP) as demo:
        face_state, style_state, mix_state = gr.State(None), gr.State(None), gr.State(None)
        history_state = gr.State({"n": 0, "items": []})
        gr.Markdown(INTRO.format(n_latent=n_latent, device=model.device, size=model.size))
        with gr.Tab("Image"):
            with gr.Row():
                with gr.Column():
                    face_preview = gr.Image(label="Face", interactive=False, type="numpy", height=256,
                                            elem_id="face-preview")
                    face_upload = gr.File(label="Upload a face", file_types=["image"], type="filepath",
                                          height=110, elem_id="face-upload", visible=studio.can_encode_faces)
                    face_gallery = gr.Gallery(value=[(str(p), p.stem) for p in faces], label="…or pick a face",
                                              columns=4, height=140, allow_preview=False, interactive=False,
                                              elem_id="face-gallery", visible=bool(faces) and studio.can_encode_faces)
                    face_random = gr.Button("Random face", elem_id="random-face")
                with gr.Column():
                    style_preview = gr.Image(label="Style", interactive=False, type="numpy", height=256,
                                             elem_id="style-preview")
                    style_upload = gr.File(label="Upload a style", file_types=["image"], type="filepath",
                                           height=110, elem_id="style-upload", visible=studio.can_embed_styles)
                    style_gallery = gr.Gallery(value=[(str(p), p.stem) for p in styles], label="…or pick a style",
                                               columns=4, height=140, allow_preview=False, interactive=False,
                                               elem_id="style-gallery",
                                               visible=bool(styles) and studio.can_embed_styles)
                    style_random = gr.Button("Random style", elem_id="random-style")
                with gr.Column():
                    result = gr.Image(label="Result", interactive=False, type="filepath", format="png", height=256,
                                      elem_id="result-image")
                    awi = gr.Slider(0, n_latent, value=min(defaults.TRANSFER_ADD_WEIGHT_INDEX, n_latent), step=1,
                                    label="add_weight_index",
                                    info=f"first N of {n_latent} W+ layers stay pure face (0 = learned weights only)",
                                    elem_id="awi-slider")
                    strength = gr.Slider(0.0, MAX_STRENGTH, value=defaults.STRENGTH, step=0.05,
                                         label="style strength",
                                         info="0 = the face alone, 1 = the official blend, more = further toward "
                                              "the style", elem_id="strength-slider")
                    preserve = gr.Checkbox(label="keep the face's colours", value=False, elem_id="preserve-color",
                                           info="its fine layers (64×64 and up) are not stylized")
                    with gr.Accordion("Mix in a second style", open=False, elem_id="mix-accordion"):
                        mix_pick = gr.Dropdown(["none"] + [p.stem for p in styles], value="none",
                                               label="second style", elem_id="mix-style",
                                               visible=studio.can_embed_styles)
                        mix_upload = gr.File(label="…or upload one", file_types=["image"], type="filepath",
                                             height=90, elem_id="mix-upload", visible=studio.can_embed_styles)
                        mix = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="share of the second style",
                                        elem_id="mix-slider")
                    generate = gr.Button("Generate", variant="primary", elem_id="generate")
                    download = gr.DownloadButton("Download PNG", elem_id="download-png")
            status = gr.Markdown("Choose a face and a style.", elem_id="status")
            history = gr.Gallery(label="Last results", columns=HISTORY_SIZE, fit_columns=False, height=200,
                                 allow_preview=True, interactive=False, elem_id="history")

        with gr.Tab("Video"):
            gr.Markdown("The face chosen in the Image tab moves through the styles below, in order "
                        f"(at most {VIDEO_MAX_FRAMES} frames).")
            with gr.Row():
                with gr.Column():
                    video_styles = gr.CheckboxGroup([p.stem for p in styles], value=[p.stem for p in styles[:2]],
                                                    label="Example styles", elem_id="video-styles",
                                                    visible=bool(styles) and studio.can_embed_styles)
                    video_uploads = gr.File(label="More styles", file_count="multiple", file_types=["image"],
                                            type="filepath", height=110, elem_id="video-uploads",
                                            visible=studio.can_embed_styles)
                    video_current = gr.Checkbox(label="Add the style of the Image tab at the end", value=False,
                                                elem_id="video-current")
                    video_awi = gr.Slider(0, n_latent, value=min(defaults.VIDEO_ADD_WEIGHT_INDEX, n_latent), step=1,
                                          label="add_weight_index", elem_id="video-awi")
                    video_steps = gr.Slider(2, 30, value=VIDEO_STEPS, step=1, label="transition frames per style change",
                                            elem_id="video-steps")
                    video_hold = gr.Slider(0, 15, value=VIDEO_HOLD, step=1, label="frames held on each style",
                                           elem_id="video-hold")
                    video_fps = gr.Slider(1, 30, value=VIDEO_FPS, step=1, label="frames per second",
                                          elem_id="video-fps")
                    video_button = gr.Button("Render video", variant="primary", elem_id="render-video")
                with gr.Column():
                    video_out = gr.Video(label="Video", interactive=False, height=384, elem_id="video-out", loop=True)
                    video_status = gr.Markdown("", elem_id="video-status")

        # -- events --------------------------------------------------------------------------
        gen_inputs = [face_state, style_state, awi, strength, preserve, mix_state, mix, history_state]
        gen_outputs = [result, download, history, history_state, status]

        def pick_face(evt):
            return h.face_pick(_select_index(evt))

        def pick_style(evt):
            return h.style_pick(_select_index(evt))

        # gradio finds the event-data argument by its (evaluated) annotation
        pick_face.__annotations__ = {"evt": gr.SelectData}
        pick_style.__annotations__ = {"evt": gr.SelectData}

        def render_video(face_ref, names, uploads, use_current, style_ref, i, steps, hold, fps, s, keep,
                         progress=gr.Progress()):
            return h.video(face_ref, names, uploads, use_current, style_ref, i, steps, hold, fps, s, keep, progress)

        face_outputs = [face_state, face_preview, status]
        style_outputs = [style_state, style_preview, status]
        # a new face or style, or a slider let go, re-renders at once (codes are cached, so only
        # the generator runs); Generate does the same on demand
        uploaded_face = face_upload.upload(h.face_upload, face_upload, face_outputs)
        uploaded_style = style_upload.upload(h.style_upload, style_upload, style_outputs)
        for event in (uploaded_face, face_gallery.select(pick_face, None, face_outputs),
                      face_random.click(h.face_random, None, face_outputs),
                      uploaded_style, style_gallery.select(pick_style, None, style_outputs),
                      style_random.click(h.style_random, None, style_outputs)):
            event.success(h.maybe_generate, gen_inputs, gen_outputs)
        # the upload boxes are drop zones: emptied after each upload, good or bad (the preview
        # above shows what was taken), so that the next file can be dropped at once
        # (.then does not follow a failed event in Gradio 6, hence .failure as well)
        for event, box in ((uploaded_face, face_upload), (uploaded_style, style_upload)):
            event.then(lambda: None, None, box, queue=False)
            event.failure(lambda: None, None, box, queue=False)
        for slider in (awi, strength, mix):
            slider.release(h.maybe_generate, gen_inputs, gen_outputs, trigger_mode="always_last")
        preserve.input(h.maybe_generate, gen_inputs, gen_outputs, trigger_mode="always_last")
        mix_pick.input(h.mix_pick, mix_pick, [mix_state, status]).success(h.maybe_generate, gen_inputs, gen_outputs)
        uploaded_mix = mix_upload.upload(h.mix_upload, mix_upload, [mix_state, status])
        uploaded_mix.success(h.maybe_generate, gen_inputs, gen_outputs)
        uploaded_mix.then(lambda: None, None, mix_upload, queue=False)
        uploaded_mix.failure(lambda: None, None, mix_upload, queue=False)
        generate.click(h.generate, gen_inputs, gen_outputs)
        video_button.click(render_video, [face_state, video_styles, video_uploads, video_current, style_state,
                                          video_awi, video_steps, video_hold, video_fps, strength, preserve],
                           [video_out, video_status])

    demo.queue(default_concurrency_limit=1, max_size=32)
    demo.studio = studio
    return demo
