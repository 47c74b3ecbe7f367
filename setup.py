"""blendgan: BlendGAN (NeurIPS 2021) as a toolkit, compatible with the official checkpoints."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "blendgan" / "__init__.py").read_text()).group(1)

# torch/torchvision are pinned: these exact builds are what the parity tests were run on,
# and they install from the local wheel cache on the development machines.
REQUIRES = [
    "torch==2.14.1",
    "torchvision==0.29.1",
    "numpy>=1.23",
    "pillow>=9.0",
    "opencv-python-headless>=4.7",
    "tqdm>=4.60",
    "ninja>=1.10",
]
EXTRAS = {
    "video": ["av>=12.0"],                                     # H.264 mp4 via PyAV
    "download": ["gdown>=4.6"],                                # official weights from Google Drive
    "align": ["dlib-bin>=19.24", "face-recognition-models>=0.3"],
    "web": ["gradio>=6.31,<7"],
    "train": ["tensorboard>=2.10"],
    "eval": ["torch-fidelity>=0.3", "scipy>=1.7"],              # blendgan eval: Inception FID/KID
    "proof": ["scikit-learn>=1.1"],                            # tools/proof_of_learning.py: the bundled digits
    # skimage ships the public-domain test photos; playwright drives Debian's chromium in the web test
    "test": ["pytest>=7.0", "scikit-image>=0.19", "playwright>=1.40"],
}
EXTRAS["all"] = sorted({dep for deps in EXTRAS.values() for dep in deps})

setup(
    name="blendgan",
    version=VERSION,
    description="BlendGAN: implicitly GAN blending for arbitrary stylized face generation",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=find_packages(include=["blendgan", "blendgan.*"]) + ["blendgan._op_src"],
    package_dir={"blendgan._op_src": "op"},
    package_data={"blendgan._op_src": ["*.cpp", "*.cu", "*.cuh", "*.h"]},
    install_requires=REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["blendgan = blendgan.cli:main"]},
)
