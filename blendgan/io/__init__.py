"""Reading and writing what blendgan consumes and makes: images (:mod:`.images`), folders and
file names with atomic writes (:mod:`.files`), videos and GIFs (:mod:`.video`).

The public names of the three modules are available from ``blendgan.io`` directly.
"""
from .files import (IMAGE_EXTENSIONS, MAX_NAME_BYTES, atomic_path, fit_name, input_images, is_image_path,
                    list_images, output_stems, prepare_outdir, temp_beside)
from .images import (FORMATS, JPEG_QUALITY, MAX_IMAGE_PIXELS, decode_image, encode_image, fit_within,
                     header_size, hstack, read_image, resize, to_tensor, to_uint8, to_uint8_async, write_image)
from .video import CONTAINERS, VideoWriter, add_h264_stream, container_options, video_backend, write_gif
from ..errors import ImageError

__all__ = ["CONTAINERS", "FORMATS", "IMAGE_EXTENSIONS", "ImageError", "JPEG_QUALITY", "MAX_IMAGE_PIXELS",
           "MAX_NAME_BYTES", "VideoWriter", "add_h264_stream", "atomic_path", "container_options", "decode_image",
           "encode_image", "fit_name", "fit_within", "header_size", "hstack", "input_images", "is_image_path",
           "list_images", "output_stems", "prepare_outdir", "read_image", "resize", "temp_beside", "to_tensor",
           "to_uint8", "to_uint8_async", "video_backend", "write_gif", "write_image"]
