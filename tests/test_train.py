"""Training commands on a tiny config (32px, style_dim 32, 2-layer mappings, widths 32/32/16/16).

Synthetic data written to tmp: "faces" are random coloured discs on plain backgrounds,
"artworks" are coloured stripe textures.  Everything runs on the CPU with one thread
(the shared machines are loaded; OpenMP threads then only spin).  The style encoder's
VGG runs on 32-64 px inputs (``--style-pool``/``--pool``) to stay fast.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from blendgan import BlendGAN
from blendgan.models import Generator
from blendgan.models.discriminator import Discriminator, ProjectionDiscriminator, minibatch_stddev
from blendgan.cli import build_parser
from blendgan.cli import main as train_main
from blendgan.cli.train import TrainCommand, TrainStyleEncoderCommand, add_settings
from blendgan.errors import TrainError
from blendgan.runtime import DistEnv
from blendgan.train import GANConfig, StyleEncoderConfig, gan, modules, train_gan
from blendgan.train.checkpoints import CheckpointWriter
from blendgan.train.data import (BatchLoader, IndexStream, ViewConfig, jitter_colors, load_square, open_source,
                                 random_view)
from blendgan.train.encoder_weights import assign_style_encoder, load_style_encoder_state
from blendgan.train.losses import nt_xent

ROOT = Path(__file__).resolve().parents[1]
CHANNELS = {4: 32, 8: 32, 16: 16, 32: 16}
TINY = ["--size", "32", "--style-dim", "32", "--n-mlp", "2", "--channels", "32,32,16,16", "--batch", "2",
        "--log-every", "1", "--d-reg-every", "2", "--g-reg-every", "2", "--style-pool", "64",
        "--device", "cpu", "--quiet", "--workers", "2", "--tensorboard", "off"]
STEPS = 6


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    faces, arts = root / "faces", root / "arts"
    faces.mkdir()
    arts.mkdir()
    for i in range(8):  # non-square on purpose: centre-cropped on load
        img = np.full((40, 48, 3), rng.integers(0, 256, 3), np.uint8)
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.circle(img, (24, 20), int(rng.integers(6, 18)), color, -1)
        cv2.imwrite(str(faces / f"{i}.png"), img)
    y, x = np.mgrid[:64, :64]
    for i in range(6):
        f = rng.uniform(0.1, 0.8, 2)
        c = rng.uniform(0, 255, (2, 3))
        t = (np.sin(x * f[0] + y * f[1]) * 0.5 + 0.5)[..., None]
        cv2.imwrite(str(arts / f"{i}.png"), (c[0] * t + c[1] * (1 - t)).astype(np.uint8))
    (arts / "notes.txt").write_text("skipped")
    return type("Data", (), {"faces": faces, "arts": arts, "cache": root / "cache", "root": root})


def train(data, outdir, *extra, callback=None) -> int:
    args = build_parser().parse_args(["train", "--faces", str(data.faces), "--styles", str(data.arts),
                                      "--cache", str(data.cache), "--outdir", str(outdir), *TINY, *extra])
    config, given = TrainCommand.settings(args)
    return train_gan(config, given=given, callback=callback)


def read_log(outdir) -> list[dict]:
    return [json.loads(line) for line in (Path(outdir) / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def full_run(data, tmp_path_factory):
    """6 uninterrupted steps, checkpoints at 3 and 6."""
    out = tmp_path_factory.mktemp("full")
    t = time.perf_counter()
    assert train(data, out, "--kimg", str(STEPS * 2 / 1000), "--save-every", "3", "--sample-every", "3",
                 "--tensorboard", "auto") == 0
    return type("Run", (), {"out": out, "log": read_log(out), "seconds": time.perf_counter() - t})


# -- models -------------------------------------------------------------------------------------------
def test_discriminator_shapes_and_grad():
    d = Discriminator(32, channels=CHANNELS)
    p = ProjectionDiscriminator(32, 32, channels=CHANNELS)
    x = torch.randn(3, 3, 32, 32, requires_grad=True)
    assert d(x).shape == (3, 1)
    e = torch.randn(3, 32)
    out = p(x, e)
    assert out.shape == (3, 1)
    # the official projection: h = spatial sum of the last conv maps, l_out(h) + <l_style(e), h>
    h = p.final_conv(minibatch_stddev(p.convs(x), 4, 1)).sum((2, 3))
    scale_out, scale_style = 1 / math.sqrt(32), 1 / math.sqrt(32)  # fan-ins: C4 = 32, style_dim = 32
    want = h @ (p.l_out.weight * scale_out).t() + p.l_out.bias
    want = want + ((e @ (p.l_style.weight * scale_style).t() + p.l_style.bias) * h).sum(1, keepdim=True)
    torch.testing.assert_close(out, want)
    assert sorted({k.split(".")[0] for k in p.state_dict()}) == ["convs", "final_conv", "l_out", "l_style"]
    # R1 needs second-order gradients through blur/conv/fused lrelu
    grad, = torch.autograd.grad(d(x).sum(), x, create_graph=True)
    grad.pow(2).sum().backward()
    assert all(q.grad is not None for q in d.final_linear[0].parameters())
    with pytest.raises(ValueError, match="discriminator input"):
        d(torch.randn(1, 3, 16, 16))
    # rosinality's layout, so StyleGAN2 'd' checkpoints load into D_face
    keys = set(d.state_dict())
    assert {"convs.0.0.weight", "convs.1.conv1.0.weight", "convs.1.skip.1.weight", "final_conv.0.weight",
            "final_linear.1.bias"} <= keys


def test_minibatch_stddev_groups():
    x = torch.randn(6, 4, 2, 2)
    out = minibatch_stddev(x, 4)  # 6 is not divisible by 4: groups of 3
    assert out.shape == (6, 5, 2, 2)
    g = x.view(3, 2, 4, 2, 2)
    expected = torch.sqrt(g.var(0, unbiased=False) + 1e-8).mean([1, 2, 3])  # [2]
    torch.testing.assert_close(out[:, 4, 0, 0], expected.repeat(3))


def test_discriminator_sizes_match_config_f():
    d = Discriminator(256, channel_multiplier=2)
    assert sum(p.numel() for p in d.parameters()) == 28_864_129  # StyleGAN2 config F at 256px


def test_nt_xent_prefers_matching_views():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 8, generator=g)
    env = DistEnv()
    good, acc = nt_xent(a, a + 0.01 * torch.randn(4, 8, generator=g), 0.2, env)
    bad, _ = nt_xent(a, a.roll(1, 0), 0.2, env)
    assert good < bad and acc == 1.0


# -- data ---------------------------------------------------------------------------------------------
def test_index_stream_and_loader_resume(data):
    s = IndexStream(5, seed=1, name="x")
    first = s.take(7)
    assert sorted(first[:5].tolist()) == list(range(5))
    env = DistEnv()
    src = open_source(data.faces, 16, "faces", None, 1, env)
    a = BatchLoader(src, 3, env, seed=4)
    batches = [a.next().indices.tolist() for _ in range(4)]
    b = BatchLoader(open_source(data.faces, 16, "faces", None, 1, env), 3, env, seed=4)
    b.next()
    state = b.state_dict()
    c = BatchLoader(open_source(data.faces, 16, "faces", None, 1, env), 3, env, seed=4)
    c.load_state_dict(state)
    assert [c.next().indices.tolist() for _ in range(3)] == batches[1:]
    # two processes share the stream and split each global batch
    r0 = BatchLoader(src, 2, DistEnv(rank=0, world=2), seed=4).next().indices.tolist()
    r1 = BatchLoader(src, 2, DistEnv(rank=1, world=2), seed=4).next().indices.tolist()
    assert r0 + r1 == BatchLoader(src, 4, env, seed=4).next().indices.tolist()
    for loader in (a, b, c):
        loader.close()


def test_cache_matches_decoding(data, tmp_path):
    env = DistEnv()
    lazy = open_source(data.faces, 32, "faces", None, 2, env)
    cached = open_source(data.faces, 32, "faces", tmp_path, 2, env)
    assert cached.cached and not lazy.cached
    assert np.array_equal(cached.get([3, 1]), lazy.get([3, 1]))
    assert lazy.get([0]).shape == (1, 32, 32, 3)
    assert load_square(data.faces / "0.png", 32).shape == (32, 32, 3)
    with pytest.raises(TrainError, match="no images"):
        open_source(tmp_path, 32, "faces", None, 1, env)


def test_views_are_colour_preserving_and_deterministic(data):
    img = load_square(data.arts / "0.png", 64)
    cfg = ViewConfig(size=32)
    v1 = random_view(img, cfg, np.random.default_rng([1, 2]))
    v2 = random_view(img, cfg, np.random.default_rng([1, 2]))
    v3 = random_view(img, cfg, np.random.default_rng([1, 3]))
    assert v1.shape == (32, 32, 3) and v1.dtype == np.uint8
    assert np.array_equal(v1, v2) and not np.array_equal(v1, v3)
    # no colour jitter: every view pixel is a blend of the two stripe colours -> same mean colour range
    assert np.abs(v1.reshape(-1, 3).mean(0) - img.reshape(-1, 3).mean(0)).max() < 40


def test_color_jitter_changes_colours_not_structure(data):
    img = load_square(data.arts / "0.png", 64)
    plain = random_view(img, ViewConfig(size=32), np.random.default_rng([1, 2]))
    jittered = random_view(img, ViewConfig(size=32, color_jitter=1.0), np.random.default_rng([1, 2]))
    assert jittered.shape == plain.shape and jittered.dtype == np.uint8
    assert np.abs(jittered.astype(int) - plain.astype(int)).mean() > 5   # the colours moved
    # the geometry is the same draw: the value channel is the plain one scaled (up to clipping)
    v_plain = cv2.cvtColor(plain, cv2.COLOR_RGB2HSV_FULL)[..., 2].ravel().astype(float)
    v_jit = cv2.cvtColor(jittered, cv2.COLOR_RGB2HSV_FULL)[..., 2].ravel().astype(float)
    assert np.corrcoef(v_plain, v_jit)[0, 1] > 0.95
    # hue turns: a pure red pixel comes back with another hue, the same number of draws each time
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 200
    hues = {int(cv2.cvtColor(jitter_colors(red, 1.0, np.random.default_rng(i)), cv2.COLOR_RGB2HSV_FULL)[0, 0, 0])
            for i in range(8)}
    assert len(hues) > 4


def test_style_only_samples_come_from_the_style_branch_alone():
    g = Generator(32, 32, 2, channels=CHANNELS, style_encoder=False)
    with torch.no_grad():
        g.add_weight.fill_(0.7)
    step = modules.GeneratorStep(g)
    z, e = torch.randn(2, 32), torch.randn(2, 32)
    img, w_plus = step(z, z, torch.full((2,), g.n_latent), e, g.random_noise(4), torch.tensor([True, False]))
    w_face, w_style = g.mapping(z), g.style_mapping(e)
    torch.testing.assert_close(w_plus[2], w_style[0].expand(g.n_latent, -1))            # blend weight 0
    torch.testing.assert_close(w_plus[3], (0.7 * w_face[1] + 0.3 * w_style[1]).expand(g.n_latent, -1))
    img[2:].sum().backward()
    assert g.embedding[-1].weight.grad.abs().sum() > 0


def test_style_mapping_lr_scales_its_own_group(data, tmp_path):
    assert train(data, tmp_path / "run", "--kimg", str(2 / 1000), "--style-mapping-lr", "30",
                 "--path-regularize", "0", "--style-only", "0.5") == 0
    ck = torch.load(tmp_path / "run" / "checkpoints" / "latest.pt", map_location="cpu", weights_only=True)
    groups = ck["g_optim"]["param_groups"]
    g = Generator(32, 32, 2, channels=CHANNELS, style_encoder=False)
    assert len(groups) == 2 and len(groups[1]["params"]) == len(list(g.embedding.parameters()))
    assert groups[1]["lr"] == pytest.approx(30 * groups[0]["lr"], rel=1e-12)


# -- GAN training ---------------------------------------------------------------------------------------
def test_train_runs_and_writes_outputs(full_run):
    log = full_run.log
    assert [r["step"] for r in log] == list(range(1, STEPS + 1))
    for rec in log:
        for key in ("d_face", "d_style", "d_proj", "g_face", "g_style", "g_proj"):
            assert math.isfinite(rec[key]), (rec["step"], key)
    assert all(k in log[0] for k in ("r1_face", "r1_style", "r1_proj", "pl", "pl_mean"))  # step 0 regularizes
    ck = full_run.out / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == ["000003.pt", "000006.pt", "latest.pt"]
    assert sorted(p.name for p in (full_run.out / "samples").iterdir()) == ["000000.png", "000003.png", "000006.png"]
    grid = cv2.imread(str(full_run.out / "samples" / "000006.png"))
    assert grid.shape[0] == 5 * 34 + 2  # natural row + 4 style rows of 32px with 2px gaps
    if importlib.util.find_spec("tensorboard") is not None:
        assert any((full_run.out / "tb").glob("events.out.tfevents.*"))
    else:
        assert not (full_run.out / "tb").exists()


def test_checkpoint_layout_is_weights_only(full_run):
    obj = torch.load(full_run.out / "checkpoints" / "latest.pt", map_location="cpu", weights_only=True)
    assert obj["step"] == STEPS and obj["format"] == gan.FORMAT and isinstance(obj["args"], dict)
    assert {"g_ema", "g", "d_face", "d_style", "d_proj", "g_optim", "d_optim", "rng", "loaders"} <= set(obj)
    assert any(k.startswith("embedder.embedder_mlp.") for k in obj["g_ema"])
    assert not any(k.startswith("embedder.") for k in obj["g"])
    assert isinstance(obj["rng"][0]["latent"], torch.Tensor)
    assert obj["args"]["channels"] == "32,32,16,16"


def test_checkpoint_loads_into_blendgan(full_run, data):
    m = BlendGAN.from_pretrained(full_run.out / "checkpoints" / "latest.pt")
    assert (m.size, m.n_latent, m.generator.style_dim) == (32, 8, 32)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 32, generator=g)
    with torch.no_grad():
        natural = m.synthesize(z=z)
        style = torch.from_numpy(load_square(data.arts / "1.png", 64)).permute(2, 0, 1)[None].float() / 127.5 - 1
        z_embed = m.embed_style(style)
        stylized = m.synthesize(z=z, z_embed=z_embed, add_weight_index=2)
        latent = m.synthesize(z=z, z_embed=torch.randn(2, 32, generator=g))
    for img in (natural, stylized, latent):
        assert img.shape == (2, 3, 32, 32) and torch.isfinite(img).all()
    assert (m.generator.add_weight >= 0).all() and (m.generator.add_weight <= 1).all()


def test_blend_weights_learn_from_one():
    """add_weight starts at 1, where clamp has no gradient: training passes it straight through."""
    g = Generator(32, 32, 2, channels=CHANNELS, style_encoder=False)
    step = modules.GeneratorStep(g)
    z = torch.randn(2, 32)
    img, w_plus = step(z, z, torch.full((2,), g.n_latent), torch.randn(2, 32), g.random_noise(4))
    assert img.shape == (4, 3, 32, 32) and w_plus.shape == (4, g.n_latent, 32)
    torch.testing.assert_close(w_plus[2:], w_plus[:2])  # a = 1: stylized W+ = face W+
    img[2:].sum().backward()
    assert g.add_weight.grad.abs().sum() > 0
    with torch.no_grad():
        g.add_weight.add_(0.5)
    modules.project_add_weight(g)
    assert torch.equal(g.add_weight, torch.ones_like(g.add_weight))


def test_interrupt_and_resume_continue_exactly(full_run, data, tmp_path):
    out = tmp_path / "run"

    def interrupt(trainer):  # Ctrl-C after step 3
        if trainer.step == 3:
            signal.raise_signal(signal.SIGINT)

    status = train(data, out, "--kimg", str(STEPS * 2 / 1000), "--save-every", "100", "--sample-every", "0",
                   callback=interrupt)
    assert status == 130
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["000003.pt", "latest.pt"]
    assert len(read_log(out)) == 3
    # resume: every flag comes from the checkpoint, the run folder from its path
    assert train_main(["train", "--resume", str(out / "checkpoints" / "latest.pt"), "--quiet"]) == 0
    resumed, full = read_log(out), full_run.log
    assert [r["step"] for r in resumed] == list(range(1, STEPS + 1))
    for a, b in zip(resumed, full):
        for key in ("d_face", "d_style", "d_proj", "g_face", "g_style", "g_proj", "pl_mean"):
            if key in b:
                assert a[key] == b[key], (a["step"], key)  # same seed, same thread count: bit-exact
    x = torch.load(out / "checkpoints" / "latest.pt", map_location="cpu", weights_only=True)
    y = torch.load(full_run.out / "checkpoints" / "latest.pt", map_location="cpu", weights_only=True)
    assert x["step"] == y["step"] == STEPS
    for name in ("g_ema", "g", "d_proj"):
        for k, v in y[name].items():
            assert torch.equal(x[name][k], v), f"{name}.{k}"


def test_resume_applies_changed_optimizer_flags_and_keeps_the_cache(full_run, data, tmp_path):
    """Flags given on resume win over the optimizer state saved with the run (learning rate,
    and the lazy-regularization correction, which --r1 0 turns off for the discriminators);
    the run's data cache comes back with the other flags."""
    import shutil
    out = tmp_path / "run"
    shutil.copytree(full_run.out, out)
    assert train_main(["train", "--resume", str(out), "--kimg", str((STEPS + 1) * 2 / 1000), "--lr", "0.0005",
                       "--r1", "0", "--quiet"]) == 0
    ck = torch.load(out / "checkpoints" / "latest.pt", map_location="cpu", weights_only=True)
    g_ratio = 2 / 3  # --g-reg-every 2 with path regularization on
    assert ck["step"] == STEPS + 1 and ck["args"]["lr"] == 0.0005
    assert ck["g_optim"]["param_groups"][0]["lr"] == pytest.approx(0.0005 * g_ratio, rel=1e-12)
    assert ck["g_optim"]["param_groups"][0]["betas"][1] == pytest.approx(0.99 ** g_ratio, rel=1e-12)
    assert ck["d_optim"]["param_groups"][0]["lr"] == 0.0005 and ck["d_optim"]["param_groups"][0]["betas"][1] == 0.99
    assert ck["args"]["cache"] == str(data.cache)


def test_flags_come_from_the_config_and_only_given_ones_count():
    args = build_parser().parse_args(["train", "--faces", "f", "--styles", "s", "--lr", "0.1", "--no-flip",
                                      "--size", "1024"])
    config, given = TrainCommand.settings(args)
    assert given == {"faces", "styles", "lr", "flip", "size"}  # --size given at its default still counts
    assert config == GANConfig(faces="f", styles="s", lr=0.1, flip=False)
    args = build_parser().parse_args(["train-style-encoder", "--data", "d"])
    config, given = TrainStyleEncoderCommand.settings(args)
    assert given == {"data"} and config == StyleEncoderConfig(data="d") and config.batch == 32
    with pytest.raises(RuntimeError, match="style_dim"):  # a setting left out of the layout is a bug
        add_settings(argparse.ArgumentParser(), StyleEncoderConfig, ((None, ("data",)),))


def test_config_json_records_the_settled_settings(full_run):
    saved = json.loads((full_run.out / "config.json").read_text())
    ck = torch.load(full_run.out / "checkpoints" / "latest.pt", map_location="cpu", weights_only=True)
    assert saved.pop("kind") == "GANConfig" and saved == ck["args"]


def test_checkpoint_pruning_orders_steps_numerically(tmp_path):
    writer = CheckpointWriter(tmp_path, keep=2)
    for step in (998000, 999000, 1000000, 1001000):  # 1000000.pt sorts before 999000.pt by name
        writer.save({"step": step}, step)
    assert sorted(p.name for p in writer.dir.iterdir()) == ["1000000.pt", "1001000.pt", "latest.pt"]
    assert torch.load(writer.latest, weights_only=True)["step"] == 1001000


def test_resume_rejects_other_architecture(full_run):
    status = train_main(["train", "--resume", str(full_run.out), "--outdir", str(full_run.out), "--size", "64",
                         "--quiet"])
    assert status == 2


def test_bad_flags_are_one_line_errors(data, tmp_path, capsys):
    assert train_main(["train", "--faces", str(data.faces), "--styles", str(data.arts), "--outdir",
                       str(tmp_path), "--size", "32", "--channels", "32,32"]) == 2
    assert "--channels" in capsys.readouterr().err
    assert train_main(["train", "--outdir", str(tmp_path)]) == 2
    assert train_main(["train", "--faces", str(data.faces), "--styles", str(data.arts)]) == 2  # no --outdir
    assert "--outdir" in capsys.readouterr().err
    assert train_main(["train", "--resume", str(tmp_path / "nothing")]) == 2


# -- style encoder --------------------------------------------------------------------------------------
ENCODER_ARGS = ["--size", "32", "--style-dim", "32", "--batch", "4", "--pool", "32", "--log-every", "1",
                "--device", "cpu", "--quiet", "--workers", "2", "--tensorboard", "off"]


@pytest.fixture(scope="module")
def encoder_run(data, tmp_path_factory):
    """3 steps of contrastive style-encoder training."""
    out = tmp_path_factory.mktemp("enc")
    assert train_main(["train-style-encoder", "--data", str(data.arts), "--outdir", str(out), "--steps", "3",
                       *ENCODER_ARGS]) == 0
    return out


def test_train_style_encoder_and_load_into_generator(encoder_run):
    out = encoder_run
    log = read_log(out)
    assert [r["step"] for r in log] == [1, 2, 3] and all(math.isfinite(r["loss"]) for r in log)
    ck = torch.load(out / "checkpoints" / "latest.pt", map_location="cpu", weights_only=True)
    g = Generator(32, 32, 2, channels=CHANNELS)
    g.embedder.load_state_dict(ck["style_encoder"])  # the generator's embedder.* keys
    assert torch.equal(g.state_dict()["embedder.embedder_mlp.3.weight"], ck["style_encoder"]["embedder_mlp.3.weight"])
    assert set(load_style_encoder_state(out / "checkpoints" / "latest.pt")) == set(ck["style_encoder"])


def test_style_encoder_resume_continues(encoder_run, data, tmp_path):
    import shutil
    out = tmp_path / "enc"
    shutil.copytree(encoder_run, out)
    assert train_main(["train-style-encoder", "--resume", str(out), "--steps", "4", "--lr", "0.00123",
                       "--quiet"]) == 0
    assert [r["step"] for r in read_log(out)] == [1, 2, 3, 4]
    ck = torch.load(out / "checkpoints" / "latest.pt", map_location="cpu", weights_only=True)
    assert ck["step"] == 4 and ck["args"]["style_dim"] == 32 and ck["args"]["data"] == str(data.arts)
    assert ck["optimizer"]["param_groups"][0]["lr"] == 0.00123  # the flag given on resume, not the saved rate


def test_code_contrast_adds_an_nt_xent_on_the_codes(data, tmp_path):
    """Step 1 sees the same batch, views and weights with and without --code-contrast: the
    logged loss grows by exactly W times the codes' own NT-Xent, which is logged beside it."""
    logs = {}
    for w in ("0", "0.5"):
        out = tmp_path / w
        assert train_main(["train-style-encoder", "--data", str(data.arts), "--outdir", str(out), "--steps", "1",
                           "--code-contrast", w, *ENCODER_ARGS]) == 0
        logs[w] = read_log(out)[0]
    assert "code_loss" not in logs["0"]
    code_loss = logs["0.5"]["code_loss"]
    assert code_loss > 0.1  # a batch of 4 artworks, 2 views each: far from solved at step 1
    assert logs["0.5"]["loss"] == pytest.approx(logs["0"]["loss"] + 0.5 * code_loss, rel=1e-5)
    assert logs["0.5"]["acc"] == logs["0"]["acc"]  # the projections' accuracy, unchanged


def test_style_encoder_needs_data(tmp_path):
    assert train_main(["train-style-encoder", "--outdir", str(tmp_path)]) == 2


# -- several processes ----------------------------------------------------------------------------------
def test_two_process_gloo_run(data, encoder_run, tmp_path):
    """torchrun, 2 CPU processes (gloo), with the style encoder trained above."""
    script = tmp_path / "launch.py"
    script.write_text(textwrap.dedent("""
        import sys, torch
        torch.set_num_threads(1)
        from blendgan.cli import main
        sys.exit(main(sys.argv[1:]))
    """))
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           "train", "--faces", str(data.faces), "--styles", str(data.arts), "--cache", str(data.cache),
           "--outdir", str(out), *TINY, "--kimg", "0.012", "--save-every", "2", "--sample-every", "0",
           "--style-encoder", str(encoder_run / "checkpoints" / "latest.pt")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    ck = torch.load(out / "checkpoints" / "latest.pt", map_location="cpu", weights_only=True)
    assert ck["world"] == 2 and len(ck["rng"]) == 2 and ck["step"] == 3  # 12 images / (2 x 2) per step
    assert not torch.equal(ck["rng"][0]["latent"], ck["rng"][1]["latent"])
    assert [r["step"] for r in read_log(out)] == [1, 2, 3]
    m = BlendGAN.from_pretrained(out / "checkpoints" / "latest.pt")
    assert torch.isfinite(m.synthesize(z=torch.randn(1, 32))).all()
    enc = torch.load(encoder_run / "checkpoints" / "latest.pt", map_location="cpu", weights_only=True)
    assert torch.equal(ck["g_ema"]["embedder.embedder_mlp.0.weight"], enc["style_encoder"]["embedder_mlp.0.weight"])


def _nt_xent_worker(rank: int, port: int, p1: torch.Tensor, p2: torch.Tensor, out: str) -> None:
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    b = p1.shape[0] // 2
    x1 = p1[rank * b:(rank + 1) * b].clone().requires_grad_(True)
    x2 = p2[rank * b:(rank + 1) * b].clone().requires_grad_(True)
    loss, _ = nt_xent(x1, x2, 0.2, DistEnv(rank=rank, world=2))
    (loss / 2).backward()  # what DDP's gradient averaging amounts to
    torch.save({"loss": loss.detach(), "g1": x1.grad, "g2": x2.grad}, f"{out}.{rank}")
    dist.destroy_process_group()


def test_nt_xent_across_processes_matches_one_process(tmp_path):
    import socket
    import torch.multiprocessing as mp
    g = torch.Generator().manual_seed(3)
    p1, p2 = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_nt_xent_worker, args=(port, p1, p2, str(tmp_path / "r")), nprocs=2)
    r = [torch.load(tmp_path / f"r.{i}", weights_only=True) for i in range(2)]
    x1, x2 = p1.clone().requires_grad_(True), p2.clone().requires_grad_(True)
    loss, _ = nt_xent(x1, x2, 0.2, DistEnv())
    loss.backward()
    torch.testing.assert_close((r[0]["loss"] + r[1]["loss"]) / 2, loss.detach())
    torch.testing.assert_close(torch.cat([r[0]["g1"], r[1]["g1"]]), x1.grad)
    torch.testing.assert_close(torch.cat([r[0]["g2"], r[1]["g2"]]), x2.grad)


def test_style_encoder_weights_from_other_layouts(full_run, tmp_path):
    from blendgan.models import StyleEncoder
    from blendgan.models.style_encoder import vgg19_features
    # torchvision's vgg19().state_dict() layout: features.<i>.* (+ a classifier we ignore)
    vgg = vgg19_features()
    tv = {f"features.{k}": v for k, v in vgg.state_dict().items()}
    tv["classifier.0.weight"] = torch.zeros(2, 2)
    torch.save(tv, tmp_path / "vgg19.pth")
    sd = load_style_encoder_state(tmp_path / "vgg19.pth")
    enc = StyleEncoder(style_dim=32)
    has_vgg, has_mlp = assign_style_encoder(enc, sd, "vgg19.pth", need_mlp=False)
    assert (has_vgg, has_mlp) == (True, False)
    assert torch.equal(enc.embedder.feature_extractor.vgg_layers[34].weight, vgg[34].weight)
    # a generator checkpoint (g_ema with embedder.*), e.g. ours or the official blendgan.pt
    sd = load_style_encoder_state(full_run.out / "checkpoints" / "latest.pt")
    assert assign_style_encoder(enc, sd, "latest.pt", need_mlp=True) == (True, True)
    with pytest.raises(TrainError, match="style-dim"):
        assign_style_encoder(StyleEncoder(style_dim=16), sd, "latest.pt", need_mlp=True)
    torch.save({"x": torch.zeros(1)}, tmp_path / "junk.pt")
    with pytest.raises(TrainError, match="no style-encoder weights"):
        load_style_encoder_state(tmp_path / "junk.pt")
