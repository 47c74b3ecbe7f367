"""``blendgan pairs``, ``transfer`` and ``video``: the folder jobs of :mod:`blendgan.jobs`."""
from __future__ import annotations

import argparse
import logging

from .. import defaults
from ..align import FaceAligner
from ..errors import UsageError
from ..io.video import gif_delay
from ..jobs import (is_video_path, load_sample_zs, run_pairs, run_paste_back, run_ramp, run_transfer, run_video,
                    stylize_video_folder)
from ..model import BlendGAN
from ..runtime import configure_backends, process_group
from . import arguments as A
from .base import Command, finish

log = logging.getLogger("blendgan")


def open_model(ckpt: str, psp_encoder: str | None, device, size: int | None = None,
               channel_multiplier: int | None = None, precision: str = "fp32", compile: bool = False,
               offline: bool | None = None) -> BlendGAN:
    """Load the model for a job, with this process's backend switches set for ``precision``
    (missing default weights are downloaded first unless ``offline``)."""
    configure_backends(precision)
    model = BlendGAN.from_pretrained(ckpt, psp_encoder=psp_encoder, device=device, size=size,
                                     channel_multiplier=channel_multiplier, dtype=precision, offline=offline)
    log.info("loaded %s (%dpx) on %s%s", ckpt, model.size, model.device,
             f" with pSp {psp_encoder}" if psp_encoder else "")
    return model.compile_synthesis() if compile else model


def controls(a: argparse.Namespace) -> dict:
    """The stylization controls given (the drop-in scripts have none: the official blend)."""
    return {"strength": getattr(a, "strength", defaults.STRENGTH),
            "preserve_color": getattr(a, "preserve_color", False)}


def inversion(a: argparse.Namespace) -> dict:
    """The face inversion chosen (the drop-in scripts have none: the pSp encoder)."""
    return {"invert": getattr(a, "invert", defaults.INVERT_METHOD), "invert_steps": getattr(a, "invert_steps", None)}


def _open(a: argparse.Namespace, device, psp: bool = True) -> BlendGAN:
    return open_model(a.ckpt, a.psp_encoder if psp else None, device, a.size, a.channel_multiplier, a.precision,
                      a.compile, getattr(a, "offline", None))


class PairsCommand(Command):
    name = "pairs"
    help = "random faces, natural and stylized side by side (latent/reference-guided)"
    description = f"Write {help}: {{i:06d}}.jpg = [natural | stylized]."

    @classmethod
    def add_arguments(cls, p: argparse.ArgumentParser) -> None:
        A.add_model_flags(p, psp=False)
        p.add_argument("--outdir", default="outputs/pairs", help="output folder (default %(default)s)")
        p.add_argument("--pics", type=A.int_at_least(1), default=defaults.PAIRS_PICS,
                       help="number of pairs (default %(default)s)")
        p.add_argument("--style-img", "--style_img", dest="style_img", action="append", default=None,
                       help="reference style image; omitted: a random style code (latent-guided); "
                            "give it several times to mix styles")
        p.add_argument("--style-weights", dest="style_weights", type=A.weights_arg, default=None,
                       help="mixing weights of the --style-img images, e.g. 0.3,0.7 (default: equal)")
        p.add_argument("--truncation", type=A.finite_float, default=None,
                       help="face truncation psi (default: the checkpoint's, else 0.75; >=1 disables)")
        p.add_argument("--truncation-mean", "--truncation_mean", dest="truncation_mean", type=A.int_at_least(1),
                       default=defaults.TRUNCATION_MEAN,
                       help="samples for the mean w when the checkpoint has none (default %(default)s)")
        p.add_argument("--sample-zs", "--sample_zs", dest="sample_zs", default=None,
                       help="torch.save'd face codes [P, 512] to use instead of random ones")
        A.add_index_flag(p, defaults.PAIRS_ADD_WEIGHT_INDEX)
        A.add_control_flags(p)
        A.add_runtime_flags(p)

    def run(self, a: argparse.Namespace) -> int:
        A.check_paths(a)
        styles = a.style_img if isinstance(a.style_img, list) else [a.style_img] if a.style_img else []
        weights = getattr(a, "style_weights", None)
        if weights is not None and len(weights) != len(styles):
            raise UsageError(f"--style-weights: {len(styles)} --style-img image(s) need {len(styles)} weights, "
                             f"got {len(weights)}")
        with process_group(a.device) as env:
            model = _open(a, env.device, psp=False)
            truncation = a.truncation
            if getattr(a, "checkpoint_truncation_wins", False) and model.stored_truncation is not None:
                truncation = model.stored_truncation  # the official script's rule
                log.info("truncation %s (from the checkpoint)", truncation)
            zs = load_sample_zs(a.sample_zs, a.pics, model.generator.style_dim) if a.sample_zs else None
            report = run_pairs(model, a.outdir, pics=a.pics, style_image=styles, zs=zs, truncation=truncation,
                               truncation_mean=a.truncation_mean, add_weight_index=a.add_weight_index, seed=a.seed,
                               batch_size=a.batch_size, fmt=a.format, overwrite=a.overwrite,
                               progress=not a.quiet and env.main, shard=env.shard, **controls(a),
                               style_weights=weights)
        return finish(report, a.outdir)


class TransferCommand(Command):
    name = "transfer"
    help = "style transfer: every face x every style in two folders"
    description = f"Write {help}: {{face}}_v_{{style}}.jpg = [input | style | output]."

    @classmethod
    def add_arguments(cls, p: argparse.ArgumentParser) -> None:
        A.add_folder_job_flags(p, "outputs/transfer", defaults.TRANSFER_ADD_WEIGHT_INDEX, "face image or folder")
        p.add_argument("--paste-back", action="store_true",
                       help="real photos out: find the face in each photo (needs blendgan[align]), stylize it "
                            "and paste it back; {face}_v_{style}.jpg is then the whole photo (--align does not apply)")
        p.add_argument("--all-faces", action="store_true",
                       help="with --paste-back: every face of each photo (default: the largest)")
        A.add_control_flags(p)
        A.add_invert_flags(p)
        A.add_runtime_flags(p, seed=False)

    def run(self, a: argparse.Namespace) -> int:
        if getattr(a, "all_faces", False) and not getattr(a, "paste_back", False):
            raise UsageError("--all-faces needs --paste-back")
        A.check_paths(a)
        if getattr(a, "paste_back", False):
            return self.paste_back(a)
        with process_group(a.device) as env:
            model = _open(a, env.device)
            report = run_transfer(model, a.input_img_path, a.style_img_path, a.outdir,
                                  add_weight_index=a.add_weight_index, batch_size=a.batch_size, fmt=a.format,
                                  overwrite=a.overwrite, progress=not a.quiet and env.main,
                                  cache_dir=a.cache_dir, shard=env.shard, align=a.align, **controls(a),
                                  **inversion(a))
        return finish(report, a.outdir)

    @staticmethod
    def paste_back(a: argparse.Namespace) -> int:
        """``--paste-back``: dlib is loaded before the model, so a missing extra costs no loading time."""
        aligner = FaceAligner().load()
        with process_group(a.device) as env:
            model = _open(a, env.device)
            report = run_paste_back(model, a.input_img_path, a.style_img_path, a.outdir, all_faces=a.all_faces,
                                    add_weight_index=a.add_weight_index, batch_size=a.batch_size, fmt=a.format,
                                    overwrite=a.overwrite, progress=not a.quiet and env.main, cache_dir=a.cache_dir,
                                    shard=env.shard, aligner=aligner, **controls(a), **inversion(a))
        return finish(report, a.outdir)


class VideoCommand(Command):
    name = "video"
    help = "interpolation video of each face through random styles"
    description = (f"Write an {help} ({{face}}.mp4), or restyle the face in a video clip with each style "
                   "({clip}_v_{style}.mp4).")

    @classmethod
    def add_arguments(cls, p: argparse.ArgumentParser) -> None:
        A.add_folder_job_flags(p, "outputs/video", defaults.VIDEO_ADD_WEIGHT_INDEX,
                               "face image or folder, or a video of a face (.mp4 .mov .mkv ...)")
        A.add_video_flags(p)
        p.add_argument("--ramp", action="store_true",
                       help="instead of a tour through random styles: for every face x style, the strength "
                            "ramps from 0 (the face) to --strength and back ({face}_v_{style}_ramp.mp4)")
        A.add_control_flags(p)
        A.add_invert_flags(p)
        A.add_runtime_flags(p, images=False)

    def run(self, a: argparse.Namespace) -> int:
        if getattr(a, "ramp", False) and (isinstance(a.strength, list) or is_video_path(a.input_img_path)):
            raise UsageError("--ramp takes face images and one --strength (the end of the ramp)")
        if a.gif and not is_video_path(a.input_img_path):
            gif_delay(a.fps)  # a rate GIFs cannot show is refused before the model loads
        A.check_paths(a)
        if is_video_path(a.input_img_path):
            return self.face_video(a)
        with process_group(a.device) as env:
            model = _open(a, env.device)
            if getattr(a, "ramp", False):
                report = run_ramp(model, a.input_img_path, a.style_img_path, a.outdir,
                                  add_weight_index=a.add_weight_index, fps=a.fps, transition_steps=a.transition_steps,
                                  hold_frames=a.hold_frames, batch_size=a.batch_size, overwrite=a.overwrite,
                                  progress=not a.quiet and env.main, cache_dir=a.cache_dir, shard=env.shard,
                                  align=a.align, layout=a.layout, gif=a.gif, **controls(a), **inversion(a))
                return finish(report, a.outdir)
            report = run_video(model, a.input_img_path, a.style_img_path, a.outdir,
                               add_weight_index=a.add_weight_index, n_styles=a.styles, seed=a.seed, fps=a.fps,
                               transition_steps=a.transition_steps, hold_frames=a.hold_frames,
                               batch_size=a.batch_size, overwrite=a.overwrite,
                               progress=not a.quiet and env.main, cache_dir=a.cache_dir, shard=env.shard,
                               align=a.align, layout=a.layout, gif=a.gif, **controls(a), **inversion(a))
        return finish(report, a.outdir)

    @staticmethod
    def face_video(a: argparse.Namespace) -> int:
        """``blendgan video --input clip.mp4 --style STYLES``: one ``{clip}_v_{style}.mp4`` per style."""
        model = _open(a, a.device)
        report = stylize_video_folder(model, a.input_img_path, a.style_img_path, a.outdir, gif=a.gif,
                                      overwrite=a.overwrite, add_weight_index=a.add_weight_index,
                                      batch_size=a.batch_size, progress=not a.quiet, **controls(a),
                                      **inversion(a))
        return finish(report, a.outdir)

