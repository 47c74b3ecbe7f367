"""blendgan: BlendGAN (NeurIPS 2021) as a toolkit, compatible with the official checkpoints."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "blendgan" / "__init__.py").read_text()).group(1)

# Lower bounds only, so that installing blendgan keeps a torch the user already has (a CUDA
# build, say).  torch 2.13.0 / torchvision 0.28.0 are the oldest releases the test suite was run
# on (the parity, model and export tests); CI and the README's test command pin the exact
# releases of constraints.txt.
REQUIRES = [
    "torch>=2.13",
    "torchvision>=0.28",
    "numpy>=1.23",
    "pillow>=9.0",
    "opencv-python-headless>=4.7",
    "tqdm>=4.60",
    "ninja>=1.10",
    "gdown>=4.6",  # the official weights from Google Drive, fetched on first use
]
EXTRAS = {
    "video": ["av>=12.0"],                                     # H.264 mp4 via PyAV
    "download": [],                                            # kept for old commands: gdown is a requirement now
    "align": ["dlib-bin>=19.24", "face-recognition-models>=0.3"],
    "web": ["gradio>=6.31,<7"],
    "train": ["tensorboard>=2.10"],
    "export": ["onnx>=1.16", "onnxscript>=0.3", "onnxruntime>=1.18"],        # blendgan export, examples/onnx_stylize.py
    "eval": ["torch-fidelity>=0.3", "scipy>=1.7"],              # blendgan eval: Inception FID/KID
    "proof": ["scikit-learn>=1.1"],                            # tools/proof_of_learning.py: the bundled digits
    # skimage ships the public-domain test photos; playwright drives Debian's chromium in the web test
    # nbclient/nbformat/ipykernel run notebooks/blendgan.ipynb in the tests
    "test": ["pytest>=7.0", "scikit-image>=0.19", "playwright>=1.40", "nbclient>=0.7", "nbformat>=5.7",
             "ipykernel>=6.0"],
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
