"""Training: the BlendGAN generator and the Gram-matrix style encoder on folders of images.

Entry points take a settings dataclass (:mod:`.config`) and the names of the settings given
explicitly (those win over a resumed checkpoint's)::

    from blendgan.train import GANConfig, train_gan
    status = train_gan(GANConfig(faces="ffhq", styles="aahq", outdir="runs/bg", size=256))

Rooms: :mod:`.config` (settings), :mod:`.gan` and :mod:`.style_encoder` (the two trainers),
:mod:`.loop` (the loop both run), :mod:`.losses`, :mod:`.modules` (networks as training sees
them), :mod:`.data` (folders, cache, resumable sampling, views), :mod:`.checkpoints`,
:mod:`.monitor` (logs, rates, sample grids), :mod:`.collectives` (between processes),
:mod:`.encoder_weights` (style-encoder weights from known files).

Importing this package builds or compiles nothing; torch.distributed is initialised only
by a run, and only when ``WORLD_SIZE`` > 1.
"""
from .config import GANConfig, RunConfig, StyleEncoderConfig
from .gan import train_gan
from .style_encoder import train_style_encoder

__all__ = ["GANConfig", "RunConfig", "StyleEncoderConfig", "train_gan", "train_style_encoder"]
