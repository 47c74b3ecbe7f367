"""Loading the official layout, and one-line errors for everything else."""
import argparse
import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch

from blendgan import BlendGAN, CheckpointError
from blendgan.checkpoint import infer_generator_config, load_file, load_generator, load_psp
from tests.conftest import golden_dir


@pytest.fixture(scope="module")
def g_sd(golden_ckpts):
    """The generator state dict of the 256px checkpoint (memory-mapped)."""
    return torch.load(golden_ckpts.blendgan, map_location="cpu", weights_only=True, mmap=True)["g_ema"]


def assert_one_line(exc: Exception, *needles: str) -> None:
    msg = str(exc)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"


def test_model_layout_equals_official_keys():
    """Our modules produce exactly the official state-dict names and shapes, at both sizes."""
    from blendgan.models import Generator, PSPEncoder, n_latent_for
    path = golden_dir() / "official_keys.json"
    if not path.exists():
        pytest.skip("official_keys.json not found")
    spec = json.loads(path.read_text())
    for size in (256, 1024):
        with torch.device("meta"):
            gen, psp = Generator(size), PSPEncoder(n_latent_for(size))
        ours = {k: list(v.shape) for k, v in gen.state_dict().items()}
        assert ours == {k: s for k, s, _ in spec[f"g_ema_{size}"]}
        ours = {k: list(v.shape) for k, v in psp.state_dict().items() if k != "latent_avg"}
        assert ours == {k: s for k, s, _ in spec[f"psp_encoder_{size}"]}


def test_config_is_inferred(g_sd):
    c = infer_generator_config(g_sd)
    assert (c.size, c.channel_multiplier, c.n_mlp, c.style_dim, c.style_encoder) == (256, 2, 8, 512, True)


def test_loads_official_dict_and_extras(golden_ckpts):
    ck = load_generator(golden_ckpts.blendgan)
    assert ck.generator.size == 256 and ck.generator.n_latent == 14
    assert ck.latent_avg.shape == (1, 512) and ck.truncation is None
    assert not any(p.is_meta for p in ck.generator.parameters())
    assert not any(b.is_meta for b in ck.generator.buffers())


def test_bare_state_dict_and_wrapped_keys(golden_ckpts, g_sd, tmp_path):
    """A bare state dict (no 'g_ema') and DataParallel 'module.' names load the same weights."""
    bare = tmp_path / "bare.pt"
    torch.save({f"module.{k}": v for k, v in g_sd.items()}, bare)
    ck = load_generator(bare)
    assert ck.latent_avg is None
    assert torch.equal(ck.generator.add_weight, g_sd["add_weight"])


def refused(sd: dict, path) -> CheckpointError:
    """The error of loading generator state dict ``sd`` saved (as 'g_ema') to ``path``; the
    1.4 GB file is removed afterwards."""
    torch.save({"g_ema": sd}, path)
    try:
        with pytest.raises(CheckpointError) as e:
            load_generator(path)
    finally:
        path.unlink()
    return e.value


def test_missing_key_is_one_line(g_sd, tmp_path):
    path = tmp_path / "missing.pt"
    sd = dict(g_sd)
    del sd["convs.3.conv.weight"]
    assert_one_line(refused(sd, path), str(path), "missing 1 key", "convs.3.conv.weight")


def test_wrong_shape_is_one_line(g_sd, tmp_path):
    path = tmp_path / "shape.pt"
    sd = dict(g_sd) | {"conv1.activate.bias": torch.zeros(7)}
    assert_one_line(refused(sd, path), str(path), "conv1.activate.bias", "(7,)", "(512,)")


def test_unexpected_key_is_one_line(g_sd, tmp_path):
    path = tmp_path / "extra.pt"
    assert_one_line(refused(dict(g_sd) | {"bogus.weight": torch.zeros(1)}, path), str(path), "unexpected",
                    "bogus.weight")


def test_truncated_file(golden_ckpts, tmp_path):
    path = tmp_path / "truncated.pt"
    with open(golden_ckpts.psp, "rb") as f:
        path.write_bytes(f.read(1 << 20))
    with pytest.raises(CheckpointError) as e:
        load_psp(path)
    assert_one_line(e.value, str(path), "truncated or corrupt")


@pytest.mark.parametrize("payload", [b"", b"not a checkpoint", b"\0" * 64])
def test_garbage_file(tmp_path, payload):
    path = tmp_path / "garbage.pt"
    path.write_bytes(payload)
    with pytest.raises(CheckpointError) as e:
        load_file(path)
    assert_one_line(e.value, str(path), "not a readable PyTorch checkpoint")


def test_pickled_object_is_refused(tmp_path):
    """A file that would unpickle arbitrary classes is refused, never executed."""
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": {}, "extra": pathlib.PurePosixPath("x")}, path)
    with pytest.raises(CheckpointError) as e:
        load_generator(path)
    assert_one_line(e.value, str(path), "refused", "pickled", "PurePosixPath")


def test_training_checkpoint_with_argparse_options_loads(g_sd, tmp_path):
    """The official train.py saves its argparse Namespace beside the weights: a plain record, allowed."""
    path = tmp_path / "train.pt"
    torch.save({"g_ema": g_sd, "args": argparse.Namespace(size=256, lr=0.002)}, path)
    try:
        assert load_generator(path).generator.size == 256
        assert load_file(path)["args"].lr == 0.002
    finally:
        path.unlink()


def test_integer_tensor_in_a_float_slot_is_one_line(g_sd, tmp_path):
    path = tmp_path / "ints.pt"
    sd = dict(g_sd) | {"conv1.activate.bias": torch.zeros(512, dtype=torch.int64)}
    assert_one_line(refused(sd, path), str(path), "conv1.activate.bias", "torch.int64", "wrong kind")


def test_nan_weights_are_refused(g_sd, tmp_path):
    """Damaged bytes in a well-formed file: the images would be black, so the file is refused."""
    path = tmp_path / "nan.pt"
    bad = g_sd["convs.3.conv.weight"].clone()
    bad.view(-1)[12345] = float("nan")
    sd = dict(g_sd) | {"convs.3.conv.weight": bad}
    assert_one_line(refused(sd, path), str(path), "NaN or infinite", "convs.3.conv.weight")


def test_non_string_key_is_one_line(g_sd, tmp_path):
    path = tmp_path / "intkey.pt"
    assert_one_line(refused(dict(g_sd) | {7: torch.zeros(1)}, path), str(path), "key 7")


def test_missing_file_says_how_to_get_weights(tmp_path):
    with pytest.raises(CheckpointError) as e:
        BlendGAN.from_pretrained(tmp_path / "nope.pt")
    assert_one_line(e.value, "nope.pt", "blendgan download")


def test_psp_swapped_for_generator(golden_ckpts):
    with pytest.raises(CheckpointError) as e:
        load_generator(golden_ckpts.psp)
    assert_one_line(e.value, str(golden_ckpts.psp))


def test_size_flag_is_checked(golden_ckpts):
    with pytest.raises(CheckpointError) as e:
        load_generator(golden_ckpts.blendgan, size=1024)
    assert_one_line(e.value, "256px", "--size 1024")
    assert load_generator(golden_ckpts.blendgan, size=256).config.size == 256


def test_psp_size_mismatch(golden_ckpts):
    with pytest.raises(CheckpointError) as e:
        load_psp(golden_ckpts.psp, n_latent=18)
    assert_one_line(e.value, str(golden_ckpts.psp), "1024px")


@pytest.mark.parametrize("shape", [(512,), (1, 512), (14, 512), (1, 14, 512)])
def test_psp_latent_avg_shapes_accepted(golden_ckpts, tmp_path, shape):
    ck = torch.load(golden_ckpts.psp, map_location="cpu", weights_only=True, mmap=True)
    avg = torch.arange(torch.Size(shape).numel(), dtype=torch.float32).reshape(shape)
    path = tmp_path / "psp.pt"
    torch.save({"state_dict": ck["state_dict"], "latent_avg": avg}, path)
    enc = load_psp(path, 14)
    assert enc.latent_avg.shape == (14, 512)
    assert torch.equal(enc.latent_avg, avg.reshape(-1, 512).expand(14, 512))


def test_psp_bad_latent_avg(golden_ckpts, tmp_path):
    ck = torch.load(golden_ckpts.psp, map_location="cpu", weights_only=True, mmap=True)
    path = tmp_path / "psp.pt"
    torch.save({"state_dict": ck["state_dict"], "latent_avg": torch.zeros(5, 512)}, path)
    with pytest.raises(CheckpointError) as e:
        load_psp(path)
    assert_one_line(e.value, str(path), "latent_avg", "(5, 512)")


def test_truncation_entry_and_fp16(g_sd, tmp_path):
    """A 'truncation' entry becomes the default; half-precision weights are loaded as float32."""
    path = tmp_path / "half.pt"
    torch.save({"g_ema": {k: v.half() if k.startswith("style.") else v for k, v in g_sd.items()},
                "truncation": 0.5}, path)
    m = BlendGAN.from_pretrained(path)
    assert m.stored_truncation == 0.5 and m.default_truncation == 0.5
    assert m.generator.style[1].weight.dtype == torch.float32


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads /proc/self/maps (Linux)")
def test_cpu_model_keeps_no_mapping_of_the_psp_file(golden_ckpts):
    """On a CPU the pSp weights are copied (NHWC) out of the memory-mapped file; the mapping
    must then be released, not stay resident beside the copies (+0.9 GiB of RSS at 256 px)."""
    script = (
        "import sys, torch\n"
        "from blendgan import BlendGAN\n"
        "m = BlendGAN.from_pretrained(sys.argv[1], psp_encoder=sys.argv[2], device='cpu')\n"
        "maps = open('/proc/self/maps').read()\n"
        "w = m.psp.encoder.body[0].res_layer[1].weight\n"
        "print(sys.argv[2] in maps, sys.argv[1] in maps, w.is_contiguous(memory_format=torch.channels_last))\n")
    res = subprocess.run([sys.executable, "-c", script, str(golden_ckpts.blendgan), str(golden_ckpts.psp)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    psp_mapped, generator_mapped, nhwc = res.stdout.split()
    assert (psp_mapped, nhwc) == ("False", "True")
    assert generator_mapped == "True"  # the generator still reads its weights from the mapping
