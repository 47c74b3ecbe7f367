"""The proof of learning, short (slow-marked; ``python -m pytest -m slow tests/test_proof_of_learning.py``).

The short run trains the style encoder and BlendGAN on the toy digits (:mod:`blendgan.train.proof`)
and must pass the same verdict as the full run of ``tools/proof_of_learning.py``, with the margins
of :class:`~blendgan.train.proof.Margins`.  The same run with the generator's loss sign flipped
(a test hook: :mod:`blendgan.train.losses` is patched, no setting can do it) must fail it.
"""
from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("sklearn")

from blendgan.train import losses  # noqa: E402
from blendgan.train.proof import ProofSettings, run, verdict  # noqa: E402

pytestmark = pytest.mark.slow

SHORT = ProofSettings(encoder_steps=20, encoder_every=10, gan_steps=100, gan_every=50, n_samples=200,
                      refs_per_family=2, faces_per_ref=4)


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("proof")
    curves = run(out, SHORT)
    return types.SimpleNamespace(curves=curves, encoder=out / "encoder" / "checkpoints" / "latest.pt", out=out)


def test_short_proof_learns(short_run):
    curves = short_run.curves
    assert verdict(curves) == [], curves
    fds = [r["fd"] for r in curves["gan"]]
    assert fds[-1] < fds[0]
    assert (short_run.out / "grid.png").is_file() and (short_run.out / "proof.json").is_file()


def test_a_flipped_generator_loss_fails_the_proof(short_run, tmp_path, monkeypatch):
    def flipped(fake: torch.Tensor) -> torch.Tensor:  # softplus(+D(fake)): the generator runs from "real"
        return F.softplus(fake.float()).mean()
    monkeypatch.setattr(losses, "g_nonsaturating", flipped)
    curves = run(tmp_path, SHORT, encoder_ckpt=short_run.encoder)
    failed = verdict(curves)
    assert any(f.startswith("(a)") for f in failed), curves["gan"]
