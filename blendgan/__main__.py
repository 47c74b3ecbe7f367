"""``python -m blendgan`` (also the entry point for ``torchrun -m blendgan``)."""
import sys

from .cli import main

sys.exit(main())
