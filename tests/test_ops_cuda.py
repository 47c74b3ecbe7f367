"""Tests of our CUDA ops (``blendgan.ops.bias_act_cuda`` / ``upfirdn2d_cuda``).

* ``test_build_extensions`` (slow): compiles both extensions with nvcc in a subprocess.
  It needs no GPU (the architectures come from TORCH_CUDA_ARCH_LIST) and never touches
  this process's environment.
* CPU tests: the autograd rules (forward / backward / double backward), the fake
  implementations and torch.compile, with the custom ops running their PyTorch
  fallback on CPU tensors.
* GPU tests (skipped without CUDA): the kernels against the float64 reference on many
  shapes, dtypes fp32/fp16/bf16, first and second derivatives, gradcheck/gradgradcheck.
"""
import math
import os
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest
import torch

from blendgan.ops import bias_act_cuda, extensions, upfirdn2d_cuda
from blendgan.ops import fused_bias_act, fused_bias_act_ref, upfirdn2d, upfirdn2d_ref

REPO = Path(__file__).resolve().parents[1]
SQRT2 = math.sqrt(2.0)
BLUR = torch.tensor([1.0, 3.0, 3.0, 1.0])
BLUR = BLUR[:, None] * BLUR[None, :] / 64.0

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """max |ours - ref| / max |ref| (both taken in float64)."""
    ours, ref = ours.double(), ref.double()
    return ((ours - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


def _seed(*key) -> int:
    """A seed stable across processes (``hash`` of strings is salted per process)."""
    return zlib.crc32(repr(key).encode())


def _zeros_for_none(grads, like):
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, like)]


# ---- build (no GPU needed) ------------------------------------------------------------------

def _cuda_home() -> Path:
    return Path(os.environ.get("CUDA_HOME") or "/usr/local/cuda")


def _nvidia_include() -> Path | None:
    """``<site-packages>/nvidia/cu<major>/include`` of the pip CUDA packages, if installed."""
    if torch.version.cuda is None:
        return None
    try:
        import nvidia
    except ImportError:
        return None
    major = torch.version.cuda.split(".")[0]
    for location in getattr(nvidia, "__path__", []):
        candidate = Path(location) / f"cu{major}" / "include"
        if candidate.is_dir():
            return candidate
    return None


@pytest.mark.slow
def test_build_extensions(tmp_path):
    """Both extensions compile and import with nvcc; no GPU required."""
    nvcc = _cuda_home() / "bin" / "nvcc"
    if torch.version.cuda is None:
        pytest.skip("torch is a CPU-only build")
    if not nvcc.exists():
        pytest.skip(f"nvcc not found at {nvcc}")
    include = _nvidia_include()
    if include is None:
        pytest.skip("the nvidia CUDA headers package (nvidia/cu*/include) is not installed")
    env = dict(os.environ)  # a copy: this process's environment is never changed
    env.update({
        "CUDA_HOME": str(_cuda_home()),
        "TORCH_CUDA_ARCH_LIST": "8.0;9.0",
        "CPATH": os.pathsep.join(p for p in (str(include), env.get("CPATH", "")) if p),
        "BLENDGAN_CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
    })
    script = textwrap.dedent("""
        import time
        from blendgan.ops import extensions
        for name, funcs in (("bias_act", ("forward", "backward")), ("upfirdn2d", ("upfirdn2d",))):
            start = time.perf_counter()
            module = extensions.build(name, verbose=True)
            missing = [f for f in funcs if not hasattr(module, f)]
            assert not missing, (name, missing)
            print(f"BUILT {name} in {time.perf_counter() - start:.1f}s: {module.__file__}", flush=True)
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=str(REPO),
                          capture_output=True, text=True, timeout=3600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    for name in ("bias_act", "upfirdn2d"):
        assert f"BUILT {name}" in proc.stdout, log[-6000:]
        assert list((tmp_path / "cache").glob(f"{name}-80_90-*/blendgan_{name}*.so")), log[-3000:]


def test_nothing_compiles_at_import():
    script = ("from blendgan.ops import extensions, bias_act_cuda, upfirdn2d_cuda\n"
              "import blendgan.ops\n"
              "assert not extensions.modules and not extensions.failures\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


# ---- shared checks ---------------------------------------------------------------------------

def check_bias_act(shape, dim, act, alpha, gain, with_bias, dtype, device, tol):
    """Forward, backward and double backward of our op vs the float64 reference."""
    gen = torch.Generator().manual_seed(_seed(shape, dim, act, alpha, gain))
    x0 = torch.randn(shape, generator=gen, dtype=torch.float64)
    b0 = torch.randn(shape[dim], generator=gen, dtype=torch.float64) if with_bias else None
    g0 = torch.randn(shape, generator=gen, dtype=torch.float64)
    hx0 = torch.randn(shape, generator=gen, dtype=torch.float64)
    hb0 = torch.randn(shape[dim], generator=gen, dtype=torch.float64) if with_bias else None

    def run(fn, dt):
        x = x0.to(device, dtype).to(dt).requires_grad_()
        b = None if b0 is None else b0.to(device, dtype).to(dt).requires_grad_()
        g = g0.to(device, dtype).to(dt).requires_grad_()
        inputs = [x] if b is None else [x, b]
        y = fn(x, b, act, alpha, gain, dim)
        grads = torch.autograd.grad(y, inputs, g, create_graph=True)
        loss = (grads[0] * hx0.to(device, dt)).sum()
        if b is not None:
            loss = loss + (grads[1] * hb0.to(device, dt)).sum()
        second = torch.autograd.grad(loss, [g] + inputs, allow_unused=True)
        return [y, *grads, *_zeros_for_none(second, [g] + inputs)]

    ours = run(bias_act_cuda.bias_act, dtype)
    ref = run(fused_bias_act_ref, torch.float64)
    names = ["y", "grad_x", "grad_b", "dd_g", "dd_x", "dd_b"] if with_bias else ["y", "grad_x", "dd_g", "dd_x"]
    for name, a, r in zip(names, ours, ref):
        assert a.dtype == dtype and a.shape == r.shape, name
        if name in ("dd_x", "dd_b"):  # piecewise-linear activations: exactly zero
            assert a.abs().max().item() == 0 and r.abs().max().item() == 0, name
        else:
            err = rel_err(a, r)
            assert err < tol, f"{name}: relative error {err:.3g} >= {tol}"


def check_upfirdn2d(shape, up, down, pad, f, dtype, device, tol):
    gen = torch.Generator().manual_seed(_seed(shape, up, down, pad))
    x0 = torch.randn(shape, generator=gen, dtype=torch.float64)

    def run(fn, dt):
        x = x0.to(device, dtype).to(dt).requires_grad_()
        ff = f.to(device, torch.float64)
        y = fn(x, ff, up, down, pad)
        g = torch.randn(y.shape, generator=gen.manual_seed(1), dtype=torch.float64).to(device, dtype).to(dt)
        g.requires_grad_()
        (gx,) = torch.autograd.grad(y, x, g, create_graph=True)
        h = torch.randn(gx.shape, generator=gen.manual_seed(2), dtype=torch.float64).to(device, dtype).to(dt)
        dd_g, dd_x = torch.autograd.grad((gx * h).sum(), (g, x), allow_unused=True)
        return [y, gx, dd_g, torch.zeros_like(x) if dd_x is None else dd_x]

    ours = run(upfirdn2d_cuda.upfirdn2d, dtype)
    ref = run(upfirdn2d_ref, torch.float64)
    for name, a, r in zip(["y", "grad_x", "dd_g", "dd_x"], ours, ref):
        assert a.dtype == dtype and a.shape == r.shape, (name, a.shape, r.shape)
        if name == "dd_x":
            assert a.abs().max().item() == 0 and r.abs().max().item() == 0
        else:
            err = rel_err(a, r)
            assert err < tol, f"{name}: relative error {err:.3g} >= {tol}"


def _filter(kh, kw, seed=0):
    """A random, non-symmetric filter: catches a missing/extra flip."""
    return torch.rand(kh, kw, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + 0.1


def _up_down_pad(up, down, pad):
    up = (up, up) if isinstance(up, int) else tuple(up)
    down = (down, down) if isinstance(down, int) else tuple(down)
    pad = tuple(pad) * 2 if len(pad) == 2 else tuple(pad)
    return up, down, pad


# (shape, up, down, pad, filter shape): the generator's cases (tiled fast path, every tile
# size, odd sizes, batch 1 and 16) and generic ones (other factors, filters, negative pads).
UPFIRDN_CASES = [
    ((16, 5, 17, 13), 1, 1, (1, 1), (4, 4)),
    ((1, 512, 9, 9), 1, 1, (1, 1), (4, 4)),        # blur after the transposed conv, 8x8 tile
    ((16, 8, 17, 17), 1, 1, (1, 1), (4, 4)),       # 16x16 tile
    ((2, 8, 33, 33), 1, 1, (1, 1), (4, 4)),        # 32x32 tile
    ((1, 3, 65, 100), 1, 1, (1, 1), (4, 4)),       # several tiles, ragged edge
    ((2, 3, 20, 23), 1, 1, (-1, 2, 3, -2), (4, 4)),  # negative pads on the fast path
    ((16, 3, 4, 4), 2, 1, (2, 1), (4, 4)),         # ToRGB upsample 4 -> 8
    ((1, 7, 31, 17), 2, 1, (2, 1), (4, 4)),
    ((3, 4, 64, 64), 2, 1, (2, 1), (4, 4)),
    ((2, 3, 9, 40), 2, 1, (1, 2, 0, 3), (4, 4)),
    ((2, 3, 70, 45), 1, 2, (1, 1), (4, 4)),        # 2x downsample (backward of the upsample)
    ((16, 4, 16, 16), 1, 2, (1, 1), (4, 4)),
    ((1, 66000, 3, 3), 1, 1, (1, 1), (4, 4)),      # more planes than grid.z: in-block plane loop
    ((2, 3, 11, 7), (3, 2), (2, 3), (2, -1, 0, 3), (3, 5)),
    ((1, 2, 6, 5), 2, 2, (1, 2), (4, 4)),
    ((3, 2, 13, 8), (2, 1), 1, (2, 1, 0, 0), (4, 1)),
    ((16, 3, 5, 7), 1, 1, (0, 0), (1, 1)),
    ((1, 4, 10, 10), 1, 1, (2, 2), (5, 5)),
    ((1, 1, 1, 1), 4, 1, (3, 0), (4, 4)),
]


# ---- CPU: autograd rules, fake impls, torch.compile ---------------------------------------

@pytest.mark.parametrize("act,alpha,gain", [("lrelu", 0.2, SQRT2), ("relu", 0.0, SQRT2),
                                            ("linear", 0.0, 1.0), ("lrelu", 0.3, -0.7),
                                            ("lrelu", -0.5, 1.0)])
@pytest.mark.parametrize("shape,dim,with_bias", [((2, 5, 3, 4), 1, True), ((4, 9), -1, True),
                                                 ((3, 2, 5), 0, False)])
def test_bias_act_autograd_cpu(shape, dim, act, alpha, gain, with_bias):
    check_bias_act(shape, dim, act, alpha, gain, with_bias, torch.float64, "cpu", 1e-12)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    b = torch.randn(shape[dim], dtype=torch.float64, requires_grad=True) if with_bias else None
    inputs = (x, b) if with_bias else (x,)
    fn = lambda *t: bias_act_cuda.bias_act(t[0], t[1] if with_bias else None, act, alpha, gain, dim)
    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)


@pytest.mark.parametrize("shape,up,down,pad,fshape", [c for c in UPFIRDN_CASES if c[0][1] < 1000])
def test_upfirdn2d_autograd_cpu(shape, up, down, pad, fshape):
    up, down, pad = _up_down_pad(up, down, pad)
    f = _filter(*fshape)
    check_upfirdn2d(shape, up, down, pad, f, torch.float64, "cpu", 1e-12)
    small = (1, 2) + tuple(min(s, 7) for s in shape[2:])
    if (small[2] * up[1] + pad[2] + pad[3] - fshape[0]) >= 0 and (small[3] * up[0] + pad[0] + pad[1] - fshape[1]) >= 0:
        x = torch.randn(small, dtype=torch.float64, requires_grad=True)
        fn = lambda t: upfirdn2d_cuda.upfirdn2d(t, f, up, down, pad)
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))


def test_upfirdn2d_filter_gradient_falls_back_to_reference():
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    f = _filter(4, 4).requires_grad_()
    (gf,) = torch.autograd.grad(upfirdn2d_cuda.upfirdn2d(x, f, (2, 2), (1, 1), (2, 1, 2, 1)).sum(), f)
    (rf,) = torch.autograd.grad(upfirdn2d_ref(x, f, 2, 1, (2, 1)).sum(), f)
    torch.testing.assert_close(gf, rf)


def test_opcheck_cpu():
    x = torch.randn(2, 3, 4, 5, requires_grad=True)
    torch.library.opcheck(bias_act_cuda.bias_act_op, (x, torch.randn(3, requires_grad=True), 2, 0.2, SQRT2, 1))
    torch.library.opcheck(bias_act_cuda.bias_act_op, (x, None, 0, 0.0, 1.0, 3))
    torch.library.opcheck(bias_act_cuda.bias_act_grad_op,
                          (torch.randn(2, 3, 4, 5, requires_grad=True), torch.randn(2, 3, 4, 5),
                           torch.randn(3), 2, 0.2, -1.0, 1, 2))
    torch.library.opcheck(upfirdn2d_cuda.upfirdn2d_op,
                          (torch.randn(2, 3, 5, 6, requires_grad=True), torch.randn(4, 4), 2, 2, 1, 1, 2, 1, 2, 1))


def _generator_block(x, b, k):
    """A slice of the generator: bias+lrelu, blur, 2x FIR upsample."""
    y = fused_bias_act(x, b)
    y = upfirdn2d(y, k, pad=(1, 1))
    return upfirdn2d(y, k * 4, up=2, pad=(2, 1))


def test_torch_compile_public_ops_cpu():
    x = torch.randn(2, 4, 9, 9, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    compiled = torch.compile(_generator_block)
    out = compiled(x, b, BLUR)
    ref = _generator_block(x, b, BLUR)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.autograd.grad(out.square().sum(), (x, b)),
                               torch.autograd.grad(ref.square().sum(), (x, b)), rtol=1e-4, atol=1e-4)


def _custom_op_block(x, b, k):
    y = bias_act_cuda.bias_act(x, b, "lrelu", 0.2, SQRT2, 1)
    y = upfirdn2d_cuda.upfirdn2d(y, k, (1, 1), (1, 1), (1, 1, 1, 1))
    return upfirdn2d_cuda.upfirdn2d(y, k * 4, (2, 2), (1, 1), (2, 1, 2, 1))


def test_torch_compile_custom_ops_fullgraph_cpu():
    """Our custom ops trace into one graph (fake impls) and their autograd compiles."""
    x = torch.randn(2, 4, 9, 9, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    compiled = torch.compile(_custom_op_block, backend="aot_eager", fullgraph=True)
    out = compiled(x, b, BLUR)
    ref = _generator_block(x, b, BLUR)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.autograd.grad(out.square().sum(), (x, b)),
                               torch.autograd.grad(ref.square().sum(), (x, b)), rtol=1e-4, atol=1e-4)


# ---- GPU: the kernels ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cuda_ops():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from torch.utils import cpp_extension
    if cpp_extension.CUDA_HOME is None:
        pytest.skip("no CUDA toolkit to build the extensions")
    modules = {name: extensions.get_module(name) for name in ("bias_act", "upfirdn2d")}
    failed = {name: extensions.failures.get(name) for name, m in modules.items() if m is None}
    assert not failed, f"CUDA extensions failed to build: {failed}"
    return modules


TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}

BIAS_ACT_SHAPES = [((16, 512, 4, 4), 1), ((1, 3, 17, 13), 1), ((16, 64, 33, 31), 1), ((7, 33), 1),
                   ((2, 5, 3, 4, 6), 2), ((3, 4, 5), -1), ((1, 1, 1, 1), 1), ((2, 3, 300, 7), 1),
                   ((5, 1000), 0)]
BIAS_ACT_CONFIGS = [("lrelu", 0.2, SQRT2), ("relu", 0.0, SQRT2), ("linear", 0.0, 1.0),
                    ("lrelu", 0.1, -0.5)]


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("act,alpha,gain", BIAS_ACT_CONFIGS)
@pytest.mark.parametrize("shape,dim", BIAS_ACT_SHAPES)
def test_bias_act_cuda(cuda_ops, shape, dim, act, alpha, gain, dtype):
    with_bias = (len(shape) + dim) % 2 == 0 or act == "lrelu"
    check_bias_act(shape, dim, act, alpha, gain, with_bias, dtype, "cuda", TOL[dtype])


@needs_cuda
def test_bias_act_cuda_bfloat16_and_mixed_bias(cuda_ops):
    check_bias_act((4, 16, 9, 9), 1, "lrelu", 0.2, SQRT2, True, torch.bfloat16, "cuda", TOL[torch.bfloat16])
    x = torch.randn(2, 8, 5, 5, device="cuda", dtype=torch.float16)
    b = torch.randn(8, device="cuda", dtype=torch.float32)  # fp32 parameter, fp16 activations
    out = bias_act_cuda.bias_act(x, b, "lrelu", 0.2, SQRT2, 1)
    assert out.dtype == torch.float16
    assert rel_err(out, fused_bias_act_ref(x.double(), b.half().double())) < TOL[torch.float16]


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("shape,up,down,pad,fshape", UPFIRDN_CASES)
def test_upfirdn2d_cuda(cuda_ops, shape, up, down, pad, fshape, dtype):
    up, down, pad = _up_down_pad(up, down, pad)
    check_upfirdn2d(shape, up, down, pad, _filter(*fshape), dtype, "cuda", TOL[dtype])


@needs_cuda
def test_upfirdn2d_cuda_blur_kernel_bfloat16_and_layouts(cuda_ops):
    check_upfirdn2d((4, 16, 33, 33), (1, 1), (1, 1), (1, 1, 1, 1), BLUR, torch.bfloat16, "cuda",
                    TOL[torch.bfloat16])
    x = torch.randn(2, 6, 16, 16, device="cuda").to(memory_format=torch.channels_last)
    f = BLUR.cuda()
    torch.testing.assert_close(upfirdn2d_cuda.upfirdn2d(x, f, (2, 2), (1, 1), (2, 1, 2, 1)),
                               upfirdn2d_ref(x.double(), f.double(), 2, 1, (2, 1)).float(),
                               rtol=1e-5, atol=1e-5)


@needs_cuda
@pytest.mark.parametrize("act,alpha,gain", BIAS_ACT_CONFIGS)
def test_bias_act_cuda_gradcheck(cuda_ops, act, alpha, gain):
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(2, 3, 4, 5, device="cuda", dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(3, device="cuda", dtype=torch.float64, generator=gen, requires_grad=True)
    fn = lambda x, b: bias_act_cuda.bias_act(x, b, act, alpha, gain, 1)
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


@needs_cuda
@pytest.mark.parametrize("shape,up,down,pad,fshape", [
    ((1, 2, 5, 6), 1, 1, (1, 1), (4, 4)),
    ((2, 2, 4, 5), 2, 1, (2, 1), (4, 4)),
    ((1, 2, 9, 8), 1, 2, (1, 1), (4, 4)),
    ((1, 2, 5, 4), (3, 2), (2, 1), (2, -1, 0, 3), (3, 5)),
])
def test_upfirdn2d_cuda_gradcheck(cuda_ops, shape, up, down, pad, fshape):
    up, down, pad = _up_down_pad(up, down, pad)
    x = torch.randn(shape, device="cuda", dtype=torch.float64, requires_grad=True)
    f = _filter(*fshape).cuda()
    fn = lambda t: upfirdn2d_cuda.upfirdn2d(t, f, up, down, pad)
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@needs_cuda
def test_torch_compile_cuda(cuda_ops):
    x = torch.randn(2, 4, 9, 9, device="cuda", requires_grad=True)
    b = torch.randn(4, device="cuda", requires_grad=True)
    k = BLUR.cuda()
    out = torch.compile(_custom_op_block, fullgraph=True)(x, b, k)
    ref = _generator_block(x.double(), b.double(), k.double())
    assert rel_err(out, ref) < 1e-5
    (gx,) = torch.autograd.grad(out.square().sum(), x)
    (rx,) = torch.autograd.grad(ref.square().sum(), x)
    assert rel_err(gx, rx) < 1e-4
    out = torch.compile(_generator_block)(x, b, k)  # public entry points (may graph-break)
    assert rel_err(out, ref) < 1e-5
