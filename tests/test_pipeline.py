"""The jobs as library functions: outputs, resume, bad inputs, batch invariance."""
import shutil

import numpy as np
import pytest
import torch

from blendgan import io
from blendgan import pipeline as P


def read(path):
    return io.read_image(path)


def test_transition_alphas_match_official_formula():
    expected = [0.0] + [1 / (1 + np.exp(-x)) for x in np.arange(-5, 5, 0.5)] + [1.0] * 10
    got = P.transition_alphas()
    assert len(got) == 31
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_slide_window():
    a = np.zeros((4, 2, 3), np.uint8)
    b = np.full((4, 2, 3), 9, np.uint8)
    assert (P.slide_window(a, b, 0.0) == 0).all()
    assert (P.slide_window(a, b, 1.0) == 9).all()
    half = P.slide_window(a, b, 0.5)
    assert (half[:2] == 0).all() and (half[2:] == 9).all()


def test_sample_zs_independent_of_count():
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(P.sample_zs(5, g1)[:3], P.sample_zs(3, g2))


def test_pairs_layout_content_and_resume(model, tmp_path):
    out = tmp_path / "pairs"
    r = P.run_pairs(model, out, pics=3, seed=1, batch_size=2, fmt="png", progress=False)
    assert [p.name for p in r.written] == ["000000.png", "000001.png", "000002.png"] and not r.failed
    img = read(out / "000001.png")
    assert img.shape == (model.size, 2 * model.size, 3)
    # the stylized half is what the API gives for the same draws (seed order: style code, then faces)
    g = P.make_generator(1, "cpu")
    z_style = torch.randn(1, 512, generator=g)
    zs = P.sample_zs(3, g)
    with torch.inference_mode():
        nat = io.to_uint8(model.synthesize(z=zs[1:2]))[0]
        sty = io.to_uint8(model.synthesize(z=zs[1:2], z_embed=z_style, add_weight_index=6))[0]
    assert np.abs(img[:, :model.size].astype(int) - nat).max() <= 1
    assert np.abs(img[:, model.size:].astype(int) - sty).max() <= 1
    # resume: only the missing output is redone, the others are left alone
    before = (out / "000000.png").stat().st_mtime_ns
    (out / "000002.png").unlink()
    r2 = P.run_pairs(model, out, pics=3, seed=1, batch_size=2, fmt="png", progress=False)
    assert [p.name for p in r2.written] == ["000002.png"] and len(r2.skipped) == 2
    assert (out / "000000.png").stat().st_mtime_ns == before
    with torch.inference_mode():
        redone = io.to_uint8(model.synthesize(z=zs[2:3]))[0]
    assert np.abs(read(out / "000002.png")[:, :model.size].astype(int) - redone).max() <= 1
    r3 = P.run_pairs(model, out, pics=3, seed=1, fmt="png", overwrite=True, progress=False)
    assert len(r3.written) == 3


def test_pairs_batch_size_does_not_change_results(model, tmp_path):
    P.run_pairs(model, tmp_path / "b1", pics=3, seed=2, batch_size=1, fmt="png", progress=False)
    P.run_pairs(model, tmp_path / "b3", pics=3, seed=2, batch_size=3, fmt="png", progress=False)
    for i in range(3):
        a, b = read(tmp_path / "b1" / f"{i:06d}.png"), read(tmp_path / "b3" / f"{i:06d}.png")
        assert np.abs(a.astype(int) - b).max() <= 1  # float reassociation may flip a rounding


def test_pairs_reference_style(model, tmp_path, sample_dirs):
    style = sorted(sample_dirs.styles.iterdir())[0]
    r = P.run_pairs(model, tmp_path, pics=1, style_image=style, fmt="png", progress=False)
    img = read(r.written[0])
    with torch.inference_mode():
        z_embed = model.embed_style(io.to_tensor(read(style)))
        g = P.make_generator(0, "cpu")
        z = P.sample_zs(1, g)  # no random style draw when a style image is given
        sty = io.to_uint8(model.synthesize(z=z, z_embed=z_embed, add_weight_index=6))[0]
    assert np.abs(img[:, model.size:].astype(int) - sty).max() <= 1


def test_transfer_goes_on_after_bad_inputs(model, tmp_path, sample_dirs):
    faces = tmp_path / "faces"
    shutil.copytree(sample_dirs.faces, faces)
    (faces / "notes.txt").write_text("not an image")
    (faces / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "out"
    r = P.run_transfer(model, faces, sample_dirs.styles, out, fmt="png", batch_size=3, progress=False)
    good_faces = sorted(p for p in sample_dirs.faces.iterdir())
    styles = sorted(sample_dirs.styles.iterdir())
    assert sorted(p.name for p in r.written) == sorted(f"{f.stem}_v_{s.stem}.png" for f in good_faces for s in styles)
    assert [p for p, _ in r.failed] == [str(faces / "broken.png")]
    assert "broken.png" in r.failed[0][1]
    # the output panel is the API's style transfer of the un-resized images
    f, s = good_faces[0], styles[-1]
    img = read(out / f"{f.stem}_v_{s.stem}.png")
    assert img.shape == (model.size, 3 * model.size, 3)
    with torch.inference_mode():
        expected = io.to_uint8(model.synthesize(w_plus=model.encode_face(io.to_tensor(read(f))),
                                                z_embed=model.embed_style(io.to_tensor(read(s))),
                                                add_weight_index=6))[0]
    assert np.abs(img[:, 2 * model.size:].astype(int) - expected).max() <= 1
    assert np.array_equal(img[:, model.size:2 * model.size], io.resize(read(s), model.size))
    # second run: everything present, nothing recomputed
    r2 = P.run_transfer(model, faces, sample_dirs.styles, out, fmt="png", progress=False)
    assert not r2.written and len(r2.skipped) == len(r.written)


def test_video(model, tmp_path, sample_dirs):
    av = pytest.importorskip("av")
    face = sorted(sample_dirs.faces.iterdir())[0]
    r = P.run_video(model, face, sample_dirs.styles, tmp_path, n_styles=2, transition_steps=2, hold_frames=1,
                    batch_size=4, progress=False)
    assert r.written == [tmp_path / f"{face.stem}.mp4"] and not r.failed
    with av.open(str(r.written[0])) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264"
        assert (s.width, s.height) == (3 * model.size, model.size)
        assert int(s.average_rate) == P.VIDEO_FPS
        n = sum(1 for _ in c.decode(video=0))
    assert n == (1 + 2 + 1) * (2 - 1) + 1
    r2 = P.run_video(model, face, sample_dirs.styles, tmp_path, n_styles=2, progress=False)
    assert r2.skipped == r.written and not r2.written


def test_video_output_layout_as_gif(model, tmp_path, sample_dirs):
    from PIL import Image
    face = sorted(sample_dirs.faces.iterdir())[0]
    r = P.run_video(model, face, sample_dirs.styles, tmp_path, n_styles=2, transition_steps=2, hold_frames=1,
                    layout="output", gif=True, progress=False)
    assert r.written == [tmp_path / f"{face.stem}.gif"]
    n = (1 + 2 + 1) * (2 - 1) + 1
    with Image.open(r.written[0]) as gif:
        assert gif.size == (model.size, model.size)
        # Pillow merges identical consecutive frames into one longer frame: compare total time
        total = 0
        for i in range(gif.n_frames):
            gif.seek(i)
            total += gif.info["duration"]
    assert total == pytest.approx(n * 1000 / P.VIDEO_FPS, abs=n * 5)
    with pytest.raises(ValueError, match="layout"):
        P.run_video(model, face, sample_dirs.styles, tmp_path, layout="sideways", progress=False)


@pytest.mark.slow
def test_compiled_synthesis_matches_eager(golden_ckpts, golden):
    """--compile: torch.compile'd synthesis gives the official result too."""
    from blendgan import BlendGAN
    m = BlendGAN.from_pretrained(golden_ckpts.blendgan).compile_synthesis()
    with torch.inference_mode():
        out = m.synthesize(w_plus=golden["psp_codes"], z_embed=golden["z_embed_ref"], add_weight_index=6)
    ref = golden["style_transfer"]
    assert ((out - ref).norm() / ref.norm()).item() < 1e-4
    assert "_compiled" not in dict(m.named_modules())


def test_background_writer_threads(tmp_path, monkeypatch):
    assert P.writer_threads(torch.device("cpu")) == 1
    monkeypatch.setattr(P.os, "cpu_count", lambda: 16)
    assert P.writer_threads(torch.device("cuda")) == 8
    monkeypatch.setattr(P.os, "cpu_count", lambda: 2)
    assert P.writer_threads(torch.device("cuda")) == 1
    images = [np.full((8, 8, 3), i, np.uint8) for i in range(20)]
    with P._BackgroundWriter(3) as writer:
        assert writer.depth == 12
        for i, img in enumerate(images):
            writer.submit(io.write_image, tmp_path / f"{i}.png", img)
    for i, img in enumerate(images):  # every file written, each with its own content
        assert np.array_equal(io.read_image(tmp_path / f"{i}.png"), img)


def _recorded(count: int, made: list):
    """0 .. count-1, appending each to ``made`` as it is produced."""
    for i in range(count):
        made.append(i)
        yield i


def test_one_ahead_makes_the_next_item_before_yielding():
    made = []
    seen = []
    for item in P.one_ahead(_recorded(4, made)):
        seen.append((item, list(made)))
    # item k is handed out once item k+1 exists (the last one when the source is exhausted)
    assert seen == [(0, [0, 1]), (1, [0, 1, 2]), (2, [0, 1, 2, 3]), (3, [0, 1, 2, 3])]
    assert list(P.one_ahead(iter([]))) == []


def test_jobs_overlap_batches_on_gpus_only():
    for device, made_before_first in (("cpu", [0]), ("cuda", [0, 1])):  # CPU: each batch written as made
        made = []
        batches = iter(P._overlapped(_recorded(3, made), torch.device(device)))
        assert next(batches) == 0 and made == made_before_first
        assert list(batches) == [1, 2]
