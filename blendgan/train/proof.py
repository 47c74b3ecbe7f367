"""A proof that training learns, small enough for a 2-core CPU: toy data, both trainers, three measures.

Data (no downloads; scikit-learn ships the digits): the 1797 handwritten 8x8 digits, upscaled
to 32 px, are the "faces" (white ink on black); other digits drawn in one of four procedural
style families are the "artworks":

* ``neon``: a core in one ink with a soft halo in the other;
* ``stripes``: the strokes filled with two-colour stripes at a random angle and period;
* ``lineart``: only the outline of the strokes, on grainy paper;
* ``mosaic``: the strokes as a grid of tiles in either ink, with grout lines.

Every artwork draws its ground and two inks from the same colour distribution
(:func:`palette`), whatever its family: the families differ in structure and texture, so
colour alone does not tell them apart (an untrained VGG's Gram matrices mostly see colour).
Angles, periods and tile sizes are drawn per artwork too, so a family is a kind of style, not
one style.  The style encoder is trained on the training artworks (with colour jitter on its
views), then BlendGAN at 32 px with it, and the checkpoints are measured:

(a) **natural branch**: Fréchet and kernel distances between ``g_ema``'s natural samples and
    held-out real digits, on the 64-d features of a small CNN trained to classify the digits;
(b) **stylized branch**: for held-out reference artworks, the style branch's own output
    G(w_s) (blend weight 0) and the learned blend of ``g_ema``'s faces with the code; their
    style codes against the references' (:func:`blendgan.eval.style_consistency`: is the
    nearest family code the reference's family? is the nearest reference the one used?);
(c) **style encoder**: leave-one-out nearest-neighbour retrieval of the style family among
    held-out artworks, on the codes of the untrained encoder (step 0) and of each checkpoint.

:func:`run` does it all and returns the curves; :func:`verdict` lists the measures that did not
move the right way.  The trainers are called as users call them (:func:`~blendgan.train.train_gan`).
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import io
from ..errors import DependencyError, TrainError
from ..eval import frechet_distance, kernel_distance, style_consistency
from ..model import BlendGAN
from ..models import Generator, StyleEncoder
from ..runtime import derive_seed, make_generator, seeded_init
from .checkpoints import CHECKPOINT_DIR
from .config import GANConfig, StyleEncoderConfig
from .encoder_weights import init_vgg_random, load_style_encoder_state
from .gan import train_gan
from .modules import gram_vectors
from .monitor import image_grid
from .style_encoder import train_style_encoder

log = logging.getLogger("blendgan")

FAMILIES = ("neon", "stripes", "lineart", "mosaic")
SIZE = 32


# -- data ---------------------------------------------------------------------------------------------
def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as ink masks float32 [1797, 32, 32] in [0, 1] and labels [1797]."""
    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError:
        raise DependencyError("the proof of learning uses scikit-learn's bundled digits: pip install "
                              "scikit-learn (or blendgan[proof])") from None
    d = sk_digits()
    small = (d.images / 16.0).astype(np.float32)
    big = np.stack([cv2.resize(im, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC) for im in small])
    return np.clip(big, 0, 1), d.target.astype(np.int64)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """One colour, float RGB [3] in [0, 1], from hue/saturation/value in [0, 1]."""
    pixel = np.array([[[h * 179, s * 255, v * 255]]], np.uint8)
    return cv2.cvtColor(pixel, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32) / 255


def palette(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The colours of one artwork, drawn the same way for every family: a ground and two inks
    (float RGB [3] each), any hue, the inks' value at least 0.3 away from the ground's."""
    v_ground = rng.uniform(0.1, 1.0)
    inks = []
    for _ in range(2):
        v = (v_ground + rng.uniform(0.3, 0.7)) % 1.0
        inks.append(_hsv(rng.random(), rng.uniform(0.3, 1.0), max(v, 0.05)))
    return _hsv(rng.random(), rng.uniform(0.0, 1.0), v_ground), inks[0], inks[1]


def stylize(ink: np.ndarray, family: str, rng: np.random.Generator) -> np.ndarray:
    """An artwork: the digit ``ink`` [S, S] in [0, 1] drawn in a random style of ``family``;
    RGB uint8 [S, S, 3].  Families differ in structure and texture, not in colour: every
    family takes its colours from :func:`palette`."""
    m = ink[..., None]
    s = ink.shape[0]
    ground, c1, c2 = palette(rng)
    if family == "neon":            # a core in one ink, a soft halo in the other
        glow = np.clip(1.2 * cv2.GaussianBlur(ink, (0, 0), rng.uniform(1.5, 2.5)), 0, 1)[..., None]
        img = ground * (1 - glow) + c2 * glow
        img = img * (1 - m) + c1 * m
    elif family == "stripes":       # the ink filled with two-colour stripes at a random angle
        theta, period = rng.uniform(0, math.pi), rng.uniform(3, 6)
        y, x = np.mgrid[:s, :s]
        on = (np.sin(2 * math.pi * (x * math.cos(theta) + y * math.sin(theta)) / period) > 0)[..., None]
        img = ground * (1 - m) + np.where(on, c1, c2) * m
    elif family == "lineart":       # only the outline of the ink, on grainy paper
        solid = (ink > 0.35).astype(np.uint8)
        kernel = np.ones((3, 3), np.uint8)
        edge = (cv2.dilate(solid, kernel) - cv2.erode(solid, kernel)).astype(np.float32)[..., None]
        grain = rng.normal(0, 0.04, (s, s, 1)).astype(np.float32)
        img = (ground + grain) * (1 - edge) + c1 * edge
    elif family == "mosaic":        # the ink as a grid of tiles in either ink, with grout lines
        tile = int(rng.choice([4, 8]))
        cells = cv2.resize(ink, (s // tile, s // tile), interpolation=cv2.INTER_AREA)
        pick = rng.integers(0, 2, cells.shape)[..., None]
        fill = np.where(cells[..., None] > 0.25, np.where(pick == 1, c1, c2), ground)
        img = np.kron(fill, np.ones((tile, tile, 1), np.float32))
        img[::tile] = img[:, ::tile] = ground * 0.5                               # grout between tiles
    else:
        raise ValueError(f"unknown style family {family!r}")
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def face_image(ink: np.ndarray) -> np.ndarray:
    """A "face": the digit in white on black, RGB uint8 [S, S, 3]."""
    return np.repeat((ink[..., None] * 255).round().astype(np.uint8), 3, axis=2)


@dataclass
class ToyData:
    """Folders and arrays of the toy data (see the module's doc)."""
    faces_dir: Path
    styles_dir: Path
    faces: np.ndarray             # uint8 [N_f, 32, 32, 3], the GAN's training faces
    face_labels: np.ndarray       # [N_f] digit classes (for the classifier)
    held_faces: np.ndarray        # uint8 [N_h, 32, 32, 3], real digits never trained on
    held_arts: np.ndarray         # uint8 [N_a, 32, 32, 3], artworks never trained on
    held_families: np.ndarray     # [N_a] index into FAMILIES


def make_data(root: Path, n_faces: int = 1200, n_arts: int = 400, n_held_arts: int = 200, seed: int = 0) -> ToyData:
    """Write ``root/faces`` and ``root/styles`` (PNG) and keep the held-out sets in memory.

    The digits are split once by a seeded permutation: faces, held-out faces, training
    artworks, held-out artworks (artworks draw their digits from the pool left after the faces).
    """
    ink, labels = load_digits()
    rng = np.random.default_rng(derive_seed(seed, "proof-data"))
    order = rng.permutation(len(ink))
    n_held_faces = len(ink) - n_faces
    if n_held_faces < 100:
        raise TrainError(f"{n_faces} faces leave too few of the {len(ink)} digits held out")
    faces_idx, held_idx = order[:n_faces], order[n_faces:]
    art_src = rng.choice(held_idx, n_arts + n_held_arts, replace=True)
    families = np.arange(n_arts + n_held_arts) % len(FAMILIES)
    arts = np.stack([stylize(ink[i], FAMILIES[f], rng) for i, f in zip(art_src, families)])
    faces = np.stack([face_image(ink[i]) for i in faces_idx])
    for folder, images in (("faces", faces), ("styles", arts[:n_arts])):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(images):
            io.write_image(root / folder / f"{i:05d}.png", img)
    return ToyData(root / "faces", root / "styles", faces, labels[faces_idx],
                   np.stack([face_image(ink[i]) for i in held_idx]), arts[n_arts:], families[n_arts:])


# -- the classifier behind measure (a) ------------------------------------------------------------------
class DigitNet(nn.Module):
    """A small CNN: RGB [N, 3, 32, 32] in [-1, 1] -> logits [N, 10]; :meth:`features` -> [N, 64]."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),     # 16x16
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),    # 8x8
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),    # 4x4
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(64, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def train_classifier(images: np.ndarray, labels: np.ndarray, seed: int = 0, epochs: int = 8) -> DigitNet:
    """:class:`DigitNet` trained on uint8 images [N, 32, 32, 3] (Adam, batches of 64)."""
    with seeded_init(derive_seed(seed, "digit-net")):
        net = DigitNet()
    gen = make_generator(derive_seed(seed, "digit-net-order"))
    x, y = io.to_tensor(images), torch.as_tensor(labels)
    optim = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(64):
            loss = F.cross_entropy(net(x[idx]), y[idx])
            optim.zero_grad()
            loss.backward()
            optim.step()
    return net.eval()


@torch.no_grad()
def digit_features(net: DigitNet, images: np.ndarray) -> np.ndarray:
    return torch.cat([net.features(io.to_tensor(images[i:i + 256])) for i in range(0, len(images), 256)]).numpy()


# -- measures -------------------------------------------------------------------------------------------
@torch.no_grad()
def encoder_codes(encoder: StyleEncoder, images: np.ndarray, pool: int) -> np.ndarray:
    """Style codes [N, D] of uint8 images, with the VGG input pooled to ``pool`` as in training."""
    out = [encoder.embedder_mlp(gram_vectors(encoder.embedder, io.to_tensor(images[i:i + 64]), pool))
           for i in range(0, len(images), 64)]
    return torch.cat(out).numpy()


def family_retrieval(codes: np.ndarray, families: np.ndarray) -> float:
    """Leave-one-out nearest neighbour (cosine) family accuracy of codes [N, D]."""
    c = codes / np.linalg.norm(codes, axis=1, keepdims=True).clip(1e-12)
    sim = c @ c.T
    np.fill_diagonal(sim, -np.inf)
    return float((families[sim.argmax(1)] == families).mean())


def load_encoder(path: Path, style_dim: int) -> StyleEncoder:
    encoder = StyleEncoder(style_dim=style_dim)
    encoder.load_state_dict(load_style_encoder_state(path))
    return encoder.eval()


def initial_generator(settings: "ProofSettings") -> Generator:
    """The generator as the GAN trainer builds it before its first step (same seed, same
    draws: it is the first module built in the trainer's seeded block)."""
    widths = [int(v) for v in settings.channels.split(",")]
    with seeded_init(derive_seed(settings.seed, "init")):
        return Generator(SIZE, settings.style_dim, settings.n_mlp, style_encoder=False,
                         channels={2 ** (i + 2): w for i, w in enumerate(widths)})


@torch.no_grad()
def gan_measures(g: Generator, data: ToyData, classifier: DigitNet, real_features: np.ndarray, encoder: StyleEncoder,
                 settings: "ProofSettings") -> dict:
    """Measures (a) and (b) of a generator (a checkpoint's ``g_ema``), truncation off.

    (b) is measured twice: on the style branch itself, G(w_s) with w_s = embedding(code) in
    every W+ row (blend weight 0, the controls' full strength), and on the learned blend
    G(a·w + (1 − a)·w_s) of faces with the code (``blend_*`` keys).
    """
    gen = make_generator(derive_seed(settings.seed, "proof-samples"))
    z = torch.randn(settings.n_samples, g.style_dim, generator=gen)
    natural = io.to_uint8(g(g.mapping(z).unsqueeze(1).expand(-1, g.n_latent, -1)))
    feats = digit_features(classifier, natural)
    kid = kernel_distance(feats, real_features, subsets=20, subset_size=min(200, len(feats)), seed=settings.seed)
    # (b): every reference artwork (the same number per family) with the same faces and noise
    per, k = settings.refs_per_family, settings.faces_per_ref
    refs = np.concatenate([np.flatnonzero(data.held_families == f)[:per] for f in range(len(FAMILIES))])
    ref_codes = encoder_codes(encoder, data.held_arts[refs], settings.pool)
    w = g.mapping(torch.randn(k, g.style_dim, generator=gen)).unsqueeze(1).expand(-1, g.n_latent, -1)
    noise = g.random_noise(k, gen)
    pure, blended = [], []
    for c in ref_codes:
        w_s = g.style_mapping(torch.from_numpy(c)[None].expand(k, -1))
        pure.append(io.to_uint8(g(w_s.unsqueeze(1).expand(-1, g.n_latent, -1), noise)))
        blended.append(io.to_uint8(g(g.blend(w, w_s), noise)))
    which = np.repeat(np.arange(len(refs)), k)                              # reference-major
    ref_families = data.held_families[refs]
    family_codes = np.stack([ref_codes[ref_families == f].mean(0) for f in range(len(FAMILIES))])
    out = {"fd": frechet_distance(feats, real_features), "kd": kid.mean}
    for prefix, images in (("", np.concatenate(pure)), ("blend_", np.concatenate(blended))):
        codes = encoder_codes(encoder, images, settings.pool)
        by_ref = style_consistency(codes, ref_codes, which)
        by_family = style_consistency(codes, family_codes, ref_families[which])
        out.update({f"{prefix}style_accuracy": by_ref.accuracy, f"{prefix}style_chance": by_ref.chance,
                    f"{prefix}style_margin": by_ref.margin, f"{prefix}family_accuracy": by_family.accuracy,
                    f"{prefix}family_chance": by_family.chance})
    out["add_weight"] = float(g.blend_weights().mean())
    out["_grid"] = (natural[:settings.grid_faces], np.concatenate(pure), np.concatenate(blended),
                    data.held_arts[refs], per)
    return out


# -- the whole proof ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProofSettings:
    """The sizes of a proof run; the defaults are the full run of ``tools/proof_of_learning.py``."""
    seed: int = 0
    style_dim: int = 32
    pool: int = 32
    encoder_steps: int = 200
    encoder_batch: int = 32
    encoder_lr: float = 1.5e-4
    encoder_every: int = 100
    color_jitter: float = 0.75      # the families share one colour distribution: codes should ignore colour
    code_contrast: float = 0.0      # SimCLR's recipe: only the projections are contrasted (see the README)
    gan_steps: int = 4800
    gan_batch: int = 8
    gan_every: int = 800
    channels: str = "32,32,32,32"
    n_mlp: int = 2
    lr: float = 0.0025
    r1: float = 0.1                 # StyleGAN2-ADA's gamma range for 32 px images (10 is for 1024 px)
    ema_kimg: float = 0.2           # g_ema's half-life: 25 steps of 8 (the default 10 kimg outlasts the run)
    path_regularize: float = 0.0    # off: a quarter less time per step, and no smoothness is measured here
    style_only: float = 0.5         # half the stylized samples from the style branch alone (see GANConfig)
    style_mapping_lr: float = 30.0  # the style mapping at 0.3 of the synthesis's rate instead of 0.01
    n_faces: int = 1200
    n_arts: int = 400
    n_held_arts: int = 200
    n_samples: int = 300
    refs_per_family: int = 4
    faces_per_ref: int = 8
    grid_faces: int = 8
    workers: int = 2
    extra: dict = field(default_factory=dict)   # more GANConfig settings


def run(outdir: str | Path, settings: ProofSettings = ProofSettings(), encoder_ckpt: str | Path | None = None,
        quiet: bool = True, resume: bool = False) -> dict:
    """Train (or reuse ``encoder_ckpt``) the style encoder, then BlendGAN, on the toy data in
    ``outdir``; returns the curves: ``{'encoder': [...], 'gan': [...], 'settings': {...}}``,
    one record per checkpoint, and writes ``outdir/proof.json`` and ``outdir/grid.png``.
    ``resume``: continue the trainers of a stopped run in ``outdir`` from their last checkpoints."""
    s = settings
    outdir = Path(outdir)
    data = make_data(outdir / "data", s.n_faces, s.n_arts, s.n_held_arts, s.seed)
    classifier = train_classifier(data.faces, data.face_labels, s.seed)
    real_features = digit_features(classifier, data.held_faces)
    common = dict(seed=s.seed, workers=s.workers, quiet=quiet, tensorboard="off", device="cpu", keep=0)

    curves: dict = {"settings": asdict(s), "encoder": [], "gan": []}
    if encoder_ckpt is None:
        enc_dir = outdir / "encoder"
        enc_resume = resume and (enc_dir / CHECKPOINT_DIR / "latest.pt").is_file()
        status = train_style_encoder(StyleEncoderConfig(resume=str(enc_dir) if enc_resume else None,
            data=str(data.styles_dir), outdir=str(enc_dir), size=SIZE, style_dim=s.style_dim, pool=s.pool,
            batch=s.encoder_batch, lr=s.encoder_lr, steps=s.encoder_steps, save_every=s.encoder_every,
            color_jitter=s.color_jitter, code_contrast=s.code_contrast, log_every=s.encoder_every, **common))
        if status:
            raise TrainError(f"style-encoder training stopped (status {status})")
        with seeded_init(derive_seed(s.seed, "style-encoder-init")):
            initial = StyleEncoder(style_dim=s.style_dim)
            init_vgg_random(initial)
        curves["encoder"].append({"step": 0, "retrieval": family_retrieval(
            encoder_codes(initial.eval(), data.held_arts, s.pool), data.held_families)})
        for ck in sorted((enc_dir / CHECKPOINT_DIR).glob("[0-9]*.pt")):
            enc = load_encoder(ck, s.style_dim)
            curves["encoder"].append({"step": int(ck.stem), "retrieval": family_retrieval(
                encoder_codes(enc, data.held_arts, s.pool), data.held_families)})
        encoder_ckpt = enc_dir / CHECKPOINT_DIR / "latest.pt"
    encoder = load_encoder(Path(encoder_ckpt), s.style_dim)
    curves["retrieval_chance"] = 1 / len(FAMILIES)

    gan_dir = outdir / "gan"
    gan_resume = resume and (gan_dir / CHECKPOINT_DIR / "latest.pt").is_file()
    config = GANConfig(resume=str(gan_dir) if gan_resume else None,faces=str(data.faces_dir), styles=str(data.styles_dir), style_encoder=str(encoder_ckpt),
                       outdir=str(gan_dir), size=SIZE, style_dim=s.style_dim, n_mlp=s.n_mlp, channels=s.channels,
                       batch=s.gan_batch, kimg=s.gan_steps * s.gan_batch / 1000, lr=s.lr, r1=s.r1,
                       ema_kimg=s.ema_kimg, path_regularize=s.path_regularize, style_only=s.style_only,
                       style_mapping_lr=s.style_mapping_lr, style_pool=s.pool,
                       save_every=s.gan_every, log_every=s.gan_every, sample_every=0, **common, **s.extra)
    status = train_gan(config)
    if status:
        raise TrainError(f"BlendGAN training stopped (status {status})")
    grid = None
    steps = [(0, initial_generator(s))] + [(int(ck.stem), BlendGAN.from_pretrained(ck).generator)
                                           for ck in sorted((gan_dir / CHECKPOINT_DIR).glob("[0-9]*.pt"))]
    for step, g in steps:
        record = gan_measures(g.eval(), data, classifier, real_features, encoder, s)
        grid = record.pop("_grid")
        curves["gan"].append({"step": step, **record})
    curves["real_vs_real_fd"] = frechet_distance(digit_features(classifier, data.faces[:len(data.held_faces)]),
                                                 real_features)
    with io.atomic_path(outdir / "proof.json") as tmp:
        tmp.write_text(json.dumps(curves, indent=1) + "\n")
    if grid is not None:
        io.write_image(outdir / "grid.png", proof_grid(data, *grid))
    return curves


def proof_grid(data: ToyData, natural: np.ndarray, pure: np.ndarray, blended: np.ndarray, refs: np.ndarray,
               per: int) -> np.ndarray:
    """Row 1: real digits; row 2: natural samples; then one row per style family: its first
    reference artwork, then the style branch's outputs for its code; then the same for the
    learned blend of faces with it (uint8 RGB, 2x nearest-neighbour upscaled)."""
    k = len(natural)
    blank = np.full((1, SIZE, SIZE, 3), 255, np.uint8)
    rows = [np.concatenate([blank, data.held_faces[:k]]), np.concatenate([blank, natural])]
    n_faces = len(pure) // len(refs)
    for stylized in (pure, blended):
        for f in range(len(FAMILIES)):
            r = f * per
            rows.append(np.concatenate([refs[r:r + 1], stylized[r * n_faces:r * n_faces + min(k, n_faces)]]))
    grid = image_grid(rows)
    return cv2.resize(grid, (grid.shape[1] * 2, grid.shape[0] * 2), interpolation=cv2.INTER_NEAREST)


# -- the verdict ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Margins:
    """What counts as learning, between the untrained networks (step 0) and the last checkpoint.

    (a) the natural branch's FD falls by ``fd_drop`` of its step-0 value; (b) the style branch's
    outputs are closer to their own reference's code than to every other reference's (cosine)
    ``style_rise`` more often than at step 0 and than chance (1 / references); (c) the trained
    encoder's family retrieval is ``retrieval_rise`` above the untrained encoder's and
    ``retrieval_above_chance`` above chance.  ``style_rise`` None: (b) is measured, not judged.
    """
    fd_drop: float = 0.15
    style_rise: float | None = 0.2
    retrieval_rise: float = 0.1
    retrieval_above_chance: float = 0.25


def verdict(curves: dict, margins: Margins = Margins()) -> list[str]:
    """The measures that did not move the right way (empty: the run learned)."""
    failed = []
    gan = curves["gan"]
    if len(gan) < 2:
        return ["fewer than two GAN measurements"]
    first, last = gan[0], gan[-1]
    if not last["fd"] <= (1 - margins.fd_drop) * first["fd"]:
        failed.append(f"(a) FD {first['fd']:.2f} -> {last['fd']:.2f}: fell by less than {margins.fd_drop:.0%}")
    floor = max(first["style_accuracy"], last["style_chance"])
    if margins.style_rise is not None and not last["style_accuracy"] >= floor + margins.style_rise:
        failed.append(f"(b) style branch nearest its own reference {first['style_accuracy']:.2f} -> "
                      f"{last['style_accuracy']:.2f}: not {margins.style_rise} above step 0 and chance "
                      f"{last['style_chance']:.2f}")
    enc = curves["encoder"]
    if len(enc) >= 2:
        r0, r = enc[0]["retrieval"], enc[-1]["retrieval"]
        if not r >= r0 + margins.retrieval_rise:
            failed.append(f"(c) family retrieval {r0:.2f} (untrained) -> {r:.2f}: rose by less than "
                          f"{margins.retrieval_rise}")
        if not r >= curves["retrieval_chance"] + margins.retrieval_above_chance:
            failed.append(f"(c) family retrieval {r:.2f}: not {margins.retrieval_above_chance} above chance "
                          f"{curves['retrieval_chance']:.2f}")
    return failed
