"""FFHQ-style face alignment: find faces, crop each to a square the way FFHQ was made, and
paste restyled crops back.

* :mod:`.geometry` — the crop square of a face, cropping, pasting back (no detector needed);
* :mod:`.detect` — dlib face detection and 68 landmarks (``blendgan[align]``);
* :mod:`.prepare` — "align the face if it needs it", the one policy of every front end;
* :mod:`.track` — one face followed through the frames of a video.
"""
from ..errors import AlignmentUnavailable, NoFaceError
from .detect import INSTALL_HINT, FaceAligner, load_models, model_dir
from .geometry import (ALIGNED_SIZES, DEFAULT_SIZE, align_face, crop_quad, face_mask, face_quad, needs_alignment,
                       paste_face, paste_faces, quad_to_image_matrix)
from .prepare import ALIGN_MODES, FacePreparer, PreparedFace
from .track import FaceTracker, OneEuroFilter

__all__ = ["ALIGNED_SIZES", "ALIGN_MODES", "AlignmentUnavailable", "DEFAULT_SIZE", "FaceAligner", "FacePreparer",
           "FaceTracker", "INSTALL_HINT", "NoFaceError", "OneEuroFilter", "PreparedFace", "align_face", "crop_quad",
           "face_mask", "face_quad", "load_models", "model_dir", "needs_alignment", "paste_face",
           "paste_faces", "quad_to_image_matrix"]
