"""The demo page in a real browser: issue #20's thirteen points, one test each, and the whole flow.

One server (the 256px test checkpoints, in-process on a free loopback port) and one Chromium
(Debian's, through Playwright; see ``tests/conftest.py``) serve the whole module; each test
opens a fresh page (a fresh Gradio session).  Skips without Gradio, Playwright or Chromium.
Screenshots of the page (desktop and phone) go to ``$BLENDGAN_ARTIFACTS`` (else the test's
temporary folder); ``docs/web_demo*.png`` are taken this way.
"""
import os
import socket
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from blendgan import io, web
from blendgan.web import Studio
from tests.conftest import ROOT

pytestmark = pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting'",
                                        "ignore:The copy keyword is deprecated")

FACE = ROOT / "test_imgs" / "face_imgs" / "astronaut_512.jpg"
STYLE = ROOT / "test_imgs" / "style_imgs" / "cartoon.png"
STYLE2 = ROOT / "test_imgs" / "style_imgs" / "pencil_sketch_384.jpg"
DESKTOP = {"width": 1280, "height": 1000}
PHONE = dict(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, device_scale_factor=2)
WAIT_MS = 30_000          # a render takes about 1 s here; a video of 14 frames about 10 s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(model, tmp_path_factory):
    pytest.importorskip("gradio")
    studio = Studio(model, aligner=None, workdir=tmp_path_factory.mktemp("web-work"))
    demo = web.build_app(model, studio=studio)
    port = free_port()
    demo.launch(prevent_thread_lock=True, quiet=True, **web.launch_kwargs("127.0.0.1", port))
    try:
        yield types.SimpleNamespace(url=f"http://127.0.0.1:{port}/", studio=studio, n_latent=model.n_latent)
    finally:
        demo.close()
        studio.close()


def open_page(browser, served, **context):
    ctx = browser.new_context(**(context or {"viewport": DESKTOP}))
    page = ctx.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(served.url)
    page.locator("#generate").wait_for()
    return page


@pytest.fixture
def page(browser, served):
    p = open_page(browser, served)
    yield p
    p.context.close()


@pytest.fixture
def artifacts(tmp_path) -> Path:
    folder = Path(os.environ.get("BLENDGAN_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# -- helpers ----------------------------------------------------------------------------------------
def status(page, selector="#status") -> str:
    return page.locator(selector).inner_text()


def wait_status(page, text: str, selector="#status") -> None:
    page.wait_for_function("([s, t]) => document.querySelector(s)?.innerText.includes(t)", arg=[selector, text])


def thumbs(page, gallery: str):
    return page.locator(f"#{gallery} .thumbnail-item")


def selected(page, gallery: str) -> list[int]:
    """Indices of the highlighted pictures of a gallery."""
    return page.evaluate("g => [...document.querySelectorAll(`#${g} .thumbnail-item`)]"
                         ".flatMap((e, i) => e.classList.contains('selected') ? [i] : [])", gallery)


def error_badges(page) -> list[str]:
    """Visible Gradio status trackers that show an error (the bare red "Error" badges)."""
    return page.evaluate("""() => [...document.querySelectorAll('[data-testid=status-tracker]')]
        .filter(e => e.offsetParent !== null && /error/i.test(e.className + ' ' + e.innerText))
        .map(e => (e.closest('[id]') || e).id || 'tracker')""")


def toasts(page) -> int:
    return page.locator("[data-testid=toast-body]").count()


def image_src(page, box: str) -> str | None:
    img = page.locator(f"#{box} img")
    return img.first.get_attribute("src") if img.count() else None


def pick(page, gallery: str, index: int, expect: str) -> None:
    thumbs(page, gallery).nth(index).click()
    wait_status(page, expect)


def upload(page, box: str, path) -> None:
    page.locator(f"#{box}").locator("xpath=..").locator("input[type=file]").set_input_files(str(path))


def face_and_style(page) -> None:
    """Example face 0 and style 0, then their first result."""
    pick(page, "face-gallery", 0, "Face: astronaut_512")
    pick(page, "style-gallery", 0, "Result #1")


def number_box(page, slider: str):
    return page.locator(f"#{slider} input[type=number]")


def not_a_picture(tmp_path) -> Path:
    bad = tmp_path / "holiday.png"
    bad.write_text("this is not a picture")
    return bad


# -- 1. a rejected upload ---------------------------------------------------------------------------
def test_rejected_upload_keeps_the_face_in_use(page, tmp_path):
    pick(page, "face-gallery", 0, "Face: astronaut_512")
    before = image_src(page, "face-preview")
    assert before
    upload(page, "face-upload", not_a_picture(tmp_path))
    page.get_by_text("holiday.png: not an image").first.wait_for()
    page.wait_for_timeout(300)
    assert image_src(page, "face-preview") == before          # the face still in use stays shown
    assert error_badges(page) == []                           # not covered by an "Error" badge
    assert "holiday.png: not an image" in status(page)
    assert selected(page, "face-gallery") == [0]
    assert "astronaut_512" in page.locator("#face-caption").inner_text()
    pick(page, "style-gallery", 0, "Result #1")               # the face in use still works
    page.locator("#generate").click()
    wait_status(page, "Result #2")
    assert image_src(page, "face-preview") == before
    assert error_badges(page) == []
    assert "Error" not in page.locator("#face-preview").inner_text()


# -- 2. errors stay in the page ---------------------------------------------------------------------
def test_errors_stay_in_the_status_line(page):
    page.locator("#generate").click()
    page.get_by_text("choose a face first").first.wait_for()
    assert "choose a face first" in status(page)
    assert page.locator("#status .bg-error").count() == 1     # styled as an error
    page.wait_for_timeout(1500)                               # no pop-up, no badges on the outputs
    assert toasts(page) == 0 and error_badges(page) == []
    assert page.locator("#status").evaluate("e => getComputedStyle(e.querySelector('.bg-error')).backgroundColor") \
        != page.locator("#status").evaluate("e => getComputedStyle(e.parentElement).backgroundColor")
    page.locator("#random-face").click()                      # the next action replaces it
    wait_status(page, "Face: random face")
    assert page.locator("#status .bg-error").count() == 0


# -- 3. the galleries show what is in use -------------------------------------------------------------
def test_gallery_selection_follows_what_is_in_use(page):
    pick(page, "face-gallery", 1, "Face: astronaut_mirrored_256")
    assert selected(page, "face-gallery") == [1]
    page.locator("#random-face").click()
    wait_status(page, "Face: random face")
    page.wait_for_timeout(300)
    assert selected(page, "face-gallery") == []
    pick(page, "style-gallery", 2, "Result #1")
    assert selected(page, "style-gallery") == [2]
    upload(page, "style-upload", STYLE2)
    wait_status(page, "Result #2")
    assert selected(page, "style-gallery") == []
    pick(page, "style-gallery", 0, "Result #3")
    page.locator("#random-style").click()
    wait_status(page, "Result #4")
    assert selected(page, "style-gallery") == [] and selected(page, "face-gallery") == []


# -- 4. a random style has a placeholder and a lasting explanation --------------------------------------
def test_random_style_shows_a_placeholder(page):
    page.locator("#random-face").click()
    wait_status(page, "Face: random face")
    page.locator("#random-style").click()
    wait_status(page, "Result #1")
    page.wait_for_timeout(1000)
    widths = page.locator("#style-preview img").evaluate_all("imgs => imgs.map(img => img.naturalWidth)")
    assert widths and widths[0] > 0                           # a placeholder stands for the random code
    caption = page.locator("#style-caption").inner_text()
    assert "random style" in caption and "no picture" in caption


# -- 5. every example is reachable -----------------------------------------------------------------
CLIPPED = """g => [...document.querySelectorAll(`#${g} .thumbnail-item`)].filter(t => {
    const r = t.getBoundingClientRect();
    if (r.width < 24 || r.height < 24) return true;
    for (let a = t.parentElement; a; a = a.parentElement) {
        const s = getComputedStyle(a);
        if (s.display === 'none' || s.visibility === 'hidden') return true;
        if (s.overflowX !== 'visible' || s.overflowY !== 'visible') {
            const b = a.getBoundingClientRect();
            if (r.left < b.left - 1 || r.right > b.right + 1) return true;
            if (r.top < b.top - 1 || r.bottom > b.bottom + 1) return true;
        }
    }
    return false;
}).length"""


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_every_example_is_reachable(browser, served, device):
    page = open_page(browser, served, **(PHONE if device == "phone" else {"viewport": DESKTOP}))
    try:
        for gallery, n in (("face-gallery", 3), ("style-gallery", 4)):
            thumbs(page, gallery).nth(n - 1).wait_for()
            assert thumbs(page, gallery).count() == n
            assert page.evaluate(CLIPPED, gallery) == 0, f"{gallery}: pictures cut off on the {device}"
    finally:
        page.context.close()


# -- 6. no controls that lead nowhere ---------------------------------------------------------------
DEAD = """() => [...document.querySelectorAll('button, a')].map(
    b => (b.getAttribute('aria-label') || '') + '|' + (b.title || '') + '|' + b.innerText.trim())
    .filter(t => /share|download all/i.test(t))"""


def test_no_share_or_download_all_icons(page):
    face_and_style(page)
    assert page.evaluate(DEAD) == []
    page.get_by_role("tab", name="Video").click()
    page.locator("#render-video").wait_for()
    assert page.evaluate(DEAD) == []


# -- 7. a job waiting for the video says so ---------------------------------------------------------
def test_generate_behind_a_video_says_it_waits(page):
    face_and_style(page)
    page.get_by_role("tab", name="Video").click()
    page.locator("#render-video").click()
    page.wait_for_function("() => /frame \\d+\\/\\d+/.test(document.querySelector('#video-out').innerText)")
    page.get_by_role("tab", name="Image").click()
    page.locator("#generate").click()
    page.locator("#status .bg-wait").wait_for()
    assert "Waiting for a video" in status(page) and "your result comes next" in status(page)
    wait_status(page, "Result #2")
    assert page.locator("#status .bg-wait").count() == 0


# -- 8. typing in the number boxes ------------------------------------------------------------------
def test_number_boxes_take_enter_and_clamp(page, served, capfd):
    face_and_style(page)
    box = number_box(page, "awi-slider")
    box.fill("3")
    box.press("Enter")                                        # Enter applies the value
    wait_status(page, "face structure kept 3,")
    box.fill("99")
    box.press("Enter")                                        # out of range: the highest value is used
    wait_status(page, f"face structure kept {served.n_latent},")
    assert box.input_value() == str(served.n_latent)
    assert page.locator("#awi-slider input[type=range]").input_value() == str(served.n_latent)
    strength = number_box(page, "strength-slider")
    strength.fill("-4")
    strength.press("Tab")
    wait_status(page, "strength 0.00")
    assert strength.input_value() == "0"
    page.locator("#generate").click()
    wait_status(page, "Result #5")
    assert f"face structure kept {served.n_latent}, strength 0.00" in status(page)
    assert page.locator("#status .bg-error").count() == 0 and error_badges(page) == [] and toasts(page) == 0
    assert "Traceback" not in capfd.readouterr().err


# -- 9. nothing to download before a result -----------------------------------------------------------
def test_download_waits_for_a_result(page):
    assert page.locator("#download-png").is_disabled()
    face_and_style(page)
    page.wait_for_function("() => !document.querySelector('#download-png').disabled")
    with page.expect_download() as download:
        page.locator("#download-png").click()
    assert download.value.suggested_filename.endswith(".png")


# -- 10. words an artist understands, the same on both tabs ------------------------------------------------
def test_words_and_defaults_are_the_same_on_both_tabs(page, served):
    labels = page.locator("[data-testid=block-info]").all_inner_texts()
    text = page.locator("body").inner_text()
    for jargon in ("W+", "learned weights", "add_weight_index\n"):
        assert jargon not in text
    assert not any("add_weight_index" in label for label in labels)
    assert "face structure kept" in labels
    info = page.locator("#awi-slider").inner_text()
    assert "add_weight_index" in info                         # the technical name, in the help text
    image_value = number_box(page, "awi-slider").input_value()
    page.get_by_role("tab", name="Video").click()
    page.locator("#video-awi").wait_for()
    assert number_box(page, "video-awi").input_value() == image_value
    assert page.locator("#video-awi").inner_text().split() == info.split()


# -- 11. fonts: nothing fetched, the system's faces ---------------------------------------------------------
def test_page_uses_system_fonts_and_fetches_nothing(browser, served):
    ctx = browser.new_context(viewport=DESKTOP)
    fetched = []
    ctx.on("request", lambda r: fetched.append(r.url))
    page = ctx.new_page()
    try:
        page.goto(served.url)
        page.locator("#generate").wait_for()
        page.wait_for_timeout(1500)                           # fonts would be requested by now
        assert [u for u in fetched if not u.startswith(served.url)] == []
        assert [u for u in fetched if u.split("?")[0].endswith((".woff", ".woff2", ".ttf", ".otf"))] == []
        # the first family of the title, bold text, buttons and labels is none the page declares
        # itself (@font-face): the browser draws them with the system's own faces, bold ones included
        families = page.evaluate("""() => [...document.querySelectorAll('h1, strong, b, button, label')]
            .map(e => getComputedStyle(e).fontFamily.split(',')[0].trim().replace(/"/g, ''))""")
        declared = page.evaluate("() => [...document.fonts].map(f => f.family.replace(/\"/g, ''))")
        assert families and not set(families) & set(declared), set(families) & set(declared)
        assert page.evaluate("() => [...document.fonts].filter(f => f.status !== 'unloaded').length") == 0
    finally:
        ctx.close()


# -- 12. on a phone the result and Generate come on screen -------------------------------------------------
def test_phone_shows_the_result_after_a_choice(browser, served, artifacts):
    page = open_page(browser, served, **PHONE)
    try:
        pick(page, "face-gallery", 0, "Face: astronaut_512")
        pick(page, "style-gallery", 1, "Result #1")
        page.wait_for_function("""() => {
            const r = document.querySelector('#result-image').getBoundingClientRect();
            const g = document.querySelector('#generate').getBoundingClientRect();
            return r.top >= -1 && g.bottom <= window.innerHeight; }""", timeout=5000)
        page.screenshot(path=str(artifacts / "web_demo_phone.png"))
    finally:
        page.context.close()


# -- 13. nothing jumps during an upload ------------------------------------------------------------------
WATCH = """() => {
    window.__moved = 0;
    const ids = ['random-face', 'random-style', 'generate', 'face-gallery', 'style-gallery'];
    const at = () => ids.map(i => document.getElementById(i)?.getBoundingClientRect().top ?? 0);
    const start = at();
    const tick = () => { at().forEach((y, k) => { window.__moved = Math.max(window.__moved, Math.abs(y - start[k])); });
                         if (!window.__stop) requestAnimationFrame(tick); };
    requestAnimationFrame(tick);
}"""


def test_layout_does_not_jump_during_uploads(page, tmp_path):
    pick(page, "face-gallery", 0, "Face: astronaut_512")
    page.evaluate(WATCH)
    upload(page, "style-upload", STYLE)
    wait_status(page, "Result #1")
    upload(page, "face-upload", not_a_picture(tmp_path))
    page.get_by_text("holiday.png: not an image").first.wait_for()
    page.wait_for_timeout(500)
    assert page.evaluate("() => { window.__stop = true; return window.__moved; }") < 1


# -- the whole flow: same pixels as the library, the download, a screenshot ------------------------------
def test_page_in_browser(page, served, artifacts):
    studio = served.studio
    upload(page, "face-upload", FACE)
    wait_status(page, "Face: astronaut_512")
    upload(page, "style-upload", STYLE)
    wait_status(page, "Result #1")
    slider = number_box(page, "awi-slider")
    slider.fill("3")
    slider.press("Tab")
    wait_status(page, "face structure kept 3,")
    page.locator("#generate").click()
    wait_status(page, "Result #3")
    page.locator("#preserve-color input[type=checkbox]").check()
    wait_status(page, "colours kept")
    page.locator("#preserve-color input[type=checkbox]").uncheck()
    wait_status(page, "Result #5")

    src = page.locator("#result-image img").get_attribute("src")
    response = page.request.get(src if src.startswith("http") else served.url.rstrip("/") + src)
    assert response.ok
    image = cv2.imdecode(np.frombuffer(response.body(), np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    face, _, _ = studio.load_face(FACE)
    style, _ = studio.load_style(STYLE)
    assert np.array_equal(image, studio.render(face, style, 3, 1.0))  # lossless PNG, same pixels
    assert page.locator("#history img").count() >= 3
    with page.expect_download() as download:
        page.locator("#download-png").click()
    assert np.array_equal(io.read_image(download.value.path()), image)
    assert toasts(page) == 0 and error_badges(page) == []
    page.screenshot(path=str(artifacts / "web_demo.png"), full_page=True)
    assert (artifacts / "web_demo.png").stat().st_size > 10_000


# -- "make the face more faithful": the refinement in the status line, a Generate waiting for it ----------
def test_refining_the_face_shows_its_steps_then_the_result(page, served):
    page.set_default_timeout(240_000)                         # one refinement step: ~10 s, more under load
    face_and_style(page)
    steps = number_box(page, "refine-steps")
    steps.fill("1")
    steps.press("Enter")                                      # refinement off: nothing is rendered again
    page.locator("#refine").get_by_label("Refine", exact=True).check()
    wait_status(page, "more faithful (refine): step")
    assert "slow on a CPU" in status(page) and page.locator("#status .bg-wait").count() == 1
    page.locator("#generate").click()                         # queued behind the refinement: it says so
    wait_status(page, "Waiting for the refinement of astronaut_512")
    wait_status(page, "face made more faithful (refine, 1 step: loss")
    page.wait_for_timeout(1500)                               # the Generate waiting behind it finishes too
    page.wait_for_function("() => !document.querySelector('#status .bg-wait')")
    assert "Result #2" in status(page) and served.studio.stats["invert"] == 1   # refined once, cached after
    src = page.locator("#result-image img").get_attribute("src")
    response = page.request.get(src if src.startswith("http") else served.url.rstrip("/") + src)
    image = cv2.imdecode(np.frombuffer(response.body(), np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    studio = served.studio
    face, _, _ = studio.load_face(FACE)
    style = studio.load_style(STYLE)[0]
    assert np.array_equal(image, studio.render(face, style, 6, 1.0, refine="optimize", refine_steps=1))
    assert not np.array_equal(image, studio.render(face, style, 6, 1.0))
    assert served.studio.stats["invert"] == 1
    page.locator("#random-face").click()                      # a random face: nothing to refine
    wait_status(page, "nothing to refine")
    assert page.locator("#refine input[type=radio]").first.is_disabled()
    assert toasts(page) == 0 and error_badges(page) == []
