"""Custom ops: upfirdn2d and fused bias + activation, against independent references.

The references here are deliberately naive (explicit loops over output pixels and filter
taps, written from the textbook definitions) so that they share no code or tricks with
``blendgan.ops``.
"""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from blendgan import ops
from blendgan.ops import (extensions, fused_bias_act, fused_bias_act_ref, fused_leaky_relu, upfirdn2d, upfirdn2d_ref,
                          winograd)

ROOT = Path(__file__).resolve().parents[1]


# -- independent slow upfirdn2d ---------------------------------------------------------------
def slow_upfirdn2d(x: np.ndarray, f: np.ndarray, upx: int, upy: int, downx: int, downy: int,
                   px0: int, px1: int, py0: int, py1: int) -> np.ndarray:
    """Upsample by zero insertion, pad (negative = crop), true 2-D convolution, decimate."""
    if f.ndim == 1:
        f = np.outer(f, f)
    n, c, h, w = x.shape
    kh, kw = f.shape
    # 1. zero-insertion upsampling: sample (i, j) goes to (i*upy, j*upx)
    uh, uw = h * upy, w * upx
    up = np.zeros((n, c, uh, uw))
    for i in range(h):
        for j in range(w):
            up[:, :, i * upy, j * upx] = x[:, :, i, j]
    # 2. padded/cropped canvas: canvas row r holds upsampled row r - py0 (zero outside)
    ph, pw = uh + py0 + py1, uw + px0 + px1
    canvas = np.zeros((n, c, ph, pw))
    for r in range(ph):
        for s in range(pw):
            sr, ss = r - py0, s - px0
            if 0 <= sr < uh and 0 <= ss < uw:
                canvas[:, :, r, s] = up[:, :, sr, ss]
    # 3. true convolution, 'valid' part: y[i, j] = sum_{m, l} canvas[m, l] * f[i + kh-1 - m, j + kw-1 - l]
    oh, ow = ph - kh + 1, pw - kw + 1
    conv = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            acc = np.zeros((n, c))
            for m in range(i, i + kh):
                for l in range(j, j + kw):
                    acc += canvas[:, :, m, l] * f[i + kh - 1 - m, j + kw - 1 - l]
            conv[:, :, i, j] = acc
    # 4. decimation: keep every down-th sample starting at 0
    return conv[:, :, ::downy, ::downx]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _pad4(pad):
    return (pad[0], pad[1], pad[0], pad[1]) if len(pad) == 2 else tuple(pad)


# (shape [N, C, H, W], filter shape (1-D: (k,)), up, down, pad)
CASES = [
    ((1, 1, 5, 5), (3, 3), 1, 1, (1, 1)),
    ((3, 2, 5, 7), (4, 4), 2, 1, (2, 1)),            # StyleGAN2 upsample (pad (2, 1))
    ((3, 4, 8, 6), (4, 4), 1, 2, (1, 1)),            # StyleGAN2 downsample
    ((1, 3, 7, 9), (3, 5), 1, 1, (2, 2, 1, 1)),       # non-square filter, 4-tuple pad
    ((2, 2, 6, 5), (5, 2), (2, 1), 1, (0, 1, 2, 2)),  # up_x != up_y
    ((2, 2, 6, 5), (3, 3), (1, 2), (2, 1), (1, 1)),   # up_y only, down_x only
    ((3, 1, 9, 8), (4,), 2, 2, (1, 2)),               # 1-D filter, up and down
    ((1, 2, 7, 7), (5, 5), 1, 1, (-1, 3)),            # negative pad crops on one side
    ((2, 3, 9, 11), (3, 3), 1, 1, (-2, -1, 1, -2)),   # crops and pads mixed, 4-tuple
    ((1, 1, 6, 6), (3, 3), 2, 1, (-1, -2)),           # crop after upsampling
    ((3, 2, 5, 4), (1, 1), 1, 1, (0, 0)),             # identity-size filter
    ((1, 2, 11, 13), (7, 3), 1, (2, 3), (3, 3, 1, 1)),  # odd filter, uneven decimation
    ((2, 5, 3, 3), (4, 3), 2, 2, (2, 1)),              # tiny input, several channels
]


@pytest.mark.parametrize("shape,fshape,up,down,pad", CASES)
def test_upfirdn2d_ref_matches_slow_reference(shape, fshape, up, down, pad):
    gen = torch.Generator().manual_seed(hash((shape, fshape)) % 2**31)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    f = torch.randn(fshape, generator=gen, dtype=torch.float64)  # asymmetric: the flip matters
    upx, upy = _pair(up)
    downx, downy = _pair(down)
    px0, px1, py0, py1 = _pad4(pad)

    out = upfirdn2d_ref(x, f, up=up, down=down, pad=pad)
    want = slow_upfirdn2d(x.numpy(), f.numpy(), upx, upy, downx, downy, px0, px1, py0, py1)

    kh, kw = (fshape[0], fshape[0]) if len(fshape) == 1 else fshape
    n, c, h, w = shape
    assert tuple(out.shape) == (n, c, (h * upy + py0 + py1 - kh) // downy + 1,
                                (w * upx + px0 + px1 - kw) // downx + 1)
    assert tuple(out.shape) == want.shape
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-10, atol=1e-10)
    # the public entry point takes the reference path for CPU tensors
    assert torch.equal(upfirdn2d(x, f, up=up, down=down, pad=pad), out)


def test_upfirdn2d_ref_float32_matches_float64():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 8, 8, generator=gen)
    f = torch.randn(4, 4, generator=gen)
    out32 = upfirdn2d_ref(x, f, up=2, down=1, pad=(2, 1))
    out64 = upfirdn2d_ref(x.double(), f.double(), up=2, down=1, pad=(2, 1))
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), out64, rtol=1e-5, atol=1e-5)


def test_upfirdn2d_known_special_cases():
    """Closed-form cases that need no reference implementation at all."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 5, 6, generator=gen, dtype=torch.float64)
    # identity filter
    assert torch.equal(upfirdn2d_ref(x, torch.ones(1, 1, dtype=torch.float64)), x)
    # box filter after zero insertion == nearest-neighbour upsampling
    near = upfirdn2d_ref(x, torch.ones(2, 2, dtype=torch.float64), up=2, pad=(1, 0))
    assert torch.equal(near, x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))
    # averaging filter then decimation == 2x2 average pooling
    y = torch.randn(1, 2, 8, 6, generator=gen, dtype=torch.float64)
    pooled = upfirdn2d_ref(y, torch.full((2, 2), 0.25, dtype=torch.float64), down=2)
    torch.testing.assert_close(pooled, F.avg_pool2d(y, 2))
    # a delta filter off-centre shifts (true convolution: delta at (1, 0) of a 2x2 filter)
    delta = torch.zeros(2, 2, dtype=torch.float64)
    delta[1, 0] = 1
    # pad (1, 0) on both axes: canvas[r, s] = x[r-1, s-1], output [H, W],
    # y[i, j] = sum_{m,l} canvas[m, l] f[i+1-m, j+1-l] = canvas[i, j+1] = x[i-1, j]
    shifted = upfirdn2d_ref(x, delta, pad=(1, 0))
    assert shifted.shape == x.shape
    assert torch.equal(shifted[:, :, 1:, :], x[:, :, :-1, :])
    assert torch.equal(shifted[:, :, 0, :], torch.zeros_like(x[:, :, 0, :]))


def test_upfirdn2d_one_d_filter_is_outer_product():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 7, 7, generator=gen, dtype=torch.float64)
    k = torch.tensor([1.0, 3.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(upfirdn2d_ref(x, k, up=2, pad=(1, 1)),
                               upfirdn2d_ref(x, torch.outer(k, k), up=2, pad=(1, 1)))


@pytest.mark.parametrize("x_shape,f_shape,kwargs,match", [
    ((3, 8, 8), (3, 3), {}, r"\[N, C, H, W\]"),
    ((1, 1, 8, 8), (3, 3, 1), {}, "filter"),
    ((1, 1, 8, 8), (3, 3), {"pad": (1, 1, 1)}, "pad must have 2 or 4"),
    ((1, 1, 8, 8), (3, 3), {"up": 0}, ">= 1"),
    ((1, 1, 8, 8), (3, 3), {"down": (1, 0)}, ">= 1"),
])
def test_upfirdn2d_rejects_bad_inputs(x_shape, f_shape, kwargs, match):
    x, f = torch.zeros(x_shape), torch.ones(f_shape)
    for fn in (upfirdn2d_ref, upfirdn2d):
        with pytest.raises(ValueError, match=match):
            fn(x, f, **kwargs)


# -- backend selection ------------------------------------------------------------------------
def test_forced_ref_mode(monkeypatch):
    monkeypatch.setenv("BLENDGAN_OPS", "ref")
    assert extensions.mode() == "ref"
    info = ops.backend_info()
    assert set(info) == {"bias_act", "upfirdn2d"}
    assert all(v.startswith("ref") and "BLENDGAN_OPS=ref" in v for v in info.values())
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 6, 6, generator=gen)
    f = torch.randn(4, 4, generator=gen)
    assert torch.equal(upfirdn2d(x, f, up=2, pad=(2, 1)), upfirdn2d_ref(x, f, up=2, pad=(2, 1)))
    b = torch.randn(3, generator=gen)
    assert torch.equal(fused_bias_act(x, b), fused_bias_act_ref(x, b))


@pytest.mark.parametrize("value", ["CUDA ", " Ref", ""])
def test_mode_is_case_and_space_insensitive(monkeypatch, value):
    monkeypatch.setenv("BLENDGAN_OPS", value)
    assert extensions.mode() == (value.strip().lower() or "auto")


def test_invalid_mode_raises_naming_variable(monkeypatch):
    monkeypatch.setenv("BLENDGAN_OPS", "fast")
    with pytest.raises(ValueError, match="BLENDGAN_OPS") as excinfo:
        extensions.mode()
    assert "fast" in str(excinfo.value)
    with pytest.raises(ValueError, match="BLENDGAN_OPS"):
        ops.backend_info()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
def test_cpu_only_backend_info_and_no_build(monkeypatch, tmp_path):
    cache = tmp_path / "ops-cache"
    monkeypatch.setenv("BLENDGAN_CACHE_DIR", str(cache))
    monkeypatch.delenv("BLENDGAN_OPS", raising=False)
    assert extensions.cache_root() == cache

    def no_build(name, verbose=False):
        raise AssertionError(f"a build of {name!r} was attempted on a CPU-only machine")

    monkeypatch.setattr(extensions, "build", no_build)
    for kwargs in ({}, {"build_now": True}):
        info = ops.backend_info(**kwargs)
        assert set(info) == {"bias_act", "upfirdn2d"}
        for value in info.values():
            assert value.startswith("ref (") and value.endswith(")") and len(value) > len("ref ()") + 5
            assert "CUDA" in value
    x = torch.randn(1, 2, 4, 4)
    upfirdn2d(x, torch.ones(3, 3), pad=(1, 1))
    fused_bias_act(x, torch.zeros(2))
    fused_leaky_relu(x)
    assert not cache.exists()
    assert "bias_act" not in extensions.modules and "upfirdn2d" not in extensions.modules


def test_import_compiles_nothing(tmp_path):
    """In a fresh interpreter: importing blendgan(.ops) and running CPU ops never touches
    torch.utils.cpp_extension and never creates the build cache."""
    cache = tmp_path / "cache"
    script = textwrap.dedent("""
        import sys
        import torch
        assert "torch.utils.cpp_extension" not in sys.modules, "torch itself imported cpp_extension"
        import blendgan.ops as ops
        import blendgan
        from blendgan.models import Generator
        assert "torch.utils.cpp_extension" not in sys.modules, "import pulled in cpp_extension"
        x = torch.randn(1, 2, 5, 5)
        ops.upfirdn2d(x, torch.ones(4, 4), up=2, pad=(2, 1))
        ops.fused_bias_act(x, torch.zeros(2))
        ops.backend_info()
        if not torch.cuda.is_available():
            assert "torch.utils.cpp_extension" not in sys.modules, "CPU ops pulled in cpp_extension"
        print("OK")
    """)
    env = dict(os.environ, BLENDGAN_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    env.pop("BLENDGAN_OPS", None)
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith("OK")
    assert not cache.exists()


# -- fused bias + activation ------------------------------------------------------------------
def _lrelu(v: np.ndarray, alpha: float) -> np.ndarray:
    return np.where(v >= 0, v, alpha * v)


@pytest.mark.parametrize("fn", [fused_bias_act_ref, fused_bias_act])
@pytest.mark.parametrize("shape", [(4, 6), (2, 6, 3, 5)])
@pytest.mark.parametrize("act,alpha,gain", [("lrelu", 0.2, math.sqrt(2)), ("relu", 0.0, math.sqrt(2)),
                                            ("linear", None, 1.0)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_fused_bias_act_defaults(fn, shape, act, alpha, gain, with_bias):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    b = torch.randn(shape[1], generator=gen, dtype=torch.float64) if with_bias else None
    xn = x.numpy()
    v = xn + (b.numpy().reshape([1, -1] + [1] * (x.ndim - 2)) if with_bias else 0)
    want = (v if act == "linear" else _lrelu(v, alpha)) * gain
    out = fn(x, b, act)
    assert out.shape == x.shape and out.dtype == x.dtype
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fn", [fused_bias_act_ref, fused_bias_act])
def test_fused_bias_act_custom_alpha_gain_and_dim(fn):
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(2, 3, 4, 5, generator=gen)
    b = torch.randn(5, generator=gen)
    out = fn(x, b, "lrelu", alpha=0.05, gain=3.0, dim=3)
    want = _lrelu(x.numpy() + b.numpy().reshape(1, 1, 1, 5), 0.05) * 3.0
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-6, atol=1e-6)
    b2 = torch.randn(4, generator=gen)
    out = fn(x, b2, "relu", gain=0.5, dim=2)
    want = np.maximum(x.numpy() + b2.numpy().reshape(1, 1, 4, 1), 0) * 0.5
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-6, atol=1e-6)
    # gain 1 keeps values; alpha affects negatives only
    out = fn(x, None, "lrelu", alpha=1.0, gain=1.0)
    torch.testing.assert_close(out, x)


def test_fused_leaky_relu_is_stylegan2_formula():
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(3, 4, 2, 2, generator=gen)
    b = torch.randn(4, generator=gen)
    want = F.leaky_relu(x + b.view(1, 4, 1, 1), 0.2) * math.sqrt(2)
    torch.testing.assert_close(fused_leaky_relu(x, b), want)
    torch.testing.assert_close(fused_leaky_relu(x), F.leaky_relu(x, 0.2) * math.sqrt(2))
    torch.testing.assert_close(fused_leaky_relu(x, b, negative_slope=0.1, scale=2.0),
                               F.leaky_relu(x + b.view(1, 4, 1, 1), 0.1) * 2.0)
    # 2-D input (EqualLinear style): bias along dim 1
    y = torch.randn(5, 4, generator=gen)
    torch.testing.assert_close(fused_leaky_relu(y, b), F.leaky_relu(y + b, 0.2) * math.sqrt(2))


@pytest.mark.parametrize("fn", [fused_bias_act_ref, fused_bias_act])
def test_fused_bias_act_unknown_activation(fn):
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        fn(torch.zeros(2, 3), None, "gelu")


def test_bias_is_cast_to_input_dtype():
    x = torch.randn(2, 3, dtype=torch.float64)
    b = torch.randn(3, dtype=torch.float32)
    out = fused_bias_act_ref(x, b, "linear")
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, x + b.double())


# -- gradients --------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ["lrelu", "relu", "linear"])
def test_fused_bias_act_ref_gradcheck(act, one_thread):
    gen = torch.Generator().manual_seed(8)
    # keep x + b away from the kink at 0 so finite differences are valid
    x = torch.randn(2, 3, 3, 3, generator=gen, dtype=torch.float64)
    x = (x + 0.2 * x.sign()).requires_grad_()
    b = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    fn = lambda x, b: fused_bias_act_ref(x, b, act, alpha=0.2 if act == "lrelu" else None, gain=1.7)
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


@pytest.fixture
def one_thread():
    """Finite-difference checks run thousands of tiny ops: one thread avoids OpenMP overhead."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("up,down,pad", [(1, 1, (1, 1)), (2, 1, (2, 1)), (1, 2, (1, 1)), ((2, 1), (1, 2), (0, 1, -1, 2))])
def test_upfirdn2d_ref_gradcheck(up, down, pad, one_thread):
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(1, 2, 4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    f = torch.randn(3, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    fn = lambda x, f: upfirdn2d_ref(x, f, up=up, down=down, pad=pad)
    assert torch.autograd.gradcheck(fn, (x, f))
    assert torch.autograd.gradgradcheck(fn, (x, f))


# -- Winograd F(4x4, 3x3) ---------------------------------------------------------------------
def _blur_kernel() -> torch.Tensor:
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    return torch.outer(k, k) / 64 * 4  # StyleGAN2's upsampling blur (normalised, times factor^2)


def _stylegan_epilogue(y, out_scale, noise, bias):
    return F.leaky_relu(y * out_scale[:, :, None, None] + noise + bias[:, None, None], 0.2) * math.sqrt(2)


def _native_conv3x3():
    """conv3x3 through the C++ extension (built here on first use), in inference."""
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip("no C++ compiler: the C++ Winograd transforms cannot be built")
    module = extensions.get_module("winograd")
    assert module is not None, f"the C++ Winograd extension did not build: {extensions.failures.get('winograd')}"

    def run(*args, **kwargs):
        with torch.no_grad():
            return winograd.conv3x3(*args, **kwargs)
    return run


@pytest.fixture(params=["ref", "native"])
def conv3x3(request, monkeypatch):
    """Both implementations of :func:`winograd.conv3x3`: PyTorch ops, and the C++ transforms."""
    monkeypatch.delenv("BLENDGAN_OPS", raising=False)
    return winograd.conv3x3_ref if request.param == "ref" else _native_conv3x3()


@pytest.mark.parametrize("n,cin,cout,h,w", [(1, 3, 5, 4, 4), (2, 8, 6, 12, 20), (3, 16, 16, 8, 28),
                                            (2, 70, 66, 8, 8)])
def test_winograd_conv3x3_matches_conv2d(conv3x3, n, cin, cout, h, w):
    """'same' 3x3 correlation, scales, noise, bias and activation against float64 conv2d
    (70 and 66 channels: a full and a partial block of the C++ loops)."""
    gen = torch.Generator().manual_seed(n * 100 + h)
    x = torch.randn(n, cin, h, w, generator=gen)
    weight = torch.randn(cout, cin, 3, 3, generator=gen)
    s = torch.rand(n, cin, generator=gen) + 0.5
    d = torch.rand(n, cout, generator=gen) + 0.5
    noise = torch.randn(1, 1, h, w, generator=gen)
    bias = torch.randn(cout, generator=gen)
    y = conv3x3(x, winograd.transform_weight(weight), s, d, bias, noise, lrelu=True)
    want = _stylegan_epilogue(F.conv2d(x.double() * s.double()[:, :, None, None], weight.double(), padding=1),
                              d.double(), noise.double(), bias.double())
    assert y.shape == (n, cout, h, w) and y.is_contiguous(memory_format=torch.channels_last)
    assert ((y.double() - want).norm() / want.norm()).item() < 1e-5
    plain = conv3x3(x, winograd.transform_weight(weight))
    want_plain = F.conv2d(x.double(), weight.double(), padding=1)
    assert ((plain.double() - want_plain).norm() / want_plain.norm()).item() < 1e-5
    biased = conv3x3(x.contiguous(memory_format=torch.channels_last), winograd.transform_weight(weight), bias=bias)
    want_biased = want_plain + bias.double()[:, None, None]
    assert ((biased.double() - want_biased).norm() / want_biased.norm()).item() < 1e-5


@pytest.mark.parametrize("n,cin,cout,h,w", [(1, 4, 3, 4, 4), (2, 6, 5, 8, 12), (2, 65, 3, 4, 8)])
def test_winograd_upsampling_matches_blurred_transposed_conv(conv3x3, n, cin, cout, h, w):
    """The four output phases with the blur folded in equal StyleGAN2's upsampling conv:
    conv_transpose2d (stride 2), then the [1, 3, 3, 1] blur with padding (1, 1); noise per
    sample."""
    gen = torch.Generator().manual_seed(7 + h)
    x = torch.randn(n, cin, h, w, generator=gen)
    weight = torch.randn(cout, cin, 3, 3, generator=gen)
    d = torch.rand(n, cout, generator=gen) + 0.5
    noise = torch.randn(n, 1, 2 * h, 2 * w, generator=gen)
    bias = torch.randn(cout, generator=gen)
    wt = winograd.transform_weight_up(weight, _blur_kernel())
    assert wt.shape == (36, cin, 4 * cout)
    y = conv3x3(x, wt, None, d, bias, noise, lrelu=True, up=2)
    blurred = slow_upfirdn2d(F.conv_transpose2d(x.double(), weight.double().transpose(0, 1), stride=2).numpy(),
                             _blur_kernel().double().numpy(), 1, 1, 1, 1, 1, 1, 1, 1)
    want = _stylegan_epilogue(torch.from_numpy(blurred), d.double(), noise.double(), bias.double())
    assert y.shape == (n, cout, 2 * h, 2 * w)
    assert ((y.double() - want).norm() / want.norm()).item() < 1e-5


@pytest.mark.parametrize("up", [1, 2])
def test_winograd_bands_cover_the_image(conv3x3, monkeypatch, up):
    """Small bands (a last band shorter than the others, image borders inside bands) give the
    same result as one band."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 20, 8, generator=gen)
    weight = torch.randn(3, 4, 3, 3, generator=gen)
    noise = torch.randn(2, 1, 20 * up, 8 * up, generator=gen)
    wt = winograd.transform_weight_up(weight, _blur_kernel()) if up == 2 else winograd.transform_weight(weight)
    whole = conv3x3(x, wt, noise=noise, up=up)
    monkeypatch.setattr(winograd, "MIN_BAND_TILES", 1)
    monkeypatch.setattr(winograd, "BAND_BYTES", 1)   # one tile row per band
    banded = conv3x3(x, wt, noise=noise, up=up)
    monkeypatch.setattr(winograd, "MIN_BAND_TILES", 2 * 2 * 2)  # 2 rows of 2x2 tiles: 5 rows -> 2, 2, 1
    uneven = conv3x3(x, wt, noise=noise, up=up)
    # rounding may differ with the product sizes; a misplaced or missing row would be O(1)
    for other in (banded, uneven):
        assert other.shape == whole.shape
        assert ((other - whole).abs().max() / whole.abs().max()).item() < 1e-5


def test_winograd_native_and_ref_agree_and_refuse_autograd(monkeypatch):
    """The C++ transforms and the PyTorch ones compute the same layer (a StyleGAN2-sized
    block count); an input that requires grad is refused, not silently cut from the graph."""
    native = _native_conv3x3()
    monkeypatch.delenv("BLENDGAN_OPS", raising=False)
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(2, 128, 16, 16, generator=gen)
    wt = winograd.transform_weight(torch.randn(64, 128, 3, 3, generator=gen) / 34)
    s, d = torch.rand(2, 128, generator=gen) + 0.5, torch.rand(2, 64, generator=gen) + 0.5
    args = (x, wt, s, d, torch.randn(64, generator=gen), torch.randn(1, 1, 16, 16, generator=gen))
    a, b = native(*args, lrelu=True), winograd.conv3x3_ref(*args, lrelu=True)
    assert ((a - b).norm() / b.norm()).item() < 2e-6
    with pytest.raises(RuntimeError, match="for inference"):
        winograd.conv3x3(x.clone().requires_grad_(), *args[1:], lrelu=True)
    assert torch.equal(winograd.conv3x3(*args, lrelu=True), a)   # no grad needed: the C++ path


def test_winograd_falls_back_when_the_extension_cannot_build(monkeypatch):
    """A failed C++ build warns once with the reason and every call still computes, on the
    PyTorch path; BLENDGAN_OPS=ref never tries to build."""
    monkeypatch.setattr(extensions, "modules", {})
    monkeypatch.setattr(extensions, "failures", {})
    calls = []

    def broken(name, verbose=False):
        calls.append(name)
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(extensions, "build", broken)
    x, wt = torch.randn(1, 4, 8, 8), winograd.transform_weight(torch.randn(3, 4, 3, 3))
    monkeypatch.setenv("BLENDGAN_OPS", "ref")
    with torch.no_grad():
        want = winograd.conv3x3(x, wt)
    assert calls == [] and "BLENDGAN_OPS=ref" in extensions.cpu_backend_info()
    monkeypatch.delenv("BLENDGAN_OPS")
    with torch.no_grad(), pytest.warns(RuntimeWarning, match="no compiler here"):
        got = winograd.conv3x3(x, wt)
    with torch.no_grad():
        winograd.conv3x3(x, wt)
    assert calls == ["winograd"] and torch.equal(got, want)
    assert "build failed" in extensions.cpu_backend_info() and "no compiler here" in extensions.cpu_backend_info()


NINJA_FAILURE = """Error building extension 'blendgan_winograd': [1/2] c++ -MMD -c winograd_cpu.cpp -O3
FAILED: winograd_cpu.o
c++ -MMD -MF winograd_cpu.o.d -c /src/op/winograd_cpu.cpp -o winograd_cpu.o
/src/op/winograd_cpu.cpp:34:1: error: expected ',' or ';' before 'namespace'
   34 | namespace {
/src/op/winograd_cpu.cpp:90:5: error: 'band' was not declared in this scope
ninja: build stopped: subcommand failed.
"""


def test_build_errors_name_the_compiler_error_and_keep_the_log(monkeypatch, tmp_path):
    from torch.utils import cpp_extension
    assert extensions.build_error_summary(NINJA_FAILURE) == (
        "/src/op/winograd_cpu.cpp:34:1: error: expected ',' or ';' before 'namespace'; "
        "/src/op/winograd_cpu.cpp:90:5: error: 'band' was not declared in this scope")
    assert extensions.build_error_summary("ninja: build stopped: subcommand failed.") == \
        "ninja: build stopped: subcommand failed."

    def fail(**kwargs):
        raise RuntimeError(NINJA_FAILURE)
    monkeypatch.setattr(cpp_extension, "load", fail)
    with pytest.raises(RuntimeError) as excinfo:
        extensions.compile_extension("winograd", extensions.source_dir(), tmp_path, False)
    message = str(excinfo.value)
    assert "\n" not in message and "34:1: error: expected ','" in message and str(tmp_path / "build.log") in message
    assert (tmp_path / "build.log").read_text() == NINJA_FAILURE


def test_cpu_library_is_loaded_only_when_vouched_for(monkeypatch, tmp_path):
    """A library not recorded as completely linked (e.g. truncated by an interrupted copy) is
    never handed to the loader, which can crash the process on such a file."""
    loaded = []
    monkeypatch.setattr(torch.ops, "load_library", lambda path: loaded.append(path))
    library = tmp_path / "blendgan_winograd.so"
    library.write_bytes(b"\x7fELF" + bytes(5000))
    assert extensions.load_built_cpu_op("winograd", tmp_path) is None      # never vouched for
    extensions.vouch(library)
    with open(library, "r+b") as f:
        f.truncate(3000)                                                # cut after the link
    assert extensions.load_built_cpu_op("winograd", tmp_path) is None and loaded == []
    extensions.vouch(library)
    assert extensions.load_built_cpu_op("winograd", tmp_path) is not None and loaded == [str(library)]


def test_a_built_cpu_library_loads_from_a_read_only_cache(monkeypatch):
    """Loading what is already built writes nothing: no lock file, no folder."""
    sentinel = object()

    def no_writes(path):
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(extensions, "file_lock", no_writes)
    monkeypatch.setattr(extensions, "load_built_cpu_op", lambda name, out: sentinel)
    assert extensions.build("winograd") is sentinel


def test_build_directory_keys_on_flags_and_get_module_takes_no_lock_once_built(monkeypatch):
    before = extensions.build_directory("winograd")
    monkeypatch.setattr(extensions, "CPU_CFLAGS", extensions.CPU_CFLAGS + ("-march=native",))
    assert extensions.build_directory("winograd") != before

    class Refuse:
        def __enter__(self):
            raise AssertionError("locked on the fast path")

        def __exit__(self, *exc):
            return False
    sentinel = object()
    monkeypatch.setattr(extensions, "modules", {"winograd": sentinel})
    monkeypatch.setattr(extensions, "lock", Refuse())
    assert extensions.get_module("winograd") is sentinel


def test_winograd_rejects_what_it_cannot_do():
    wt = winograd.transform_weight(torch.randn(2, 3, 3, 3))
    assert not winograd.supports(torch.randn(1, 3, 6, 8))            # 6 is not a multiple of 4
    assert not winograd.supports(torch.randn(1, 3, 8, 8, dtype=torch.float64))
    assert winograd.supports(torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match="multiples of 4"):
        winograd.conv3x3(torch.randn(1, 3, 6, 8), wt)
    with pytest.raises(ValueError, match=r"weight_t must be \[36, 4"):
        winograd.conv3x3(torch.randn(1, 4, 8, 8), wt)
    with pytest.raises(ValueError, match="up must be"):
        winograd.conv3x3(torch.randn(1, 3, 8, 8), wt, up=3)
    with pytest.raises(ValueError, match=r"noise must be \[2 or 1, 1, 8, 8\]"):
        winograd.conv3x3(torch.randn(2, 3, 8, 8), wt, noise=torch.randn(2, 2, 8, 8))
    with pytest.raises(ValueError, match=r"\[C_out, C_in, 3, 3\]"):
        winograd.transform_weight(torch.randn(2, 3, 5, 5))


def test_a_deep_copied_layer_transforms_its_own_weight():
    """A deep copy starts with an empty Winograd cache whose transform follows the copy: after
    the copy's weight changes, each layer's inference output follows its own weight."""
    import copy

    from blendgan.models.layers import StyledConv
    with torch.random.fork_rng():
        torch.manual_seed(0)
        layer = StyledConv(64, 64, 3, 32).eval()
        x, s = torch.randn(2, 64, 16, 16), torch.randn(2, 32)
    noise = torch.zeros(1, 1, 16, 16)
    with torch.no_grad():
        before = layer(x, s, noise)  # fills the original's cache
        twin = copy.deepcopy(layer)
        twin.conv.weight.mul_(2.0)
        twin.activate.bias.add_(1.0)
        assert torch.equal(layer(x, s, noise), before)
        with torch.enable_grad():  # the direct path of the copy, for reference
            expected = twin(x, s, noise).detach()
        assert torch.allclose(twin(x, s, noise), expected, atol=1e-4)
        assert not torch.allclose(twin(x, s, noise), before, atol=1e-2)
