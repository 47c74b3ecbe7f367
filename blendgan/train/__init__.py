"""Training: the BlendGAN generator (:mod:`.gan`) and the Gram-matrix style encoder
(:mod:`.style_encoder`), on folders of images (:mod:`.data`).

Importing this package builds or compiles nothing; torch.distributed is initialised only
by a run, and only when ``WORLD_SIZE`` > 1.
"""
