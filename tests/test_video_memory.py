"""Video rendering streams frames: peak memory does not grow with the number of frames."""
import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

PROBE = r"""
import json, resource, sys
from blendgan import BlendGAN, jobs
m = BlendGAN.from_pretrained(sys.argv[1], psp_encoder=sys.argv[2])
r = jobs.run_video(m, sys.argv[3], sys.argv[4], sys.argv[5], n_styles=2, transition_steps=int(sys.argv[6]),
                hold_frames=1, batch_size=4, progress=False)
assert r.written and not r.failed, r
print(json.dumps({"rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def peak_rss(golden_ckpts, face, styles, out, steps):
    r = subprocess.run([sys.executable, "-c", PROBE, str(golden_ckpts.blendgan), str(golden_ckpts.psp), str(face),
                        str(styles), str(out), str(steps)], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])["rss_mib"]


WRITER_PROBE = r"""
import resource, sys, numpy as np
from blendgan import io
base = np.random.default_rng(0).integers(0, 255, (256, 768, 3), dtype=np.uint8)
with io.VideoWriter(sys.argv[1]) as w:
    for i in range(int(sys.argv[2])):
        w.write(np.roll(base, i, axis=1)[None])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def test_writer_memory_flat(tmp_path):
    """The H.264 writer's memory stops growing once the encoder's look-ahead is full (~60 frames)."""
    pytest.importorskip("av")
    rss = []
    for n in (100, 400):
        r = subprocess.run([sys.executable, "-c", WRITER_PROBE, str(tmp_path / f"{n}.mp4"), str(n)], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        rss.append(float(r.stdout.strip().splitlines()[-1]))
    # 300 more frames kept in memory would be +170 MiB
    assert rss[1] - rss[0] < 20, rss


@pytest.mark.slow
def test_peak_rss_independent_of_frame_count(golden_ckpts, sample_dirs, tmp_path):
    pytest.importorskip("av")
    face = sorted(sample_dirs.faces.iterdir())[0]
    # both past the x264 look-ahead (~60 frames), where memory has to be flat
    short = peak_rss(golden_ckpts, face, sample_dirs.styles, tmp_path / "short", 60)    # 63 frames
    long = peak_rss(golden_ckpts, face, sample_dirs.styles, tmp_path / "long", 180)     # 183 frames
    print(f"peak RSS: 63 frames {short:.0f} MiB, 183 frames {long:.0f} MiB")
    # 120 more 256x768 RGB frames held in memory would add ~70 MiB (and far more as tensors)
    assert long - short < 24, (short, long)
