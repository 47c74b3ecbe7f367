"""Shared fixtures: the parity contract in ../shared/golden and checkpoints made from it.

``golden_ckpts`` runs ``make_checkpoint.py --size 256 --seed 0`` once per test session into
a temporary folder (about 15 s, 2.3 GB); tests that need it skip with a clear reason when
``../shared/golden`` is absent (a user's clone).  ``BLENDGAN_GOLDEN`` overrides its location.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def saved_backend_flags():
    """Restore, on leaving, the process-wide ``torch.backends`` switches that
    ``blendgan.runtime.configure_backends`` sets (TF32 for cuDNN and cuBLAS, cuDNN autotuning)."""
    flags = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = flags[0].allow_tf32, flags[1].allow_tf32, flags[0].benchmark
    try:
        yield
    finally:
        flags[0].allow_tf32, flags[1].allow_tf32, flags[0].benchmark = saved


def golden_dir() -> Path:
    return Path(os.environ.get("BLENDGAN_GOLDEN", ROOT.parent / "shared" / "golden"))


def make_checkpoints(out: Path, size: int = 256, seed: int = 0) -> types.SimpleNamespace:
    """Official-layout checkpoints with deterministic random weights (skips without ../shared)."""
    maker = golden_dir() / "make_checkpoint.py"
    if not maker.exists():
        pytest.skip(f"parity data not found at {golden_dir()} (set BLENDGAN_GOLDEN)")
    if not (out / "psp_encoder.pt").exists():
        subprocess.run([sys.executable, str(maker), "--size", str(size), "--seed", str(seed), "--out", str(out)],
                       check=True, stdout=subprocess.DEVNULL)
    return types.SimpleNamespace(blendgan=out / "blendgan.pt", psp=out / "psp_encoder.pt", dir=out)


@pytest.fixture(scope="session", autouse=True)
def offline_by_default():
    """Tests never reach the internet: missing default weights are not downloaded (the
    download tests pass ``offline=False`` with a local mirror).  Subprocesses inherit it."""
    saved = os.environ.get("BLENDGAN_OFFLINE")
    os.environ["BLENDGAN_OFFLINE"] = "1"
    yield
    if saved is None:
        os.environ.pop("BLENDGAN_OFFLINE", None)
    else:
        os.environ["BLENDGAN_OFFLINE"] = saved


@pytest.fixture(scope="session")
def golden() -> dict:
    """The official outputs for the 256px seed-0 checkpoints (``open_256.pt``)."""
    path = golden_dir() / "open_256.pt"
    if not path.exists():
        pytest.skip(f"parity data not found at {path} (set BLENDGAN_GOLDEN)")
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="session")
def golden_ckpts(tmp_path_factory) -> types.SimpleNamespace:
    """256px seed-0 ``blendgan.pt`` / ``psp_encoder.pt`` in the official layout."""
    return make_checkpoints(tmp_path_factory.mktemp("ckpt256"))


@pytest.fixture(scope="session")
def model(golden_ckpts):
    """The 256px model with its pSp encoder, loaded once (CPU, fp32)."""
    from blendgan import BlendGAN
    return BlendGAN.from_pretrained(golden_ckpts.blendgan, psp_encoder=golden_ckpts.psp, device="cpu")


@pytest.fixture(scope="session")
def sample_dirs(tmp_path_factory) -> types.SimpleNamespace:
    """Small face and style folders copied from test_imgs/ (2 faces, 2 styles)."""
    import shutil
    root = tmp_path_factory.mktemp("samples")
    faces, styles = root / "faces", root / "styles"
    faces.mkdir()
    styles.mkdir()
    for src in sorted((ROOT / "test_imgs" / "face_imgs").iterdir())[:2]:
        shutil.copy(src, faces / src.name)
    for src in sorted((ROOT / "test_imgs" / "style_imgs").iterdir())[:2]:
        shutil.copy(src, styles / src.name)
    return types.SimpleNamespace(faces=faces, styles=styles)


@pytest.fixture(scope="session")
def aligner():
    """A loaded FaceAligner (skips without the ``align`` extra)."""
    import importlib.util
    pytest.importorskip("dlib", reason='needs the align extra: pip install "blendgan[align]"')
    if importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip('needs the align extra: pip install "blendgan[align]"')
    from blendgan.align import FaceAligner
    return FaceAligner().load()


@pytest.fixture(scope="session")
def astronaut():
    """scikit-image's public-domain astronaut photo, RGB uint8 [512, 512, 3]."""
    import numpy as np
    data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(data.astronaut()[..., :3])


CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    """Debian's chromium (``BLENDGAN_CHROMIUM`` overrides); None when absent."""
    import shutil
    path = os.environ.get("BLENDGAN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return path if os.path.exists(path) else None


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium driven by Playwright (skips without playwright or chromium), one for
    the whole test session: tests open their own pages or contexts and close them."""
    sync_api = pytest.importorskip("playwright.sync_api")
    exe = chromium_path()
    if exe is None:
        pytest.skip("chromium not found (apt-get install chromium, or set BLENDGAN_CHROMIUM)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
