"""Every default that more than one part of blendgan uses, in one place.

Job settings are the official scripts' values (``generate_image_pairs.py``,
``style_transfer_folder.py``, ``gen_video.py``); the command line, the drop-in scripts, the
web page and the library functions all read them from here.
"""
from __future__ import annotations

# -- weights ------------------------------------------------------------------------------------
WEIGHTS_DIR = "pretrained_models"
CKPT = f"{WEIGHTS_DIR}/blendgan.pt"
PSP_ENCODER = f"{WEIGHTS_DIR}/psp_encoder.pt"
#: set to 1 (read, never written): a missing default weight file is an error, not a download
ENV_OFFLINE = "BLENDGAN_OFFLINE"
#: a folder or http(s) URL holding blendgan.pt / psp_encoder.pt, used instead of Google Drive
ENV_MIRROR = "BLENDGAN_MIRROR"
DOWNLOAD_TIMEOUT = 10.0      # seconds for the connectivity probe and each network read

# -- sampling -----------------------------------------------------------------------------------
SEED = 0
TRUNCATION = 0.75           # face truncation psi when the checkpoint stores none
TRUNCATION_MEAN = 4096      # mapped samples averaged when the checkpoint has no latent_avg
MEAN_LATENT_SEED = 0        # seed of those samples when no generator is given

# -- stylization controls (blendgan.controls) ---------------------------------------------------
STRENGTH = 1.0               # 1 = the official blend, 0 = the face alone

# -- jobs ---------------------------------------------------------------------------------------
BATCH_SIZE = 4
FORMAT = "jpg"
PAIRS_PICS = 20
PAIRS_ADD_WEIGHT_INDEX = 6
TRANSFER_ADD_WEIGHT_INDEX = 6
VIDEO_ADD_WEIGHT_INDEX = 7
VIDEO_STYLES = 8
VIDEO_FPS = 30
VIDEO_TRANSITION_STEPS = 20  # sigmoid samples per style change
VIDEO_HOLD_FRAMES = 10       # frames held on each style, and on the last frame
VIDEO_LAYOUTS = ("triptych", "output")

# -- inversion (blendgan.inversion) ------------------------------------------------------------
INVERT_METHOD = "psp"        # the official encoder alone
INVERT_STEPS = 100           # Adam steps on W+ (and as many on the weights for pti)
INVERT_LR = 0.01             # peak learning rate on W+
INVERT_TUNE_LR = 3e-4        # pivotal tuning's learning rate on the synthesis weights
INVERT_PULL = 0.01           # weight of mean((w - w_pSp)^2) in the W+ objective
INVERT_IDENTITY_WEIGHT = 0.1  # weight of the optional ArcFace identity loss (as pSp's id_lambda)

# -- faces --------------------------------------------------------------------------------------
ALIGN_MODES = ("never", "auto", "always")
ALIGN_SIZE = 1024            # side of the crops `blendgan align` writes
#: square images of these sides are taken as aligned crops already (the models' sizes)
ALIGNED_SIZES = (256, 512, 1024)
FACE_VIDEO_ALIGN_SIZE = 256  # pSp's input size (it pools larger crops to 256 anyway)

# -- ONNX export --------------------------------------------------------------------------------
EXPORT_DIR = "onnx"
ONNX_OPSET = 18

# -- web page ----------------------------------------------------------------------------------
WEB_HOST = "127.0.0.1"       # this machine only
WEB_PORT = 7860
#: the page's "face structure kept" (add_weight_index) on both of its tabs; the official video
#: script's 7 (VIDEO_ADD_WEIGHT_INDEX) stays the default of `blendgan video` only
WEB_ADD_WEIGHT_INDEX = TRANSFER_ADD_WEIGHT_INDEX
WEB_MAX_STRENGTH = 2.0       # the strength slider ends here
WEB_MIX_SHARE = 0.5          # share of a second style, once one is chosen
WEB_VIDEO_STEPS = 8          # transition frames per style change (short: the page waits for it)
WEB_VIDEO_HOLD = 3           # frames held on each style
WEB_VIDEO_FPS = 12
WEB_VIDEO_MAX_FRAMES = 150
WEB_REFINE_MAX_STEPS = 500  # the page's "refinement steps" slider ends here (INVERT_STEPS is its default)

# -- files --------------------------------------------------------------------------------------
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
#: inputs taken as a video of a face by `blendgan video`
VIDEO_INPUT_SUFFIXES = (".mp4", ".mov", ".mkv", ".m4v", ".avi", ".webm")
