"""The videos we write play in a browser (Chromium): H.264, yuv420p, moov atom first."""
import functools
import http.server
import threading

import numpy as np
import pytest

from blendgan import io

PAGE = """<!doctype html><video id="v" src="clip.mp4" muted playsinline></video>"""


@pytest.fixture
def served_clip(tmp_path):
    pytest.importorskip("av")
    frames = np.zeros((45, 96, 160, 3), np.uint8)
    for i, f in enumerate(frames):  # a bright square moving across a dark frame
        f[30:60, 2 * i:2 * i + 30] = (250, 200, 40)
    with io.VideoWriter(tmp_path / "clip.mp4", fps=30) as writer:
        writer.write(frames[:20])
        writer.write(frames[20:])
    (tmp_path / "index.html").write_text(PAGE)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()


def test_mp4_plays_in_chromium(browser, served_clip):
    page = browser.new_page()
    page.goto(served_clip)
    page.wait_for_function("document.getElementById('v').readyState >= 2", timeout=30000)
    info = page.evaluate("""async () => {
        const v = document.getElementById('v');
        await v.play();
        await new Promise(r => setTimeout(r, 600));
        return {w: v.videoWidth, h: v.videoHeight, d: v.duration, t: v.currentTime, err: v.error && v.error.code};
    }""")
    assert info["err"] is None
    assert (info["w"], info["h"]) == (160, 96)
    assert info["d"] == pytest.approx(45 / 30, abs=0.05)
    assert info["t"] > 0.1  # it actually played
