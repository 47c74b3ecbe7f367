"""ONNX export (blendgan.export, ``blendgan export``) and the no-torch example that runs it.

The four graphs of the 256px golden checkpoint are exported once per session (~80 s on the
2-core VM); onnxruntime's CPU provider must reproduce the PyTorch outputs of each to relative
L2 error < 1e-4 for batch 1 and 3, and the official golden tensors through the graphs.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest
import torch

from blendgan import io
from blendgan.cli import main
from blendgan.errors import DependencyError, UsageError
from blendgan.ops import winograd

onnx = pytest.importorskip("onnx", reason='needs the export extra: pip install "blendgan[export]"')
ort = pytest.importorskip("onnxruntime", reason='needs the export extra: pip install "blendgan[export]"')
pytest.importorskip("onnxscript", reason='needs the export extra: pip install "blendgan[export]"')

from blendgan.export import export_onnx, foreign_ops, graph_specs, metadata  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "onnx_stylize.py"
TOLERANCE = 1e-4
GRAPHS = ("style_encoder", "psp_encoder", "mapping", "synthesis")


def rel_err(ours, ref) -> float:
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return float(np.linalg.norm(ours - ref) / np.linalg.norm(ref))


def load_example():
    spec = importlib.util.spec_from_file_location("onnx_stylize", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory) -> Path:
    outdir = tmp_path_factory.mktemp("onnx")
    export_onnx(model, outdir)
    return outdir


@pytest.fixture(scope="module")
def sessions(exported) -> dict:
    return {name: ort.InferenceSession(str(exported / f"{name}.onnx"), providers=["CPUExecutionProvider"])
            for name in GRAPHS}


def test_files_and_metadata(exported, model):
    assert sorted(p.name for p in exported.iterdir()) == sorted([f"{g}.onnx" for g in GRAPHS] + ["blendgan.json"])
    meta = json.loads((exported / "blendgan.json").read_text())
    assert meta["size"] == 256 and meta["n_latent"] == 14 and meta["encoder_size"] == 256
    add_weight = model.generator.add_weight.detach().clamp(0, 1).reshape(-1)
    assert np.array_equal(np.float32(meta["add_weight"]), add_weight.numpy())
    assert np.array_equal(np.float32(meta["latent_avg"]), model.latent_avg.reshape(-1).numpy())
    assert meta["truncation"] == model.default_truncation == 0.75
    assert meta == json.loads(json.dumps(metadata(model)))


@pytest.mark.parametrize("name", GRAPHS)
def test_graphs_are_standard_checked_and_batch_dynamic(exported, model, name):
    path = exported / f"{name}.onnx"
    onnx.checker.check_model(str(path), full_check=True)
    proto = onnx.load(str(path), load_external_data=False)
    assert foreign_ops(proto) == []
    assert {op.domain for op in proto.opset_import} <= {"", "ai.onnx"}
    spec = next(s for s in graph_specs(model) if s.name == name)
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    assert inputs == {n: ["N", *shape] for n, shape in spec.inputs}
    (output,) = proto.graph.output
    assert output.name == spec.output and output.type.tensor_type.shape.dim[0].dim_param == "N"


def test_foreign_ops_are_found():
    """The standard-operator check can fail: a node of a custom domain, and a local function."""
    from onnx import helper
    node = helper.make_node("FusedLeakyRelu", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    fn = helper.make_function("local", "f", ["a"], ["b"], [helper.make_node("Relu", ["a"], ["b"])],
                              [helper.make_opsetid("", 18)])
    proto = helper.make_model(graph, functions=[fn])
    assert foreign_ops(proto) == ["com.example::FusedLeakyRelu", "function local::f"]


def _torch_reference(model, name: str, args: list[torch.Tensor]) -> torch.Tensor:
    """The same computation through the library's own (Winograd, grouped) paths."""
    with torch.no_grad():
        if name == "style_encoder":
            return model.embed_style(args[0])
        if name == "psp_encoder":
            return model.encode_face(args[0])
        if name == "mapping":
            return model.generator.mapping(args[0])
        w_plus, z_embed, weight = args
        a = weight.unsqueeze(2)
        return model.synthesis(w_plus * a + model.generator.style_mapping(z_embed).unsqueeze(1) * (1 - a))


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("name", GRAPHS)
def test_onnxruntime_reproduces_pytorch(model, sessions, name, batch):
    from blendgan.export import example_inputs
    spec = next(s for s in graph_specs(model) if s.name == name)
    args = list(example_inputs(spec, batch, seed=11 + batch))
    got = sessions[name].run(None, {n: a.numpy() for (n, _), a in zip(spec.inputs, args)})[0]
    ref = _torch_reference(model, name, args).numpy()
    assert got.shape == ref.shape
    err = rel_err(got, ref)
    print(f"{name} batch {batch}: relative L2 error {err:.2e}")
    assert err < TOLERANCE


def test_official_outputs_through_the_graphs(sessions, exported, golden):
    """The golden tensors of the official code, from the ONNX graphs alone (numpy pooling)."""
    ex = load_example()
    meta = json.loads((exported / "blendgan.json").read_text())
    face = ex.adaptive_avg_pool(golden["face_tensor"].numpy())
    style = ex.adaptive_avg_pool(golden["style_tensor"].numpy())  # 300x451 -> 256x256
    w_plus = sessions["psp_encoder"].run(None, {"image": face})[0]
    z_embed = sessions["style_encoder"].run(None, {"image": style})[0]
    assert rel_err(w_plus, golden["psp_codes"]) < TOLERANCE
    assert rel_err(z_embed, golden["z_embed_ref"]) < TOLERANCE
    index = golden["meta"]["add_weight_index"]
    for key, weight in (("style_transfer", ex.face_weight(meta, index)),
                        ("style_transfer_no_index", ex.face_weight(meta, None))):
        image = sessions["synthesis"].run(None, {"w_plus": w_plus, "z_embed": z_embed,
                                                 "face_weight": weight[None]})[0]
        assert rel_err(image, golden[key]) < TOLERANCE, key
    # random faces: mapping + the truncation of blendgan.json, broadcast to every layer
    w = sessions["mapping"].run(None, {"z": golden["z"].numpy()})[0]
    avg = np.float32(meta["latent_avg"])
    w = avg + meta["truncation"] * (w - avg)
    w_face = np.repeat(w[:, None], meta["n_latent"], axis=1)
    ones = np.ones((1, meta["n_latent"]), np.float32)
    image = sessions["synthesis"].run(None, {"w_plus": w_face, "z_embed": golden["z_style_random"].numpy(),
                                             "face_weight": ones})[0]
    assert rel_err(image, golden["face_image"]) < TOLERANCE
    for key, z in (("latent_guided", golden["z_style_random"]), ("reference_guided", golden["z_embed_ref"])):
        image = sessions["synthesis"].run(None, {"w_plus": w_face, "z_embed": z.numpy(),
                                                 "face_weight": ex.face_weight(meta, index)[None]})[0]
        assert rel_err(image, golden[key]) < TOLERANCE, key


def test_numpy_pooling_matches_torch():
    ex = load_example()
    x = torch.randn(2, 3, 300, 451)
    ref = torch.nn.functional.adaptive_avg_pool2d(x, 256).numpy()
    assert np.abs(ex.adaptive_avg_pool(x.numpy()) - ref).max() < 1e-5
    same = torch.randn(1, 3, 256, 256).numpy()
    assert ex.adaptive_avg_pool(same) is same or np.array_equal(ex.adaptive_avg_pool(same), same)


@pytest.mark.parametrize("path", sorted((ROOT / "test_imgs").rglob("*.[jp][pn]g")), ids=lambda p: p.name)
def test_example_reads_images_as_the_library(path):
    assert np.array_equal(load_example().to_input(path), io.to_tensor(io.read_image(path)).numpy())


@pytest.fixture(scope="module")
def example_outputs(exported, sample_dirs, tmp_path_factory) -> list[Path]:
    """The example's images for the 2 x 2 samples, made in this process (default settings)."""
    return load_example().stylize_folder(exported, sample_dirs.faces, sample_dirs.styles,
                                         tmp_path_factory.mktemp("example"), batch_size=3)


def test_example_matches_the_transfer_job(example_outputs, model, sample_dirs):
    """The example's images are the library's (add_weight_index 6), to a level here and there."""
    assert len(example_outputs) == 4
    face, style = sorted(sample_dirs.faces.iterdir())[0], sorted(sample_dirs.styles.iterdir())[1]
    with torch.no_grad():
        ref = model.synthesize(w_plus=model.encode_face(io.to_tensor(io.read_image(face))),
                               z_embed=model.embed_style(io.to_tensor(io.read_image(style))), add_weight_index=6)
    ref = io.to_uint8(ref)[0]
    (got,) = [p for p in example_outputs if p.name == f"{face.stem}_v_{style.stem}.png"]
    diff = np.abs(io.read_image(got).astype(int) - ref.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def _venv_without_torch(root: Path) -> Path:
    """A fresh venv with onnxruntime, numpy and Pillow from the package registry (skips when
    it cannot be built, e.g. offline)."""
    env_dir = root / "venv"
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    except Exception as exc:  # ensurepip missing (Debian without python3-venv) ...
        pytest.skip(f"cannot create a virtual environment: {exc}")
    python = env_dir / "bin" / "python"
    pip = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                          "onnxruntime", "numpy", "pillow"], capture_output=True, text=True, timeout=600)
    if pip.returncode:
        last = (pip.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(f"cannot install onnxruntime/numpy/pillow into a fresh venv: {last}")
    return python


def test_example_runs_without_torch(exported, example_outputs, sample_dirs, tmp_path):
    python = _venv_without_torch(tmp_path)
    probe = subprocess.run([str(python), "-c", "import torch"], capture_output=True)
    assert probe.returncode != 0, "the fresh venv must not have torch"
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    run = subprocess.run([str(python), str(EXAMPLE), "--onnx", str(exported), "--faces", str(sample_dirs.faces),
                          "--styles", str(sample_dirs.styles), "--outdir", str(out)],
                         capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in example_outputs)
    # the same images as onnxruntime in this process (the registry's release may be another one)
    for path in example_outputs:
        diff = np.abs(io.read_image(path).astype(int) - io.read_image(out / path.name).astype(int))
        assert diff.max() <= 1, path.name


# -- the command ------------------------------------------------------------------------------

def test_command_exports_selected_graphs(golden_ckpts, tmp_path, capsys):
    out = tmp_path / "onnx"
    assert main(["export", "--ckpt", str(golden_ckpts.blendgan), "--psp-encoder", "none", "--outdir", str(out),
                 "--graphs", "mapping", "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["blendgan.json", "mapping.onnx"]
    meta = json.loads((out / "blendgan.json").read_text())
    assert list(meta["graphs"]) == ["mapping"]
    assert capsys.readouterr().out.split() == [str(out / "mapping.onnx"), str(out / "blendgan.json")]


def test_command_errors_are_one_line(golden_ckpts, tmp_path, capsys, monkeypatch):
    assert main(["export", "--ckpt", str(tmp_path / "nope.pt"), "--outdir", str(tmp_path / "o"),
                 "--psp-encoder", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope.pt: no such file" in err
    assert main(["export", "--ckpt", str(golden_ckpts.blendgan), "--psp-encoder", "none",
                 "--graphs", "psp_encoder", "--outdir", str(tmp_path / "o")]) == 2
    assert "--graphs psp_encoder needs --psp-encoder" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert main(["export", "--ckpt", str(golden_ckpts.blendgan), "--outdir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and 'pip install "blendgan[export]"' in err


def test_library_rejects_what_it_cannot_export(model, tmp_path, monkeypatch):
    with pytest.raises(UsageError, match="unknown or unavailable graph"):
        export_onnx(model, tmp_path, names=("decoder",))
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(DependencyError, match="onnxscript"):
        export_onnx(model, tmp_path)


def test_direct_convolutions_switch():
    x = torch.randn(1, 8, 8, 8)
    assert winograd.supports(x)
    with winograd.direct_convolutions():
        assert not winograd.supports(x)
        with winograd.direct_convolutions():
            assert not winograd.supports(x)
        assert not winograd.supports(x)
    assert winograd.supports(x)
