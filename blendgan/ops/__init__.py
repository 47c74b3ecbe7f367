"""Custom ops of the StyleGAN2 generator: fused bias+activation and upfirdn2d.

Each op has a public function, a pure-PyTorch reference (``*_ref``) used on CPU and as
the fallback, and a CUDA kernel built lazily by :mod:`blendgan.ops._build`.
"""
from ._build import backend_info
from .bias_act import fused_bias_act, fused_bias_act_ref, fused_leaky_relu
from .upfirdn2d import upfirdn2d, upfirdn2d_ref

__all__ = ["backend_info", "fused_bias_act", "fused_bias_act_ref", "fused_leaky_relu",
           "upfirdn2d", "upfirdn2d_ref"]
