"""The console command and the drop-in scripts, end to end on the 256px test checkpoints."""
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from blendgan import io
from blendgan import cli
from blendgan.cli import main
from blendgan.cli.official import (gen_video, generate_image_pairs, pairs_parser, style_transfer_folder,
                              transfer_parser, video_parser)
from blendgan.jobs.report import SETTINGS_FILE
from tests.conftest import ROOT, saved_backend_flags


def outputs(folder):
    """The names a job wrote into ``folder``, without the record of its settings."""
    return sorted(p.name for p in folder.iterdir() if p.name != SETTINGS_FILE)


def run_cmd(args, **kw):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600, **kw)


def test_pairs_command(golden_ckpts, tmp_path, capsys):
    rc = main(["pairs", "--ckpt", str(golden_ckpts.blendgan), "--pics", "2", "--outdir", str(tmp_path),
               "--device", "cpu", "--quiet", "--format", "png", "--batch-size", "2"])
    assert rc == 0
    assert outputs(tmp_path) == ["000000.png", "000001.png"]
    assert io.read_image(tmp_path / "000000.png").shape == (256, 512, 3)


def test_pairs_script_matches_command(golden_ckpts, tmp_path):
    """The drop-in script (official flags) and the command give the same images."""
    main(["pairs", "--ckpt", str(golden_ckpts.blendgan), "--pics", "2", "--outdir", str(tmp_path / "cmd"),
          "--quiet", "--format", "png", "--device", "cpu"])
    rc = generate_image_pairs(["--ckpt", str(golden_ckpts.blendgan), "--pics", "2", "--size", "256",
                               "--truncation", "0.75", "--truncation_mean", "4096", "--add_weight_index", "6",
                               "--channel_multiplier", "2", "--outdir", str(tmp_path / "script"), "--quiet",
                               "--format", "png", "--device", "cpu"])
    assert rc == 0
    for name in ("000000.png", "000001.png"):
        assert np.array_equal(io.read_image(tmp_path / "cmd" / name), io.read_image(tmp_path / "script" / name))


def test_transfer_command_and_script(golden_ckpts, sample_dirs, tmp_path):
    rc = main(["transfer", "--ckpt", str(golden_ckpts.blendgan), "--psp-encoder", str(golden_ckpts.psp),
               "--input", str(sample_dirs.faces), "--style", str(sample_dirs.styles), "--outdir", str(tmp_path / "a"),
               "--quiet", "--device", "cpu"])
    assert rc == 0
    expected = sorted(f"{f.stem}_v_{s.stem}.jpg" for f in sample_dirs.faces.iterdir()
                      for s in sample_dirs.styles.iterdir())
    assert outputs(tmp_path / "a") == expected
    rc = style_transfer_folder(["--ckpt", str(golden_ckpts.blendgan), "--psp_encoder_ckpt", str(golden_ckpts.psp),
                                "--input_img_path", str(sample_dirs.faces), "--style_img_path", str(sample_dirs.styles),
                                "--outdir", str(tmp_path / "b"), "--quiet", "--device", "cpu"])
    assert rc == 0
    assert outputs(tmp_path / "b") == expected
    assert io.read_image(tmp_path / "b" / expected[0]).shape == (256, 768, 3)


def test_video_command_and_script(golden_ckpts, sample_dirs, tmp_path):
    face = sorted(sample_dirs.faces.iterdir())[0]
    common = ["--ckpt", str(golden_ckpts.blendgan), "--styles", "2", "--transition-steps", "2", "--hold-frames", "1",
              "--quiet", "--device", "cpu", "--batch-size", "4"]
    assert main(["video", *common, "--psp-encoder", str(golden_ckpts.psp), "--input", str(face),
                 "--style", str(sample_dirs.styles), "--outdir", str(tmp_path / "a")]) == 0
    assert gen_video([*common, "--psp_encoder_ckpt", str(golden_ckpts.psp), "--input_img_path", str(face),
                      "--style_img_path", str(sample_dirs.styles), "--outdir", str(tmp_path / "b")]) == 0
    for d in ("a", "b"):
        assert outputs(tmp_path / d) == [f"{face.stem}.mp4"]
        assert (tmp_path / d / f"{face.stem}.mp4").stat().st_size > 1000


def test_console_script_and_script_file_run_as_processes(golden_ckpts, tmp_path):
    """`python -m blendgan` and `python scripts/...py` start and work as real processes."""
    r = run_cmd(["-m", "blendgan", "info", "--weights-dir", str(golden_ckpts.dir)])
    assert r.returncode == 0, r.stderr
    assert "op upfirdn2d:" in r.stdout and "op bias_act:" in r.stdout
    assert "BlendGAN generator 256px" in r.stdout and "pSp encoder, 14 styles" in r.stdout
    r = run_cmd(["scripts/generate_image_pairs.py", "--ckpt", str(golden_ckpts.blendgan), "--pics", "1",
                 "--outdir", str(tmp_path), "--quiet", "--device", "cpu"])
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "000000.jpg").exists()


def test_missing_weights_one_line_with_instructions(tmp_path, capsys):
    rc = main(["pairs", "--ckpt", str(tmp_path / "blendgan.pt"), "--outdir", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "blendgan download" in err and "blendgan.pt" in err


def test_size_flag_checked(golden_ckpts, tmp_path, capsys):
    rc = style_transfer_folder(["--ckpt", str(golden_ckpts.blendgan), "--psp_encoder_ckpt", str(golden_ckpts.psp),
                                "--input_img_path", str(tmp_path), "--style_img_path", str(tmp_path),
                                "--size", "1024", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "--size 1024" in err


def test_failed_input_gives_exit_status_1(golden_ckpts, sample_dirs, tmp_path, capsys):
    faces = tmp_path / "faces"
    faces.mkdir()
    (faces / "corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    rc = main(["transfer", "--ckpt", str(golden_ckpts.blendgan), "--psp-encoder", str(golden_ckpts.psp),
               "--input", str(faces), "--style", str(sample_dirs.styles), "--outdir", str(tmp_path / "o"), "--quiet"])
    assert rc == 1
    assert "corrupt.jpg" in capsys.readouterr().err


def test_info_without_weights(tmp_path, capsys):
    assert main(["info", "--weights-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "not found" in out and "blendgan download" in out
    assert "Winograd F(4x4, 3x3)" in out


def test_help_of_every_command():
    for args in (["--help"], ["pairs", "--help"], ["transfer", "--help"], ["video", "--help"], ["info", "--help"],
                 ["download", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(args)
        assert e.value.code == 0


def test_transfer_with_alignment(golden_ckpts, sample_dirs, tmp_path):
    """--align always: the face is FFHQ-aligned before encoding (needs the align extra)."""
    pytest.importorskip("dlib")
    faces = tmp_path / "faces"
    faces.mkdir()
    src = ROOT / "test_imgs" / "face_imgs" / "astronaut_512.jpg"
    img = io.read_image(src)
    io.write_image(faces / "padded.png", np.pad(img, ((40, 90), (120, 10), (0, 0)), mode="edge"))
    style = sorted(sample_dirs.styles.iterdir())[0]
    rc = main(["transfer", "--ckpt", str(golden_ckpts.blendgan), "--psp-encoder", str(golden_ckpts.psp),
               "--input", str(faces), "--style", str(style), "--outdir", str(tmp_path / "o"), "--quiet",
               "--align", "--format", "png", "--device", "cpu"])
    assert rc == 0
    out = io.read_image(tmp_path / "o" / f"padded_v_{style.stem}.png")
    # the input panel is the aligned crop, not the padded photo squeezed into a square
    squeezed = io.resize(io.read_image(faces / "padded.png"), 256)
    assert np.abs(out[:, :256].astype(int) - squeezed).mean() > 5


def test_pairs_script_lets_checkpoint_truncation_win(golden_ckpts, tmp_path):
    """Official rule in the drop-in script: a stored 'truncation' overrides --truncation."""
    import torch
    ck = torch.load(golden_ckpts.blendgan, map_location="cpu", weights_only=True, mmap=True)
    path = tmp_path / "with_truncation.pt"
    torch.save({"g_ema": ck["g_ema"], "latent_avg": ck["latent_avg"], "truncation": 0.5}, path)
    common = ["--pics", "1", "--quiet", "--format", "png", "--device", "cpu"]
    assert generate_image_pairs(["--ckpt", str(path), "--truncation", "0.9", "--outdir", str(tmp_path / "s"),
                                 *common]) == 0
    assert main(["pairs", "--ckpt", str(golden_ckpts.blendgan), "--truncation", "0.5",
                 "--outdir", str(tmp_path / "c5"), *common]) == 0
    assert main(["pairs", "--ckpt", str(path), "--truncation", "0.9", "--outdir", str(tmp_path / "c9"), *common]) == 0
    script = io.read_image(tmp_path / "s" / "000000.png")
    assert np.array_equal(script, io.read_image(tmp_path / "c5" / "000000.png"))
    assert not np.array_equal(script, io.read_image(tmp_path / "c9" / "000000.png"))  # the command's flag wins


def test_precision_sets_the_backend_switches(golden_ckpts, tmp_path):
    """--precision tf32 turns TF32 on for the run; fp32 (the default) is strict float32,
    although PyTorch's own default lets cuDNN use TF32.  cuDNN autotuning is on for jobs."""
    import torch
    args = ["pairs", "--ckpt", str(golden_ckpts.blendgan), "--pics", "1", "--device", "cpu", "--quiet"]
    with saved_backend_flags():
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.benchmark = False
        assert main([*args, "--outdir", str(tmp_path / "a"), "--precision", "tf32"]) == 0
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.benchmark
        assert main([*args, "--outdir", str(tmp_path / "b")]) == 0
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    # float32 tensors either way: on a CPU the two runs give the same image
    assert np.array_equal(io.read_image(tmp_path / "a" / "000000.jpg"), io.read_image(tmp_path / "b" / "000000.jpg"))


def test_commands_keep_freed_memory_for_reuse():
    """After keep_freed_memory() (called by every command through configure_backends), glibc
    serves a 64 MiB tensor from its heap and keeps the block there once freed, instead of
    mapping it afresh and unmapping it.  Read from glibc's own books (mallinfo2), not from page
    faults: whether the kernel refaults kept pages depends on the machine (a CI VM did)."""
    code = textwrap.dedent("""
        import ctypes, sys, torch
        from blendgan.runtime import keep_freed_memory
        class MallInfo2(ctypes.Structure):
            _fields_ = [(name, ctypes.c_size_t) for name in
                        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
        mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
        mallinfo2.restype = MallInfo2
        def books_of_64mib_tensor():
            before = mallinfo2()
            t = torch.ones(16 << 20)
            alive = mallinfo2()
            del t
            freed = mallinfo2()
            return (alive.hblkhd - before.hblkhd) >> 20, freed.fordblks >> 20
        mapped_default, kept_default = books_of_64mib_tensor()
        assert keep_freed_memory()
        mapped, kept = books_of_64mib_tensor()
        print(mapped_default, kept_default, mapped, kept)
        sys.exit(0 if mapped_default >= 64 and kept_default < 64 and mapped == 0 and kept >= 64 else 1)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_keep_freed_memory_is_harmless_without_glibc(monkeypatch):
    from blendgan import runtime as model

    def no_libc(*args, **kwargs):
        raise OSError("no C library here")

    monkeypatch.setattr(model.ctypes, "CDLL", no_libc)
    assert model.keep_freed_memory() is False


@pytest.mark.parametrize("args, message", [
    (["pairs", "--device", "gpu"], "unknown device 'gpu'"),
    (["pairs", "--device", "cuda:99"], "cuda:99"),
    (["pairs", "--pics", "0"], "--pics: must be >= 1, got 0"),
    (["pairs", "--truncation", "nan"], "--truncation: must be a finite number"),
    (["pairs", "--batch-size", "0"], "--batch-size: must be >= 1"),
    (["video", "--input", "f", "--style", "s", "--fps", "inf"], "--fps: must be a finite number"),
    (["video", "--input", "f", "--style", "s", "--fps", "0"], "--fps: must be > 0"),
    (["video", "--input", "f", "--style", "s", "--styles", "1"], "--styles: must be >= 2"),
    (["video", "--input", "f", "--style", "s", "--hold-frames", "-1"], "--hold-frames: must be >= 0"),
    (["video", "--input", "f", "--style", "s", "--transition-steps", "0"], "--frames-per-transition: must be >= 1"),
    (["transfer", "--input", "f", "--style", "s", "--add-weight-index", "-3"], "must be >= 0 or 'none'"),
    (["transfer", "--input", "f", "--style", "s", "--seed", "1"], "unrecognized arguments: --seed"),
    (["video", "--input", "f", "--style", "s", "--format", "png"], "unrecognized arguments: --format"),
])
def test_bad_flags_are_refused_when_parsed(args, message, capsys):
    """Before any checkpoint is opened: one argparse line, exit status 2."""
    with pytest.raises(SystemExit) as excinfo:
        main(args)
    assert excinfo.value.code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_paths_are_checked_before_the_model_loads(sample_dirs, tmp_path, capsys):
    """A missing input or an unusable output folder is reported first (the checkpoint named
    here does not exist, so reaching the model would give another error) and creates nothing."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    base = ["transfer", "--ckpt", str(tmp_path / "none.pt"), "--quiet"]
    assert main([*base, "--input", str(tmp_path / "nope"), "--style", str(sample_dirs.styles),
                 "--outdir", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == f"blendgan: error: {tmp_path / 'nope'}: no such file or directory"
    assert not (tmp_path / "out").exists()
    for flag in ("--outdir", "--cache-dir"):
        assert main([*base, "--input", str(sample_dirs.faces), "--style", str(sample_dirs.styles),
                     flag, str(afile)]) == 2
        assert capsys.readouterr().err.strip() == f"blendgan: error: {afile}: exists and is not a folder"


def test_empty_input_folder_is_an_error(golden_ckpts, sample_dirs, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["transfer", "--ckpt", str(golden_ckpts.blendgan), "--psp-encoder", str(golden_ckpts.psp),
                 "--input", str(tmp_path / "empty"), "--style", str(sample_dirs.styles), "--outdir",
                 str(tmp_path / "out"), "--quiet", "--device", "cpu"]) == 2
    assert capsys.readouterr().err.strip() == f"blendgan: error: {tmp_path / 'empty'}: no face images found"


def test_sigterm_stops_a_command_like_ctrl_c(capsys):
    def job(_):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the job")
    before = signal.getsignal(signal.SIGTERM)
    with cli.sigterm_as_interrupt():
        assert cli.run(job, None) == 128 + signal.SIGTERM
    assert "terminated (finished outputs are kept" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is before


def test_drop_in_abbreviations_mean_the_official_flags():
    """argparse prefixes: the official scripts took --style and --p; our extra flags
    (--styles, --precision) must not make them ambiguous."""
    a = video_parser().parse_args(["--style", "s", "--input", "f", "--styles", "3"])
    assert (a.style_img_path, a.input_img_path, a.styles) == ("s", "f", 3)
    assert pairs_parser().parse_args(["--p", "7"]).pics == 7
    assert transfer_parser().parse_args(["--style", "s", "--input", "f"]).style_img_path == "s"
    with pytest.raises(SystemExit) as excinfo:  # a prefix of two of our own flags stays ambiguous
        video_parser().parse_args(["--style", "s", "--input", "f", "--f", "1"])  # --fps or --frames-per-transition
    assert excinfo.value.code == 2


def test_info_flags_swapped_weight_files(golden_ckpts, tmp_path, capsys):
    (tmp_path / "blendgan.pt").symlink_to(golden_ckpts.psp)
    (tmp_path / "psp_encoder.pt").symlink_to(golden_ckpts.blendgan)
    assert main(["info", "--weights-dir", str(tmp_path)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if str(tmp_path) in line]
    assert len(lines) == 2 and all("WRONG FILE" in line for line in lines)
