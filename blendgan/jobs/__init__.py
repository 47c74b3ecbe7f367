"""The jobs: folders of inputs in, files out.

Each job reads its inputs, writes every output atomically, skips outputs that exist (rerun
to resume), reports a bad input in one line and goes on, and returns a :class:`JobReport`.

* :func:`run_pairs` — random faces, natural and stylized side by side (:mod:`.pairs`);
* :func:`run_transfer` — every face with every style (:mod:`.transfer`);
* :func:`run_video` — each face moving through random styles; :func:`run_ramp` — the strength
  ramping from the face to the stylized result (:mod:`.video`);
* :func:`stylize_video`, :func:`stylize_video_folder` — the face in a video clip (:mod:`.face_video`);
* :func:`run_paste_back` — real photos with their faces stylized in place (:mod:`.photos`);
* :func:`align_path` — FFHQ crops of face photos (:mod:`.align`);
* :mod:`.report` — the plumbing they share (reports, background writers, batch hand-off).

The tensor-level generators they build on are in :mod:`blendgan.synthesis`.
"""
from .align import align_path
from .face_video import is_video_path, stylize_frames, stylize_video, stylize_video_folder
from .pairs import load_sample_zs, run_pairs
from .photos import photo_faces, run_paste_back
from .report import BackgroundWriter, JobReport, fail, one_ahead, overlapped, write_failed, writer_threads
from .transfer import run_transfer, transfer_outputs
from .video import run_ramp, run_video

__all__ = ["BackgroundWriter", "JobReport", "align_path", "fail", "is_video_path", "load_sample_zs", "one_ahead",
           "overlapped", "photo_faces", "run_pairs", "run_paste_back", "run_ramp", "run_transfer", "run_video", "stylize_frames", "stylize_video",
           "stylize_video_folder", "transfer_outputs", "write_failed", "writer_threads"]
