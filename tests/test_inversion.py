"""Face inversion (:mod:`blendgan.inversion`): the API, its loss, determinism, the caches, bad
inputs and the jobs with ``--invert``.

Most tests use a tiny model made here: a 32 px synthesis network and the VGG19 of the
perceptual loss with seeded random weights, and stand-ins for the encoders (the real style
encoder's 610304-wide layer alone is 1.2 GB, and the real pSp takes seconds per face on two
CPU cores).  The margins of the methods are checked on the 256 px test checkpoint (slow).
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from blendgan import BlendGAN, Session, io, jobs
from blendgan.session import Face
from blendgan.cli import main
from blendgan.errors import DependencyError, UsageError
from blendgan.inversion import Reconstruction, prepare_target, ramp, synthesis_parameters
from blendgan.models import Generator
from blendgan.models.generator import n_latent_for
from blendgan.models.style_encoder import StyleEmbedder

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT / "test_imgs" / "face_imgs"
CHANNELS = {4: 32, 8: 32, 16: 16, 32: 16}
#: each method must end at most this fraction of the loss of the one it starts from
MARGIN = 0.8


class TinyPSP(nn.Module):
    """A stand-in pSp encoder: W+ [N, n_latent, 512] from the image's 4x4 colours."""

    def __init__(self, n_latent: int):
        super().__init__()
        self.n_latent = n_latent
        self.proj = nn.Linear(48, n_latent * 512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.adaptive_avg_pool2d(x, 4).flatten(1)).view(-1, self.n_latent, 512)


class TinyBlendGAN(BlendGAN):
    """A 32 px BlendGAN whose style code is the image's 4x4 colours (a stand-in encoder)."""

    def embed_style(self, style: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(style.to(self.device, self.dtype), 4).flatten(1)  # [N, 48]
        return pooled.repeat(1, 11)[:, :512]


@pytest.fixture(scope="module")
def tiny() -> TinyBlendGAN:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        g = Generator(32, 512, 2, channels=CHANNELS, style_encoder=False)
        g.embedder = nn.Module()
        g.embedder.embedder = StyleEmbedder()  # the VGG19 of the perceptual loss
        psp = TinyPSP(n_latent_for(32))
        with torch.no_grad():
            g.add_weight.fill_(0.5)
    return TinyBlendGAN(g, psp).eval().requires_grad_(False)  # as loaded: frozen weights


@pytest.fixture(scope="module")
def face() -> torch.Tensor:
    """The astronaut photo, [1, 3, 256, 256] in [-1, 1]."""
    return io.to_tensor(io.read_image(FACES / "astronaut_mirrored_256.png"), "cpu")


def state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


# -- the API ----------------------------------------------------------------------------------------
def test_methods_shapes_models_and_margins(tiny, face):
    """psp is encode_face; optimize beats it and pti beats optimize by MARGIN; pti returns a
    copy sharing all but the synthesis weights, and leaves the model's own weights alone."""
    before = state(tiny)
    psp = tiny.invert(face, "psp")
    with torch.no_grad():
        assert torch.equal(psp.w_plus, tiny.encode_face(face)) and psp.model is tiny
    assert psp.w_plus.shape == (1, tiny.n_latent, 512) and psp.loss.shape == (1,)
    opt = tiny.invert(face, "optimize", steps=6)
    assert opt.model is tiny and opt.w_plus.shape == psp.w_plus.shape
    assert torch.allclose(opt.start_loss, psp.loss)
    pti = tiny.invert(face, "pti", steps=6, tune_lr=3e-3)  # random tiny weights: a larger step
    assert torch.equal(pti.w_plus, opt.w_plus)  # the pivot is optimize's result
    assert float(opt.loss) < MARGIN * float(psp.loss)
    assert float(pti.loss) < MARGIN * float(opt.loss)
    # the copy: its own synthesis weights, everything else shared
    g, h = tiny.generator, pti.model.generator
    assert pti.model is not tiny and h is not g
    assert h.style is g.style and h.embedding is g.embedding and h.embedder is g.embedder
    assert pti.model.psp is tiny.psp and h.noises is g.noises and h.add_weight is g.add_weight
    assert all(p is not q for p, q in zip(synthesis_parameters(pti.model), synthesis_parameters(tiny)))
    assert any(not torch.equal(p, q) for p, q in zip(synthesis_parameters(pti.model), synthesis_parameters(tiny)))
    after = state(tiny)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not p.requires_grad and p.grad is None for p in tiny.parameters())
    assert all(not p.requires_grad for p in pti.model.parameters())


def test_loss_is_the_reconstruction_measure(tiny, face):
    """inv.loss is pixel MSE + perceptual distance of the result, without the pull: recomputed
    from the returned codes (and model) it is the same for every method."""
    target = prepare_target(tiny, face)
    assert target.shape == (1, 3, 32, 32)
    measure = Reconstruction(tiny, target)
    for method in ("psp", "optimize", "pti"):
        inv = tiny.invert(face, method, steps=3, pull=10.0)
        with torch.no_grad():
            again = measure.measure(inv.model.generator(inv.w_plus))
        assert torch.allclose(again, inv.loss, rtol=1e-5), method
    with torch.no_grad():  # the two terms: the pixel one alone is smaller
        image = tiny.generator(tiny.encode_face(face))
        pixel = (image - target).square().mean()
        assert float(measure.measure(image)) > float(pixel) > 0


def test_never_worse_than_the_start(tiny, face, monkeypatch):
    """An objective that only makes the reconstruction worse (an extra term rewarding bright
    images): the best iterate is the start itself, codes and weights."""
    start = tiny.invert(face, "psp")
    monkeypatch.setattr(Reconstruction, "extras", lambda self, image: -100.0 * image.square().mean((1, 2, 3)))
    for method in ("optimize", "pti"):
        inv = tiny.invert(face, method, steps=3, lr=0.1, tune_lr=0.01)
        assert torch.equal(inv.w_plus, start.w_plus), method
        assert torch.allclose(inv.loss, start.loss, rtol=1e-5), method  # (inference kernels vs autograd's)
        if method == "pti":
            assert all(torch.equal(p, q) for p, q in zip(synthesis_parameters(inv.model),
                                                         synthesis_parameters(tiny)))


def test_deterministic_and_batched(tiny, face):
    """Same input -> identical codes and losses (any generator); a batch of two faces gives each
    face what it gets alone (to rounding); progress is reported per step."""
    other = io.to_tensor(io.read_image(FACES / "cameraman_profile_grey_256.png"), "cpu")
    steps: list = []
    a = tiny.invert(face, "optimize", 4, generator=torch.Generator().manual_seed(1),
                    progress=lambda *s: steps.append(s))
    b = tiny.invert(face, "optimize", 4, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a.w_plus, b.w_plus) and torch.equal(a.loss, b.loss)
    assert [s[:3] for s in steps] == [("optimize", i, 4) for i in range(1, 5)]
    both = tiny.invert(torch.cat([face, other]), "optimize", 4)
    alone = tiny.invert(other, "optimize", 4)
    assert both.w_plus.shape == (2, tiny.n_latent, 512)
    # each face is optimised on its own (Adam is per element): the same losses up to rounding
    assert torch.allclose(both.loss, torch.cat([a.loss, alone.loss]), rtol=1e-3)
    p1, p2 = tiny.invert(face, "pti", 2), tiny.invert(face, "pti", 2)
    assert torch.equal(p1.loss, p2.loss)
    assert all(torch.equal(p, q) for p, q in zip(synthesis_parameters(p1.model), synthesis_parameters(p2.model)))


def test_inside_inference_mode_and_from_a_given_start(tiny, face):
    """The jobs run under torch.inference_mode: gradients still flow; ``start`` replaces pSp."""
    with torch.inference_mode():
        start = tiny.encode_face(face)
        inv = tiny.invert(face, "optimize", 2, start=start)
    assert float(inv.loss) < float(inv.start_loss)
    with pytest.raises(UsageError, match="start must be"):
        tiny.invert(face, "optimize", 2, start=start[:, :3])


def test_bad_inputs_are_one_line_usage_errors(tiny, face):
    bad = [
        (lambda: tiny.invert(face[:, :, :16, :16], "optimize"), "too small"),
        (lambda: tiny.invert(face[0], "optimize"), r"\[N, 3, H, W\]"),
        (lambda: tiny.invert(face[:, :1], "optimize"), r"\[N, 3, H, W\]"),
        (lambda: tiny.invert(((face + 1) * 127).to(torch.uint8), "optimize"), "floating-point"),
        (lambda: tiny.invert(face * float("nan"), "optimize"), "not finite"),
        (lambda: tiny.invert(torch.cat([face, face]), "pti", 1), "one face at a time"),
        (lambda: tiny.invert(face, "gan"), "must be one of psp, optimize, pti"),
        (lambda: tiny.invert(face, "optimize", -1), "steps"),
        (lambda: tiny.invert(face, "optimize", 1.5), "steps"),
        (lambda: tiny.invert(face, "optimize", 1, generator=0), "torch.Generator"),
        (lambda: tiny.invert("face.png", "optimize"), r"\[N, 3, H, W\]"),
    ]
    for call, message in bad:
        with pytest.raises(UsageError, match=message) as e:
            call()
        assert "\n" not in str(e.value)


def test_lpips_extra_is_optional(tiny, face, monkeypatch):
    """Without the lpips package the extra is a one-line DependencyError; with one (a stand-in
    here) its term joins the objective but not the reported loss."""
    import sys
    monkeypatch.setitem(sys.modules, "lpips", None)
    with pytest.raises(DependencyError, match="pip install lpips"):
        tiny.invert(face, "optimize", 1, lpips=1.0)

    class FakeLPIPS(nn.Module):
        calls = 0

        def __init__(self, net, verbose):
            super().__init__()

        def forward(self, x, y):
            FakeLPIPS.calls += 1
            return (x - y).abs().mean((1, 2, 3), keepdim=True)

    monkeypatch.setitem(sys.modules, "lpips", type(sys)("lpips"))
    sys.modules["lpips"].LPIPS = FakeLPIPS
    inv = tiny.invert(face, "optimize", 2, lpips=1.0)
    plain = tiny.invert(face, "optimize", 2)
    assert FakeLPIPS.calls == 2 and not torch.equal(inv.w_plus, plain.w_plus)
    assert torch.equal(inv.start_loss, plain.start_loss)


def test_learning_rate_ramp():
    """Warm-up to the peak, the peak held, a cosine ramp-down toward 0."""
    factors = [ramp(i, 100) for i in range(100)]
    assert 0 < factors[0] < factors[2] < factors[4] <= 1
    assert all(f == 1 for f in factors[5:75])
    assert all(a > b for a, b in zip(factors[75:], factors[76:])) and factors[-1] < 0.01


# -- the session ------------------------------------------------------------------------------------
def test_session_refine_caches_in_memory_and_on_disk(tiny, tmp_path, caplog):
    path = FACES / "astronaut_mirrored_256.png"
    s = Session(tiny, cache_dir=tmp_path)
    face = s.face(path)
    r = s.refine(face, "optimize", 3)
    assert r.inversion == "optimize" and r.loss < r.start_loss and r.model is None and r.seconds >= 0
    assert "reconstruction loss" in r.notes[-1] and r.w_plus.shape == face.w_plus.shape
    again = s.refine(face, "optimize", 3)
    assert torch.equal(again.w_plus, r.w_plus) and s.stats["invert"] == 1
    other = s.refine(face, "optimize", 2)  # other settings: computed again
    assert s.stats["invert"] == 2 and not torch.equal(other.w_plus, r.w_plus)
    p = s.refine(face, "pti", 2)
    assert p.model is not None and p.model is not tiny and p.loss < p.start_loss and s.stats["invert"] == 3
    style = s.random_style(0)
    image = s.render(p, style)
    assert not np.array_equal(image, s.render(r, style))
    # a new session reads them back from disk (no inversion), PTI's tuned weights included
    s2 = Session(tiny, cache_dir=tmp_path)
    face2 = s2.face(path)
    r2, p2 = s2.refine(face2, "optimize", 3), s2.refine(face2, "pti", 2)
    assert s2.stats["invert"] == 0
    assert torch.equal(r2.w_plus, r.w_plus) and r2.loss == r.loss and p2.loss == p.loss
    assert np.array_equal(s2.render(p2, style), image)
    # a damaged entry is recomputed, with a warning
    for entry in tmp_path.glob("refine-optimize-s3-*.pt"):
        entry.write_bytes(b"garbage")
    s3 = Session(tiny, cache_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="blendgan"):
        r3 = s3.refine(s3.face(path), "optimize", 3)
    assert s3.stats["invert"] == 1 and torch.equal(r3.w_plus, r.w_plus) and "damaged" in caplog.text
    with pytest.raises(UsageError, match="steps"):
        s.refine(face, "optimize", -2)
    with pytest.raises(UsageError, match="must be one of"):
        s.refine(face, "best")
    with pytest.raises(UsageError, match="Face with its image"):
        s.refine(Face(face.key, face.name, face.w_plus), "optimize", 1)


# -- the jobs ---------------------------------------------------------------------------------------
@pytest.fixture
def folders(tmp_path):
    faces, styles = tmp_path / "faces", tmp_path / "styles"
    faces.mkdir()
    styles.mkdir()
    (faces / "astronaut.png").write_bytes((FACES / "astronaut_mirrored_256.png").read_bytes())
    (styles / "cartoon.png").write_bytes((ROOT / "test_imgs" / "style_imgs" / "cartoon.png").read_bytes())
    return faces, styles


def test_transfer_and_video_commands(tiny, folders, tmp_path, monkeypatch, capsys):
    """``transfer`` and ``video --ramp`` with ``--invert``: the log has the losses and the time,
    the refined codes are cached (a rerun inverts nothing) and change the output."""
    import blendgan.cli.jobs as cli_jobs
    monkeypatch.setattr(cli_jobs, "open_model", lambda *a, **k: tiny)
    faces, styles = folders
    cache = tmp_path / "cache"
    common = ["--input", str(faces), "--style", str(styles), "--ckpt", str(tmp_path / "none.pt"), "--device", "cpu",
              "--cache-dir", str(cache)]
    assert main(["transfer", *common, "--outdir", str(tmp_path / "psp")]) == 0
    assert main(["transfer", *common, "--outdir", str(tmp_path / "opt"), "--invert", "optimize",
                 "--invert-steps", "3"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"INFO: .*astronaut.png: optimize \(3 steps\): reconstruction loss [\d.]+ -> [\d.]+ in [\d.]+ s",
                     err), err
    a = io.read_image(tmp_path / "psp" / "astronaut_v_cartoon.jpg")
    b = io.read_image(tmp_path / "opt" / "astronaut_v_cartoon.jpg")
    assert a.shape == b.shape == (32, 96, 3) and np.abs(a.astype(int) - b).mean() > 0.5
    assert len(list(cache.glob("refine-optimize-s3-*.pt"))) == 1
    before = {p: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert main(["transfer", *common, "--outdir", str(tmp_path / "opt2"), "--invert", "optimize",
                 "--invert-steps", "3"]) == 0
    assert {p: p.stat().st_mtime_ns for p in cache.iterdir()} == before  # all from the cache
    assert np.array_equal(io.read_image(tmp_path / "opt2" / "astronaut_v_cartoon.jpg"), b)
    pytest.importorskip("av")
    assert main(["video", *common, "--outdir", str(tmp_path / "ramp"), "--ramp", "--invert", "pti",
                 "--invert-steps", "1", "--transition-steps", "2", "--hold-frames", "1"]) == 0
    assert (tmp_path / "ramp" / "astronaut_v_cartoon_ramp.mp4").exists()
    assert len(list(cache.glob("refine-pti-s1-*.pt"))) == 1
    capsys.readouterr()
    for bad in (["--invert", "gan"], ["--invert-steps", "-1"]):
        with pytest.raises(SystemExit) as e:  # argparse's usage error
            main(["transfer", *common, *bad])
        assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--invert" in err and "--invert-steps" in err


def test_face_video_with_inversion(tiny, aligner, astronaut, tmp_path, caplog):
    """A face video with ``invert='optimize'``: each frame's crop is refined (the output differs
    from pSp's), frames and timing kept."""
    from blendgan import jobs
    from tests.test_face_video import face_frames, probe, write_video
    src = write_video(tmp_path / "face.mp4", face_frames(astronaut, 3, size=(256, 256)), audio=None)
    code = torch.zeros(1, 512)
    psp = jobs.stylize_video(tiny, src, code, tmp_path / "psp.mp4", progress=False, aligner=aligner)
    with caplog.at_level(logging.INFO, logger="blendgan"):
        opt = jobs.stylize_video(tiny, src, code, tmp_path / "opt.mp4", progress=False, aligner=aligner,
                                 invert="optimize", invert_steps=2)
    assert len(re.findall(r"frame: optimize \(2 steps\): loss [\d.]+ -> [\d.]+ in [\d.]+ s", caplog.text)) == 3
    _, n, _, _, a = probe(psp)
    _, m, _, _, b = probe(opt)
    assert n == m == 3 and np.abs(a.astype(int) - b).mean() > 0.05
    with pytest.raises(UsageError, match="must be one of"):
        next(jobs.stylize_frames(tiny, iter(()), code, 24.0, invert="x"))


# -- the 256 px test checkpoint ---------------------------------------------------------------------
@pytest.mark.slow  # about a minute per face on 2 CPU cores
def test_margins_on_the_test_checkpoint(model):
    """On the 256 px test checkpoint and the test_imgs photos: loss(optimize) < MARGIN·loss(psp)
    and loss(pti) < MARGIN·loss(optimize) with 3 steps each."""
    for name in ("astronaut_512.jpg", "cameraman_profile_grey_256.png"):
        x = io.to_tensor(io.read_image(FACES / name), "cpu")
        psp, opt, pti = (model.invert(x, method, 3) for method in ("psp", "optimize", "pti"))
        assert float(opt.loss) < MARGIN * float(psp.loss), name
        assert float(pti.loss) < MARGIN * float(opt.loss), name
        with torch.no_grad():
            assert torch.equal(psp.w_plus, model.encode_face(x))


def test_identity_extra_loads_an_arcface_file(tiny, face, tmp_path):
    """An IR-SE50 file in the model_ir_se50.pth layout (seeded random weights here) adds the
    identity term to the objective, not to the loss; a wrong file is a one-line CheckpointError."""
    from blendgan.checkpoint import load_identity
    from blendgan.errors import CheckpointError
    from blendgan.models.arcface import IdentityNet
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = IdentityNet().eval()
    torch.save(net.state_dict(), tmp_path / "model_ir_se50.pth")
    loaded = load_identity(tmp_path / "model_ir_se50.pth")
    with torch.no_grad():
        emb = loaded(face)
        assert emb.shape == (1, 512) and torch.allclose(emb.norm(dim=1), torch.ones(1))
        assert torch.allclose(emb, net(face), atol=1e-5)
    plain = tiny.invert(face, "optimize", 2)
    with_id = tiny.invert(face, "optimize", 2, identity=tmp_path / "model_ir_se50.pth", identity_weight=10.0)
    assert torch.equal(with_id.start_loss, plain.start_loss) and not torch.equal(with_id.w_plus, plain.w_plus)
    torch.save({"x": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="bad.pth: not a valid ArcFace IR-SE50 model") as e:
        tiny.invert(face, "optimize", 1, identity=tmp_path / "bad.pth")
    assert "\n" not in str(e.value)


class TwoFaces:
    """An aligner that 'finds' two fixed face squares (largest first) in any photo."""
    quads_ = [np.array([[20, 20], [20, 140], [140, 140], [140, 20]], np.float64),
              np.array([[160, 60], [160, 140], [240, 140], [240, 60]], np.float64)]

    def quads(self, rgb, all_faces=False):
        return self.quads_ if all_faces else self.quads_[:1]


def test_paste_back_with_inversion(tiny, folders, tmp_path, caplog, monkeypatch):
    """``transfer --paste-back --invert``: each face refined (logged), PTI's faces rendered by their
    own tuned copies, the method in the folder's settings record."""
    faces, styles = folders
    kw = dict(fmt="png", progress=False, aligner=TwoFaces(), all_faces=True)
    plain = jobs.run_paste_back(tiny, faces, styles, tmp_path / "psp", **kw)
    renderers = []
    synthesize = TinyBlendGAN.synthesize
    monkeypatch.setattr(TinyBlendGAN, "synthesize", lambda self, *a, **k: renderers.append(self) or
                        synthesize(self, *a, **k))
    with caplog.at_level(logging.INFO, logger="blendgan"):
        tuned = jobs.run_paste_back(tiny, faces, styles, tmp_path / "pti", invert="pti", invert_steps=1, **kw)
    assert len({id(m) for m in renderers}) == 2 and tiny not in renderers  # each face by its tuned copy
    assert len(plain.written) == len(tuned.written) == 1 and not tuned.failed
    assert len(re.findall(r"face [12]\): pti \(1 steps\): reconstruction loss", caplog.text)) == 2, caplog.text
    a, b = io.read_image(plain.written[0]).astype(int), io.read_image(tuned.written[0]).astype(int)
    for x0, y0, x1, y1 in ((50, 50, 110, 110), (180, 80, 220, 120)):  # inside each face: restyled otherwise
        assert np.abs(a[y0:y1, x0:x1] - b[y0:y1, x0:x1]).mean() > 0.5
    record = json.loads((tmp_path / "pti" / jobs.report.SETTINGS_FILE).read_text())["settings"]
    assert record["invert"] == "pti" and record["invert_steps"] == 1
    with pytest.raises(UsageError, match="invert"):
        jobs.run_paste_back(tiny, faces, styles, tmp_path / "pti", invert="optimize", invert_steps=1, **kw)
