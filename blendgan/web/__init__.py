"""``blendgan web``: a local Gradio demo (optional extra ``pip install "blendgan[web]"``).

* :mod:`.uploads` — what the page accepts: uploads checked before decoding;
* :mod:`.studio` — the page's logic on plain values (:class:`Studio`, over a :class:`blendgan.Session`),
  what the unit tests drive; it needs no Gradio;
* :mod:`.page` — the ``gradio.Blocks`` page (:func:`build_app`);
* :mod:`.server` — loading the weights and serving (:func:`launch`).

Importing this package imports no Gradio and changes no environment variable.
"""
from .page import build_app, import_gradio
from .server import DEFAULT_HOST, DEFAULT_PORT, launch, launch_kwargs
from .studio import Studio
from .uploads import WebError, decode_upload, display_name, read_upload

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "Studio", "WebError", "build_app", "decode_upload", "display_name",
           "import_gradio", "launch", "launch_kwargs", "read_upload"]
