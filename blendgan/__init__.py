"""blendgan: BlendGAN (NeurIPS 2021) arbitrary stylized face generation, compatible with the
official checkpoints.

    from blendgan import BlendGAN, Session
    m = BlendGAN.from_pretrained("pretrained_models/blendgan.pt",
                                 psp_encoder="pretrained_models/psp_encoder.pt", device="cpu")
    s = Session(m)
    image = s.render(s.face("face.jpg"), s.style("style.png"))   # RGB uint8 [size, size, 3]
"""
__version__ = "0.1.0"

from .errors import BlendGANError, CheckpointError
from .model import BlendGAN
from .session import Session

__all__ = ["BlendGAN", "BlendGANError", "CheckpointError", "Session", "__version__"]
