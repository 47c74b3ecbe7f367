"""Reading and writing what blendgan consumes and makes: images (:mod:`.images`), folders and
file names with atomic writes (:mod:`.files`), videos and GIFs (:mod:`.video`).

The public names of the three modules are available from ``blendgan.io`` directly.
"""
from .files import (IMAGE_EXTENSIONS, MAX_NAME_BYTES, atomic_path, file_kind, fit_name, input_images, is_done,
                    is_image_path, list_images, not_regular, output_stems, prepare_outdir, release_temp, same_file,
                    sweep_temporaries, temp_beside)
from .images import (FORMATS, JPEG_QUALITY, MAX_IMAGE_PIXELS, decode_image, encode_image, fit_within,
                     header_size, hstack, read_bytes, read_image, resize, to_tensor, to_uint8, to_uint8_async, write_image)
from .video import (CONTAINERS, VideoWriter, add_h264_stream, container_options, frame_rate, gif_delay, video_backend,
                    write_gif, write_video)
from ..errors import ImageError

__all__ = ["CONTAINERS", "FORMATS", "IMAGE_EXTENSIONS", "ImageError", "JPEG_QUALITY", "MAX_IMAGE_PIXELS",
           "MAX_NAME_BYTES", "VideoWriter", "add_h264_stream", "atomic_path", "container_options", "decode_image",
           "encode_image", "file_kind", "fit_name", "fit_within", "frame_rate", "gif_delay", "header_size", "hstack",
           "input_images", "is_done", "is_image_path", "list_images", "not_regular", "output_stems", "prepare_outdir",
           "read_bytes", "read_image", "release_temp", "resize", "same_file", "sweep_temporaries", "temp_beside",
           "to_tensor", "to_uint8", "to_uint8_async", "video_backend", "write_gif", "write_image", "write_video"]
