"""blendgan: BlendGAN (NeurIPS 2021) arbitrary stylized face generation, compatible with the
official checkpoints.

    from blendgan import BlendGAN
    m = BlendGAN.from_pretrained("pretrained_models/blendgan.pt",
                                 psp_encoder="pretrained_models/psp_encoder.pt", device="cpu")
"""
__version__ = "0.1.0"

from .checkpoint import CheckpointError
from .model import BlendGAN

__all__ = ["BlendGAN", "CheckpointError", "__version__"]
