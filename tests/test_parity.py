"""Parity with the official implementation: every tensor of ../shared/golden/open_256.pt.

Tolerance (the contract): relative L2 error ‖ours − golden‖ / ‖golden‖ < 1e-4, CPU float32.
The same contract is checked on a CUDA device when one is present, through our CUDA kernels,
with TF32 off (strict float32); TF32 and the half precisions are checked against looser bounds.
"""
import contextlib

import pytest
import torch

from blendgan.runtime import configure_backends
from tests.conftest import saved_backend_flags

TOL = 1e-4


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    assert ours.shape == ref.shape, f"shape {tuple(ours.shape)} != {tuple(ref.shape)}"
    ours, ref = ours.detach().float().cpu(), ref.detach().float().cpu()
    return ((ours - ref).norm() / ref.norm()).item()


def compute_outputs(model, golden) -> dict:
    """Every tensor of the parity data, recomputed by ``model`` from the same inputs."""
    g = golden
    t = g["meta"]["truncation"]
    idx = g["meta"]["add_weight_index"]
    with torch.inference_mode():
        z_embed = model.embed_style(g["style_tensor"])
        codes = model.encode_face(g["face_tensor"])
        return {
            "z_embed_ref": z_embed,
            "face_image": model.synthesize(z=g["z"], truncation=t),
            "latent_guided": model.synthesize(z=g["z"], z_embed=g["z_style_random"], truncation=t,
                                              add_weight_index=idx),
            "reference_guided": model.synthesize(z=g["z"], z_embed=g["z_embed_ref"], truncation=t,
                                                 add_weight_index=idx),
            "psp_codes": codes,
            "style_transfer": model.synthesize(w_plus=g["psp_codes"], z_embed=g["z_embed_ref"],
                                               add_weight_index=idx),
            "style_transfer_no_index": model.synthesize(w_plus=g["psp_codes"], z_embed=g["z_embed_ref"]),
        }


@pytest.fixture(scope="module")
def outputs(model, golden):
    """Everything the official code computed, recomputed by us on CPU."""
    return compute_outputs(model, golden)


GOLDEN_KEYS = ["z_embed_ref", "face_image", "latent_guided", "reference_guided", "psp_codes", "style_transfer",
               "style_transfer_no_index"]


@pytest.mark.parametrize("key", GOLDEN_KEYS)
def test_matches_official(outputs, golden, key):
    err = rel_err(outputs[key], golden[key])
    assert err < TOL, f"{key}: relative error {err:.2e} >= {TOL}"


def test_golden_covers_every_output(golden):
    """Fails if the parity data grows a tensor this suite does not check."""
    inputs = {"z", "z_style_random", "style_tensor", "face_tensor", "meta"}
    assert set(golden) - inputs == set(GOLDEN_KEYS)


def test_end_to_end_transfer_from_images(model, golden):
    """Style transfer from the two images alone (encoders + generator chained)."""
    with torch.inference_mode():
        out = model.synthesize(w_plus=model.encode_face(golden["face_tensor"]),
                               z_embed=model.embed_style(golden["style_tensor"]),
                               add_weight_index=golden["meta"]["add_weight_index"])
    assert rel_err(out, golden["style_transfer"]) < TOL


def test_batched_matches_single(model, golden):
    """N > 1 goes through the batched convolution path; row 0 must still match the official output."""
    g = golden
    other = torch.randn(2, 512, generator=torch.Generator().manual_seed(7))
    z = torch.cat([g["z"], other])
    with torch.inference_mode():
        images = model.synthesize(z=z, z_embed=g["z_embed_ref"], truncation=0.75, add_weight_index=6)
        w_plus = torch.cat([g["psp_codes"], g["psp_codes"] + 0.1])
        transfer = model.synthesize(w_plus=w_plus, z_embed=g["z_embed_ref"].expand(2, -1), add_weight_index=6)
        styles = torch.cat([g["style_tensor"], g["style_tensor"].flip(3)])
        z_embed = model.embed_style(styles)
    assert rel_err(images[:1], g["reference_guided"]) < TOL
    assert rel_err(transfer[:1], g["style_transfer"]) < TOL
    assert rel_err(z_embed[:1], g["z_embed_ref"]) < TOL
    assert rel_err(images[1:2], images[2:3]) > 1e-2  # different faces really differ


def test_psp_latent_avg_stored_as_vector(golden_ckpts, golden, tmp_path):
    """``latent_avg`` stored as [512]: broadcast to every W+ entry."""
    from blendgan.checkpoint import load_psp
    ck = torch.load(golden_ckpts.psp, map_location="cpu", weights_only=True, mmap=True)
    vec = ck["latent_avg"][3].clone()
    path = tmp_path / "psp_vec.pt"
    torch.save({"state_dict": ck["state_dict"], "latent_avg": vec}, path)
    psp14 = load_psp(golden_ckpts.psp, 14)
    psp1 = load_psp(path, 14)
    with torch.inference_mode():
        x = golden["face_tensor"]
        expected = psp14(x) - ck["latent_avg"].unsqueeze(0) + vec
        assert rel_err(psp1(x), expected) < 1e-5


# ---- CUDA: the same contract through our kernels ------------------------------------------------

@contextlib.contextmanager
def tf32(enabled: bool):
    """The commands' backend switches for ``tf32`` or strict ``fp32``, restored afterwards."""
    with saved_backend_flags():
        configure_backends("tf32" if enabled else "fp32")
        yield


@pytest.fixture(scope="module")
def cuda_model(golden_ckpts):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from blendgan import BlendGAN
    return BlendGAN.from_pretrained(golden_ckpts.blendgan, psp_encoder=golden_ckpts.psp, device="cuda")


def test_cuda_uses_our_kernels(cuda_model):
    """With a toolkit present, the CUDA path must be our kernels, not a silent fallback."""
    from torch.utils import cpp_extension
    from blendgan.ops import extensions
    if cpp_extension.CUDA_HOME is None:
        pytest.skip("no CUDA toolkit to build the extensions")
    info = extensions.backend_info(build_now=True)
    assert all(v.startswith("cuda (built") for v in info.values()), info


@pytest.mark.parametrize("key", GOLDEN_KEYS)
def test_matches_official_cuda_fp32(cuda_model, golden, key):
    with torch.inference_mode(), tf32(False):
        ours = compute_outputs(cuda_model, golden)[key]
    err = rel_err(ours, golden[key])
    print(f"cuda fp32 {key}: {err:.2e}")
    assert err < TOL, f"{key}: relative error {err:.2e} >= {TOL}"


@pytest.mark.parametrize("precision,bound", [("tf32", 1e-2), ("bf16", 1e-1), ("fp16", 2e-2)])
def test_reduced_precision_cuda(golden_ckpts, golden, precision, bound):
    """TF32 / bf16 / fp16 stay close to the official float32 outputs (bounds, not parity)."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from blendgan import BlendGAN
    dtype = "fp32" if precision == "tf32" else precision
    model = BlendGAN.from_pretrained(golden_ckpts.blendgan, psp_encoder=golden_ckpts.psp, device="cuda",
                                     dtype=dtype)
    with torch.inference_mode(), tf32(precision == "tf32"):
        ours = compute_outputs(model, golden)
    errors = {key: rel_err(ours[key], golden[key]) for key in GOLDEN_KEYS}
    print(f"cuda {precision}: " + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    assert max(errors.values()) < bound, errors
