"""``blendgan eval`` and :mod:`blendgan.eval`: the estimators against the reference package's own
computation on the same features (torch-fidelity, scipy), the pluggable feature network, and the
checkpoint measures on a tiny random model."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from blendgan.cli import main
from blendgan.errors import DependencyError, UsageError
from blendgan.eval import (compare, feature_network, frechet_distance, kernel_distance, load_images,
                           pairwise_diversity, style_consistency)
from blendgan.eval.features import inception_features
from blendgan.models import Generator

fidelity = pytest.importorskip("torch_fidelity")
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric  # noqa: E402
from torch_fidelity.metric_kid import kid_features_to_metric  # noqa: E402

CHANNELS = {4: 32, 8: 32, 16: 16, 32: 16}


def pooled_features() -> torch.nn.Module:
    """A pluggable feature network for the checkpoint test: 4x4 average colours, 48 numbers."""
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten())


def two_sets(n1=300, n2=250, d=24, shift=0.3, scale=1.2, seed=0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    a = rng.normal(size=(n1, d)) @ mix
    b = (rng.normal(size=(n2, d)) * scale + shift) @ mix
    return a.astype(np.float32), b.astype(np.float32)


def fidelity_fid(a, b) -> float:
    stats = [fid_features_to_statistics(torch.from_numpy(x).double()) for x in (a, b)]
    return fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]


def test_frechet_matches_torch_fidelity_and_scipy():
    from scipy import linalg
    a, b = two_sets()
    ours = frechet_distance(a, b)
    assert ours == pytest.approx(fidelity_fid(a, b), rel=1e-7)
    # the pytorch-fid formulation: scipy's matrix square root of sigma1 . sigma2
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    s1, s2 = np.cov(a64, rowvar=False), np.cov(b64, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    diff = a64.mean(0) - b64.mean(0)
    assert ours == pytest.approx(diff @ diff + np.trace(s1 + s2 - 2 * covmean), rel=1e-7)
    assert abs(frechet_distance(a, a)) < 1e-6 and ours > 0.5


def test_kernel_distance_matches_torch_fidelity():
    a, b = two_sets()
    for size, subsets in ((50, 20), (250, 3)):
        ours = kernel_distance(a, b, subsets=subsets, subset_size=size, seed=7)
        ref = kid_features_to_metric(torch.from_numpy(a).double(), torch.from_numpy(b).double(), kid_subsets=subsets,
                                     kid_subset_size=size, rng_seed=7, verbose=False)
        assert ours.mean == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-9)
        assert ours.std == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-9)
    same = kernel_distance(*two_sets(shift=0, scale=1, seed=1), subsets=5, subset_size=200)
    assert abs(same.mean) * 10 < kernel_distance(a, b, subsets=5, subset_size=200).mean
    assert kernel_distance(a[:10], b, subsets=2).subset_size == 10  # cut to the smaller set


def test_diversity_and_style_consistency():
    groups = np.array([[[0, 0], [3, 4]], [[1, 1], [1, 1]]], np.float64)  # distances 5 and 0
    assert pairwise_diversity(groups) == pytest.approx(2.5)
    refs = np.eye(3)
    outs = np.array([[1, 0.1, 0], [0, 1, 0.2], [0.9, 0, 0.1], [0, 0, 1]])
    sc = style_consistency(outs, refs, [0, 1, 2, 2])
    assert sc.accuracy == 0.75 and sc.chance == pytest.approx(1 / 3) and sc.margin > 0.5
    with pytest.raises(UsageError):
        pairwise_diversity(groups[:, :1])


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(1)
    for name, bright in (("a", 40), ("b", 200), ("c", 50)):
        (root / name).mkdir()
        for i in range(12):
            img = np.clip(rng.normal(bright, 30, (8, 8, 3)), 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / name / f"{i:02d}.png"), img)
    return root


def test_eval_command_with_a_pluggable_feature_network(folders, tmp_path, capsys):
    """--features torch.nn:Flatten = raw pixels: the JSON equals the library and torch-fidelity on them."""
    out = tmp_path / "eval.json"
    assert main(["eval", "--images", str(folders / "b"), "--reference", str(folders / "a"), "--features",
                 "torch.nn:Flatten", "--kid-subsets", "10", "--device", "cpu", "--json-out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    ref, imgs = load_images(folders / "a"), load_images(folders / "b")
    flat = torch.nn.Flatten()
    to_feat = lambda x: flat(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1).numpy()  # noqa: E731
    assert printed["fid"] == pytest.approx(fidelity_fid(to_feat(imgs), to_feat(ref)), rel=1e-6)
    assert printed["kid_subset_size"] == 12 and printed["n"] == printed["n_reference"] == 12
    near = compare(load_images(folders / "c"), ref, feature_network(torch.nn.Flatten()))
    assert near["fid"] < printed["fid"] and near["kid"] < printed["kid"]


def test_eval_errors_are_one_line(folders, tmp_path, capsys):
    assert main(["eval", "--images", str(folders / "b"), "--reference", str(tmp_path / "none"),
                 "--features", "torch.nn:Flatten"]) == 2
    assert main(["eval", "--images", str(folders / "b"), "--reference", str(folders / "a"),
                 "--features", "no_such_module:x"]) == 2
    assert main(["eval", "--images", str(folders / "b"), "--reference", str(folders / "a"),
                 "--styles", str(folders / "c"), "--features", "torch.nn:Flatten"]) == 2
    err = capsys.readouterr().err
    assert "none" in err and "no_such_module" in err and "--styles needs --ckpt" in err
    with pytest.raises(DependencyError, match="missing.pth"):
        inception_features(weights=str(tmp_path / "missing.pth"))


def test_eval_of_a_checkpoint_with_styles(folders, tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # --features test_eval:pooled_features
    with torch.random.fork_rng():
        torch.manual_seed(0)
        g = Generator(32, 32, 2, channels=CHANNELS)
    with torch.no_grad():
        g.add_weight.fill_(0.5)  # a new model's blend is all face: the styles would change nothing
    torch.save({"g_ema": g.state_dict()}, tmp_path / "tiny.pt")
    assert main(["eval", "--ckpt", str(tmp_path / "tiny.pt"), "--reference", str(folders / "a"), "--styles",
                 str(folders / "b"), "--max-styles", "3", "--faces", "2", "--samples", "6",
                 "--features", "test_eval:pooled_features", "--kid-subsets", "2", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["natural"]["n"] == 6 and report["stylized"]["n"] == 6 and report["stylized"]["n_reference"] == 3
    sc = report["stylized"]["style_consistency"]
    assert sc["chance"] == pytest.approx(1 / 3) and 0 <= sc["accuracy"] <= 1
    assert report["stylized"]["diversity"] > 0
