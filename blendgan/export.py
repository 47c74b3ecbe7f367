"""ONNX export: the four networks of a BlendGAN model as standard-operator graphs.

    from blendgan import BlendGAN
    from blendgan.export import export_onnx
    model = BlendGAN.from_pretrained("pretrained_models/blendgan.pt",
                                     psp_encoder="pretrained_models/psp_encoder.pt")
    export_onnx(model, "onnx/")

writes, each with a dynamic batch axis N (``blendgan export`` on the command line):

=====================  ==============================================  ==========================
file                   inputs                                          output
=====================  ==============================================  ==========================
style_encoder.onnx     ``image`` [N, 3, 256, 256] float32 in [-1, 1]   ``z_embed`` [N, 512]
psp_encoder.onnx       ``image`` [N, 3, 256, 256]                      ``w_plus`` [N, n_latent, 512]
mapping.onnx           ``z`` [N, 512]                                  ``w`` [N, 512]
synthesis.onnx         ``w_plus`` [N, n_latent, 512], ``z_embed``      ``image`` [N, 3, size, size]
                       [N, 512], ``face_weight`` [N, n_latent]
=====================  ==============================================  ==========================

and ``blendgan.json`` beside them (see :func:`metadata`).  The encoders take 256×256 images:
the official code adaptive-average-pools any input to 256×256 first, which a caller does
before the graph (``examples/onnx_stylize.py`` shows it in numpy).  ``psp_encoder.onnx`` adds
the encoder's ``latent_avg``; ``mapping.onnx`` is the face mapping network, truncation is left
to the caller (``w = latent_avg + t·(w − latent_avg)`` with the values of ``blendgan.json``).
``synthesis.onnx`` maps ``z_embed`` through the style mapping network, blends
``w+ = w_plus·face_weight + w_style·(1 − face_weight)`` layer by layer and draws the image with
the checkpoint's stored noise maps: ``face_weight = add_weight`` of ``blendgan.json`` with its
first ``add_weight_index`` entries set to 1 is the official result.

The graphs are traced from the plain-PyTorch reference paths (no Winograd convolutions, no
compiled ops), hold only operators of the standard ONNX domain, and are checked with
``onnx.checker`` before they are written (atomically).  Needs the ``export`` extra
(``pip install "blendgan[export]"``: onnx, onnxscript; onnxruntime to run them).
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import __version__, defaults, io
from .errors import BlendGANError, DependencyError, UsageError
from .model import BlendGAN
from .models import Generator
from .models.layers import StyledConv, ToRGB
from .models.style_encoder import STYLE_POOL, gram_matrix
from .ops import winograd

log = logging.getLogger("blendgan")

INSTALL_HINT = 'pip install "blendgan[export]"'
ENCODER_SIZE = STYLE_POOL  # both encoders pool their input to 256x256 (pSp's FACE_POOL is the same)
METADATA_FILE = "blendgan.json"
#: every graph :func:`export_onnx` can write, in its order
GRAPH_NAMES = ("style_encoder", "psp_encoder", "mapping", "synthesis")
#: a single ONNX file (protobuf) holds at most 2 GiB
PROTOBUF_LIMIT = 2 ** 31


class ExportError(BlendGANError, RuntimeError):
    """A graph could not be exported or failed its check."""


# -- graph modules: the reference paths, batch-size agnostic ---------------------------------

class StyleEncoderGraph(nn.Module):
    """image [N, 3, 256, 256] -> z_embed [N, 512] (VGG19 Gram matrices -> MLP)."""

    def __init__(self, generator: Generator):
        super().__init__()
        self.encoder = generator.embedder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        feats = self.encoder.embedder.feature_extractor(image)  # 256x256: the official pooling is the identity
        grams = torch.cat([gram_matrix(f).flatten(1) for f in feats], dim=1)
        return self.encoder.embedder_mlp(grams)


class PSPGraph(nn.Module):
    """image [N, 3, 256, 256] -> W+ [N, n_latent, 512], ``latent_avg`` added."""

    def __init__(self, psp: nn.Module):
        super().__init__()
        self.psp = psp

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.psp.encoder(image) + self.psp.latent_avg.unsqueeze(0)


class MappingGraph(nn.Module):
    """z [N, 512] -> w [N, 512] through the face mapping network (no truncation)."""

    def __init__(self, generator: Generator):
        super().__init__()
        self.generator = generator

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator.mapping(z)


def _styled_conv(layer: StyledConv, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    # the shared-weight formulation serves every batch size (the grouped one is per-sample)
    out, demod = layer.conv.forward_parts(x, layer.conv.modulation(w))
    return layer.activate(layer.noise(out * demod, noise))


def _to_rgb(layer: ToRGB, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
    out, _ = layer.conv.forward_parts(x, layer.conv.modulation(w))  # no demodulation in ToRGB
    out = out + layer.bias
    return out if skip is None else out + layer.upsample(skip)


class SynthesisGraph(nn.Module):
    """(w_plus [N, n_latent, 512], z_embed [N, 512], face_weight [N, n_latent]) -> image
    [N, 3, size, size]: style mapping, weighted blending, synthesis with the stored noise."""

    def __init__(self, generator: Generator):
        super().__init__()
        self.generator = generator

    def forward(self, w_plus: torch.Tensor, z_embed: torch.Tensor, face_weight: torch.Tensor) -> torch.Tensor:
        g = self.generator
        w_style = g.style_mapping(z_embed).unsqueeze(1)
        a = face_weight.unsqueeze(2)
        w = w_plus * a + w_style * (1 - a)
        noise = g.stored_noise()
        out = _styled_conv(g.conv1, g.input(w.shape[0]), w[:, 0], noise[0])
        skip = _to_rgb(g.to_rgb1, out, w[:, 1], None)
        i = 1
        for conv_up, conv, n1, n2, to_rgb in zip(g.convs[::2], g.convs[1::2], noise[1::2], noise[2::2], g.to_rgbs):
            out = _styled_conv(conv_up, out, w[:, i], n1)
            out = _styled_conv(conv, out, w[:, i + 1], n2)
            skip = _to_rgb(to_rgb, out, w[:, i + 2], skip)
            i += 2
        return skip


# -- the graphs ------------------------------------------------------------------------------

@dataclass(frozen=True)
class GraphSpec:
    """One exported graph: its file name, input names and shapes (batch first), output name."""
    name: str
    inputs: tuple[tuple[str, tuple[int, ...]], ...]
    output: str

    @property
    def filename(self) -> str:
        return f"{self.name}.onnx"


def graph_specs(model: BlendGAN) -> list[GraphSpec]:
    """The graphs :func:`export_onnx` writes for ``model`` (pSp only when it has one)."""
    d, n = model.generator.style_dim, model.n_latent
    image = (3, ENCODER_SIZE, ENCODER_SIZE)
    specs = [GraphSpec("style_encoder", (("image", image),), "z_embed")] if model.has_style_encoder else []
    if model.psp is not None:
        specs.append(GraphSpec("psp_encoder", (("image", image),), "w_plus"))
    specs.append(GraphSpec("mapping", (("z", (d,)),), "w"))
    specs.append(GraphSpec("synthesis", (("w_plus", (n, d)), ("z_embed", (d,)), ("face_weight", (n,))), "image"))
    return specs


def graph_module(model: BlendGAN, name: str) -> nn.Module:
    """The module traced for graph ``name`` (shares ``model``'s weights)."""
    g = model.generator
    if name == "style_encoder":
        return StyleEncoderGraph(g)
    if name == "psp_encoder":
        return PSPGraph(model.psp)
    if name == "mapping":
        return MappingGraph(g)
    if name == "synthesis":
        return SynthesisGraph(g)
    raise UsageError(f"unknown graph {name!r}; expected one of {', '.join(GRAPH_NAMES)}")


def example_inputs(spec: GraphSpec, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random float32 inputs for ``spec`` (images in [-1, 1], face weights in [0, 1])."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for name, shape in spec.inputs:
        if name == "image":
            out.append(torch.rand(batch, *shape, generator=g) * 2 - 1)
        elif name == "face_weight":
            out.append(torch.rand(batch, *shape, generator=g))
        else:
            out.append(torch.randn(batch, *shape, generator=g))
    return tuple(out)


def metadata(model: BlendGAN, opset: int = defaults.ONNX_OPSET, names: tuple[str, ...] | None = None) -> dict:
    """What ``blendgan.json`` holds: ``size``, ``n_latent``, ``style_dim``, ``add_weight``
    (clamped to [0, 1], one per W+ layer), ``add_weight_index`` (the transfer job's default),
    ``latent_avg`` [style_dim] (the truncation centre), ``truncation`` (the default psi),
    ``encoder_size`` and the inputs and outputs of the graphs (all, or ``names``)."""
    g = model.generator
    avg = model.truncation_latent().detach().to("cpu", torch.float32).reshape(-1)
    return {
        "format": "blendgan-onnx",
        "version": 1,
        "blendgan": __version__,
        "size": model.size,
        "n_latent": model.n_latent,
        "style_dim": g.style_dim,
        "encoder_size": ENCODER_SIZE,
        "add_weight": g.blend_weights().detach().to("cpu", torch.float32).reshape(-1).tolist(),
        "add_weight_index": defaults.TRANSFER_ADD_WEIGHT_INDEX,
        "latent_avg": avg.tolist(),
        "latent_avg_source": "checkpoint" if model.latent_avg is not None else
                             f"mean of {defaults.TRUNCATION_MEAN} mapped samples (seed {defaults.MEAN_LATENT_SEED})",
        "truncation": float(model.default_truncation),
        "opset": opset,
        "graphs": {spec.name: {"file": spec.filename,
                               "inputs": {name: ["N", *shape] for name, shape in spec.inputs},
                               "output": spec.output}
                   for spec in graph_specs(model) if names is None or spec.name in names},
    }


def check_dependencies():
    """Import onnx and onnxscript (the exporter's), or raise :class:`DependencyError` naming the extra."""
    try:
        import onnx  # noqa: PLC0415 (optional dependency)
        import onnxscript  # noqa: F401, PLC0415 (torch's exporter needs it)
    except ImportError as exc:
        raise DependencyError(f"ONNX export needs the optional packages onnx and onnxscript ({exc.name} is "
                              f"missing): {INSTALL_HINT}") from None
    return onnx


def foreign_ops(proto) -> list[str]:
    """Operators of ``proto`` (an ``onnx.ModelProto``) outside the standard ONNX domain, and
    local functions: what a plain ONNX runtime may lack.  Empty for our graphs."""
    found = [f"{node.domain}::{node.op_type}" for node in proto.graph.node if node.domain not in ("", "ai.onnx")]
    found += [f"function {f.domain}::{f.name}" for f in proto.functions]
    return sorted(set(found))


def export_graph(model: BlendGAN, name: str, path: str | os.PathLike, opset: int = defaults.ONNX_OPSET) -> Path:
    """Trace graph ``name`` of ``model`` (float32, CPU) into ``path``, checked and written atomically."""
    onnx = check_dependencies()
    path = Path(path)
    if model.device.type != "cpu" or model.dtype != torch.float32:
        raise UsageError(f"export needs a float32 model on the CPU, got {model.dtype} on {model.device}")
    spec = next((s for s in graph_specs(model) if s.name == name), None)
    if spec is None:
        raise UsageError(f"{name}: this model has no such graph (expected one of "
                         f"{', '.join(s.name for s in graph_specs(model))})")
    module = graph_module(model, name).eval()
    args = example_inputs(spec)
    batch = torch.export.Dim("N", min=1, max=4096)
    dynamic = {input_name: {0: batch} for input_name, _ in spec.inputs}
    with torch.no_grad(), winograd.direct_convolutions(), warnings.catch_warnings():
        # the exporter's note that the batch axes of several inputs share the name N
        warnings.filterwarnings("ignore", message=".*axis name", category=UserWarning)
        try:
            program = torch.onnx.export(module, args, None, input_names=[n for n, _ in spec.inputs],
                                        output_names=[spec.output], opset_version=opset,
                                        dynamic_shapes=dynamic, dynamo=True, optimize=True,
                                        external_data=False, verbose=False)
        except Exception as exc:
            raise ExportError(f"{path}: exporting the {name} graph failed: {_first_line(exc)}") from exc
    proto = program.model_proto
    foreign = foreign_ops(proto)
    if foreign:
        raise ExportError(f"{path}: the {name} graph uses non-standard operators: {', '.join(foreign)}")
    size = proto.ByteSize()
    if size >= PROTOBUF_LIMIT:
        raise ExportError(f"{path}: the {name} graph is {size / 2 ** 30:.1f} GiB, over the 2 GiB of one ONNX file")
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:
        raise ExportError(f"{path}: the {name} graph failed onnx.checker: {_first_line(exc)}") from None
    with io.atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp))
    return path


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def export_onnx(model: BlendGAN, outdir: str | os.PathLike, names: tuple[str, ...] | None = None,
                opset: int = defaults.ONNX_OPSET) -> list[Path]:
    """Export ``model``'s graphs (all of :func:`graph_specs`, or ``names``) and ``blendgan.json``
    into ``outdir``; returns the paths written."""
    check_dependencies()
    outdir = io.prepare_outdir(outdir)
    specs = graph_specs(model)
    if names is not None:
        known = {s.name for s in specs}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise UsageError(f"unknown or unavailable graph(s) {', '.join(unknown)}; this model has "
                             f"{', '.join(sorted(known))}")
        specs = [s for s in specs if s.name in names]
    written = []
    for spec in specs:
        log.info("exporting %s", spec.filename)
        written.append(export_graph(model, spec.name, outdir / spec.filename, opset))
    meta = outdir / METADATA_FILE
    info = metadata(model, opset, tuple(s.name for s in specs))
    with io.atomic_path(meta) as tmp:
        tmp.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    written.append(meta)
    return written
