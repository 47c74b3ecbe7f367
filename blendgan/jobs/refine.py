"""Refined inversion in the folder jobs (``--invert``): one face at a time, logged."""
from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import torch

from .. import defaults, io
from ..inversion import Inversion, check_settings, describe, invert
from ..session import Face, Session

log = logging.getLogger("blendgan")


def check_invert(method: str, steps: int | None) -> int:
    """Check a job's ``--invert`` settings before any work -> the step count to use."""
    steps = defaults.INVERT_STEPS if steps is None else steps
    check_settings(method, steps)
    return steps


def invert_record(method: str, steps: int | None) -> dict:
    """The inversion settings for a folder's settings record (none for 'psp', so records made
    before ``--invert`` existed still match)."""
    if method == "psp":
        return {}
    return {"invert": method, "invert_steps": defaults.INVERT_STEPS if steps is None else steps}


def refine_face(session: Session, face: Face, method: str, steps: int | None) -> Face:
    """``face`` refined by ``method`` (the session caches it; 'psp' returns ``face`` as it is);
    the job log gets its reconstruction loss before and after and the time taken."""
    if method == "psp":
        return face
    refined = session.refine(face, method, steps)
    log.info("%s: %s", face.name, refined.notes[-1])
    return refined


def stylize_crops(model, crops: np.ndarray, method: str, steps: int,
                  render: Callable[[torch.Tensor, object], np.ndarray]) -> list[np.ndarray]:
    """Aligned face crops RGB uint8 [B, S, S, 3], each inverted alone and rendered by
    ``render(w_plus [1, n_latent, 512], model)`` -> its image, before the next is inverted
    (memory: one face, one PTI copy).  Each inversion is logged (loss before and after, time)."""
    out = []
    for crop in crops:
        inv: Inversion = invert(model, io.to_tensor(crop, model.device), method, steps)
        log.info("%s", describe(inv, "frame"))
        out.append(render(inv.w_plus, inv.model))
        del inv
    return out
