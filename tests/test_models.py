"""Model building blocks, a small generator, and the official parameter layout.

Everything here is random-initialised and small (or built on the meta device), so the
file runs in seconds; numerical parity with the official release is covered by the
golden-data tests.
"""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from blendgan.models import (EqualLinear, Generator, ModulatedConv2d, PSPEncoder, StyleEncoder, gram_matrix,
                             n_latent_for)
from blendgan.models.layers import StyledConv, WinogradConv2d
from blendgan.models.style_encoder import FEATURE_LAYERS, FeatureExtractor, gram_dim
from blendgan.ops import upfirdn2d_ref

try:
    from tests.conftest import golden_dir
except ImportError:  # tests/ not a package
    from conftest import golden_dir


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@torch.no_grad()
def randomize(module: nn.Module, seed: int, scale: float = 1.0) -> nn.Module:
    """Overwrite every parameter and float buffer (except the fixed FIR kernels) with
    N(0, scale^2) drawn from a private generator."""
    gen = torch.Generator().manual_seed(seed)
    tensors = [t for _, t in module.named_parameters()]
    tensors += [t for name, t in module.named_buffers() if not name.endswith("kernel")]
    for t in tensors:
        if t.is_floating_point():
            t.copy_(torch.randn(t.shape, generator=gen, dtype=t.dtype) * scale)
    return module


def build(cls, *args, **kwargs):
    """Construct without consuming the global RNG (constructors call torch.randn)."""
    with torch.random.fork_rng(devices=[]):
        return cls(*args, **kwargs)


# -- ModulatedConv2d --------------------------------------------------------------------------
def independent_modconv(layer: ModulatedConv2d, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """Sample by sample with plain F.conv2d / F.conv_transpose2d, from the StyleGAN2 formulas."""
    in_ch = layer.weight.shape[2]
    k = layer.weight.shape[-1]
    lin = layer.modulation
    s_all = F.linear(style, lin.weight * (1 / math.sqrt(style.shape[1]))) + lin.bias
    outs = []
    for i in range(x.shape[0]):
        w = layer.weight[0] / math.sqrt(in_ch * k * k) * s_all[i].view(1, -1, 1, 1)  # [out, in, k, k]
        if layer.demodulate:
            w = w / torch.sqrt((w ** 2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        xi = x[i:i + 1]
        if layer.upsample:
            y = F.conv_transpose2d(xi, w.transpose(0, 1), stride=2)
            y = upfirdn2d_ref(y, layer.blur.kernel, pad=layer.blur.pad)
        else:
            y = F.conv2d(xi, w, padding=k // 2)
        outs.append(y)
    return torch.cat(outs)


@pytest.mark.parametrize("kernel", [1, 3])
@pytest.mark.parametrize("upsample", [False, True])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_paths_agree(kernel, upsample, demodulate):
    layer = build(ModulatedConv2d, 6, 5, kernel, 8, demodulate=demodulate, upsample=upsample)
    randomize(layer, seed=kernel * 4 + upsample * 2 + demodulate)
    with torch.no_grad():
        layer.modulation.bias.add_(1.0)  # like the bias_init=1 of real checkpoints
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(3, 6, 7, 5, generator=gen)  # odd, non-square
    style = torch.randn(3, 8, generator=gen)
    with torch.no_grad():
        s = layer.modulation(style)
        shared = layer.forward_shared(x, s)
        grouped = layer.forward_grouped(x, s)
        full = layer(x, style)
        single = torch.cat([layer(x[i:i + 1], style[i:i + 1]) for i in range(3)])
        want = independent_modconv(layer.double(), x.double(), style.double())
    h, w = (14, 10) if upsample else (7, 5)
    assert shared.shape == grouped.shape == (3, 5, h, w)
    assert rel_err(shared, grouped) < 1e-5
    assert rel_err(shared.double(), want) < 1e-5
    assert rel_err(grouped.double(), want) < 1e-5
    assert rel_err(full, want.float()) < 1e-5
    assert rel_err(single, want.float()) < 1e-5


@pytest.mark.parametrize("upsample,in_ch,out_ch,size", [(False, 32, 48, 8), (True, 64, 32, 8)])
def test_styled_conv_winograd_path_matches_independent_reference(upsample, in_ch, out_ch, size):
    """CPU inference of a layer wide enough for the Winograd path (checked, so the test
    cannot pass on the direct path) equals conv -> noise -> bias -> lrelu by plain convs."""
    layer = randomize(build(StyledConv, in_ch, out_ch, 3, 16, upsample=upsample), seed=21 + upsample, scale=0.5)
    with torch.no_grad():
        layer.conv.modulation.bias.add_(1.0)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, in_ch, size, size, generator=gen).contiguous(memory_format=torch.channels_last)
    style = torch.randn(2, 16, generator=gen)
    h = 2 * size if upsample else size
    noise = torch.randn(1, 1, h, h, generator=gen)
    assert layer.uses_winograd(x)
    with torch.inference_mode():
        got = layer(x, style, noise)
    conv = independent_modconv(layer.conv.double(), x.double(), style.double())
    want = F.leaky_relu(conv + layer.noise.weight.double() * noise.double()
                        + layer.activate.bias.double().view(1, -1, 1, 1), 0.2) * math.sqrt(2)
    layer.float()
    assert rel_err(got.double(), want) < 1e-5


def test_winograd_weights_follow_weight_changes():
    """The transformed weights are cached, but never stale: in-place writes, a loaded state
    dict and a dtype round trip are all seen."""
    layer = randomize(build(StyledConv, 128, 128, 3, 16), seed=4)
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(1, 128, 8, 8, generator=gen)
    style, noise = torch.randn(1, 16, generator=gen), torch.zeros(1, 1, 8, 8)
    other = randomize(build(StyledConv, 128, 128, 3, 16), seed=5)

    def run(module):
        with torch.inference_mode():
            return module(x, style, noise)

    def direct(module):  # the autograd path never uses Winograd
        with torch.enable_grad():
            return module(x, style, noise).detach()

    first = run(layer)
    assert rel_err(first, direct(layer)) < 1e-5
    with torch.no_grad():
        layer.conv.weight.mul_(-0.5)
    assert rel_err(run(layer), direct(layer)) < 1e-5
    layer.load_state_dict(other.state_dict())
    assert rel_err(run(layer), direct(other)) < 1e-5
    layer.double().float()
    assert rel_err(run(layer), direct(other)) < 1e-5


def test_winograd_layers_built_in_inference_mode_empty_batches_and_moves():
    """Layers made under inference_mode (no version counters), batches of 0, and a move to
    another dtype (the old transformed copy is dropped, not kept alive)."""
    x = torch.randn(1, 128, 8, 8, generator=torch.Generator().manual_seed(7))
    style, noise = torch.randn(1, 16, generator=torch.Generator().manual_seed(8)), torch.zeros(1, 1, 8, 8)
    made = randomize(build(StyledConv, 128, 128, 3, 16), seed=4)
    with torch.inference_mode():
        layer = build(StyledConv, 128, 128, 3, 16)
        layer.load_state_dict(made.state_dict())
        assert layer.conv.weight.is_inference() and layer.uses_winograd(x)
        got = layer(x, style, noise)
        assert tuple(layer(x[:0], style[:0], noise).shape) == (0, 128, 8, 8)
        conv = build(WinogradConv2d, 128, 16, 3, 1, 1)
        assert tuple(conv(torch.zeros(0, 128, 32, 32)).shape) == (0, 16, 32, 32)
    with torch.enable_grad():
        want = made(x, style, noise).detach()
    assert rel_err(got, want) < 1e-5
    made.eval()
    with torch.no_grad():
        made(x, style, noise)
        assert made.conv._winograd._value is not None
        made.double()
        assert made.conv._winograd._value is None


@pytest.mark.parametrize("bias", [True, False])
def test_winograd_conv2d_is_conv2d(bias):
    """Same parameters as nn.Conv2d; CPU inference of an eligible layer takes the Winograd
    path and matches float64 conv2d; ineligible layers and autograd use nn.Conv2d itself."""
    conv = randomize(build(WinogradConv2d, 128, 16, 3, 1, 1, bias=bias), seed=31, scale=0.1)
    plain = build(nn.Conv2d, 128, 16, 3, 1, 1, bias=bias)
    plain.load_state_dict(conv.state_dict())
    x = torch.randn(2, 128, 32, 36, generator=torch.Generator().manual_seed(32))
    with torch.no_grad():
        assert conv.uses_winograd(x)
        got = conv(x)
    want = F.conv2d(x.double(), conv.weight.double(), None if conv.bias is None else conv.bias.double(), padding=1)
    assert rel_err(got.double(), want) < 1e-5
    with torch.no_grad():
        assert not conv.uses_winograd(x[:, :, :16])                     # map too small
        strided = randomize(build(WinogradConv2d, 128, 16, 3, 2, 1, bias=bias), seed=33)
        assert not strided.uses_winograd(x)
        narrow = build(WinogradConv2d, 3, 16, 3, 1, 1, bias=bias)      # an input layer: too few channels
        assert not narrow.uses_winograd(x[:, :3])
    assert not conv.uses_winograd(x)                                   # autograd: nn.Conv2d's forward
    y = conv(x)
    assert y.requires_grad and rel_err(y.detach(), plain(x).detach()) < 1e-6


def test_modulated_conv_upsample_blur_is_official():
    """Blur kernel and padding of the upsampling conv follow rosinality's StyleGAN2."""
    k1 = torch.tensor([1.0, 3.0, 3.0, 1.0])
    want_kernel = torch.outer(k1, k1) / 64 * 4  # normalised, times factor^2
    for ksize, pad in ((3, (1, 1)), (1, (2, 2))):
        layer = build(ModulatedConv2d, 2, 2, ksize, 4, upsample=True)
        torch.testing.assert_close(layer.blur.kernel, want_kernel)
        assert tuple(layer.blur.pad) == pad


def test_modulated_conv_demodulation_normalises_weights():
    """With demodulation the effective per-sample filters have unit norm per output channel,
    so a scaled style changes nothing."""
    layer = randomize(build(ModulatedConv2d, 4, 3, 3, 6), seed=3)
    gen = torch.Generator().manual_seed(12)
    x = torch.randn(2, 4, 5, 5, generator=gen)
    s = torch.rand(2, 4, generator=gen) + 0.5
    with torch.no_grad():
        a = layer.forward_shared(x, s)
        b = layer.forward_shared(x, s * 7.0)
    assert rel_err(a, b) < 1e-5


# -- EqualLinear ------------------------------------------------------------------------------
@pytest.mark.parametrize("lr_mul", [0.01, 1.0])
@pytest.mark.parametrize("activation", [None, "fused_lrelu"])
def test_equal_linear(lr_mul, activation):
    layer = build(EqualLinear, 7, 5, bias_init=0.3, lr_mul=lr_mul, activation=activation)
    # initial state: weight ~ randn / lr_mul, bias = bias_init (stored unscaled)
    assert torch.equal(layer.bias.detach(), torch.full((5,), 0.3))
    assert 0.3 / lr_mul < layer.weight.detach().std().item() < 3 / lr_mul
    randomize(layer, seed=13, scale=1 / lr_mul)
    x = torch.randn(4, 7, generator=torch.Generator().manual_seed(14))
    with torch.no_grad():
        want = F.linear(x, layer.weight * lr_mul / math.sqrt(7), layer.bias * lr_mul)
        if activation:
            want = F.leaky_relu(want, 0.2) * math.sqrt(2)
        out = layer(x)
    assert out.shape == (4, 5)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-6)


def test_equal_linear_without_bias():
    layer = randomize(build(EqualLinear, 3, 2, bias=False, lr_mul=0.5), seed=15)
    assert layer.bias is None
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(16))
    with torch.no_grad():
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight * 0.5 / math.sqrt(3)))


# -- Generator (small) ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_gen() -> Generator:
    g = build(Generator, 32, style_dim=16, n_mlp=2, channel_multiplier=1, style_encoder=False)
    randomize(g, seed=17)
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith("noise.weight"):
                p.fill_(0.5)
    return g.eval()


def test_generator_does_not_touch_global_rng():
    state = torch.random.get_rng_state()
    build(Generator, 8, style_dim=4, n_mlp=1, style_encoder=False)
    assert torch.equal(state, torch.random.get_rng_state())


def test_blendgan_api_never_reaches_for_the_global_rng_or_takes_pixels(small_gen):
    from blendgan import BlendGAN
    m = BlendGAN(small_gen)
    state = torch.random.get_rng_state()
    with pytest.raises(TypeError, match="generator"):
        m.mean_latent(8)
    with pytest.raises(TypeError, match="torch.Generator"):
        m.mean_latent(8, generator=None)
    with pytest.raises(ValueError, match="needs a generator"):
        m.synthesize(z=torch.zeros(1, 16), noise="random")
    with torch.no_grad():
        a = m.mean_latent(8, generator=torch.Generator().manual_seed(1))
        b = m.mean_latent(8, generator=torch.Generator().manual_seed(1))
        m.synthesize(z=torch.zeros(1, 16), noise="random", generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and torch.equal(state, torch.random.get_rng_state())
    with pytest.raises(ValueError, match="floating-point"):
        m.embed_style(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


def test_generator_layout(small_gen):
    g = small_gen
    assert g.n_latent == 8 == n_latent_for(32)
    assert g.num_layers == 7
    assert [tuple(n.shape) for n in g.stored_noise()] == \
        [(1, 1, 4, 4), (1, 1, 8, 8), (1, 1, 8, 8), (1, 1, 16, 16), (1, 1, 16, 16), (1, 1, 32, 32), (1, 1, 32, 32)]
    assert tuple(g.add_weight.shape) == (1, 8, 1)
    assert not hasattr(g, "embedder")


@pytest.fixture(scope="module")
def gen_outputs(small_gen):
    """One batch of 3 (shared-weight path) and the same 3 latents one at a time (grouped path)."""
    w = torch.randn(3, 8, 16, generator=torch.Generator().manual_seed(18))
    with torch.no_grad():
        batch = small_gen(w)
        singles = [small_gen(w[i:i + 1]) for i in range(3)]
    return w, batch, singles


def test_generator_output_and_batch_invariance(gen_outputs):
    w, batch, singles = gen_outputs
    assert batch.shape == (3, 3, 32, 32)
    assert all(s.shape == (1, 3, 32, 32) for s in singles)
    assert torch.isfinite(batch).all()
    assert rel_err(batch, torch.cat(singles)) < 1e-5
    # the three samples differ (the latents matter)
    assert rel_err(batch[0], batch[1]) > 1e-2


def test_generator_noise(small_gen, gen_outputs):
    w, _, singles = gen_outputs
    rnd = small_gen.random_noise(1, generator=torch.Generator().manual_seed(5))
    rnd_again = small_gen.random_noise(1, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(r1, r2) for r1, r2 in zip(rnd, rnd_again))
    assert [tuple(r.shape) for r in rnd] == [tuple(n.shape) for n in small_gen.stored_noise()]
    four = small_gen.random_noise(4)
    assert [tuple(r.shape) for r in four] == [(4,) + tuple(n.shape[1:]) for n in small_gen.stored_noise()]
    with torch.no_grad():
        again = small_gen(w[:1])
        # per-sample noise maps: sample 0 gets the stored buffers, sample 1 fresh noise
        mixed = [torch.cat([n, r]) for n, r in zip(small_gen.stored_noise(), rnd)]
        pair = small_gen(w[:1].expand(2, -1, -1), noise=mixed)
    assert torch.equal(again, singles[0])  # default noise is deterministic
    assert rel_err(pair[:1], singles[0]) < 1e-5  # ... and it is the stored buffers
    assert rel_err(pair[1:], singles[0]) > 1e-3  # noise weights are non-zero: the noise matters


def test_generator_rejects_bad_w_plus(small_gen):
    with pytest.raises(ValueError, match="w_plus"):
        small_gen(torch.zeros(1, 7, 16))
    with pytest.raises(ValueError, match="w_plus"):
        small_gen(torch.zeros(8, 16))


def _blend_inputs(g, seed, n=2):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, g.n_latent, g.style_dim, generator=gen),
            torch.randn(n, g.style_dim, generator=gen))


@pytest.mark.parametrize("index", [0, 1, 3, 6, 8])
def test_blend_with_index(small_gen, index):
    g = small_gen
    raw = torch.tensor([0.3, -0.4, 1.7, 0.9, 0.0, 1.0, 2.5, 0.55])
    with torch.no_grad():
        g.add_weight.copy_(raw.view(1, 8, 1))
    w_face, w_style = _blend_inputs(g, seed=index)
    with torch.no_grad():
        out = g.blend(w_face, w_style, add_weight_index=index)
    assert out.shape == w_face.shape
    assert torch.equal(out[:, :index], w_face[:, :index])
    a = raw.clamp(0, 1)
    for layer in range(index, 8):
        want = w_face[:, layer] * a[layer] + w_style * (1 - a[layer])
        torch.testing.assert_close(out[:, layer], want)
    # clamping: the raw weights -0.4 -> pure style, 1.7 and 2.5 -> pure face
    if index <= 1:
        torch.testing.assert_close(out[:, 1], w_style)
    if index <= 2:
        torch.testing.assert_close(out[:, 2], w_face[:, 2])


def test_blend_without_index_uses_learned_weights(small_gen):
    g = small_gen
    raw = torch.linspace(-0.5, 1.5, 8)
    with torch.no_grad():
        g.add_weight.copy_(raw.view(1, 8, 1))
    w_face, w_style = _blend_inputs(g, seed=20)
    w_style_plus = torch.randn(2, 8, g.style_dim, generator=torch.Generator().manual_seed(21))
    with torch.no_grad():
        out = g.blend(w_face, w_style)
        out_plus = g.blend(w_face, w_style_plus)
    a = raw.clamp(0, 1).view(1, 8, 1)
    torch.testing.assert_close(out, w_face * a + w_style[:, None] * (1 - a))
    torch.testing.assert_close(out_plus, w_face * a + w_style_plus * (1 - a))
    # first layer has raw -0.5 -> clamped to 0 -> pure style even though no index is given
    torch.testing.assert_close(out[:, 0], w_style)
    torch.testing.assert_close(out[:, -1], w_face[:, -1])
    weights = g.blend_weights(None)
    assert weights.min() >= 0 and weights.max() <= 1


def test_n_latent_and_size_validation():
    assert n_latent_for(256) == 14
    assert n_latent_for(1024) == 18
    assert n_latent_for(32) == 8
    for bad in (4, 0, 12, 100, 257):
        with pytest.raises(ValueError, match="power of two"):
            Generator(bad, style_encoder=False)


# -- style encoder (meta device: shapes only) -------------------------------------------------
def test_gram_dim():
    assert gram_dim() == 64 ** 2 + 128 ** 2 + 256 ** 2 + 512 ** 2 + 512 ** 2 == 610304


def test_style_encoder_layout_matches_torchvision_vgg19():
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):
        enc = StyleEncoder()
        ref = torchvision.models.vgg19(weights=None).features
    ours = enc.embedder.feature_extractor.vgg_layers
    assert len(ours) == len(ref)
    conv_idx = [i for i, m in enumerate(ours) if isinstance(m, nn.Conv2d)]
    ref_conv_idx = [i for i, m in enumerate(ref) if isinstance(m, nn.Conv2d)]
    assert conv_idx == ref_conv_idx
    # same module kinds (our convolutions subclass nn.Conv2d) with the same hyperparameters
    assert all(isinstance(o, type(r)) for o, r in zip(ours, ref))
    assert [m.extra_repr() for m in ours] == [m.extra_repr() for m in ref]
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    # Gram features are taken right after relu1_2, relu2_2, relu3_4, relu4_4, relu5_4: the ReLU
    # that is followed by a max-pool in each block.
    pools = [i for i, m in enumerate(ref) if isinstance(m, nn.MaxPool2d)]
    assert tuple(p - 1 for p in pools) == FEATURE_LAYERS
    assert all(isinstance(ref[i], nn.ReLU) for i in FEATURE_LAYERS)
    # MLP: 610304 -> 512 -> 512 -> 512 -> 512
    shapes = [tuple(layer.weight.shape) for layer in enc.embedder_mlp]
    assert shapes == [(512, 610304), (512, 512), (512, 512), (512, 512)]
    assert [layer.activation for layer in enc.embedder_mlp] == ["fused_lrelu"] * 3 + [None]


def test_feature_extractor_taps_the_right_layers():
    """Real (small) forward: the features equal torchvision's VGG19 outputs at FEATURE_LAYERS."""
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):  # skip the costly default inits (and VGG's 100M-parameter classifier)
        fx = FeatureExtractor()
        ref = torchvision.models.vgg19(weights=None).features
    fx = randomize(fx.to_empty(device="cpu"), seed=22, scale=0.05)
    ref = ref.to_empty(device="cpu")
    ref.load_state_dict(fx.vgg_layers.state_dict())
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(23))
    with torch.no_grad():
        feats = fx(x)
        want, y = [], x
        for i, layer in enumerate(ref):
            y = layer(y)
            if i in FEATURE_LAYERS:
                want.append(y.clone())
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512, 512]
    assert len(feats) == len(want) == 5
    # our wide layers run Winograd convolutions (float32 rounding ~1e-6); a wrong tap is O(1)
    for a, b in zip(feats, want):
        assert a.shape == b.shape and rel_err(a, b) < 1e-5


def test_gram_matrix():
    gen = torch.Generator().manual_seed(24)
    feat = torch.randn(2, 5, 3, 4, generator=gen, dtype=torch.float64)
    want = torch.einsum("nchw,ndhw->ncd", feat, feat) / (5 * 3 * 4)
    out = gram_matrix(feat)
    assert out.shape == (2, 5, 5)
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(out, out.transpose(1, 2))


# -- official parameter layout ----------------------------------------------------------------
@pytest.fixture(scope="module")
def official_keys() -> dict:
    path = golden_dir() / "official_keys.json"
    if not path.exists():
        pytest.skip(f"official key list not found at {path} (set BLENDGAN_GOLDEN)")
    return json.loads(path.read_text())


def _layout(module: nn.Module) -> dict[str, tuple[list[int], str]]:
    return {k: (list(v.shape), str(v.dtype).replace("torch.", "")) for k, v in module.state_dict().items()}


def _official(entries) -> dict[str, tuple[list[int], str]]:
    return {name: (list(shape), dtype) for name, shape, dtype in entries}


def _assert_same_layout(ours: dict, official: dict):
    missing = sorted(set(official) - set(ours))
    extra = sorted(set(ours) - set(official))
    assert not missing and not extra, f"missing {missing[:5]}, unexpected {extra[:5]}"
    wrong = {k: (ours[k], official[k]) for k in official if ours[k] != official[k]}
    assert not wrong, f"shape/dtype mismatches: {dict(list(wrong.items())[:5])}"


def test_psp_encoder_layout(official_keys):
    with torch.device("meta"):
        psp = PSPEncoder(14)
    want = _official(official_keys["psp_encoder_256"])
    want["latent_avg"] = ([14, 512], "float32")
    _assert_same_layout(_layout(psp), want)


@pytest.mark.parametrize("size", [256, 1024])
def test_generator_layout_matches_official(official_keys, size):
    with torch.device("meta"):
        g = Generator(size)
    _assert_same_layout(_layout(g), _official(official_keys[f"g_ema_{size}"]))


@pytest.mark.parametrize("stride,size", [(1, 7), (2, 8), (2, 9), (3, 10)])
def test_psp_shortcut_subsample_is_the_official_maxpool(stride, size):
    from blendgan.models.psp import Subsample
    x = torch.randn(2, 4, size, size + 1)
    torch.testing.assert_close(Subsample(stride)(x), torch.nn.MaxPool2d(1, stride)(x), rtol=0, atol=0)
    nhwc = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(Subsample(stride)(nhwc), torch.nn.MaxPool2d(1, stride)(x), rtol=0, atol=0)
