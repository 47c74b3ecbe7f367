"""The stylization controls (strength, preserve_color, style mixing) against W+ blended by hand
with the official formula, on the golden 256-px checkpoint; then the commands and the sheet."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from blendgan import io
from blendgan.cli import main
from blendgan.controls import PRESERVE_COLOR_FROM, Controls, check_strength, check_style_weights
from blendgan.errors import UsageError
from blendgan.session import Session


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def codes(model, golden):
    """(face W+ [1, 14, 512], style codes [2, 512], the checkpoint's clamped blend weights [14])."""
    with torch.inference_mode():
        w = model.encode_face(golden["face_tensor"])
        z = torch.cat([model.embed_style(golden["style_tensor"]), golden["z_style_random"]])
    a = model.generator.add_weight.detach().clamp(0, 1).view(-1)
    return w, z, a


def by_hand(model, w_face, z_embed, a_prime, weights=None):
    """The official blend w_face·a' + w_style·(1 − a'), every step written out: z_embed [K, 512]
    is mapped style by style and mixed by ``weights`` (normalised), a' [L] or [N, L]."""
    w_styles = torch.stack([model.generator.style_mapping(z[None])[0] for z in z_embed])   # [K, 512]
    weights = torch.full((len(z_embed),), 1 / len(z_embed)) if weights is None else torch.tensor(weights)
    w_style = (w_styles * (weights / weights.sum())[:, None]).sum(0)                      # [512]
    a_prime = a_prime.reshape(-1, w_face.shape[1], 1)
    return w_face * a_prime + w_style * (1 - a_prime)


@torch.inference_mode()
def test_defaults_are_the_official_blend_bit_for_bit(model, golden, codes):
    w, z, _ = codes
    assert torch.equal(model.blend(w, z[:1], 6, strength=1.0, preserve_color=False), model.blend(w, z[:1], 6))
    image = model.synthesize(w_plus=golden["psp_codes"], z_embed=golden["z_embed_ref"], add_weight_index=6,
                             strength=1.0)
    assert rel(image, golden["style_transfer"]) < 1e-4
    image = model.synthesize(w_plus=golden["psp_codes"], z_embed=golden["z_embed_ref"], add_weight_index=None,
                             strength=[1.0] * 14)
    assert rel(image, golden["style_transfer_no_index"]) < 1e-4


@pytest.mark.parametrize("s", [0.0, 0.3, 1.0, 1.5, 4.0])
@pytest.mark.parametrize("index", [None, 0, 6, 14])
@torch.inference_mode()
def test_scalar_strength_and_index(model, codes, s, index):
    w, z, a = codes
    a_prime = (1 - s * (1 - a)).clamp(0, 1)
    if index:
        a_prime[:index] = 1
    got = model.blend(w, z[:1], index, strength=s)
    torch.testing.assert_close(got, by_hand(model, w, z[:1], a_prime), rtol=1e-6, atol=1e-6)
    if s == 0:
        assert torch.equal(got, w)  # the face alone, exactly


@torch.inference_mode()
def test_per_layer_and_per_sample_strength(model, codes):
    w, z, a = codes
    per_layer = torch.linspace(0, 2, 14)
    torch.testing.assert_close(model.blend(w, z[:1], 3, strength=per_layer),
                               by_hand(model, w, z[:1], torch.where(torch.arange(14) < 3, 1.0,
                                                                    (1 - per_layer * (1 - a)).clamp(0, 1))),
                               rtol=1e-6, atol=1e-6)
    per_sample = torch.stack([torch.zeros(14), torch.ones(14), torch.full((14,), 2.0)])       # [3, 14]
    got = model.blend(w.expand(3, -1, -1), z[:1], None, strength=per_sample)
    # (the same batch size: matrix products of other row counts round differently)
    assert torch.equal(got[0], w[0]) and torch.equal(got[1], model.blend(w.expand(3, -1, -1), z[:1])[1])
    torch.testing.assert_close(got[2], by_hand(model, w, z[:1], (1 - 2 * (1 - a)).clamp(0, 1))[0],
                               rtol=1e-5, atol=1e-5)


@torch.inference_mode()
def test_preserve_color_keeps_the_fine_layers_pure_face(model, codes):
    w, z, a = codes
    for s in (1.0, 1.7):
        a_prime = (1 - s * (1 - a)).clamp(0, 1)
        a_prime[PRESERVE_COLOR_FROM:] = 1
        a_prime[:4] = 1
        got = model.blend(w, z[:1], 4, strength=s, preserve_color=True)
        torch.testing.assert_close(got, by_hand(model, w, z[:1], a_prime), rtol=1e-6, atol=1e-6)
        assert torch.equal(got[:, PRESERVE_COLOR_FROM:], w[:, PRESERVE_COLOR_FROM:])
    assert PRESERVE_COLOR_FROM == 7  # index 7 on: the layers drawing 64x64 and finer
    assert torch.equal(model.face_weights(None, 1.0, True)[0, 7:], torch.ones(7))


@torch.inference_mode()
def test_style_mixing_maps_each_style_then_weights_them(model, codes):
    w, z, a = codes
    mixed = z.unsqueeze(0)                                                    # [1, 2, 512]
    for weights in ([0.3, 0.7], [3.0, 7.0], [1.5, -0.5]):
        got = model.blend(w, mixed, 6, style_weights=weights)
        a_prime = torch.where(torch.arange(14) < 6, 1.0, a)
        torch.testing.assert_close(got, by_hand(model, w, z, a_prime, weights), rtol=1e-5, atol=1e-5)
    uniform = model.blend(w, mixed, 6)
    torch.testing.assert_close(uniform, model.blend(w, mixed, 6, style_weights=[1, 1]), rtol=0, atol=0)
    # mixing is not blending the codes: the mapping is non-linear
    assert rel(uniform, model.blend(w, z.mean(0, keepdim=True), 6)) > 1e-3
    # a batch of faces, each with its own pair of styles
    got = model.blend(w.expand(2, -1, -1), torch.stack([z, z.flip(0)]), 6, style_weights=[0.25, 0.75])
    torch.testing.assert_close(got[1], model.blend(w, z.flip(0)[None], 6, style_weights=[0.25, 0.75])[0],
                               rtol=1e-5, atol=1e-5)


@torch.inference_mode()
def test_images_equal_the_generator_on_hand_blended_codes(model, golden, codes):
    w, z, a = codes
    a_prime = (1 - 0.6 * (1 - a)).clamp(0, 1)
    a_prime[:6] = 1
    a_prime[PRESERVE_COLOR_FROM:] = 1
    want = model.synthesis(by_hand(model, golden["psp_codes"], golden["z_embed_ref"], a_prime))
    got = model.synthesize(w_plus=golden["psp_codes"], z_embed=golden["z_embed_ref"], add_weight_index=6,
                           strength=0.6, preserve_color=True)
    assert rel(got, want) < 1e-5


@pytest.mark.parametrize("strength, message", [(-0.1, ">= 0"), (float("nan"), "finite"), (float("inf"), "finite"),
                                               ([1.0] * 13, "14"), ([1.0] * 13 + [-1.0], ">= 0"),
                                               (torch.ones(2, 3, 14), "shape")])
def test_bad_strength_is_one_line(model, codes, strength, message):
    w, z, _ = codes
    with pytest.raises(UsageError, match=message) as err:
        model.blend(w, z[:1], 6, strength=strength)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("weights, message", [([0.5], "2 weights"), ([0.5, -0.5], "positive"),
                                              ([-1, -1], "positive"), ([float("nan"), 1], "finite")])
def test_bad_style_weights_are_one_line(model, codes, weights, message):
    w, z, _ = codes
    with pytest.raises(UsageError, match=message):
        model.blend(w, z.unsqueeze(0), 6, style_weights=weights)


def test_checks_without_a_model():
    assert check_strength(2) == 2.0 and check_strength([0, 1]).tolist() == [0.0, 1.0]
    assert check_style_weights(None, 1) is None
    assert check_style_weights([1, 3], 2).tolist() == [0.25, 0.75]
    assert Controls(strength=0.5).describe("strength") == "strength 0.5"
    assert Controls(preserve_color=True).describe("preserve_color") == "preserve_color on"


# -- the commands -----------------------------------------------------------------------------------
def test_bad_values_are_refused_before_any_model_loads(golden_ckpts, sample_dirs, tmp_path, capsys):
    common = ["--ckpt", str(golden_ckpts.blendgan), "--psp-encoder", str(tmp_path / "absent.pt"),
              "--input", str(sample_dirs.faces), "--style", str(sample_dirs.styles), "--outdir", str(tmp_path),
              "--device", "cpu", "--quiet"]
    for bad, message in (("-1", ">= 0"), ("nan", "finite"), ("1,x", "comma list")):
        with pytest.raises(SystemExit):
            main(["transfer", *common, "--strength", bad])
        assert message in capsys.readouterr().err
    # a per-layer list of the wrong length: the checkpoint's layer count, read without loading it
    assert main(["transfer", *common, "--strength", "1,1,1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("has 14 W+ layers, so a list needs 14 values, got 3") and "absent.pt" not in err
    assert main(["pairs", "--ckpt", str(golden_ckpts.blendgan), "--outdir", str(tmp_path), "--quiet",
                 "--style-img", str(sorted(sample_dirs.styles.iterdir())[0]), "--style-weights", "0.3,0.7"]) == 2
    assert "1 --style-img image(s) need 1 weights, got 2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["pairs", "--style-weights", "1,-1"])
    assert "positive" in capsys.readouterr().err


def test_transfer_controls_end_to_end(model, golden_ckpts, sample_dirs, tmp_path):
    face, style = sorted(sample_dirs.faces.iterdir())[0], sorted(sample_dirs.styles.iterdir())[0]
    assert main(["transfer", "--ckpt", str(golden_ckpts.blendgan), "--psp-encoder", str(golden_ckpts.psp),
                 "--input", str(face), "--style", str(style), "--device", "cpu", "--quiet", "--format", "png",
                 "--outdir", str(tmp_path), "--strength", "0.5", "--preserve-color"]) == 0
    out = io.read_image(tmp_path / f"{face.stem}_v_{style.stem}.png")[:, 2 * model.size:]
    session = Session(model)
    want = session.render(session.face(face), session.style(style), 6, 0.5, preserve_color=True)
    assert np.abs(out.astype(int) - want).max() <= 1
    from blendgan.jobs import run_transfer
    run_transfer(model, face, style, tmp_path / "zero", fmt="png", progress=False, strength=0.0)
    alone = io.read_image(tmp_path / "zero" / f"{face.stem}_v_{style.stem}.png")[:, 2 * model.size:]
    with torch.inference_mode():
        face_only = io.to_uint8(model.synthesize(w_plus=session.face(face).w_plus))[0]
    assert np.abs(alone.astype(int) - face_only).max() <= 1


def test_pairs_mix_styles_end_to_end(model, golden_ckpts, sample_dirs, tmp_path):
    styles = sorted(sample_dirs.styles.iterdir())
    assert main(["pairs", "--ckpt", str(golden_ckpts.blendgan), "--pics", "2", "--outdir", str(tmp_path),
                 "--device", "cpu", "--quiet", "--format", "png", "--style-img", str(styles[0]), "--style-img",
                 str(styles[1]), "--style-weights", "0.3,0.7", "--strength", "1.2"]) == 0
    session = Session(model)
    z = torch.stack([session.style(s).z_embed for s in styles], dim=1)     # [1, 2, 512]
    g = torch.Generator().manual_seed(0)   # the checkpoint stores latent_avg and the style is given: no other draw
    with torch.inference_mode():
        zs = torch.randn(1, 512, generator=g)
        want = io.to_uint8(model.synthesize(z=zs, z_embed=z, add_weight_index=6, strength=1.2,
                                            style_weights=[0.3, 0.7]))[0]
    got = io.read_image(tmp_path / "000000.png")[:, model.size:]
    assert np.abs(got.astype(int) - want).max() <= 1


def test_video_commands_take_the_controls(golden_ckpts, sample_dirs, tmp_path):
    pytest.importorskip("av")
    face = sorted(sample_dirs.faces.iterdir())[0]
    assert main(["video", "--ckpt", str(golden_ckpts.blendgan), "--psp-encoder", str(golden_ckpts.psp), "--input",
                 str(face), "--style", str(sample_dirs.styles), "--outdir", str(tmp_path), "--styles", "2",
                 "--transition-steps", "1", "--hold-frames", "0", "--device", "cpu", "--quiet", "--strength",
                 "0.5", "--preserve-color", "--layout", "output", "--gif"]) == 0
    assert (tmp_path / f"{face.stem}.gif").exists()


def test_strength_ramp_video(model, golden_ckpts, sample_dirs, tmp_path, capsys):
    from PIL import Image, ImageSequence

    from blendgan.jobs import run_ramp
    face, style = sorted(sample_dirs.faces.iterdir())[0], sorted(sample_dirs.styles.iterdir())[0]
    report = run_ramp(model, face, style, tmp_path, transition_steps=2, hold_frames=1, layout="output", gif=True,
                      strength=1.5, progress=False, fps=10)
    assert [p.name for p in report.written] == [f"{face.stem}_v_{style.stem}_ramp.gif"]
    with Image.open(report.written[0]) as gif:
        frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(gif)]
    # 0, two sigmoid steps, the held peak, then back: 8 frames, the two equal peak frames merged in a GIF
    assert len(frames) == 2 * (1 + 2 + 1) - 1
    session = Session(model)
    f, s = session.face(face, size=model.size), session.style(style, size=model.size)
    with torch.inference_mode():
        alone = io.to_uint8(model.synthesize(w_plus=f.w_plus))[0]
        peak = io.to_uint8(model.synthesize(w_plus=f.w_plus, z_embed=s.z_embed, add_weight_index=7, strength=1.5))[0]
    gif_error = lambda a, b: np.abs(a.astype(int) - b.astype(int)).mean()   # noqa: E731 (GIF palettes)
    assert gif_error(frames[0], alone) < 6 and gif_error(frames[3], peak) < 6 and gif_error(frames[-1], alone) < 6
    assert gif_error(frames[3], alone) > 3 * gif_error(frames[3], peak)
    assert main(["video", "--input", str(face), "--style", str(style), "--ramp", "--strength", "1,2",
                 "--ckpt", str(tmp_path / "none.pt")]) == 2
    assert "--ramp takes face images and one --strength" in capsys.readouterr().err


def test_sheet_and_sweep(model, golden_ckpts, sample_dirs, tmp_path):
    from blendgan.jobs.sheet import run_sheet, thumbnail
    assert main(["sheet", "--ckpt", str(golden_ckpts.blendgan), "--psp-encoder", str(golden_ckpts.psp), "--input",
                 str(sample_dirs.faces), "--style", str(sample_dirs.styles), "--device", "cpu", "--quiet",
                 "--cell-size", "64", "--out", str(tmp_path / "sheet.png")]) == 0
    sheet = io.read_image(tmp_path / "sheet.png")
    assert sheet.shape == (3 * 68 + 4, 3 * 68 + 4, 3)     # (1 + 2 faces) x (1 + 2 styles) cells of 64 + gaps of 4
    assert (sheet[4:68, 4:68] == 255).all()               # the corner is blank
    session = Session(model)
    faces = [session.face(f) for f in sorted(sample_dirs.faces.iterdir())]
    styles = [session.style(s) for s in sorted(sample_dirs.styles.iterdir())]
    cell = sheet[4 + 2 * 68:4 + 2 * 68 + 64, 4 + 68:4 + 68 + 64]   # second face, first style
    assert np.abs(cell.astype(int) - thumbnail(session.render(faces[1], styles[0], 6), 64)).max() <= 1
    assert np.abs(sheet[4:68, 4 + 68:4 + 68 + 64].astype(int) - thumbnail(styles[0].image, 64)).max() <= 1

    run_sheet(model, sorted(sample_dirs.faces.iterdir())[0], sample_dirs.styles, tmp_path / "sweep.png",
              sweep=("strength", [0, 1, 1.5]), cell_size=64, progress=False)
    sweep = io.read_image(tmp_path / "sweep.png")
    assert sweep.shape == (36 + 2 * 68 + 4, 5 * 68 + 4, 3)    # header + 1 face x 2 styles rows; face, style, 3 values
    zero = sweep[36 + 4:36 + 4 + 64, 4 + 2 * 68:4 + 2 * 68 + 64]
    assert np.abs(zero.astype(int) - thumbnail(session.render(faces[0], styles[0], 6, 0.0), 64)).max() <= 1
    assert sweep[:36].min() < 128                               # the header has text
    with pytest.raises(UsageError, match="cannot sweep"):
        run_sheet(model, sample_dirs.faces, sample_dirs.styles, tmp_path / "x.png", sweep=("colour", [1, 2]))
    with pytest.raises(SystemExit):
        main(["sheet", "--input", "a", "--style", "b", "--sweep", "colour=1,2"])
    from blendgan.cli.sheet import sweep_arg
    assert sweep_arg("add-weight-index=4,none") == ("add_weight_index", [4, None])
    assert sweep_arg("preserve-colour=off,on") == ("preserve_color", [False, True])
