"""``blendgan eval``: FID / KID of images or a checkpoint's samples against reference folders
(:mod:`blendgan.eval`)."""
from __future__ import annotations

import argparse
import json
import logging

from .. import io
from ..errors import UsageError
from ..eval import INCEPTION, KIDSettings, compare, evaluate_model, feature_network, load_images
from ..model import BlendGAN
from ..runtime import resolve_device
from . import arguments as A
from .base import Command

log = logging.getLogger("blendgan")


class EvalCommand(Command):
    name = "eval"
    help = "FID and KID of a folder or a checkpoint's samples against a reference folder"
    description = ("FID and KID between --images (or --ckpt's samples) and --reference, on Inception-v3 "
                   "features (torch-fidelity; weights fetched once) or any feature network. With --ckpt and "
                   "--styles also the stylized samples' FID/KID against the artworks, their diversity and "
                   "their style consistency. Prints one JSON object.")

    @classmethod
    def add_arguments(cls, p: argparse.ArgumentParser) -> None:
        p.add_argument("--reference", required=True, help="folder of reference images (e.g. real faces)")
        what = p.add_mutually_exclusive_group(required=True)
        what.add_argument("--images", help="folder of images to evaluate")
        what.add_argument("--ckpt", help="BlendGAN checkpoint whose samples are evaluated")
        p.add_argument("--styles", default=None,
                       help="with --ckpt: folder of reference artworks for the stylized measures")
        p.add_argument("--samples", type=A.int_at_least(2), default=1000,
                       help="with --ckpt: natural samples (default %(default)s)")
        p.add_argument("--faces", type=A.int_at_least(2), default=10,
                       help="with --styles: faces, each stylized with every artwork (default %(default)s)")
        p.add_argument("--max-styles", type=A.int_at_least(2), default=50,
                       help="with --styles: artworks used, the first by name (default %(default)s)")
        p.add_argument("--add-weight-index", dest="add_weight_index", type=A.index_arg, default=None,
                       help="first N W+ layers stay pure face in the stylized samples (default: none)")
        p.add_argument("--features", default=INCEPTION,
                       help="feature network: inception (default) or package.module:name, a torch module "
                            "(or a function building one) mapping [N, 3, S, S] in [-1, 1] to features")
        p.add_argument("--inception-weights", default=None, metavar="PATH",
                       help="torch-fidelity's Inception weights file (default: fetched into torch's hub cache)")
        p.add_argument("--size", type=A.int_at_least(8), default=None,
                       help="resize the folders' images to SIZE x SIZE (default: the first image's size)")
        p.add_argument("--kid-subsets", type=A.int_at_least(1), default=100, help="KID subsets (default %(default)s)")
        p.add_argument("--kid-subset-size", type=A.int_at_least(2), default=1000,
                       help="images per KID subset, cut to the smaller set (default %(default)s)")
        p.add_argument("--seed", type=int, default=0, help="seed of the samples' codes (default %(default)s)")
        p.add_argument("--device", type=A.device_arg, default="auto", help="auto, cpu, cuda, cuda:1 ...")
        p.add_argument("--batch-size", dest="batch_size", type=A.int_at_least(1), default=16,
                       help="images per network call (default %(default)s)")
        p.add_argument("--json-out", default=None, metavar="FILE", help="also write the JSON here")
        p.add_argument("--quiet", action="store_true", help="no info messages")

    def run(self, a: argparse.Namespace) -> int:
        if a.styles and not a.ckpt:
            raise UsageError("--styles needs --ckpt (the stylized samples come from a checkpoint)")
        device = resolve_device(a.device)
        reference = load_images(a.reference, size=a.size)
        features = feature_network(a.features, device, a.inception_weights, a.batch_size)
        kid = KIDSettings(a.kid_subsets, a.kid_subset_size)
        if a.images:
            report = compare(load_images(a.images, size=reference.shape[1]), reference, features, kid)
        else:
            model = BlendGAN.from_pretrained(a.ckpt, device=device)
            styles = load_images(a.styles, limit=a.max_styles, size=a.size) if a.styles else None
            report = evaluate_model(model, reference, features, a.samples, styles, a.faces, a.seed,
                                    a.add_weight_index, kid, a.batch_size)
        text = json.dumps(report, indent=2)
        print(text)
        if a.json_out:
            with io.atomic_path(a.json_out) as tmp:
                tmp.write_text(text + "\n")
        log.info("features: %s", features.name)
        return 0

