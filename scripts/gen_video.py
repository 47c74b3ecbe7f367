#!/usr/bin/env python
"""Drop-in for the official BlendGAN `gen_video.py`: same flags, same defaults, same output names.

Run `python scripts/gen_video.py --help`; the work is done by `blendgan.cli.official.gen_video`.
"""
import sys
from pathlib import Path

try:
    import blendgan  # noqa: F401
except ImportError:  # running from a checkout without `pip install`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blendgan.cli.official import entry

if __name__ == "__main__":
    entry("gen_video")
