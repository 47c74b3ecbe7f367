#!/usr/bin/env python
"""Drop-in for the official BlendGAN `style_transfer_folder.py`: same flags, same defaults, same output names.

Run `python scripts/style_transfer_folder.py --help`; the work is done by `blendgan.cli.official.style_transfer_folder`.
"""
import sys
from pathlib import Path

try:
    import blendgan  # noqa: F401
except ImportError:  # running from a checkout without `pip install`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blendgan.cli.official import entry

if __name__ == "__main__":
    entry("style_transfer_folder")
