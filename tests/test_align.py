"""FFHQ-style alignment: the crop geometry, invariance to how the photo was taken, the batch
job (no face, several faces, resume) and the ``align`` subcommand.

Photos: scikit-image's astronaut (public domain, see test_imgs/README.md).  Tests needing
dlib skip without the ``align`` extra; the geometry tests run everywhere.
"""
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from blendgan import align as A
from blendgan import io, jobs
from blendgan.cli import main

S = 256  # crop size of the dlib tests (landmarks are re-detected on the crops)


def transform(img, angle, scale, pad, border=cv2.BORDER_CONSTANT):
    """Rotate by ``angle`` degrees and scale about the centre, on a canvas ``pad`` px larger each side."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m[:, 2] += pad
    return np.ascontiguousarray(cv2.warpAffine(img, m, (w + 2 * pad, h + 2 * pad), flags=cv2.INTER_LINEAR,
                                               borderMode=border))


def square(size):
    """The quad of a whole ``size`` crop in its own pixel coordinates (TL, BL, BR, TR)."""
    return np.array([[0, 0], [0, size], [size, size], [size, 0]], dtype=np.float64) - 0.5


def synthetic_landmarks(eyes, mouth):
    """68 points whose eye rings average to ``eyes`` and whose mouth corners are ``mouth``."""
    lm = np.zeros((68, 2))
    lm[36:42], lm[42:48] = eyes[0], eyes[1]
    lm[48], lm[54] = mouth
    return lm


# -- geometry (no dlib) ---------------------------------------------------------------------------
def test_face_quad_follows_the_recipe():
    lm = synthetic_landmarks([(100, 100), (140, 100)], [(105, 140), (135, 140)])
    # eye_to_eye 40 -> half side max(80, 1.8 * 40) = 80; centre eye_avg + 0.1 * eye_to_mouth = (120, 104)
    np.testing.assert_allclose(A.face_quad(lm), [[40, 24], [40, 184], [200, 184], [200, 24]], atol=1e-9)
    # a long face: the eye-to-mouth term sets the size
    lm = synthetic_landmarks([(100, 100), (120, 100)], [(100, 150), (120, 150)])
    q = A.face_quad(lm)
    assert np.hypot(*(q[3] - q[0])) == pytest.approx(2 * 1.8 * 50)


def test_face_quad_turns_with_the_face():
    lm = synthetic_landmarks([(100, 100), (140, 100)], [(105, 140), (135, 140)])
    t = np.deg2rad(25)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    turned = (lm - 50) @ rot.T + 50
    np.testing.assert_allclose(A.face_quad(turned), (A.face_quad(lm) - 50) @ rot.T + 50, atol=1e-9)
    with pytest.raises(ValueError, match=r"\[68, 2\]"):
        A.face_quad(np.zeros((5, 2)))


def test_crop_quad_pixel_exact_and_padding():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (300, 320, 3), dtype=np.uint8)
    # an axis-aligned square of 100 px sampled at 100 px is the image region itself
    quad = square(100) + [110, 90]
    np.testing.assert_array_equal(A.crop_quad(img, quad, 100), img[90:190, 110:210])
    # half outside the photo: mirrored, blurred padding, no black, the inside kept
    quad = square(100) + [260, 90]
    crop = A.crop_quad(img, quad, 100)
    assert crop.shape == (100, 100, 3)
    np.testing.assert_array_equal(crop[:, :40], img[90:190, 260:300])
    assert crop[:, 70:].mean() > 60  # faded towards the median colour, not black
    # a big face is shrunk first and supersampled: the right size, close to a plain resize
    big = cv2.resize(img, (3200, 3000), interpolation=cv2.INTER_NEAREST)
    crop = A.crop_quad(big, square(1000) + [1100, 900], 100)
    assert crop.shape == (100, 100, 3)
    assert np.abs(crop.astype(int) - img[90:190, 110:210]).mean() < 25


def test_needs_alignment():
    assert not A.needs_alignment(np.zeros((256, 256, 3), np.uint8))
    assert not A.needs_alignment(np.zeros((1024, 1024, 3), np.uint8))
    assert A.needs_alignment(np.zeros((256, 300, 3), np.uint8))
    assert A.needs_alignment(np.zeros((300, 300, 3), np.uint8))


def test_missing_extra_is_one_line(monkeypatch, capsys, tmp_path):
    """Without dlib: a one-line error with the install command, exit status 2."""
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` fail
    A.load_models.cache_clear()
    try:
        with pytest.raises(A.AlignmentUnavailable, match=r'pip install "blendgan\[align\]"'):
            A.FaceAligner().load()
        assert main(["align", str(tmp_path), str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and 'pip install "blendgan[align]"' in err
    finally:
        A.load_models.cache_clear()


# -- with dlib ------------------------------------------------------------------------------------
def eyes_mouth(lm):
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), (lm[48] + lm[54]) / 2])


def test_landmarks_match_hand_measured(aligner, astronaut):
    faces = aligner.landmarks(astronaut)
    assert len(faces) == 1  # the HOG detector also fires on the mission patch; the CNN check drops it
    assert len(aligner.detect(astronaut, verify=False)) >= 2
    # pupils and mouth corners measured by hand (tools/make_test_imgs.py)
    hand = np.array([(204, 102), (246, 104), ((203 + 243) / 2, (140 + 141) / 2)])
    assert np.abs(eyes_mouth(faces[0]) - hand).max() < 4


@pytest.mark.parametrize("angle, scale", [(15, 0.7), (-20, 1.5)])
def test_alignment_invariant_to_rotation_scale_padding(aligner, astronaut, angle, scale):
    ref = aligner.align(astronaut, S)[0]
    moved = transform(astronaut, angle, scale, pad=64)
    (crop,) = aligner.align(moved, S)
    a, b = aligner.landmarks(ref)[0], aligner.landmarks(crop)[0]
    assert np.linalg.norm(a - b, axis=1).mean() < 0.02 * S
    assert np.abs(ref.astype(int) - crop).mean() < 20


def test_aligned_crop_is_canonical(aligner, astronaut):
    """Landmarks found again on the crop give the crop itself as the FFHQ square; eyes level."""
    crop = aligner.align(astronaut, S)[0]
    lm = aligner.landmarks(crop)[0]
    assert np.linalg.norm(A.face_quad(lm) - square(S), axis=1).mean() < 0.02 * S
    eye_l, eye_r, mouth = eyes_mouth(lm)
    assert abs(np.degrees(np.arctan2(*(eye_r - eye_l)[::-1]))) < 2
    assert abs((eye_l[0] + eye_r[0]) / 2 - S / 2) < 0.02 * S
    # the bundled FFHQ-style crop (made from hand-measured points) agrees
    bundled = io.resize(io.read_image(Path(__file__).parents[1] / "test_imgs/face_imgs/astronaut_512.jpg"), S)
    assert np.linalg.norm(aligner.landmarks(bundled)[0] - lm, axis=1).mean() < 0.02 * S


def test_align_path_no_face_all_faces_resume(aligner, astronaut, tmp_path, caplog):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    io.write_image(src / "a_face.png", astronaut)
    io.write_image(src / "b_noise.png", np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8))
    io.write_image(src / "c_flat.png", np.full((120, 160, 3), 128, np.uint8))
    (src / "d_broken.jpg").write_bytes(b"not an image")
    io.write_image(src / "e_two.jpg", io.hstack([astronaut, astronaut[:, ::-1]]))
    r = jobs.align_path(src, out, size=128, progress=False, aligner=aligner)
    assert sorted(p.name for p in r.written) == ["a_face.png", "e_two.png"]
    assert [(Path(p).name, "\n" in why) for p, why in r.failed] == [
        ("b_noise.png", False), ("c_flat.png", False), ("d_broken.jpg", False)]
    assert "b_noise.png: no face found" in r.failed[0][1]
    assert io.read_image(out / "a_face.png").shape == (128, 128, 3)
    # rerun: skipped; --all-faces with --overwrite: both faces of the pair, largest first
    r = jobs.align_path(src, out, size=128, progress=False, aligner=aligner)
    assert not r.written and len(r.skipped) == 2
    r = jobs.align_path(src / "e_two.jpg", out, size=128, all_faces=True, overwrite=True, progress=False,
                     aligner=aligner)
    assert [p.name for p in r.written] == ["e_two.png", "e_two_1.png"]
    one, two = io.read_image(out / "e_two.png"), io.read_image(out / "e_two_1.png")
    assert np.abs(one.astype(int) - two[:, ::-1]).mean() < 25  # the same face, mirrored
    assert not list(out.glob(".*"))  # no temporary files left


def test_align_subcommand(aligner, astronaut, tmp_path, capsys):
    from blendgan.cli import build_parser
    parser = build_parser()
    io.write_image(tmp_path / "face.jpg", astronaut)
    io.write_image(tmp_path / "flat.png", np.full((64, 64, 3), 90, np.uint8))
    assert main(["align", str(tmp_path), str(tmp_path / "out"), "--size", "96", "--format", "jpg",
                 "--quiet"]) == 1  # one image without a face
    assert io.read_image(tmp_path / "out" / "face.jpg").shape == (96, 96, 3)
    err = capsys.readouterr().err
    assert "flat.png: no face found" in err
    assert main(["align", str(tmp_path / "face.jpg"), str(tmp_path / "out2"), "--all-faces", "--size", "64",
                 "--quiet"]) == 0 and (tmp_path / "out2" / "face.png").exists()
    capsys.readouterr()
    assert main(["align", str(tmp_path / "missing"), str(tmp_path / "out3"), "--quiet"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    with pytest.raises(SystemExit):
        parser.parse_args(["align", "a", "b", "--size", "8"])
