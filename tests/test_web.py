"""``blendgan web``: the demo's logic without a browser (the studio, uploads, the page's callbacks).

The page itself in Chromium: ``tests/test_web_page.py``.
"""
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from blendgan import io
from blendgan import web
from blendgan.cli import main
from blendgan.errors import DependencyError
from blendgan.web import Studio, WebError
from blendgan.web import server, studio as studio_module
from blendgan.web.page import Handlers
from tests.conftest import ROOT
from tests.test_inversion import tiny  # noqa: F401 - the 32 px model with stand-in encoders (a fixture)

FACE = ROOT / "test_imgs" / "face_imgs" / "astronaut_512.jpg"
STYLE = ROOT / "test_imgs" / "style_imgs" / "cartoon.png"
STYLE2 = ROOT / "test_imgs" / "style_imgs" / "pencil_sketch_384.jpg"
class CountingModel:
    """Wraps the session model, counting encoder calls (the shared model is left untouched)."""

    def __init__(self, model):
        self._model = model
        self.calls = {"encode_face": 0, "embed_style": 0}

    def __getattr__(self, name):
        return getattr(self._model, name)

    def encode_face(self, x):
        self.calls["encode_face"] += 1
        return self._model.encode_face(x)

    def embed_style(self, x):
        self.calls["embed_style"] += 1
        return self._model.embed_style(x)


class FakeAligner:
    """Stands in for blendgan.align: returns ``crops`` copies of the image."""

    def __init__(self, crops):
        self.crops = crops

    def needs_alignment(self, rgb):
        return True

    def align(self, rgb, size):
        return [rgb] * self.crops


@pytest.fixture
def studio(model, tmp_path):
    s = Studio(CountingModel(model), aligner=None, workdir=tmp_path / "work")
    yield s
    s.close()


# -- inputs (no model needed) ---------------------------------------------------------------------
def test_bad_uploads_give_one_line_messages(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(WebError, match=r"notes\.png: not an image"):
        web.decode_upload(web.read_upload(text), text.name)
    with pytest.raises(WebError, match="empty"):
        web.read_upload(empty)
    with pytest.raises(WebError, match="could not be read"):
        web.read_upload(tmp_path / "gone.png")
    with pytest.raises(WebError, match=r"too large \(limit 0\.0 MB\)"):
        web.read_upload(FACE, max_bytes=1000)
    ok, wide = cv2.imencode(".png", np.zeros((2, 4100, 3), np.uint8))
    with pytest.raises(WebError, match=r"4100×2 px is too large \(limit 4096 px a side\)"):
        web.decode_upload(wide.tobytes(), "wide.png")
    rgb = web.decode_upload(FACE.read_bytes(), FACE.name)
    assert np.array_equal(rgb, io.read_image(FACE))
    # a format OpenCV decodes but Pillow cannot size (Radiance HDR) is refused before decoding
    ok, hdr = cv2.imencode(".hdr", np.zeros((4, 4, 3), np.float32))
    assert ok and cv2.imdecode(hdr, cv2.IMREAD_COLOR) is not None
    with pytest.raises(WebError, match=r"big\.hdr: not an image in a supported format"):
        web.decode_upload(hdr.tobytes(), "big.hdr")


def test_result_files_survive_concurrent_sessions(tmp_path, monkeypatch):
    """Sessions naming results at once: pruning never trips over a file another removed,
    and never removes a file being written (hidden temporaries)."""
    import threading
    monkeypatch.setattr(studio_module, "KEEP_FILES", 4)
    studio = Studio.__new__(Studio)  # only the file bookkeeping is exercised
    studio.workdir = tmp_path
    studio._files_guard = threading.Lock()
    partial = tmp_path / ".blendgan-0001.part.png"
    partial.write_bytes(b"being written")
    errors = []

    def session(k):
        try:
            for i in range(60):
                studio.new_file(f"s{k}_{i}", ".png").write_bytes(b"x")
        except Exception as exc:  # noqa: BLE001 - any error is the failure
            errors.append(exc)
    threads = [threading.Thread(target=session, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and partial.exists()
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) <= 4 + 2


def test_fit_within_keeps_aspect():
    assert io.fit_within(np.zeros((1000, 500, 3), np.uint8), 512).shape == (512, 256, 3)
    small = np.zeros((10, 20, 3), np.uint8)
    assert io.fit_within(small, 512) is small


def test_web_command_flags_and_missing_gradio(monkeypatch, capsys):
    from blendgan.cli import build_parser
    from blendgan.cli.web import WebCommand
    parser = build_parser()
    a = parser.parse_args(["web"])
    assert (a.host, a.port, a.device, type(a.command)) == ("127.0.0.1", 7860, "auto", WebCommand)
    a = parser.parse_args(["web", "--port", "9000", "--psp-encoder", "none", "--ckpt", "x.pt"])
    assert (a.port, a.psp_encoder, a.ckpt) == (9000, "none", "x.pt")

    def no_gradio():
        raise DependencyError('the web demo needs Gradio: pip install "blendgan[web]"')
    monkeypatch.setattr(server, "import_gradio", no_gradio)
    assert main(["web", "--port", "9000", "--psp-encoder", "none", "--ckpt", "x.pt"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == 'blendgan: error: the web demo needs Gradio: pip install "blendgan[web]"'


def test_import_is_light_and_leaves_the_environment_alone():
    # (cv2, imported by blendgan.io, sets LD_LIBRARY_PATH itself: measured after it)
    code = ("import os, sys, blendgan.io; env = dict(os.environ); import blendgan.web; "
            "assert 'gradio' not in sys.modules, 'gradio imported'; assert dict(os.environ) == env, 'env changed'")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-500:]


# -- the studio on the 256px test model -----------------------------------------------------------
def test_bad_upload_does_not_reach_the_encoder(studio, tmp_path):
    bad = tmp_path / "face.jpg"
    bad.write_bytes(b"\x89PNG but broken")
    with pytest.raises(WebError, match="face.jpg: not an image"):
        studio.load_face(bad)
    with pytest.raises(WebError, match="choose a face first"):
        studio.render(None, studio.random_style(1))
    assert studio.model.calls == {"encode_face": 0, "embed_style": 0}


def test_slider_changes_rerun_only_the_generator(studio, tmp_path):
    face, preview, notes = studio.load_face(FACE)
    style, _ = studio.load_style(STYLE)
    assert preview.shape == (256, 256, 3) and notes == []
    for index, strength in ((6, 1.0), (3, 0.4), (0, 0.0)):
        assert studio.render(face, style, index, strength).shape == (256, 256, 3)
    copy = tmp_path / "same_bytes_other_name.jpg"
    shutil.copy(FACE, copy)
    studio.load_face(copy)  # same content: cache hit
    assert studio.model.calls == {"encode_face": 1, "embed_style": 1}
    assert studio.stats["synthesize"] == 3


def test_strength_scales_the_style_part(studio, model):
    face, _, _ = studio.load_face(FACE)
    style, _ = studio.load_style(STYLE)
    w = studio.face_code(face)
    official = model.blend(w, studio.style_code(style), 6)
    assert torch.equal(studio.blend(face, style, 6, 1.0), official)   # strength 1 = official, bit for bit
    assert torch.equal(studio.blend(face, style, 6, 0.0), w)          # strength 0 = the face alone
    torch.testing.assert_close(studio.blend(face, style, 6, 0.25), w + 0.25 * (official - w))
    assert not torch.equal(studio.blend(face, style, 6, 1.5), official)  # up to 2 on the page (rules: test_controls)
    with pytest.raises(WebError, match=r"strength must be in 0\.\.2"):
        studio.blend(face, style, 6, 2.5)
    with pytest.raises(WebError, match=r"add_weight_index must be in 0\.\.14"):
        studio.blend(face, style, 15, 1.0)


def test_page_controls_give_what_the_commands_give(studio, model, tmp_path):
    """Strength, colour preservation and a second style on the page: the same pixels as the
    library calls behind the commands (transfer for strength and colour, pairs' mixing)."""
    from blendgan import Session
    from blendgan.jobs import run_transfer
    face, _, _ = studio.load_face(FACE)
    style, _ = studio.load_style(STYLE)
    second, _ = studio.load_style(STYLE2)
    run_transfer(model, FACE, STYLE, tmp_path, fmt="png", progress=False, strength=1.5, preserve_color=True)
    command = io.read_image(tmp_path / f"{FACE.stem}_v_{STYLE.stem}.png")[:, 2 * model.size:]
    page = studio.render(face, style, 6, 1.5, True)
    assert np.abs(page.astype(int) - command).max() <= 1
    session = Session(model)
    mixed = session.render(session.face(FACE), [session.style(STYLE), session.style(STYLE2)], 6, 0.8,
                           style_weights=[0.7, 0.3])
    assert np.array_equal(studio.render(face, style, 6, 0.8, False, second, 0.3), mixed)
    assert np.array_equal(studio.render(face, style, 6, 0.8, False, second, 0.0), studio.render(face, style, 6, 0.8))
    with pytest.raises(WebError, match="share must be in 0..1"):
        studio.render(face, style, 6, 1.0, False, second, 1.5)


def test_random_codes_are_seeded_and_leave_the_global_rng_alone(studio):
    state = torch.random.get_rng_state()
    a, pa = studio.random_face(3)
    b, pb = studio.random_face(3)
    sa, sb = studio.random_style(4), studio.random_style(4)
    assert a == b and np.array_equal(pa, pb) and sa == sb and a != studio.random_face(4)[0]
    assert torch.equal(studio.style_code(sa), torch.randn(1, 512, generator=torch.Generator().manual_seed(4)))
    assert studio.render(a, sa, 6).shape == (256, 256, 3)
    assert torch.equal(state, torch.random.get_rng_state())


def test_evicted_codes_are_computed_again(model, tmp_path):
    studio = Studio(CountingModel(model), aligner=None, cache_size=1, workdir=tmp_path / "work")
    gone = tmp_path / "gone.png"
    shutil.copy(STYLE, gone)
    first, _ = studio.load_style(gone)
    second, _ = studio.load_style(STYLE2)          # evicts the first
    face, _ = studio.random_face(0)
    assert studio.render(face, second, 6).shape == (256, 256, 3)
    gone.unlink()
    with pytest.raises(WebError, match="gone.png: the upload could not be read, please upload it again"):
        studio.render(face, first, 6)
    shutil.copy(STYLE, gone)
    studio.render(face, first, 6)
    assert studio.model.calls["embed_style"] == 3


def test_alignment_hook(model, tmp_path):
    none = Studio(model, aligner=FakeAligner(0), workdir=tmp_path / "a")
    with pytest.raises(WebError, match="astronaut_512.jpg: no face found"):
        none.load_face(FACE)
    two = Studio(model, aligner=FakeAligner(2), workdir=tmp_path / "b")
    _, _, notes = two.load_face(FACE)
    assert notes == ["astronaut_512.jpg: 2 faces found, using the first"] and two.stats["align"] == 1


def test_real_alignment_when_installed(model, tmp_path):
    studio = Studio(CountingModel(model), workdir=tmp_path / "work")  # aligner="auto"
    if studio.aligner() is None:
        pytest.skip(f"face alignment unavailable: {studio.align_off}")
    noise = tmp_path / "noise.png"
    cv2.imwrite(str(noise), np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8))
    with pytest.raises(WebError, match="noise.png: no face found"):
        studio.load_face(noise)
    framed = tmp_path / "framed.png"   # not a model-size square: needs alignment
    canvas = np.full((700, 600, 3), 200, np.uint8)
    canvas[100:612, 44:556] = io.read_image(FACE)
    io.write_image(framed, canvas)
    _, preview, notes = studio.load_face(framed)
    assert preview.shape == (256, 256, 3) and notes == []
    assert studio.stats["align"] == 2 and studio.model.calls["encode_face"] == 1


def test_video_is_written(studio):
    face, _, _ = studio.load_face(FACE)
    styles = [studio.load_style(STYLE)[0], studio.load_style(STYLE2)[0]]
    seen = []
    path = studio.render_video(face, styles, 7, steps=2, hold=1, fps=8, progress=lambda d, t: seen.append((d, t)))
    cap = cv2.VideoCapture(str(path))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5  # 0, 2 sigmoid steps, 1 hold, then 1 final hold
    cap.release()
    assert seen[-1] == (4, 5)
    with pytest.raises(WebError, match="at least two styles"):
        studio.render_video(face, styles[:1])
    with pytest.raises(WebError, match="limit 150"):
        studio.render_video(face, styles * 5, steps=30, hold=15)


# -- Gradio callbacks (no browser) ----------------------------------------------------------------
def test_handlers_turn_failures_into_messages(studio, tmp_path):
    gr = pytest.importorskip("gradio")
    h = Handlers(studio, gr, [FACE], [STYLE])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"GIF89a nonsense")
    *kept, message, go = h.face_upload(str(bad))       # nothing raised: the status says why
    assert all(isinstance(v, type(gr.skip())) for v in kept) and go is False
    assert 'class="bg-status bg-error"' in message
    assert "bad.png: not an image in a supported format (PNG, JPEG, WebP, BMP, TIFF)" in message
    *_, message = next(h.generate(None, None, 6, 1.0, False, None, 0.0, None))
    assert "bg-error" in message and "choose a face first" in message
    assert all(isinstance(v, type(gr.skip())) for v in next(h.maybe_generate(None, None, 6, 1.0, False, None, 0.0,
                                                                              None)))
    assert all(isinstance(v, type(gr.skip())) for v in next(h.after_choice(False, {}, {}, 6, 1.0, False, None, 0.0,
                                                                            None)))

    video, message = h.video(None, ["cartoon"], [], False, None, 6, 8, 3, 12)
    assert isinstance(video, type(gr.skip())) and "choose a face in the Image tab first" in message

    face, preview, gallery, caption, message, go = h.face_pick(0)
    style = h.style_pick(0)[0]
    assert "astronaut_512" in message and go is True and gallery.selected_index == 0
    assert h.face_random()[2].selected_index is None      # a random face: no example highlighted
    history = None
    for i in (6, 2):
        result, download, items, history, message = list(h.generate(face, style, i, 0.5, False, None, 0.5,
                                                                     history))[-1]
        assert download.value["orig_name"] == Path(result).name and download.interactive
        assert Path(result).suffix == ".png"
    assert history["n"] == 2 and len(items) == 2 and "<b>Result #2</b>" in message
    assert "face structure kept 2" in message
    assert io.read_image(result).shape == (256, 256, 3)
    assert studio.model.calls == {"encode_face": 1, "embed_style": 1}
    video, message = h.video(face, ["cartoon"], [], False, None, 6, 8, 3, 12)
    assert "bg-error" in message and "at least two styles" in message

    def boom(*a):
        raise RuntimeError("kaput\nsecond line")
    studio.render = boom
    *_, message = next(h.generate(face, style, 6, 1.0, False, None, 0.0, history))
    assert "internal error (RuntimeError: kaput); see the server log" in message


def test_random_style_swatch_and_names_are_escaped(studio):
    gr = pytest.importorskip("gradio")
    h = Handlers(studio, gr, [FACE], [STYLE])
    ref, swatch, gallery, caption, message, go = h.style_random()
    assert swatch.shape == (256, 256, 3) and swatch.dtype == np.uint8 and swatch.std() > 10
    assert np.array_equal(swatch, studio.style_swatch(ref))   # drawn from the seed
    assert "no picture" in caption and gallery.selected_index is None
    assert web.page.esc("<img src=x onerror=alert(1)>\nnext") == "&lt;img src=x onerror=alert(1)&gt;\\nnext"


def test_waiting_jobs_are_counted(studio):
    gr = pytest.importorskip("gradio")
    h = Handlers(studio, gr, [FACE], [STYLE])
    assert studio.activity is None and studio.waiting == 0 and list(h.waiting_lines()) == []
    entered, release = threading.Event(), threading.Event()

    def job(what):
        with studio.turn(what):
            entered.set()
            release.wait(10)
    holder = threading.Thread(target=job, args=("a video (frame 1/5)",))
    holder.start()
    assert entered.wait(10)
    assert studio.activity == "a video (frame 1/5)"
    assert "Waiting for a video (frame 1/5) to finish: your result comes next" in next(h.waiting_lines())[-1]
    waiter = threading.Thread(target=job, args=("another result",))
    waiter.start()
    for _ in range(100):
        if studio.waiting == 1:
            break
        time.sleep(0.02)
    assert "1 other job before yours (you are number 2 in the queue)" in next(h.waiting_lines())[-1]
    release.set()
    holder.join(10)
    waiter.join(10)
    assert studio.activity is None and studio.waiting == 0


def test_app_builds_with_analytics_off(studio):
    pytest.importorskip("gradio")
    env = dict(os.environ)
    demo = web.build_app(studio.model, studio=studio)
    assert demo.analytics_enabled is False and demo.studio is studio
    # Gradio's Blocks(analytics_enabled=False) itself sets HF_HUB_DISABLE_TELEMETRY; nothing else changes
    after = dict(os.environ)
    assert after.pop("HF_HUB_DISABLE_TELEMETRY", "True") == "True"
    env.pop("HF_HUB_DISABLE_TELEMETRY", None)
    assert after == env
    kw = web.launch_kwargs("127.0.0.1", 1234)
    assert kw["max_file_size"] == 20 * 1024 * 1024 and kw["share"] is False and kw["ssr_mode"] is False


# -- "make the face more faithful": refinement on the tiny 32 px model of test_inversion --------------
@pytest.fixture
def tiny_studio(tiny, tmp_path, monkeypatch):
    """A studio on the tiny model whose session records each ``refine`` call's method and steps."""
    s = Studio(tiny, aligner=None, workdir=tmp_path / "work")
    calls, real = [], s.session.refine

    def recording(face, method="optimize", steps=None, **kwargs):
        calls.append((method, steps))
        return real(face, method, steps, **kwargs)
    monkeypatch.setattr(s.session, "refine", recording)
    s.refine_calls = calls
    yield s
    s.close()


def test_refine_uses_the_chosen_setting_once_and_the_tuned_model(tiny_studio):
    studio = tiny_studio
    face, _, _ = studio.load_face(FACE)
    style = studio.random_style(1)
    plain = studio.render(face, style, 6)
    seen = []
    refined = studio.refine(face, "optimize", 2, lambda done, total: seen.append((done, total)))
    assert studio.refine_calls == [("optimize", 2)] and seen == [(0, 2), (1, 2), (2, 2)]
    assert refined.inversion == "optimize" and refined.loss < refined.start_loss
    image = studio.render(face, style, 6, refine="optimize", refine_steps=2)
    assert studio.stats["invert"] == 1                         # cached: the second call runs nothing
    assert not np.array_equal(image, plain)
    assert np.array_equal(image, studio.session.render(refined, studio.style_code(style), 6))

    seen.clear()
    image = studio.render(face, style, 6, refine="pti", refine_steps=1,
                          progress=lambda done, total: seen.append((done, total)))
    assert studio.refine_calls[-1] == ("pti", 1) and seen == [(0, 2), (1, 2), (2, 2)]  # W+, then the weights
    tuned = studio.refine(face, "pti", 1)
    assert studio.stats["invert"] == 2
    model = studio.session.model_for(tuned)
    assert model is not studio.model
    w = studio.session.blend(tuned, studio.style_code(style), 6)
    assert np.array_equal(image, io.to_uint8(model.synthesize(w_plus=w))[0])        # the tuned copy
    assert not np.array_equal(image, io.to_uint8(studio.model.synthesize(w_plus=w))[0])
    assert studio.activity is None and studio.waiting == 0

    random_face, _ = studio.random_face(3)                    # nothing to refine: rendered as it is
    with pytest.raises(WebError, match="random face is the model's own"):
        studio.refine(random_face, "optimize", 2)
    assert np.array_equal(studio.render(random_face, style, 6, refine="optimize", refine_steps=2),
                          studio.render(random_face, style, 6))
    for method, steps, message in (("best", 2, "choose how faithful"), ("optimize", 0, r"in 1\.\.500, got 0"),
                                   ("pti", 2.5, "whole number"), ("pti", "many", "whole number")):
        with pytest.raises(WebError, match=message):
            studio.render(face, style, 6, refine=method, refine_steps=steps)
    assert studio.stats["invert"] == 2


def test_generate_shows_the_refinement_then_the_result(tiny_studio, monkeypatch):
    """The page's callback: status lines with the refinement's step while it runs, then the
    result with the losses; a second result of the same face and setting refines nothing."""
    gr = pytest.importorskip("gradio")
    monkeypatch.setattr(web.page, "WAIT_POLL", 0.01)
    studio, h = tiny_studio, Handlers(tiny_studio, gr, [FACE], [STYLE])
    face, _, _ = studio.load_face(FACE)
    style = studio.random_style(1)
    go_on, real = threading.Event(), studio.session.refine

    def held(face, method, steps, progress=None, **kwargs):
        def report(stage, step, total, loss):      # the first step waits until the page has said so
            progress(stage, step, total, loss)
            go_on.wait(10)
        return real(face, method, steps, progress=report, **kwargs)
    monkeypatch.setattr(studio.session, "refine", held)
    lines = []
    for outputs in h.generate(face, style, 6, 1.0, False, None, 0.0, None, "optimize", 2):
        lines.append(outputs[-1])
        if "step 1 of 2" in outputs[-1]:
            go_on.set()
    assert any("more faithful (refine): step 1 of 2" in line and "bg-wait" in line for line in lines[:-1])
    assert "<b>Result #1</b>" in lines[-1] and "face made more faithful (refine, 2 steps: loss" in lines[-1]
    assert studio.stats["invert"] == 1
    *_, message = list(h.generate(face, style, 6, 1.0, False, None, 0.0, None, "optimize", 2))[-1]
    assert "face made more faithful" in message and studio.stats["invert"] == 1
    random_face, _ = studio.random_face(2)
    *_, message = list(h.generate(random_face, style, 6, 1.0, False, None, 0.0, None, "pti", 2))[-1]
    assert "bg-note" in message and "nothing to refine" in message
    assert [u["interactive"] for u in h.refine_control(random_face)] == [False, False]
    assert [u["interactive"] for u in h.refine_control(face)] == [True, True]
    assert all(isinstance(v, type(gr.skip())) for v in next(h.steps_changed(face, style, 6, 1.0, False, None, 0.0,
                                                                             None, "psp", 5)))
