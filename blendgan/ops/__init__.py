"""Custom ops of the StyleGAN2 generator: fused bias+activation and upfirdn2d, and the
Winograd F(4x4, 3x3) convolution of CPU inference (:mod:`blendgan.ops.winograd`).

Each op has a public function, a pure-PyTorch reference (``*_ref``) and a compiled kernel
built lazily by :mod:`blendgan.ops.extensions`: CUDA for the first two (the reference runs on
CPU and as the fallback), C++ for the Winograd transforms.
"""
from .extensions import backend_info, cpu_backend_info
from .bias_act import fused_bias_act, fused_bias_act_ref, fused_leaky_relu
from .upfirdn2d import upfirdn2d, upfirdn2d_ref

__all__ = ["backend_info", "cpu_backend_info", "fused_bias_act", "fused_bias_act_ref", "fused_leaky_relu",
           "upfirdn2d", "upfirdn2d_ref"]
