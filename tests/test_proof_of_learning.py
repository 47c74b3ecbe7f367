"""The proof of learning, short (slow-marked; ``python -m pytest -m slow tests/test_proof_of_learning.py``).

The short run trains the style encoder and BlendGAN on the toy digits (:mod:`blendgan.train.proof`)
and must pass the same verdict as the full run of ``tools/proof_of_learning.py``: (a) FD falls,
(b) the style branch's outputs are nearest their own reference's code, and (c) the trained encoder
retrieves families better than the untrained one, with the margins of
:class:`~blendgan.train.proof.Margins`.  The same run with the generator's loss sign flipped (a
test hook: :mod:`blendgan.train.losses` is patched in a process of its own, no setting can do it)
must fail (a).  The two runs go side by side, one torch thread each.
"""
from __future__ import annotations

import multiprocessing
import types
from concurrent.futures import ProcessPoolExecutor

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("sklearn")

from blendgan.train import losses  # noqa: E402
from blendgan.train.proof import ProofSettings, run, verdict  # noqa: E402

pytestmark = pytest.mark.slow

SHORT = ProofSettings(encoder_steps=66, encoder_every=66, gan_steps=2400, gan_every=1200, n_samples=200)


def summary(curves: dict) -> str:
    gan = " | ".join(f"step {r['step']}: FD {r['fd']:.0f}, style branch nearest own reference "
                     f"{r['style_accuracy']:.2f} (family {r['family_accuracy']:.2f}), blend "
                     f"{r['blend_style_accuracy']:.2f}" for r in curves["gan"])
    enc = ", ".join(f"{r['step']}: {r['retrieval']:.3f}" for r in curves["encoder"])
    return f"encoder retrieval {enc or '(given)'}; {gan}"


def flipped(fake: torch.Tensor) -> torch.Tensor:
    """softplus(+D(fake)): the generator runs from "real"."""
    return F.softplus(fake.float()).mean()


def flipped_run(outdir: str) -> dict:
    """The short run with the generator's loss sign flipped (in a process of its own)."""
    torch.set_num_threads(1)
    losses.g_nonsaturating = flipped
    return run(outdir, SHORT)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # on a shared or 2-core machine more threads only spin
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        broken = pool.submit(flipped_run, str(tmp_path_factory.mktemp("flipped")))
        out = tmp_path_factory.mktemp("proof")
        try:
            curves = run(out, SHORT)
        finally:
            torch.set_num_threads(n)
        return types.SimpleNamespace(curves=curves, out=out, flipped=broken.result())


def test_short_proof_learns(runs):
    curves = runs.curves
    print(summary(curves))
    assert verdict(curves) == [], summary(curves)
    assert len(curves["encoder"]) >= 2 and len(curves["gan"]) >= 2  # (a), (b) and (c) were judged
    assert (runs.out / "grid.png").is_file() and (runs.out / "proof.json").is_file()


def test_a_flipped_generator_loss_fails_the_proof(runs):
    curves = runs.flipped
    print(summary(curves))
    failed = verdict(curves)
    assert any(f.startswith("(a)") for f in failed), summary(curves)
