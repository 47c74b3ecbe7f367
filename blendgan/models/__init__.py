"""Networks of BlendGAN, with the official state-dict layout."""
from .generator import Generator, channel_table, n_latent_for
from .layers import (Blur, ConstantInput, EqualLinear, FusedLeakyReLU, ModulatedConv2d, NoiseInjection,
                     PixelNorm, StyledConv, ToRGB, Upsample)
from .psp import GradualStyleEncoder, PSPEncoder
from .style_encoder import StyleEncoder, gram_matrix

__all__ = ["Blur", "ConstantInput", "EqualLinear", "FusedLeakyReLU", "Generator", "GradualStyleEncoder",
           "ModulatedConv2d", "NoiseInjection", "PSPEncoder", "PixelNorm", "StyleEncoder", "StyledConv",
           "ToRGB", "Upsample", "channel_table", "gram_matrix", "n_latent_for"]
