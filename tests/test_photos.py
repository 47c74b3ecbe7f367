"""``transfer --paste-back``: pasting stylized faces back into photos (geometry, mask, several
faces), the job (bad inputs, resume, EXIF orientation) and the command with the 256px model.

The geometry and job tests use a stand-in model whose 'stylization' is the aligned crop itself
(or a flat tint) and, where dlib is not the point, a stand-in aligner with known face squares.
Photos: scikit-image's astronaut (public domain).  Tests needing dlib skip without it.
"""
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from blendgan import align as A
from blendgan import io, jobs
from blendgan.cli import main
from blendgan.errors import UsageError

CARTOON = Path(__file__).resolve().parents[1] / "test_imgs" / "style_imgs" / "cartoon.png"
RED = (1.0, -1.0, -1.0)


def smooth_photo(h=240, w=320, seed=0):
    """A random photo with no detail finer than a few pixels (bilinear warps are near exact on it)."""
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 3)


def turned_square(centre, half, degrees):
    """A crop square [4, 2] (TL, BL, BR, TR) of side ``2 * half`` turned by ``degrees`` about ``centre``."""
    t = np.deg2rad(degrees)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    corners = np.array([[-half, -half], [-half, half], [half, half], [half, -half]], dtype=np.float64)
    return corners @ rot.T + centre


def coverage(shape, quads, size=256):
    """The blended share of each pixel [H, W] when crops of ``quads`` are pasted (0: untouched)."""
    white = np.full((size, size, 3), 255, np.uint8)
    return A.paste_faces(np.zeros(shape, np.uint8), [white] * len(quads), quads)[..., 0] / 255.0


class StandIn:
    """A model whose 'stylization' returns the aligned crop itself (``tint``: a flat colour);
    the 'W+' of a crop is its pixels, flattened to [N, 1, 3 * S * S]."""
    psp = object()
    device = torch.device("cpu")
    n_latent = 14
    has_style_encoder = True

    def __init__(self, size=128, tint=None):
        self.size, self.tint, self.faces, self.batches = size, tint, 0, []

    def state_dict(self):  # what tells one stand-in's outputs from another's
        return {"tint": torch.tensor(self.tint or (0, 0, 0), dtype=torch.float32), "size": torch.tensor(self.size)}

    def embed_style(self, x):
        return torch.zeros(1, 512)

    def encode_face(self, x):
        self.faces += x.shape[0]
        x = torch.nn.functional.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return x.flatten(1).unsqueeze(1)

    def synthesize(self, w_plus, z_embed, add_weight_index, strength=1.0, preserve_color=False):
        self.batches.append(w_plus.shape[0])
        x = w_plus.reshape(-1, 3, self.size, self.size)
        if self.tint is None:
            return x
        return torch.tensor(self.tint, dtype=torch.float32).view(1, 3, 1, 1).expand_as(x).clone()


class KnownFaces:
    """An aligner that 'finds' fixed face squares (largest first) in any photo with detail,
    and none in a flat one."""

    def __init__(self, quads):
        self.quads_ = [np.asarray(q, dtype=np.float64) for q in quads]

    def quads(self, rgb, all_faces=False):
        if rgb.std() < 1:
            return []
        return self.quads_ if all_faces else self.quads_[:1]


# -- geometry (no dlib) ---------------------------------------------------------------------------
@pytest.mark.parametrize("centre, half, degrees", [((170, 110), 70, 12), ((40, 200), 60, -25)])
def test_identity_paste_is_the_photo(centre, half, degrees):
    """Crop and paste back unchanged: the photo again, to interpolation error under the mask
    and exactly elsewhere (also for a square that leaves the photo: its padding is dropped)."""
    photo = smooth_photo()
    quad = turned_square(centre, half, degrees)
    crop = A.crop_quad(photo, quad, 256)
    out = A.paste_faces(photo, [crop], [quad])
    alpha = coverage(photo.shape, [quad])
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert (alpha > 0.99).sum() > 0.3 * (2 * half) ** 2 * np.pi / 4 * 0.5  # the mask covers the face
    np.testing.assert_array_equal(out[alpha == 0], photo[alpha == 0])
    diff = np.abs(out.astype(int) - photo).max(-1)
    assert diff[alpha > 0].mean() < 1.0 and diff.max() <= 12
    assert diff[3:-3, 3:-3].max() <= 6  # (the photo's outermost pixels mix with the crop's padding)


def test_marker_lands_at_the_mapped_position():
    """A mark at crop pixel (x, y) shows in the photo where the alignment transform puts it."""
    photo = smooth_photo()
    quad = turned_square((160, 120), 80, 20)
    size = 256
    crop = A.crop_quad(photo, quad, size)
    for x, y in [(100, 150), (160, 90)]:
        marked = crop.copy()
        marked[y - 3:y + 4, x - 3:x + 4] = (0, 255, 0)  # 7x7 block centred on pixel (x, y)
        out = A.paste_faces(photo, [marked], [quad])
        changed = np.abs(out.astype(int) - A.paste_faces(photo, [crop], [quad])).sum(-1)
        ys, xs = np.nonzero(changed)
        w = changed[ys, xs].astype(float)
        found = np.array([(xs * w).sum(), (ys * w).sum()]) / w.sum()
        expected = A.quad_to_image_matrix(quad, size) @ [x, y, 1.0]
        assert np.linalg.norm(found - expected) < 0.75, (found, expected)


def test_paste_faces_largest_on_top_and_no_seam():
    photo = smooth_photo()
    big, small = turned_square((140, 120), 80, 0), turned_square((205, 130), 50, 10)
    red, blue = np.zeros((256, 256, 3), np.uint8), np.zeros((256, 256, 3), np.uint8)
    red[..., 0], blue[..., 2] = 255, 255
    out = A.paste_faces(photo, [red, blue], [big, small])
    assert tuple(out[125, 140]) == (255, 0, 0) and tuple(out[130, 232]) == (0, 0, 255)
    assert coverage(photo.shape, [small])[130, 180] == 1  # under both masks fully:
    assert tuple(out[130, 180]) == (255, 0, 0)            # the largest face is on top
    outside = coverage(photo.shape, [big, small]) == 0
    np.testing.assert_array_equal(out[outside], photo[outside])
    assert not np.shares_memory(A.paste_faces(photo, [], []), photo)
    with pytest.raises(ValueError, match="2 faces for 1 quads"):
        A.paste_faces(photo, [red, blue], [big])
    # no step anywhere: the pasted mask changes by a few percent per pixel at most, also
    # where the crop square ends (the mask is 0 before its edge)
    alpha = coverage((300, 300, 3), [turned_square((150, 150), 128, 7)])
    assert max(np.abs(np.diff(alpha, axis=0)).max(), np.abs(np.diff(alpha, axis=1)).max()) < 0.06
    for n in (64, 256, 1024):
        m = A.face_mask(n)
        assert m[0].max() == m[-1].max() == m[:, 0].max() == m[:, -1].max() == 0 and m[n // 2, n // 2] > 0.99


# -- the job (stand-in model and aligner) ----------------------------------------------------------
@pytest.fixture
def photo_dirs(tmp_path):
    """A photo with two known faces, three bad inputs, and two styles."""
    src, styles = tmp_path / "in", tmp_path / "styles"
    src.mkdir()
    styles.mkdir()
    io.write_image(src / "a_photo.png", smooth_photo())
    io.write_image(src / "b_flat.png", np.full((200, 200, 3), 128, np.uint8))
    io.write_image(src / "c_tiny.png", smooth_photo(16, 20))
    (src / "d_broken.jpg").write_bytes(b"not an image")
    io.write_image(styles / "s1.png", np.zeros((32, 32, 3), np.uint8))
    io.write_image(styles / "s2.png", np.full((32, 32, 3), 200, np.uint8))
    faces = [turned_square((110, 120), 70, 5), turned_square((245, 110), 45, -10)]
    return src, styles, tmp_path / "out", faces


def test_job_largest_face_bad_inputs_resume(photo_dirs, caplog):
    src, styles, out, faces = photo_dirs
    photo = io.read_image(src / "a_photo.png")
    model = StandIn(tint=RED)
    r = jobs.run_paste_back(model, src, styles, out, fmt="png", progress=False, aligner=KnownFaces(faces))
    assert sorted(p.name for p in r.written) == ["a_photo_v_s1.png", "a_photo_v_s2.png"]
    reasons = dict((Path(p).name, why) for p, why in r.failed)
    assert sorted(reasons) == ["b_flat.png", "c_tiny.png", "d_broken.jpg"]
    assert all("\n" not in why and name in why for name, why in reasons.items())
    assert "no face found" in reasons["b_flat.png"] and "20x16 px is too small" in reasons["c_tiny.png"]
    assert model.faces == 1  # one encoding per face, shared by the styles
    res = io.read_image(out / "a_photo_v_s1.png")
    assert res.shape == photo.shape
    assert tuple(res[120, 110]) == (255, 0, 0)                              # the largest face
    np.testing.assert_array_equal(res[110, 245], photo[110, 245])          # the other one: untouched
    outside = coverage(photo.shape, faces[:1]) == 0
    np.testing.assert_array_equal(res[outside], photo[outside])
    # a rerun skips the outputs; the bad inputs are reported again
    r = jobs.run_paste_back(StandIn(tint=RED), src, styles, out, fmt="png", progress=False,
                            aligner=KnownFaces(faces))
    assert not r.written and len(r.skipped) == 2 and len(r.failed) == 3
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != jobs.report.SETTINGS_FILE]


def test_job_all_faces_identity_and_fixed_batches(photo_dirs):
    src, styles, out, faces = photo_dirs
    photo = io.read_image(src / "a_photo.png")
    model = StandIn(size=256)
    r = jobs.run_paste_back(model, src / "a_photo.png", styles, out, all_faces=True, fmt="png", progress=False,
                            aligner=KnownFaces(faces), batch_size=3)
    assert len(r.written) == 2 and not r.failed
    assert model.faces == 2 and model.batches == [2, 2]  # 3 // 2 faces: one style (both faces) a batch
    res = io.read_image(out / "a_photo_v_s2.png")
    alpha = coverage(photo.shape, faces)
    np.testing.assert_array_equal(res[alpha == 0], photo[alpha == 0])
    assert np.abs(res.astype(int) - photo)[alpha > 0].mean() < 1.0  # both faces pasted, in place
    tinted = jobs.run_paste_back(StandIn(tint=RED), src / "a_photo.png", styles, out, all_faces=True,
                                 fmt="png", overwrite=True, progress=False, aligner=KnownFaces(faces))
    assert len(tinted.written) == 2
    res = io.read_image(out / "a_photo_v_s1.png")
    assert tuple(res[120, 110]) == tuple(res[110, 245]) == (255, 0, 0)
    # resumed: one output removed and made again, in the batch it had (both styles), to the same bytes
    first = (out / "a_photo_v_s2.png").read_bytes()
    (out / "a_photo_v_s2.png").unlink()
    model = StandIn(tint=RED)
    r = jobs.run_paste_back(model, src / "a_photo.png", styles, out, all_faces=True, fmt="png", progress=False,
                            aligner=KnownFaces(faces))
    assert [p.name for p in r.written] == ["a_photo_v_s2.png"] and model.batches == [4]
    assert (out / "a_photo_v_s2.png").read_bytes() == first


def test_job_refuses_a_folder_of_other_outputs(photo_dirs):
    src, styles, out, faces = photo_dirs
    kw = dict(fmt="png", progress=False, aligner=KnownFaces(faces))
    assert jobs.run_paste_back(StandIn(), src / "a_photo.png", styles, out, **kw).written
    with pytest.raises(UsageError, match="holds outputs made with other settings .*all_faces: False -> True"):
        jobs.run_paste_back(StandIn(), src / "a_photo.png", styles, out, all_faces=True, **kw)
    plain = out.parent / "plain"  # plain transfer outputs share the names: refused, not skipped
    plain.mkdir()
    jobs.report.claim_outdir(plain, "transfer", {})
    (plain / "a_photo_v_s1.png").write_bytes(b"x")
    with pytest.raises(UsageError, match="job: 'transfer' -> 'paste-back'"):
        jobs.run_paste_back(StandIn(), src / "a_photo.png", styles, plain, **kw)


def test_job_shards_write_what_one_process_writes(photo_dirs):
    from blendgan.runtime import Shard
    src, styles, out, faces = photo_dirs
    for k in range(3):
        io.write_image(src / f"e_more{k}.png", smooth_photo(seed=k + 1))
    kw = dict(fmt="png", progress=False, aligner=KnownFaces(faces), all_faces=True)
    one = jobs.run_paste_back(StandIn(), src, styles, out / "one", **kw)
    parts = [jobs.run_paste_back(StandIn(), src, styles, out / "two", shard=Shard(r, 2), **kw) for r in (0, 1)]
    assert len(one.written) == 8 and sorted(one.written) == sorted(p.parent.parent / "one" / p.name
                                                                     for r in parts for p in r.written)
    assert set(parts[0].written).isdisjoint(parts[1].written)
    for p in one.written:
        assert p.read_bytes() == (out / "two" / p.name).read_bytes()
    assert len(one.failed) == 3 and sum(len(r.failed) for r in parts) == 3  # each bad photo reported once


def test_job_needs_psp(photo_dirs):
    src, styles, out, faces = photo_dirs
    model = StandIn()
    model.psp = None
    with pytest.raises(UsageError, match="psp_encoder"):
        jobs.run_paste_back(model, src, styles, out, aligner=KnownFaces(faces), progress=False)


# -- with dlib --------------------------------------------------------------------------------------
def two_astronauts(astronaut):
    """The astronaut at full size on the left and at 0.6 on the right of a 512 x 900 canvas."""
    canvas = np.full((512, 900, 3), 70, np.uint8)
    canvas[:, :512] = astronaut
    small = cv2.resize(astronaut[:, ::-1], (307, 307), interpolation=cv2.INTER_AREA)
    canvas[100:407, 560:867] = small
    return canvas


def test_two_faces_dlib(aligner, astronaut, tmp_path):
    """Without --all-faces the larger face only; with it, both, each where dlib found it."""
    src = tmp_path / "in"
    src.mkdir()
    photo = two_astronauts(astronaut)
    io.write_image(src / "pair.png", photo)
    left, right = (225, 122), (560 + 307 - 1 - int(225 * 0.6), 100 + int(122 * 0.6))  # face centres
    r = jobs.run_paste_back(StandIn(tint=RED), src, CARTOON, tmp_path / "one", fmt="png", progress=False,
                            aligner=aligner)
    one = io.read_image(r.written[0])
    r = jobs.run_paste_back(StandIn(tint=RED), src, CARTOON, tmp_path / "all", all_faces=True, fmt="png",
                            progress=False, aligner=aligner)
    both = io.read_image(r.written[0])
    assert one.shape == both.shape == photo.shape

    def redness(img, c, r=8):
        patch = img[c[1] - r:c[1] + r, c[0] - r:c[0] + r].astype(int)
        return (patch[..., 0] - patch[..., 1:].mean(-1)).mean()
    assert redness(one, left) > 200 and redness(both, left) > 200 and redness(both, right) > 200
    np.testing.assert_array_equal(one[:, 540:], photo[:, 540:])  # the smaller face is left alone
    assert np.array_equal(both[:5], photo[:5]) and np.array_equal(both[-5:], photo[-5:])


def test_exif_orientation_and_identity_dlib(aligner, astronaut, tmp_path):
    """A JPEG stored on its side with an EXIF orientation tag: the output is the photo as shown
    (upright, its displayed size), and an identity 'style' gives the photo back."""
    from PIL import Image
    upright = np.ascontiguousarray(astronaut[:, :420])          # 512 high, 420 wide
    stored = np.ascontiguousarray(np.rot90(upright, k=1))       # on its side: 420 high, 512 wide
    src = tmp_path / "in"
    src.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(stored).save(src / "side.jpg", quality=98, exif=exif.tobytes())
    shown = io.read_image(src / "side.jpg")
    assert shown.shape == upright.shape
    r = jobs.run_paste_back(StandIn(size=256), src, CARTOON, tmp_path / "out", fmt="png", progress=False,
                            aligner=aligner)
    assert not r.failed
    out = io.read_image(r.written[0])
    assert out.shape == (512, 420, 3)
    diff = np.abs(out.astype(int) - shown).max(-1)
    assert diff.mean() < 0.5 and (diff > 16).mean() < 0.002  # (resampling twice blurs a few sharp edges)


# -- the command ----------------------------------------------------------------------------------
def test_paste_back_command(golden_ckpts, aligner, astronaut, tmp_path, capsys):
    """The 256px model (random weights: the face becomes noise): the whole photo comes out, the
    face changed and the rest as it was; a photo without a face is one line and the job goes on."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    photo = np.ascontiguousarray(astronaut[:, 30:480])
    io.write_image(src / "astronaut.png", photo)
    io.write_image(src / "flat.png", np.full((100, 140, 3), 90, np.uint8))
    args = ["transfer", "--ckpt", str(golden_ckpts.blendgan), "--psp-encoder", str(golden_ckpts.psp),
            "--input", str(src), "--style", str(CARTOON), "--outdir", str(out), "--paste-back", "--format", "png",
            "--device", "cpu", "--quiet"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "flat.png: no face found" in err[0]
    res = io.read_image(out / "astronaut_v_cartoon.png")
    assert res.shape == photo.shape
    diff = np.abs(res.astype(int) - photo).mean(-1)
    assert diff[100:140, 175:215].mean() > 10                # the face (at x 195 after the cut) changed
    np.testing.assert_array_equal(res[:, :40], photo[:, :40])  # far from the face: as it was
    np.testing.assert_array_equal(res[-20:], photo[-20:])
    assert sorted(p.name for p in out.iterdir() if p.name != jobs.report.SETTINGS_FILE) == ["astronaut_v_cartoon.png"]  # (resuming: the job tests)


def test_paste_back_flags(monkeypatch, tmp_path, capsys):
    """--all-faces alone, and --paste-back without dlib: one line, exit status 2, before any
    checkpoint is opened (none exists here)."""
    io.write_image(tmp_path / "f.png", smooth_photo())
    base = ["transfer", "--ckpt", str(tmp_path / "none.pt"), "--input", str(tmp_path / "f.png"),
            "--style", str(CARTOON), "--outdir", str(tmp_path / "out"), "--quiet"]
    assert main(base + ["--all-faces"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("--all-faces needs --paste-back")
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` fail
    A.load_models.cache_clear()
    try:
        assert main(base + ["--paste-back"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and 'pip install "blendgan[align]"' in err[0]
    finally:
        A.load_models.cache_clear()
