"""Bad input, faults and hostile names, as an adversarial user would try them: every case is a
generated fixture (nothing binary is committed), and each one is tried in more than one form
(other formats, file kinds and code paths than the first report named).

Each test fails on the code before the hardening that it guards.
"""
from __future__ import annotations

import errno
import json
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from blendgan import io
from blendgan.cache import EncodingCache
from blendgan.checkpoint import load_file, load_generator, load_psp
from blendgan.cli import main
from blendgan.errors import CheckpointError, ImageError, UsageError, VideoError, printable
from blendgan.jobs import align_path, run_pairs, run_transfer, stylize_video
from blendgan.models import Generator
from blendgan.session import Session
from tests.conftest import ROOT

FACE = ROOT / "test_imgs" / "face_imgs" / "astronaut_mirrored_256.png"
STYLE = ROOT / "test_imgs" / "style_imgs" / "cartoon.png"


# -- fixtures that build the bad inputs ---------------------------------------------------------------
def hdr_claiming(width: int, height: int) -> bytes:
    """A Radiance HDR whose header claims ``width`` x ``height`` (a few bytes of pixels)."""
    return b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y %d +X %d\n" % (height, width) + bytes(64)


def pfm_claiming(width: int, height: int) -> bytes:
    return b"PF\n%d %d\n-1.0\n" % (width, height) + bytes(64)


def pam_claiming(width: int, height: int) -> bytes:
    return b"P7\nWIDTH %d\nHEIGHT %d\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n" % (width, height) + bytes(64)


def png_claiming(width: int, height: int) -> bytes:
    ok, buf = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))
    data = bytearray(buf.tobytes())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


class FakeAligner:
    def align(self, rgb, size, all_faces=False):
        return [cv2.resize(rgb, (size, size))]

    def load(self):
        return self


BOMBS = {"hdr": hdr_claiming, "pfm": pfm_claiming, "pam": pam_claiming, "png": png_claiming}


def finishes_within(seconds: float, fn, unblock: Path | None = None):
    """``fn()``'s result, or a test failure when it has not returned after ``seconds`` (then a
    writer opens the FIFO ``unblock`` so that the blocked reader thread can end)."""
    result: dict = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            result["error"] = exc
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if unblock is not None:
            fd = os.open(unblock, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
        pytest.fail(f"still blocked after {seconds} s")
    if "error" in result:
        raise result["error"]
    return result["value"]


def one_line(text: str) -> bool:
    return bool(text) and "\n" not in text.strip()


@pytest.fixture
def folders(tmp_path):
    faces, styles = tmp_path / "faces", tmp_path / "styles"
    faces.mkdir()
    styles.mkdir()
    shutil.copy(FACE, faces / "good.png")
    shutil.copy(STYLE, styles / "cartoon.png")
    return faces, styles


@pytest.fixture
def tiny_disk(tmp_path):
    """A 96 KB filesystem (tmpfs; needs root, else the test skips): a real full disk."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


# -- 1. the pixel limit holds for every format, whatever its name --------------------------------------
@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_huge_images_are_refused_from_their_header_in_any_format(kind, tmp_path, monkeypatch):
    bomb = tmp_path / "innocent.png"              # the name lies about the format
    bomb.write_bytes(BOMBS[kind](12000, 12000))

    def no_decode(*args):
        raise AssertionError("decoded before the size was checked")
    monkeypatch.setattr(io.images.cv2, "imdecode", no_decode)
    with pytest.raises(ImageError, match="too large") as err:
        io.read_image(bomb)
    assert one_line(str(err.value)) and str(bomb) in str(err.value)


def test_a_format_whose_size_is_unknown_is_refused(tmp_path, monkeypatch):
    odd = tmp_path / "odd.png"
    odd.write_bytes(b"\x00\x01not a known header" * 10)
    monkeypatch.setattr(io.images.cv2, "imdecode", lambda *a: pytest.fail("decoded an image of unknown size"))
    with pytest.raises(ImageError, match="size cannot be read before decoding"):
        io.read_image(odd)


def test_small_images_in_those_formats_still_decode():
    for ext, image in ((".hdr", np.full((6, 10, 3), 0.5, np.float32)), (".pfm", np.full((6, 10, 3), 0.5, np.float32)),
                       (".pam", np.full((6, 10, 3), 7, np.uint8))):
        ok, buf = cv2.imencode(ext, image)
        assert ok and io.decode_image(buf.tobytes(), ext).shape == (6, 10, 3)


def test_a_folder_job_reports_the_bomb_and_goes_on(model, folders, tmp_path):
    faces, styles = folders
    (faces / "bomb.png").write_bytes(hdr_claiming(12000, 12000))
    report = run_transfer(model, faces, styles, tmp_path / "out", fmt="png", progress=False)
    assert [p.name for p in report.written] == ["good_v_cartoon.png"]
    assert len(report.failed) == 1 and "too large" in report.failed[0][1]


def test_video_frames_over_the_limit_are_refused_before_decoding(model, tmp_path, monkeypatch):
    av = pytest.importorskip("av")
    clip = tmp_path / "clip.mp4"
    with io.VideoWriter(clip, fps=10) as writer:
        writer.write(np.zeros((2, 64, 96, 3), np.uint8))
    monkeypatch.setattr(io.images, "MAX_IMAGE_PIXELS", 64 * 96 - 1)
    with pytest.raises(VideoError, match="frames: image too large"):
        stylize_video(model, clip, torch.zeros(1, 512), tmp_path / "out.mp4", aligner=FakeAligner(), progress=False)
    assert av is not None


# -- 2. an input removed during the job ---------------------------------------------------------------
def test_a_style_removed_mid_job_is_reported_and_the_job_goes_on(model, folders, tmp_path, monkeypatch):
    faces, styles = folders
    shutil.copy(FACE, faces / "second.png")
    shutil.copy(ROOT / "test_imgs" / "style_imgs" / "pencil_sketch_384.jpg", styles / "pencil.jpg")
    monkeypatch.setattr("blendgan.jobs.transfer.PANELS_KEPT", 0)   # every panel is read again
    original = Session.style

    def embed_then_remove(self, source, *args, **kwargs):
        style = original(self, source, *args, **kwargs)
        if Path(source).name == "cartoon.png":
            Path(source).unlink()
        return style
    monkeypatch.setattr(Session, "style", embed_then_remove)
    report = run_transfer(model, faces, styles, tmp_path / "out", fmt="png", progress=False)
    assert sorted(p.name for p in report.written) == ["good_v_pencil.png", "second_v_pencil.png"]
    assert report.failed == [(str(styles / "cartoon.png"), f"{styles / 'cartoon.png'}: no such file")]


# -- 3. cache entries: shape right, values wrong -------------------------------------------------------
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_cache_entries_are_recomputed_and_replaced(model, folders, tmp_path, value):
    faces, styles = folders
    cache = EncodingCache(tmp_path / "cache", model)
    session = Session(model)
    good = session.face(faces / "good.png").w_plus
    digest = hashlib.sha256((faces / "good.png").read_bytes()).hexdigest()
    entry = cache.path("face", digest)
    torch.save(torch.full((1, model.n_latent, 512), value), entry)
    assert torch.equal(cache.get("face", digest, lambda: good), good)
    assert bool(torch.isfinite(torch.load(entry, weights_only=True)).all())
    out = run_transfer(model, faces, styles, tmp_path / "out", fmt="png", progress=False, cache_dir=tmp_path / "c2")
    assert out.written and io.read_image(out.written[0]).std() > 0


# -- 4. every number read from a checkpoint is checked -------------------------------------------------
def tiny_generator_file(path: Path, **extras) -> Path:
    g = Generator(8, style_dim=16, n_mlp=2, channels={4: 8, 8: 8}, style_encoder=False)
    torch.save({"g_ema": g.state_dict(), **extras}, path)
    return path


@pytest.mark.parametrize("extras, message", [
    ({"latent_avg": torch.full((1, 16), float("nan"))}, "'latent_avg' holds NaN"),
    ({"latent_avg": torch.full((16,), float("inf"))}, "'latent_avg' holds NaN"),
    ({"truncation": float("nan")}, "'truncation' is nan"),
    ({"truncation": torch.tensor(float("-inf"))}, "'truncation' is -inf"),
    ({"truncation": "0.7x"}, "'truncation' is not a number"),
])
def test_non_finite_numbers_in_a_checkpoint_are_refused(tmp_path, extras, message):
    path = tiny_generator_file(tmp_path / "g.pt", **extras)
    with pytest.raises(CheckpointError, match=message) as err:
        load_generator(path)
    assert one_line(str(err.value)) and str(path) in str(err.value)
    assert load_generator(tiny_generator_file(tmp_path / "ok.pt", latent_avg=torch.zeros(1, 16), truncation=0.7))


def test_a_non_finite_psp_latent_avg_is_refused(golden_ckpts, tmp_path):
    obj = torch.load(golden_ckpts.psp, map_location="cpu", weights_only=True, mmap=True)
    obj["latent_avg"] = torch.full_like(obj["latent_avg"], float("nan"))
    bad = tmp_path / "psp_nan.pt"
    torch.save(obj, bad)
    try:
        with pytest.raises(CheckpointError, match="'latent_avg' holds NaN"):
            load_psp(bad)
    finally:
        bad.unlink()


# -- 5. files that are not regular files ---------------------------------------------------------------
@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe.pt"
    os.mkfifo(path)
    return path


def test_a_fifo_checkpoint_is_refused_at_once(fifo):
    with pytest.raises(CheckpointError, match="is a named pipe"):
        finishes_within(10, lambda: load_file(fifo), unblock=fifo)


def test_a_fifo_image_video_or_cache_entry_does_not_block(model, fifo, tmp_path, folders):
    image = fifo.rename(fifo.with_suffix(".png"))
    with pytest.raises(ImageError, match="is a named pipe"):
        finishes_within(10, lambda: io.read_image(image), unblock=image)
    assert image not in io.list_images(image.parent)             # folder jobs skip it with a warning
    video = image.rename(image.with_suffix(".mp4"))
    with pytest.raises(VideoError, match="is a named pipe"):
        finishes_within(10, lambda: stylize_video(model, video, STYLE, tmp_path / "o.mp4", aligner=FakeAligner(),
                                                  progress=False), unblock=video)
    faces, _ = folders
    cache = EncodingCache(tmp_path / "cache", model)
    digest = hashlib.sha256((faces / "good.png").read_bytes()).hexdigest()
    entry = cache.path("face", digest)
    os.mkfifo(entry)
    code = torch.zeros(1, model.n_latent, 512)
    assert torch.equal(finishes_within(10, lambda: cache.get("face", digest, lambda: code), unblock=entry), code)
    assert io.is_done(entry)                                        # replaced by a regular file


# -- 6. symbolic link loops in input folders, for every job ---------------------------------------------
def test_a_symlink_loop_in_a_folder_is_skipped_by_every_job(model, folders, tmp_path, caplog):
    faces, styles = folders
    (faces / "loop.png").symlink_to(faces / "loop.png")
    (faces / "broken.jpg").symlink_to(faces / "gone.jpg")
    with caplog.at_level("WARNING", logger="blendgan"):
        assert io.list_images(faces) == [faces / "good.png"]
    assert "loop.png: skipped, is a symbolic link loop" in caplog.text
    assert "broken.jpg: skipped, is a broken symbolic link" in caplog.text
    report = align_path(faces, tmp_path / "aligned", size=64, progress=False, aligner=FakeAligner())
    assert [p.name for p in report.written] == ["good.png"] and not report.failed
    report = run_transfer(model, faces, styles, tmp_path / "out", fmt="png", progress=False)
    assert [p.name for p in report.written] == ["good_v_cartoon.png"]


# -- 8. a full disk ---------------------------------------------------------------------------------------
def test_a_cache_on_a_full_disk_is_turned_off_and_the_job_goes_on(model, folders, tmp_path, tiny_disk, caplog):
    faces, styles = folders
    for k in range(3):
        shutil.copy(FACE, faces / f"copy{k}.png")
        img = io.read_image(faces / f"copy{k}.png")
        io.write_image(faces / f"copy{k}.png", np.ascontiguousarray(img[:, ::-1] // (k + 2)))
    with caplog.at_level("WARNING", logger="blendgan"):
        report = run_transfer(model, faces, styles, tmp_path / "out", fmt="png", progress=False, cache_dir=tiny_disk)
    assert len(report.written) == 4 and not report.failed
    assert "No space left on device" in caplog.text and "the encoding cache is off" in caplog.text
    assert not list(tiny_disk.glob(".blendgan-*"))                  # no partial entry left behind


def test_outputs_on_a_full_disk_stop_the_job_with_one_line(golden_ckpts, folders, tiny_disk, capsys):
    faces, styles = folders
    rc = main(["transfer", "--ckpt", str(golden_ckpts.blendgan), "--psp-encoder", str(golden_ckpts.psp),
               "--input", str(faces), "--style", str(styles), "--outdir", str(tiny_disk), "--format", "png",
               "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and one_line(err) and "No space left on device" in err and str(tiny_disk) in err


def test_torch_files_on_a_full_disk_are_one_line_os_errors(tiny_disk):
    from blendgan.checkpoint import save_file
    with pytest.raises(OSError) as err:
        save_file({"x": torch.zeros(100_000)}, tiny_disk / "big.pt")
    assert err.value.errno == errno.ENOSPC and one_line(str(err.value)) and "big.pt" in str(err.value)
    assert not list(tiny_disk.iterdir())


# -- 9. leftovers of a killed run -----------------------------------------------------------------------
def test_a_rerun_sweeps_the_temporaries_of_a_killed_run_only(model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from blendgan.io import temp_beside\n"
        f"tmp = temp_beside(Path({str(out)!r}) / 'x.png'); print(tmp, flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        live = Path(holder.stdout.readline().strip())
        killed = subprocess.Popen([sys.executable, "-c", (
            "import os; from pathlib import Path; from blendgan.io import temp_beside\n"
            f"tmp = temp_beside(Path({str(out)!r}) / 'y.png'); tmp.write_bytes(b'half'); print(tmp, flush=True); "
            "os._exit(9)")], stdout=subprocess.PIPE, text=True, cwd=ROOT)
        dead = Path(killed.stdout.readline().strip())
        killed.wait()
        old_style = out / ".blendgan-0a1b2c3d.part.png"            # an older version's leftover
        old_style.write_bytes(b"partial")
        run_pairs(model, out, pics=1, progress=False, fmt="png")
        assert not dead.exists() and not old_style.exists()
        assert live.exists()                                       # still being written by a live process
    finally:
        holder.kill()
        holder.wait()
    io.prepare_outdir(out)
    assert not live.exists()


# -- 10. frame rates at the edges -------------------------------------------------------------------------
def test_frame_rates_are_used_as_given_or_refused(tmp_path, capsys):
    av = pytest.importorskip("av")
    for fps, rate in ((0.0001, "1/10000"), (29.97, "2997/100"), (30000 / 1001, "30000/1001"), (240, "240")):
        path = tmp_path / f"{fps}.mp4"
        with io.VideoWriter(path, fps=fps) as writer:
            writer.write(np.zeros((2, 16, 16, 3), np.uint8))
        with av.open(str(path)) as c:
            assert str(c.streams.video[0].average_rate) == rate
    for bad in (1e12, 1e-12, float("nan"), 0, -3):
        with pytest.raises(UsageError):
            io.VideoWriter(tmp_path / "x.mp4", fps=bad)
    with pytest.raises(UsageError, match="GIF cannot show"):
        io.write_gif([np.zeros((4, 4, 3), np.uint8)], tmp_path / "x.gif", fps=1000)
    with pytest.raises(SystemExit):
        main(["video", "--input", "f", "--style", "s", "--fps", "1e12"])
    assert "cannot be stored in a video file" in capsys.readouterr().err
    assert main(["video", "--input", str(FACE), "--style", str(STYLE), "--fps", "200", "--gif",
                 "--outdir", str(tmp_path), "--ckpt", str(tmp_path / "none.pt")]) == 2
    assert "a GIF cannot show 200 frames per second" in capsys.readouterr().err
    assert not list(tmp_path.glob(".blendgan-*"))


# -- 11. something else at an output path -------------------------------------------------------------------
def test_a_folder_at_an_output_path_is_a_failure_not_a_finished_output(model, folders, tmp_path):
    faces, styles = folders
    out = tmp_path / "out"
    (out / "good_v_cartoon.png").mkdir(parents=True)
    report = run_transfer(model, faces, styles, out, fmt="png", progress=False)
    assert not report.skipped and not report.written and len(report.failed) == 1
    assert "good_v_cartoon.png: cannot write" in report.failed[0][1]
    (out / "000000.jpg").mkdir()
    report = run_pairs(model, out, pics=1, progress=False)
    assert not report.skipped and len(report.failed) == 1


# -- 12. names that would forge lines ----------------------------------------------------------------------
def test_control_characters_in_names_cannot_forge_lines(golden_ckpts, folders, capsys):
    faces, styles = folders
    (faces / "x\nfailed: 0 written, 9 failed\x1b[2K.png").write_bytes(b"not an image")
    rc = main(["transfer", "--ckpt", str(golden_ckpts.blendgan), "--psp-encoder", str(golden_ckpts.psp),
               "--input", str(faces), "--style", str(styles), "--outdir", str(faces.parent / "out"),
               "--format", "png", "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 1
    assert not any(line.startswith("failed: 0 written") for line in err.splitlines())
    failed = [line for line in err.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 1 and "\\nfailed: 0 written, 9 failed\\x1b[2K.png" in failed[0]
    assert "\x1b" not in err
    warning = [line for line in err.splitlines() if "WARNING: " in line]   # (after a progress bar's \r)
    assert len(warning) == 1 and "\\n" in warning[0]
    assert printable("a\u2028b\u202ec") == "a\\u2028b\\u202ec"


# -- --quiet means quiet -----------------------------------------------------------------------------------
def test_quiet_silences_c_libraries_and_python_warnings(golden_ckpts, folders, capfd):
    """A PNG that decodes with a libpng warning (written by libpng itself to stderr) and a
    Python warning during the job: under --quiet neither shows, and errors still do."""
    import struct
    faces, styles = folders
    ok, png = cv2.imencode(".png", io.read_image(FACE)[:, :, ::-1])
    data = png.tobytes()
    chunk = b"iCCP" + b"bad\x00\x00" + zlib.compress(b"not a colour profile")
    iccp = struct.pack(">I", len(chunk) - 4) + chunk + struct.pack(">I", zlib.crc32(chunk))
    (faces / "warns.png").write_bytes(data[:33] + iccp + data[33:])
    args = ["transfer", "--ckpt", str(golden_ckpts.blendgan), "--psp-encoder", str(golden_ckpts.psp),
            "--input", str(faces), "--style", str(styles), "--format", "png", "--device", "cpu"]
    capfd.readouterr()
    assert main([*args, "--outdir", str(faces.parent / "loud")]) == 0
    assert "libpng warning" in capfd.readouterr().err           # the premise: it does warn
    import warnings as w
    original = Session.face

    def warn_then_encode(self, *a, **k):
        w.warn("a library's UserWarning", UserWarning)
        return original(self, *a, **k)
    Session.face = warn_then_encode
    try:
        assert main([*args, "--outdir", str(faces.parent / "quiet"), "--quiet"]) == 0
    finally:
        Session.face = original
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    (faces / "broken.png").write_bytes(b"\x89PNG broken")
    assert main([*args, "--outdir", str(faces.parent / "quiet"), "--quiet"]) == 1
    assert capfd.readouterr().err.strip().startswith("failed: ")  # errors still show, one line each


# -- training: bad data, damaged checkpoints, full disks, killed runs ---------------------------------------
TINY_TRAIN = ["--size", "32", "--style-dim", "32", "--n-mlp", "2", "--channels", "32,32,16,16", "--batch", "2",
              "--log-every", "1", "--d-reg-every", "2", "--g-reg-every", "2", "--style-pool", "64",
              "--device", "cpu", "--quiet", "--workers", "2", "--tensorboard", "off", "--sample-every", "0"]


@pytest.fixture
def train_data(tmp_path):
    faces, arts = tmp_path / "faces", tmp_path / "arts"
    faces.mkdir()
    arts.mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        io.write_image(faces / f"{i}.png", rng.integers(0, 256, (36, 36, 3), dtype=np.uint8))
        io.write_image(arts / f"{i}.png", rng.integers(0, 256, (36, 36, 3), dtype=np.uint8))
    return faces, arts


def train(faces, arts, outdir, *extra) -> int:
    return main(["train", "--faces", str(faces), "--styles", str(arts), "--outdir", str(outdir), *TINY_TRAIN,
                 *extra])


@pytest.mark.parametrize("cache", [False, True])
def test_training_goes_on_past_unreadable_images_and_resumes(train_data, tmp_path, capsys, cache):
    faces, arts = train_data
    (faces / "4.png").write_bytes(png_claiming(40, 40)[:60])            # a header, then nothing
    (faces / "5.jpg").write_bytes(b"not a jpeg at all")
    (arts / "loop.png").symlink_to(arts / "loop.png")
    loud = [a for a in TINY_TRAIN if a != "--quiet"]
    extra = ["--cache", str(tmp_path / "cache")] if cache else []
    assert main(["train", "--faces", str(faces), "--styles", str(arts), "--outdir", str(tmp_path / "run"), *loud,
                 "--kimg", "0.008", "--save-every", "2", *extra]) == 0
    err = capsys.readouterr().err
    assert "4.png" in err and "5.jpg" in err and "the next image stands in" in err
    assert "loop.png: skipped, is a symbolic link loop" in err
    assert train(faces, arts, tmp_path / "run", "--resume", str(tmp_path / "run"), "--kimg", "0.012", *extra) == 0
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 6


def test_a_damaged_training_checkpoint_is_refused_in_one_line(train_data, tmp_path, capsys):
    faces, arts = train_data
    assert train(faces, arts, tmp_path / "run", "--kimg", "0.004") == 0
    latest = tmp_path / "run" / "checkpoints" / "latest.pt"
    obj = torch.load(latest, weights_only=True)
    key = next(k for k, v in obj["g"].items() if v.is_floating_point())
    obj["g"][key] = torch.full_like(obj["g"][key], float("nan"))
    obj["pl_mean"] = obj["pl_mean"]
    torch.save(obj, tmp_path / "nan.pt")
    capsys.readouterr()
    assert train(faces, arts, tmp_path / "run2", "--resume", str(tmp_path / "nan.pt")) == 2
    err = capsys.readouterr().err.strip()
    assert one_line(err) and f"'g'.{key}" in err and "NaN or infinite" in err
    obj = torch.load(latest, weights_only=True)
    obj["pl_mean"] = float("inf")
    torch.save(obj, tmp_path / "inf.pt")
    assert train(faces, arts, tmp_path / "run3", "--resume", str(tmp_path / "inf.pt")) == 2
    assert "'pl_mean' holds NaN or infinite" in capsys.readouterr().err


def test_training_on_a_full_disk_stops_with_one_line(train_data, tiny_disk, capsys):
    faces, arts = train_data
    capsys.readouterr()
    assert train(faces, arts, tiny_disk / "run", "--kimg", "0.004") == 2
    err = capsys.readouterr().err.strip()
    assert one_line(err) and "No space left on device" in err and "checkpoints" in err
    assert not list((tiny_disk / "run" / "checkpoints").glob(".blendgan-*"))


def test_a_resume_sweeps_what_a_killed_run_left(train_data, tmp_path):
    faces, arts = train_data
    assert train(faces, arts, tmp_path / "run", "--kimg", "0.004") == 0
    left = tmp_path / "run" / "checkpoints" / ".blendgan-deadbeef.part.pt"
    left.write_bytes(bytes(1000))
    assert train(faces, arts, tmp_path / "run", "--resume", str(tmp_path / "run"), "--kimg", "0.008") == 0
    assert not left.exists()
