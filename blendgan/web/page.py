"""The demo page: a ``gradio.Blocks`` around a :class:`blendgan.web.studio.Studio`.

Pick or upload a face and a style, move the sliders, generate, download the PNG; a second tab
renders a short video of the face moving through two or more styles.  One job at a time per
model (the session's lock guards the networks; a job that has to wait says what it waits
for); analytics, SSR, sharing and the MCP server are off: nothing leaves the machine, and the
page uses the system's fonts (nothing is fetched).

Every outcome, failures included, is written in the status line and stays there until the
next action: the callbacks never raise (a raised error would only show in a pop-up that hides
itself, and leave "Error" badges on the outputs).
"""
from __future__ import annotations

import html
import logging
import os
import threading
import time
from pathlib import Path
from typing import Sequence

from .. import defaults, io
from ..errors import BlendGANError, DependencyError, printable
from .studio import MAX_STRENGTH, REFINE_MAX_STEPS, VIDEO_FPS, VIDEO_HOLD, VIDEO_MAX_FRAMES, VIDEO_STEPS, Studio, describe
from .uploads import list_examples

log = logging.getLogger("blendgan")

HISTORY_SIZE = 8                      # results shown in the "last results" gallery
GRADIO_CACHE_CLEANUP = (600, 3600)    # Gradio's copies: checked every 10 min, removed after 1 h
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "test_imgs"
WAIT_POLL = 0.5                       # seconds between updates of a "waiting for ..." line

#: the system's own fonts: nothing to fetch, and bold text is drawn from a real bold face
SYSTEM_FONTS = ("system-ui", "-apple-system", "Segoe UI", "Roboto", "Ubuntu", "Cantarell", "Noto Sans",
                "DejaVu Sans", "Helvetica Neue", "Arial", "sans-serif")
SYSTEM_MONO_FONTS = ("ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "DejaVu Sans Mono", "monospace")


def import_gradio():
    """``import gradio``, or :class:`blendgan.errors.DependencyError` with the install command."""
    try:
        import gradio
    except ImportError:
        raise DependencyError('the web demo needs Gradio: pip install "blendgan[web]"') from None
    return gradio


# -- words on the page (the same on both tabs) -----------------------------------------------------
INTRO = """\
# BlendGAN
Pick or upload a **face** and a **style**; the result appears as soon as both are chosen, and
again whenever a setting is let go (or on **Generate**). Everything runs on this machine
({device}, {size} px); one picture or video is made at a time.
"""
STRUCTURE_LABEL = "face structure kept"
STRUCTURE_INFO = ("how many of the {n} layers, coarse to fine, come from the face alone: more keeps more of "
                  "the face's shape, fewer lets the style reshape it (technical name: add_weight_index)")
STRENGTH_LABEL = "style strength"
STRENGTH_INFO = "0 = the face alone, 1 = the usual blend, up to 2 = further toward the style"
PRESERVE_LABEL = "keep the face's colours"
PRESERVE_INFO = "the finest layers, which carry colour and texture, stay the face's"
MIX_LABEL = "share of the second style"
REFINE_LABEL = "make the face more faithful"
#: the choices of the "more faithful" control: (words on the page, inversion method)
REFINE_CHOICES = [("Off (instant)", "psp"), ("Refine", "optimize"), ("Refine more (slowest)", "pti")]
REFINE_INFO = ("Off: the encoder's first guess (technical name: pSp), instant. Refine: the face adjusted to "
               "the photo (optimize). Refine more: the generator tuned to this face too (pivotal tuning, pti), "
               "the closest. Slow on a CPU (minutes), done once per face and setting. Photos only: a random "
               "face has nothing to refine.")
REFINE_STEPS_LABEL = "refinement steps"
REFINE_STEPS_INFO = ("more steps come closer to the photo and take longer; Refine more runs them twice "
                     "(technical name: --invert-steps)")
#: how the status line names a refinement
REFINE_WORDS = {"optimize": "refine", "pti": "refine more"}


def esc(text) -> str:
    """Any text (a file name ...) made safe to show inside the page's HTML, on one line."""
    return html.escape(printable(str(text)))


def status_html(text: str, kind: str = "ok") -> str:
    """The status line: ``text`` (HTML, already escaped) styled by ``kind``: ok, note, wait or error."""
    role = "alert" if kind == "error" else "status"
    return f'<div class="bg-status bg-{kind}" role="{role}">{text}</div>'


def caption_html(text: str) -> str:
    """The line under a preview saying what is in use (HTML, already escaped)."""
    return f'<div class="bg-caption">{text}</div>'


# CSS of the page: status kinds, captions, example galleries whose every picture fits, and the
# upload buttons and result side by side with Generate
CSS = """
.bg-status { padding: 6px 10px; border-radius: 6px; border: 1px solid var(--border-color-primary);
             min-height: 1.5em; line-height: 1.5; }
.bg-error { background: #fdecea; border-color: #d9534f; color: #7a1a10; }
.bg-error::before { content: "⚠ "; }
.bg-wait { background: #fff7dd; border-color: #d9a400; color: #5c4400; }
.bg-note { background: #eaf2ff; border-color: #7aa2e0; }
.bg-caption { font-size: var(--text-sm); color: var(--body-text-color-subdued); min-height: 2.6em; }
.bg-examples .grid-container { grid-template-columns: repeat(4, minmax(0, 1fr)) !important; }
.bg-examples .thumbnail-item { width: 100% !important; height: auto !important; aspect-ratio: 1 / 1; }
.bg-examples { flex-grow: 0 !important; }
.bg-examples .grid-wrap, .bg-examples .gallery-container { height: auto !important; min-height: 0 !important;
                                                        max-height: none !important;
                                                        overflow: visible !important; }
"""

# the page's script: Enter in a slider's number box applies it, and a typed value outside the
# slider's range is brought back into it (with the number box showing what is used)
JS = """
() => {
  const BOX = 'input[type=number][aria-label^="number input for"]';
  const clamp = (box) => {
    const min = parseFloat(box.min), max = parseFloat(box.max);
    const range = box.closest('.block') && box.closest('.block').querySelector('input[type=range]');
    let v = parseFloat(box.value);
    if (Number.isNaN(v)) v = range ? parseFloat(range.value) : min;
    const used = Math.min(Math.max(v, min), max);
    if (String(used) !== box.value) {
      box.value = String(used);
      box.dispatchEvent(new Event('input', {bubbles: true}));
    }
  };
  document.addEventListener('blur', (e) => {
    if (e.target instanceof Element && e.target.matches(BOX)) clamp(e.target);
  }, true);
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && e.target instanceof Element && e.target.matches(BOX)) {
      e.preventDefault();
      e.target.blur();
    }
  }, true);
}
"""

# after a choice: bring the result and Generate on screen (a phone shows one column at a time)
SCROLL_TO_RESULT = """
() => {
  const result = document.querySelector('#result-image'), button = document.querySelector('#generate');
  if (!result || !button || !result.querySelector('img')) return;
  const top = result.getBoundingClientRect().top, bottom = button.getBoundingClientRect().bottom;
  if (top < 0 || bottom > window.innerHeight) window.scrollTo(0, window.scrollY + top - 8);
}
"""


def page_assets() -> dict:
    """The ``Blocks.launch`` arguments that dress the page: theme (system fonts), CSS and script."""
    gr = import_gradio()
    theme = gr.themes.Default(font=SYSTEM_FONTS, font_mono=SYSTEM_MONO_FONTS)
    return dict(theme=theme, css=CSS, js=JS)


class Handlers:
    """The page's callbacks: :class:`Studio` calls whose outcome is written in the status line.

    A :class:`blendgan.errors.BlendGANError` (a bad upload, no face found ...) becomes an error
    status with its one line, and the outputs keep what they showed (the face or style still in
    use); anything unexpected is logged with its traceback on the server and reported in one
    line.  Notes (e.g. "2 faces found") join the status.
    """

    def __init__(self, studio: Studio, gr, face_examples: Sequence[Path] = (), style_examples: Sequence[Path] = ()):
        self.studio, self.gr = studio, gr
        self.face_examples, self.style_examples = list(face_examples), list(style_examples)

    def _run(self, fn, *args, **kwargs):
        """``(fn(...), None)``, or ``(None, one-line message)`` when it fails."""
        try:
            return fn(*args, **kwargs), None
        except BlendGANError as exc:
            return None, printable(str(exc))
        except Exception as exc:  # never a stack trace in the page
            log.exception("web demo: unexpected error")
            first = str(exc).splitlines()[0] if str(exc) else ""
            return None, (f"internal error ({type(exc).__name__}{': ' + first if first else ''}); "
                          "see the server log")

    def _skips(self, n: int) -> tuple:
        return (self.gr.skip(),) * n

    # faces and styles: (state, preview, gallery selection, caption, status, go)
    def _chosen(self, kind: str, ref: dict, preview, index, caption: str, notes: Sequence[str] = ()):
        status = f"{kind.capitalize()}: <b>{esc(describe(ref))}</b>"
        if notes:
            status += " (" + "; ".join(esc(n) for n in notes) + ")"
        return (ref, preview, self.gr.Gallery(selected_index=index), caption_html(caption),
                status_html(status, "note" if notes else "ok"), True)

    def _refused(self, message: str) -> tuple:
        """A failed choice: what was in use stays, the status says why, nothing is rendered."""
        return self._skips(4) + (status_html(esc(message), "error"), False)

    def face_upload(self, path, index=None):
        """Uploaded face file -> (face ref, preview, gallery selection, caption, status, go)."""
        if not path:
            return self._refused("no file received, please upload it again")
        loaded, error = self._run(self.studio.load_face, path)
        if error:
            return self._refused(error)
        ref, preview, notes = loaded
        return self._chosen("face", ref, preview, index, f"In use: <b>{esc(describe(ref))}</b>", notes)

    def face_pick(self, index):
        """Gallery index of an example face -> as :meth:`face_upload`."""
        if index is None or not 0 <= int(index) < len(self.face_examples):
            return self._refused("pick one of the example faces")
        return self.face_upload(str(self.face_examples[int(index)]), int(index))

    def face_random(self):
        """A new random face -> as :meth:`face_upload`."""
        made, error = self._run(self.studio.random_face)
        if error:
            return self._refused(error)
        ref, preview = made
        return self._chosen("face", ref, preview, None,
                            f"In use: <b>{esc(describe(ref))}</b>, a face the model invents")

    def style_upload(self, path, index=None):
        """Uploaded style file -> (style ref, preview, gallery selection, caption, status, go)."""
        if not path:
            return self._refused("no file received, please upload it again")
        loaded, error = self._run(self.studio.load_style, path)
        if error:
            return self._refused(error)
        ref, preview = loaded
        return self._chosen("style", ref, preview, index, f"In use: <b>{esc(describe(ref))}</b>")

    def style_pick(self, index):
        """Gallery index of an example style -> as :meth:`style_upload`."""
        if index is None or not 0 <= int(index) < len(self.style_examples):
            return self._refused("pick one of the example styles")
        return self.style_upload(str(self.style_examples[int(index)]), int(index))

    def style_random(self):
        """A new random style code -> as :meth:`style_upload`; the preview is a swatch standing for it."""
        ref, error = self._run(self.studio.random_style)
        if error:
            return self._refused(error)
        return self._chosen("style", ref, self.studio.style_swatch(ref), None,
                            f"In use: <b>{esc(describe(ref))}</b>, a random style code: it has no picture, "
                            "the swatch above stands for it")

    # the second style of a mix: (second style ref, status, go)
    def mix_pick(self, name):
        """Name of an example style (or "none") -> (second style ref, status, go)."""
        by_name = {p.stem: p for p in self.style_examples}
        if not name or name not in by_name:
            return None, status_html("Second style: none"), True
        loaded, error = self._run(self.studio.load_style, str(by_name[name]))
        if error:
            return self.gr.skip(), status_html(esc(error), "error"), False
        return loaded[0], status_html(f"Second style: <b>{esc(describe(loaded[0]))}</b>"), True

    def mix_upload(self, path):
        """Uploaded second style -> (second style ref, status, go)."""
        if not path:
            return self.gr.skip(), status_html("no file received, please upload it again", "error"), False
        loaded, error = self._run(self.studio.load_style, path)
        if error:
            return self.gr.skip(), status_html(esc(error), "error"), False
        return loaded[0], status_html(f"Second style: <b>{esc(describe(loaded[0]))}</b>"), True

    # generation: (result PNG path, download button, history gallery, history state, status)
    def _waiting_line(self, busy: str) -> tuple:
        """The outputs saying that this job waits for ``busy`` and where it stands."""
        ahead = self.studio.waiting
        place = ("your result comes next" if ahead == 0 else
                 f"{ahead} other job{'s' if ahead > 1 else ''} before yours "
                 f"(you are number {ahead + 1} in the queue)")
        return self._skips(4) + (status_html(f"Waiting for {esc(busy)} to finish: {place}…", "wait"),)

    def waiting_lines(self):
        """While another job holds the model: status updates saying what it is and where this one stands."""
        while (busy := self.studio.activity) is not None:
            yield self._waiting_line(busy)
            time.sleep(WAIT_POLL)

    def _while_refining(self, face_ref, method: str, job):
        """Runs ``job(progress)`` in a thread and, while it runs, yields status lines: waiting for
        the model, then the refinement's step (``progress(done, total)`` reports it).  Returns
        the job's result."""
        step: list[tuple[int, int]] = []
        outcome: list = []
        worker = threading.Thread(target=lambda: outcome.append(job(lambda done, total: step.append((done, total)))),
                                  daemon=True)
        worker.start()
        worker.join(WAIT_POLL)
        while worker.is_alive():
            busy = self.studio.activity
            if not step and busy is not None:
                yield self._waiting_line(busy)
            else:
                done, total = step[-1] if step else (0, "?")
                yield self._skips(4) + (status_html(
                    f"Making the face <b>{esc(describe(face_ref))}</b> more faithful ({REFINE_WORDS[method]}): "
                    f"step {done} of {total}… This is slow on a CPU; it is done once per face and setting, "
                    "and the result follows.", "wait"),)
            worker.join(WAIT_POLL)
        return outcome[0]

    def generate(self, face_ref, style_ref, add_weight_index, strength, preserve_color, mix_ref, mix, history,
                 refine=defaults.INVERT_METHOD, refine_steps=defaults.INVERT_STEPS):
        """Yields the outputs: "waiting" lines while another job holds the model, then the result
        (or an error status, the previous result staying).  ``refine`` ('psp', 'optimize' or
        'pti') and ``refine_steps``: the "more faithful" control; a photo is refined first
        (:meth:`Studio.refine`, cached), the status line following its steps."""
        yield from self.waiting_lines()
        t0 = time.perf_counter()
        photo = isinstance(face_ref, dict) and face_ref.get("kind") != "seed"
        refining = photo and refine in REFINE_WORDS

        def job(progress=None):
            refined = self.studio.refine(face_ref, refine, refine_steps, progress) if refining else None
            return refined, self.studio.render(face_ref, style_ref, add_weight_index, strength, preserve_color,
                                               mix_ref, mix, refine, refine_steps)
        if refining:
            outcome, error = yield from self._while_refining(face_ref, refine, lambda report: self._run(job, report))
        else:
            outcome, error = self._run(job)
        if error:
            yield self._skips(4) + (status_html(esc(error), "error"),)
            return
        refined, image = outcome
        i, s = int(round(float(add_weight_index))), float(strength)
        mixed = isinstance(mix_ref, dict) and float(mix or 0) > 0
        style_name = (f"{describe(style_ref)}+{describe(mix_ref)}" if mixed else describe(style_ref))
        faithful = f"_{refine}{int(refine_steps)}" if refined is not None else ""
        stem = f"{describe(face_ref)}{faithful}_x_{style_name}_i{i}_s{s:.2f}{'_pc' if preserve_color else ''}"
        path, error = self._run(self.studio.save_png, image, stem)
        if error:
            yield self._skips(4) + (status_html(esc(error), "error"),)
            return
        history = dict(history) if isinstance(history, dict) else {"n": 0, "items": []}
        n = history["n"] + 1
        caption = f"#{n} {describe(face_ref)} × {style_name}, structure {i}, strength {s:.2f}"
        items = [(str(path), caption)] + [it for it in history.get("items", []) if Path(it[0]).exists()]
        history = {"n": n, "items": items[:HISTORY_SIZE]}
        extras = (", colours kept" if preserve_color else "") + (
            f", {float(mix):.0%} {esc(describe(mix_ref))}" if mixed else "")
        kind = "ok"
        if refined is not None:
            n_steps = int(refine_steps)
            extras += (f", face made more faithful ({REFINE_WORDS[refine]}, {n_steps} step{'s' if n_steps > 1 else ''}: "
                       f"loss {refined.start_loss:.3g} → {refined.loss:.3g})")
        elif refine in REFINE_WORDS:
            extras, kind = extras + "; a random face is the model's own: nothing to refine", "note"
        status = (f"<b>Result #{n}</b>: {esc(describe(face_ref))} × {esc(describe(style_ref))}, "
                  f"face structure kept {i}, strength {s:.2f}{extras} ({time.perf_counter() - t0:.1f} s)")
        yield (str(path), self.gr.DownloadButton(value=str(path), interactive=True), history["items"], history,
               status_html(status, kind))

    def maybe_generate(self, face_ref, style_ref, add_weight_index, strength, preserve_color, mix_ref, mix, history,
                       refine=defaults.INVERT_METHOD, refine_steps=defaults.INVERT_STEPS):
        """:meth:`generate` when both a face and a style are chosen; otherwise nothing changes."""
        if not isinstance(face_ref, dict) or not isinstance(style_ref, dict):
            yield self._skips(5)
            return
        yield from self.generate(face_ref, style_ref, add_weight_index, strength, preserve_color, mix_ref, mix,
                                 history, refine, refine_steps)

    def after_choice(self, go, *inputs):
        """:meth:`maybe_generate` after a face or style was taken (``go``); nothing after a refusal."""
        if not go:
            yield self._skips(5)
            return
        yield from self.maybe_generate(*inputs)

    def steps_changed(self, *inputs):
        """:meth:`maybe_generate` after the refinement steps changed, unless refinement is off."""
        if len(inputs) < 9 or inputs[8] not in REFINE_WORDS:
            yield self._skips(5)
            return
        yield from self.maybe_generate(*inputs)

    def refine_control(self, face_ref):
        """The "more faithful" control and its steps: usable for a photo, not for a random face."""
        photo = not isinstance(face_ref, dict) or face_ref.get("kind") != "seed"
        return self.gr.update(interactive=photo), self.gr.update(interactive=photo)

    # video: (mp4 path, status)
    def video(self, face_ref, style_names, uploads, use_current, style_ref, add_weight_index, steps, hold, fps,
              strength=defaults.STRENGTH, preserve_color=False, progress=None):
        """-> (mp4 path, status).  Styles: the chosen examples, the uploads, and optionally the
        style of the image tab, in that order."""
        if not isinstance(face_ref, dict):
            return self.gr.skip(), status_html("choose a face in the Image tab first", "error")
        refs = []
        by_name = {p.stem: p for p in self.style_examples}
        sources = [str(by_name[n]) for n in style_names or [] if n in by_name] + [str(p) for p in uploads or []]
        for source in sources:
            loaded, error = self._run(self.studio.load_style, source)
            if error:
                return self.gr.skip(), status_html(esc(error), "error")
            refs.append(loaded[0])
        if use_current and isinstance(style_ref, dict):
            refs.append(style_ref)
        t0 = time.perf_counter()
        report = None if progress is None else (
            lambda done, total: progress(done / total, desc=f"frame {done}/{total}"))
        path, error = self._run(self.studio.render_video, face_ref, refs, add_weight_index, steps, hold, fps, report,
                                strength, preserve_color)
        if error:
            return self.gr.skip(), status_html(esc(error), "error")
        text = (f"<b>Video</b>: {esc(describe(face_ref))} through {len(refs)} styles "
                f"({time.perf_counter() - t0:.1f} s)")
        if io.video_backend() != "pyav":
            return str(path), status_html(text + '; it is MPEG-4 (mp4v), which browsers may not play: '
                                          'pip install "blendgan[video]" for H.264', "note")
        return str(path), status_html(text)


def _select_index(evt) -> int | None:
    index = getattr(evt, "index", None)
    if isinstance(index, (list, tuple)):
        index = index[0] if index else None
    return index


def build_app(model, *, face_examples: str | os.PathLike | None = EXAMPLES_DIR / "face_imgs",
              style_examples: str | os.PathLike | None = EXAMPLES_DIR / "style_imgs",
              studio: Studio | None = None, title: str = "BlendGAN"):
    """The demo page for a loaded :class:`blendgan.BlendGAN` (a ``gradio.Blocks``, queued).
    ``face_examples`` / ``style_examples``: folders shown as galleries (default: the
    repository's ``test_imgs``; None or missing hides them).  ``studio``: an existing
    :class:`Studio` (else one is made; it is kept as ``demo.studio``).  Serve it with
    ``demo.launch(**blendgan.web.launch_kwargs(...))``, which adds the theme, CSS and script."""
    gr = import_gradio()
    studio = studio or Studio(model)
    faces, styles = list_examples(face_examples), list_examples(style_examples)
    h = Handlers(studio, gr, faces, styles)
    n_latent = model.n_latent
    structure = dict(minimum=0, maximum=n_latent, value=min(defaults.WEB_ADD_WEIGHT_INDEX, n_latent), step=1,
                     label=STRUCTURE_LABEL, info=STRUCTURE_INFO.format(n=n_latent))

    # Gradio keeps its own copies of uploads and results (face photos among them): checked every
    # 10 minutes, removed once an hour old, and all removed when the server closes
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=GRADIO_CACHE_CLEANUP) as demo:
        face_state, style_state, mix_state = gr.State(None), gr.State(None), gr.State(None)
        go_state = gr.State(False)   # whether the last choice was taken (a refused one renders nothing)
        history_state = gr.State({"n": 0, "items": []})
        gr.Markdown(INTRO.format(device=model.device, size=model.size))
        with gr.Tab("Image"):
            with gr.Row(equal_height=False):
                with gr.Column(min_width=280, elem_id="face-column"):
                    face_preview = gr.Image(label="Face", interactive=False, type="numpy", height=256, buttons=[],
                                            elem_id="face-preview")
                    face_caption = gr.HTML(caption_html("No face yet."), elem_id="face-caption")
                    with gr.Row():
                        face_upload = gr.UploadButton("Upload a face…", file_types=["image"], type="filepath",
                                                      elem_id="face-upload", visible=studio.can_encode_faces)
                        face_random = gr.Button("Random face", elem_id="random-face")
                    face_gallery = gr.Gallery(value=[(str(p), p.stem) for p in faces], label="…or pick a face",
                                              columns=4, height="auto", allow_preview=False, interactive=False,
                                              buttons=[], elem_id="face-gallery", elem_classes=["bg-examples"],
                                              visible=bool(faces) and studio.can_encode_faces)
                    refine_choice = gr.Radio(REFINE_CHOICES, value=defaults.INVERT_METHOD, label=REFINE_LABEL,
                                             info=REFINE_INFO, elem_id="refine", visible=studio.can_encode_faces)
                    refine_steps = gr.Slider(1, REFINE_MAX_STEPS, value=min(defaults.INVERT_STEPS, REFINE_MAX_STEPS),
                                             step=1, label=REFINE_STEPS_LABEL, info=REFINE_STEPS_INFO,
                                             elem_id="refine-steps", visible=studio.can_encode_faces)
                with gr.Column(min_width=280, elem_id="style-column"):
                    style_preview = gr.Image(label="Style", interactive=False, type="numpy", height=256, buttons=[],
                                             elem_id="style-preview")
                    style_caption = gr.HTML(caption_html("No style yet."), elem_id="style-caption")
                    with gr.Row():
                        style_upload = gr.UploadButton("Upload a style…", file_types=["image"], type="filepath",
                                                       elem_id="style-upload", visible=studio.can_embed_styles)
                        style_random = gr.Button("Random style", elem_id="random-style")
                    style_gallery = gr.Gallery(value=[(str(p), p.stem) for p in styles], label="…or pick a style",
                                               columns=4, height="auto", allow_preview=False, interactive=False,
                                               buttons=[], elem_id="style-gallery", elem_classes=["bg-examples"],
                                               visible=bool(styles) and studio.can_embed_styles)
                with gr.Column(min_width=280, elem_id="result-column"):
                    result = gr.Image(label="Result", interactive=False, type="filepath", format="png", height=256,
                                      buttons=["fullscreen"], elem_id="result-image")
                    with gr.Row():
                        generate = gr.Button("Generate", variant="primary", elem_id="generate")
                        download = gr.DownloadButton("Download PNG", interactive=False, elem_id="download-png")
                    status = gr.HTML(status_html("Choose a face and a style."), elem_id="status")
                    awi = gr.Slider(**structure, elem_id="awi-slider")
                    strength = gr.Slider(0.0, MAX_STRENGTH, value=defaults.STRENGTH, step=0.05, label=STRENGTH_LABEL,
                                         info=STRENGTH_INFO, elem_id="strength-slider")
                    preserve = gr.Checkbox(label=PRESERVE_LABEL, value=False, info=PRESERVE_INFO,
                                           elem_id="preserve-color")
                    with gr.Accordion("Mix in a second style", open=False, elem_id="mix-accordion"):
                        mix_pick = gr.Dropdown(["none"] + [p.stem for p in styles], value="none",
                                               label="second style", elem_id="mix-style",
                                               visible=studio.can_embed_styles)
                        mix_upload = gr.UploadButton("…or upload one", file_types=["image"], type="filepath",
                                                     elem_id="mix-upload", visible=studio.can_embed_styles)
                        mix = gr.Slider(0.0, 1.0, value=defaults.WEB_MIX_SHARE, step=0.05, label=MIX_LABEL,
                                        info="0 = the first style only, 1 = the second only", elem_id="mix-slider")
            history = gr.Gallery(label="Last results", columns=HISTORY_SIZE, fit_columns=False, height=200,
                                 allow_preview=True, interactive=False, buttons=["download", "fullscreen"],
                                 elem_id="history")

        with gr.Tab("Video"):
            gr.Markdown("The face chosen in the Image tab moves through the styles below, in order "
                        f"(at most {VIDEO_MAX_FRAMES} frames), with the Image tab's style strength and "
                        "colour setting.")
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
                    video_awi = gr.Slider(**structure, elem_id="video-awi")
                    video_steps = gr.Slider(2, 30, value=VIDEO_STEPS, step=1, label="transition frames per style change",
                                            elem_id="video-steps")
                    video_hold = gr.Slider(0, 15, value=VIDEO_HOLD, step=1, label="frames held on each style",
                                           elem_id="video-hold")
                    video_fps = gr.Slider(1, 30, value=VIDEO_FPS, step=1, label="frames per second",
                                          elem_id="video-fps")
                    video_button = gr.Button("Render video", variant="primary", elem_id="render-video")
                with gr.Column():
                    video_out = gr.Video(label="Video", interactive=False, height=384, elem_id="video-out", loop=True,
                                         buttons=["download"])
                    video_status = gr.HTML(status_html("Choose the styles, then Render video."),
                                           elem_id="video-status")

        # -- events --------------------------------------------------------------------------
        gen_inputs = [face_state, style_state, awi, strength, preserve, mix_state, mix, history_state, refine_choice,
                      refine_steps]
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

        def render_after(event):
            """A new face or style renders at once (codes are cached: only the generator runs),
            then the result and Generate are brought on screen."""
            event.then(h.after_choice, [go_state] + gen_inputs, gen_outputs, show_progress_on=[result]).then(
                None, None, None, js=SCROLL_TO_RESULT, queue=False)

        face_outputs = [face_state, face_preview, face_gallery, face_caption, status, go_state]
        style_outputs = [style_state, style_preview, style_gallery, style_caption, status, go_state]
        for box, upload, gallery, pick, button, make_random, outputs, preview in (
                (face_upload, h.face_upload, face_gallery, pick_face, face_random, h.face_random, face_outputs,
                 face_preview),
                (style_upload, h.style_upload, style_gallery, pick_style, style_random, h.style_random, style_outputs,
                 style_preview)):
            uploaded = box.upload(upload, box, outputs, show_progress_on=[preview])
            # emptied after each upload, so that the same file can be chosen again
            uploaded.then(lambda: None, None, box, queue=False)
            for event in (uploaded, gallery.select(pick, None, outputs, show_progress_on=[preview]),
                          button.click(make_random, None, outputs, show_progress_on=[preview])):
                render_after(event)
                if box is face_upload:  # a random face has no photo to refine
                    event.then(h.refine_control, face_state, [refine_choice, refine_steps], queue=False)
        # a setting let go re-renders; Enter in a number box counts as letting go (see JS)
        for slider in (awi, strength, mix):
            slider.release(h.maybe_generate, gen_inputs, gen_outputs, trigger_mode="always_last",
                           show_progress_on=[result])
        preserve.input(h.maybe_generate, gen_inputs, gen_outputs, trigger_mode="always_last",
                       show_progress_on=[result])
        refine_choice.input(h.maybe_generate, gen_inputs, gen_outputs, trigger_mode="always_last",
                            show_progress_on=[result])
        refine_steps.release(h.steps_changed, gen_inputs, gen_outputs, trigger_mode="always_last",
                             show_progress_on=[result])
        mix_outputs = [mix_state, status, go_state]
        render_after(mix_pick.input(h.mix_pick, mix_pick, mix_outputs, show_progress_on=[result]))
        uploaded_mix = mix_upload.upload(h.mix_upload, mix_upload, mix_outputs, show_progress_on=[result])
        uploaded_mix.then(lambda: None, None, mix_upload, queue=False)
        render_after(uploaded_mix)
        generate.click(h.generate, gen_inputs, gen_outputs, show_progress_on=[result])
        video_button.click(render_video, [face_state, video_styles, video_uploads, video_current, style_state,
                                          video_awi, video_steps, video_hold, video_fps, strength, preserve],
                           [video_out, video_status], show_progress_on=[video_out])

    demo.queue(default_concurrency_limit=1, max_size=32)
    demo.studio = studio
    return demo
