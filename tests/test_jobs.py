"""The jobs as library functions: outputs, resume, bad inputs, batch invariance."""
import copy
import errno
import hashlib
import json
import os
import random
import shutil

import numpy as np
import pytest
import torch

from blendgan import defaults, io, jobs, runtime, synthesis
from blendgan.cache import EncodingCache
from blendgan.errors import UsageError


def read(path):
    return io.read_image(path)


def test_transition_alphas_match_official_formula():
    expected = [0.0] + [1 / (1 + np.exp(-x)) for x in np.arange(-5, 5, 0.5)] + [1.0] * 10
    got = synthesis.transition_alphas()
    assert len(got) == 31
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_transition_alphas_have_one_sample_per_step():
    for steps in range(1, 200):  # a float step in np.arange gave steps + 1 samples for some counts
        assert len(synthesis.transition_alphas(steps, 3)) == 1 + steps + 3
    assert synthesis.transition_alphas(0, 2) == [0.0, 1.0, 1.0]


def test_slide_window():
    a = np.zeros((4, 2, 3), np.uint8)
    b = np.full((4, 2, 3), 9, np.uint8)
    assert (synthesis.slide_window(a, b, 0.0) == 0).all()
    assert (synthesis.slide_window(a, b, 1.0) == 9).all()
    half = synthesis.slide_window(a, b, 0.5)
    assert (half[:2] == 0).all() and (half[2:] == 9).all()


def test_sample_zs_independent_of_count():
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(synthesis.sample_zs(5, g1)[:3], synthesis.sample_zs(3, g2))


def test_pairs_layout_content_and_resume(model, tmp_path):
    out = tmp_path / "pairs"
    r = jobs.run_pairs(model, out, pics=3, seed=1, batch_size=2, fmt="png", progress=False)
    assert [p.name for p in r.written] == ["000000.png", "000001.png", "000002.png"] and not r.failed
    img = read(out / "000001.png")
    assert img.shape == (model.size, 2 * model.size, 3)
    # the stylized half is what the API gives for the same draws (seed order: style code, then faces)
    g = runtime.make_generator(1, "cpu")
    z_style = torch.randn(1, 512, generator=g)
    zs = synthesis.sample_zs(3, g)
    with torch.inference_mode():
        nat = io.to_uint8(model.synthesize(z=zs[1:2]))[0]
        sty = io.to_uint8(model.synthesize(z=zs[1:2], z_embed=z_style, add_weight_index=6))[0]
    assert np.abs(img[:, :model.size].astype(int) - nat).max() <= 1
    assert np.abs(img[:, model.size:].astype(int) - sty).max() <= 1
    # resume: only the missing output is redone, the others are left alone
    before = (out / "000000.png").stat().st_mtime_ns
    (out / "000002.png").unlink()
    r2 = jobs.run_pairs(model, out, pics=3, seed=1, batch_size=2, fmt="png", progress=False)
    assert [p.name for p in r2.written] == ["000002.png"] and len(r2.skipped) == 2
    assert (out / "000000.png").stat().st_mtime_ns == before
    with torch.inference_mode():
        redone = io.to_uint8(model.synthesize(z=zs[2:3]))[0]
    assert np.abs(read(out / "000002.png")[:, :model.size].astype(int) - redone).max() <= 1
    r3 = jobs.run_pairs(model, out, pics=3, seed=1, fmt="png", overwrite=True, progress=False)
    assert len(r3.written) == 3


def test_pairs_resumed_and_sharded_runs_write_the_fresh_runs_bytes(model, tmp_path):
    kw = dict(pics=4, seed=3, batch_size=2, fmt="png", progress=False)
    jobs.run_pairs(model, tmp_path / "fresh", **kw)
    fresh = {p.name: p.read_bytes() for p in (tmp_path / "fresh").iterdir()}
    # two shards, one after the other: the second must not re-plan around the first's files
    shards = tmp_path / "shards"
    r0 = jobs.run_pairs(model, shards, shard=runtime.Shard(0, 2), **kw)
    r1 = jobs.run_pairs(model, shards, shard=runtime.Shard(1, 2), **kw)
    assert [p.name for p in r0.written + r1.written] == sorted(n for n in fresh if n != jobs.report.SETTINGS_FILE)
    assert not r1.skipped  # the other process's outputs are not this one's to report
    # resume after losing one image of each batch: each is redone in its original batch
    for name in ("000001.png", "000002.png"):
        (shards / name).unlink()
    r2 = jobs.run_pairs(model, shards, **kw)
    assert [p.name for p in r2.written] == ["000001.png", "000002.png"] and len(r2.skipped) == 2
    assert {p.name: p.read_bytes() for p in shards.iterdir()} == fresh


def test_pairs_checks_given_face_codes(model, tmp_path):
    zs = torch.randn(2, 1, 512, generator=torch.Generator().manual_seed(0))
    r = jobs.run_pairs(model, tmp_path, pics=2, zs=zs, fmt="png", progress=False)  # [P, 1, 512] as saved files hold
    assert len(r.written) == 2
    with pytest.raises(ValueError, match="holds 2 face codes, 3 needed"):
        jobs.run_pairs(model, tmp_path, pics=3, zs=zs, progress=False)
    with pytest.raises(ValueError, match=r"\[P, 512\]"):
        jobs.run_pairs(model, tmp_path, pics=1, zs=torch.zeros(2, 256), progress=False)
    with pytest.raises(ValueError, match="no such file .expected face codes"):
        jobs.load_sample_zs(tmp_path / "nope.pt", 1)


def test_pairs_batch_size_does_not_change_results(model, tmp_path):
    jobs.run_pairs(model, tmp_path / "b1", pics=3, seed=2, batch_size=1, fmt="png", progress=False)
    jobs.run_pairs(model, tmp_path / "b3", pics=3, seed=2, batch_size=3, fmt="png", progress=False)
    for i in range(3):
        a, b = read(tmp_path / "b1" / f"{i:06d}.png"), read(tmp_path / "b3" / f"{i:06d}.png")
        assert np.abs(a.astype(int) - b).max() <= 1  # float reassociation may flip a rounding


def test_pairs_reference_style(model, tmp_path, sample_dirs):
    style = sorted(sample_dirs.styles.iterdir())[0]
    r = jobs.run_pairs(model, tmp_path, pics=1, style_image=style, fmt="png", progress=False)
    img = read(r.written[0])
    with torch.inference_mode():
        z_embed = model.embed_style(io.to_tensor(read(style)))
        g = runtime.make_generator(0, "cpu")
        z = synthesis.sample_zs(1, g)  # no random style draw when a style image is given
        sty = io.to_uint8(model.synthesize(z=z, z_embed=z_embed, add_weight_index=6))[0]
    assert np.abs(img[:, model.size:].astype(int) - sty).max() <= 1


def test_transfer_goes_on_after_bad_inputs(model, tmp_path, sample_dirs):
    faces = tmp_path / "faces"
    shutil.copytree(sample_dirs.faces, faces)
    (faces / "notes.txt").write_text("not an image")
    (faces / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "out"
    r = jobs.run_transfer(model, faces, sample_dirs.styles, out, fmt="png", batch_size=3, progress=False)
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
    r2 = jobs.run_transfer(model, faces, sample_dirs.styles, out, fmt="png", progress=False)
    assert not r2.written and len(r2.skipped) == len(r.written)


def test_transfer_outputs_keep_every_pair_apart(tmp_path):
    faces = [tmp_path / n for n in ("a.jpg", "a.png", "b.png", "x.png", "x_v_y.png")]
    styles = [tmp_path / n for n in ("s.png", "y_v_s.png")]
    pairs, clashes = jobs.transfer_outputs(faces, styles, tmp_path, "jpg")
    names = [p.name for _, _, p in pairs]
    assert len(set(names)) == len(names)
    # inputs sharing a stem keep their extension; the others keep the official names
    assert {"a.jpg_v_s.jpg", "a.png_v_s.jpg", "b_v_s.jpg", "b_v_y_v_s.jpg"} <= set(names)
    # "x" with "y_v_s" and "x_v_y" with "s" would both be x_v_y_v_s.jpg: neither is written
    assert sorted((f.name, s.name) for f, s, _ in clashes) == [("x.png", "y_v_s.png"), ("x_v_y.png", "s.png")]
    assert len(pairs) + len(clashes) == len(faces) * len(styles)


def test_transfer_resume_and_same_stem_inputs(model, tmp_path, sample_dirs):
    faces = tmp_path / "faces"
    faces.mkdir()
    src = sorted(sample_dirs.faces.iterdir())
    io.write_image(faces / "a.png", io.resize(read(src[0]), 64), "png")
    io.write_image(faces / "a.jpg", io.resize(read(src[1]), 64), "jpg")
    style = sorted(sample_dirs.styles.iterdir())[0]
    kw = dict(fmt="png", batch_size=2, progress=False)
    r = jobs.run_transfer(model, faces, style, tmp_path / "out", **kw)
    out = tmp_path / "out"
    assert sorted(p.name for p in r.written) == [f"a.jpg_v_{style.stem}.png", f"a.png_v_{style.stem}.png"]
    assert not np.array_equal(read(r.written[0]), read(r.written[1]))
    fresh = {p.name: p.read_bytes() for p in out.iterdir()}
    r.written[1].unlink()
    r2 = jobs.run_transfer(model, faces, style, out, **kw)
    assert r2.written == [r.written[1]] and r2.skipped == [r.written[0]]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == fresh


def test_a_folder_of_outputs_made_otherwise_is_refused_not_skipped(model, tmp_path, sample_dirs):
    style = sorted(sample_dirs.styles.iterdir())[0]
    out = tmp_path / "out"
    kw = dict(fmt="png", progress=False)
    first = jobs.run_transfer(model, sample_dirs.faces, style, out, **kw)
    record = json.loads((out / jobs.report.SETTINGS_FILE).read_text())
    assert record["job"] == "transfer" and record["settings"]["strength"] == 1.0
    # the same settings resume; other settings would skip files made another way: refused
    assert len(jobs.run_transfer(model, sample_dirs.faces, style, out, **kw).skipped) == len(first.written)
    with pytest.raises(UsageError, match=r"out: holds outputs made with other settings \(preserve_color: "
                                         r"False -> True, strength: 1.0 -> 0.6\)") as e:
        jobs.run_transfer(model, sample_dirs.faces, style, out, strength=0.6, preserve_color=True, **kw)
    assert "\n" not in str(e.value)
    redone = jobs.run_transfer(model, sample_dirs.faces, style, out, strength=0.6, overwrite=True, **kw)
    assert len(redone.written) == len(first.written)
    assert json.loads((out / jobs.report.SETTINGS_FILE).read_text())["settings"]["strength"] == 0.6
    # another job, another seed or another checkpoint are other settings too
    with pytest.raises(UsageError, match="job: 'transfer' -> 'pairs'"):
        jobs.run_pairs(model, out, pics=1, **kw)
    jobs.run_pairs(model, tmp_path / "p", pics=1, seed=1, **kw)
    with pytest.raises(UsageError, match="seed: 1 -> 2"):
        jobs.run_pairs(model, tmp_path / "p", pics=1, seed=2, **kw)
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.generator.add_weight.mul_(0.5)
    with pytest.raises(UsageError, match="model: "):
        jobs.run_pairs(other, tmp_path / "p", pics=1, seed=1, **kw)


def test_a_damaged_or_missing_settings_record_is_never_guessed(model, tmp_path, caplog):
    kw = dict(pics=1, seed=1, fmt="png", progress=False)
    out = tmp_path / "p"
    jobs.run_pairs(model, out, **kw)
    record = out / jobs.report.SETTINGS_FILE
    for damage in ("{not json", None):  # a damaged record, or outputs of a version that wrote none
        if damage is None:
            record.unlink()
        else:
            record.write_text(damage)
        caplog.clear()
        # outputs made with unknown settings: kept, said so, and not labelled with these settings
        assert len(jobs.run_pairs(model, out, pics=1, seed=7, fmt="png", progress=False).skipped) == 1
        assert "without a readable record of their settings" in caplog.text
        assert (record.read_text() if record.exists() else None) == damage
    assert len(jobs.run_pairs(model, out, overwrite=True, **kw).written) == 1
    assert json.loads(record.read_text())["settings"]["seed"] == 1
    # an empty folder takes any settings
    (out / "000000.png").unlink()
    assert len(jobs.run_pairs(model, out, pics=1, seed=5, fmt="png", progress=False).written) == 1


def test_video_reports_a_bad_style_once(model, tmp_path, sample_dirs):
    pytest.importorskip("av")
    styles = tmp_path / "styles"
    styles.mkdir()
    shutil.copy(sorted(sample_dirs.styles.iterdir())[0], styles / "good.png")
    (styles / "bad.png").write_bytes(b"not a png")
    chosen = random.Random(0).choices(sorted(styles.iterdir()), k=5)
    assert chosen.count(styles / "bad.png") >= 2 and chosen.count(styles / "good.png") >= 2  # the premise
    face = sorted(sample_dirs.faces.iterdir())[0]
    r = jobs.run_video(model, face, styles, tmp_path / "out", n_styles=5, seed=0, transition_steps=1, hold_frames=0,
                    progress=False)
    assert len(r.written) == 1 and r.failed == [(str(styles / "bad.png"), r.failed[0][1])]


def test_encoding_cache_keys_on_every_weight_and_checks_entries(model, tmp_path, sample_dirs, caplog):
    face = sorted(sample_dirs.faces.iterdir())[0]
    cache = EncodingCache(tmp_path, model)
    prints = cache.fingerprint("face"), cache.fingerprint("style")
    body = model.psp.encoder.body[3].res_layer[1].weight  # deep inside the encoder, far from its heads
    vgg = next(model.generator.embedder.parameters())
    for p in (body, vgg):
        saved = p.detach().clone()
        with torch.no_grad():
            p[0].add_(1.0)
        try:
            fresh = EncodingCache(tmp_path, model)
            assert (fresh.fingerprint("face"), fresh.fingerprint("style")) != prints
        finally:
            with torch.no_grad():
                p.copy_(saved)
    again = EncodingCache(tmp_path, model)  # restored weights: the same keys again
    assert (again.fingerprint("face"), again.fingerprint("style")) == prints
    # an entry of the wrong shape is recomputed and replaced, not handed to the job
    code = torch.zeros(1, model.n_latent, 512)
    digest = hashlib.sha256(face.read_bytes()).hexdigest()
    torch.save(torch.zeros(1, 512), cache.path("face", digest))
    with caplog.at_level("WARNING", logger="blendgan"):
        assert torch.equal(cache.get("face", digest, lambda: code), code)
    assert "not a [1, %d, 512] tensor" % model.n_latent in caplog.text
    assert torch.equal(cache.get("face", digest, lambda: None), code)


def test_video(model, tmp_path, sample_dirs):
    av = pytest.importorskip("av")
    face = sorted(sample_dirs.faces.iterdir())[0]
    r = jobs.run_video(model, face, sample_dirs.styles, tmp_path, n_styles=2, transition_steps=2, hold_frames=1,
                    batch_size=4, progress=False)
    assert r.written == [tmp_path / f"{face.stem}.mp4"] and not r.failed
    with av.open(str(r.written[0])) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264"
        assert (s.width, s.height) == (3 * model.size, model.size)
        assert int(s.average_rate) == defaults.VIDEO_FPS
        n = sum(1 for _ in c.decode(video=0))
    assert n == (1 + 2 + 1) * (2 - 1) + 1
    r2 = jobs.run_video(model, face, sample_dirs.styles, tmp_path, n_styles=2, transition_steps=2, hold_frames=1,
                        progress=False)
    assert r2.skipped == r.written and not r2.written


def test_video_output_layout_as_gif(model, tmp_path, sample_dirs):
    from PIL import Image
    face = sorted(sample_dirs.faces.iterdir())[0]
    r = jobs.run_video(model, face, sample_dirs.styles, tmp_path, n_styles=2, transition_steps=2, hold_frames=1,
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
    assert total == pytest.approx(n * 1000 / defaults.VIDEO_FPS, abs=n * 5)
    with pytest.raises(ValueError, match="layout"):
        jobs.run_video(model, face, sample_dirs.styles, tmp_path, layout="sideways", progress=False)


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
    assert jobs.writer_threads(torch.device("cpu")) == 1
    monkeypatch.setattr(jobs.report.os, "cpu_count", lambda: 16)
    assert jobs.writer_threads(torch.device("cuda")) == 8
    monkeypatch.setattr(jobs.report.os, "cpu_count", lambda: 2)
    assert jobs.writer_threads(torch.device("cuda")) == 1
    images = [np.full((8, 8, 3), i, np.uint8) for i in range(20)]
    report = jobs.JobReport()
    with jobs.BackgroundWriter(report, 3) as writer:
        assert writer.depth == 12
        for i, img in enumerate(images):
            writer.submit(tmp_path / f"{i}.png", io.write_image, tmp_path / f"{i}.png", img)
    for i, img in enumerate(images):  # every file written, each with its own content
        assert np.array_equal(io.read_image(tmp_path / f"{i}.png"), img)
    assert report.written == [tmp_path / f"{i}.png" for i in range(20)] and not report.failed


def _write_or_fail(path, code):
    if code:
        raise OSError(code, os.strerror(code), str(path))
    path.write_bytes(b"x")


def test_background_writer_reports_a_failed_write_and_goes_on(tmp_path):
    report = jobs.JobReport()
    paths = [tmp_path / f"{i}.png" for i in range(4)]
    with jobs.BackgroundWriter(report, 2, depth=1) as writer:
        for i, p in enumerate(paths):
            writer.submit(p, _write_or_fail, p, errno.EISDIR if i == 1 else 0)
    assert report.written == [paths[0], paths[2], paths[3]]
    assert [path for path, _ in report.failed] == [str(paths[1])]
    assert "cannot write" in report.failed[0][1] and "\n" not in report.failed[0][1]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_background_writer_stops_when_no_output_can_be_written(tmp_path, code):
    report = jobs.JobReport()
    with pytest.raises(OSError) as excinfo:
        with jobs.BackgroundWriter(report, 1) as writer:
            writer.submit(tmp_path / "a.png", _write_or_fail, tmp_path / "a.png", code)
    assert excinfo.value.errno == code and "a.png" in str(excinfo.value)


def test_background_writer_lets_the_jobs_own_error_through(tmp_path):
    report = jobs.JobReport()
    with pytest.raises(KeyboardInterrupt):
        with jobs.BackgroundWriter(report, 1) as writer:
            writer.submit(tmp_path / "a.png", _write_or_fail, tmp_path / "a.png", errno.EACCES)
            writer.submit(tmp_path / "b.png", _write_or_fail, tmp_path / "b.png", 0)
            raise KeyboardInterrupt


def _recorded(count: int, made: list):
    """0 .. count-1, appending each to ``made`` as it is produced."""
    for i in range(count):
        made.append(i)
        yield i


def test_one_ahead_makes_the_next_item_before_yielding():
    made = []
    seen = []
    for item in jobs.one_ahead(_recorded(4, made)):
        seen.append((item, list(made)))
    # item k is handed out once item k+1 exists (the last one when the source is exhausted)
    assert seen == [(0, [0, 1]), (1, [0, 1, 2]), (2, [0, 1, 2, 3]), (3, [0, 1, 2, 3])]
    assert list(jobs.one_ahead(iter([]))) == []


def test_jobs_overlap_batches_on_gpus_only():
    for device, made_before_first in (("cpu", [0]), ("cuda", [0, 1])):  # CPU: each batch written as made
        made = []
        batches = iter(jobs.overlapped(_recorded(3, made), torch.device(device)))
        assert next(batches) == 0 and made == made_before_first
        assert list(batches) == [1, 2]
