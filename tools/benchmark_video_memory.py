#!/usr/bin/env python
"""Peak memory of the interpolation video against its length (frames are streamed).

    python tools/benchmark_video_memory.py --ckpt blendgan.pt --psp psp_encoder.pt \
        --face test_imgs/face_imgs/astronaut_512.jpg --styles test_imgs/style_imgs --frames 60 300

Each length runs in a fresh process (2 styles, one transition of ``frames - 3`` steps); prints
frames, seconds and peak RSS per run, one JSON line each.
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[7])
from blendgan import BlendGAN, jobs
m = BlendGAN.from_pretrained(sys.argv[1], psp_encoder=sys.argv[2], device=sys.argv[6])
t = time.time()
r = jobs.run_video(m, sys.argv[3], sys.argv[4], sys.argv[5], n_styles=2, transition_steps=int(sys.argv[8]) - 3,
                hold_frames=1, batch_size=4, progress=False)
assert r.written and not r.failed, r
print(json.dumps({"size": m.size, "frames": int(sys.argv[8]), "seconds": round(time.time() - t, 1),
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--psp", required=True)
    ap.add_argument("--face", required=True, help="one face image")
    ap.add_argument("--styles", required=True, help="folder with at least one style image")
    ap.add_argument("--frames", type=int, nargs="+", default=[60, 300])
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    root = str(Path(__file__).resolve().parents[1])
    for n in a.frames:
        if n < 4:
            ap.error("--frames must be >= 4")
        with tempfile.TemporaryDirectory() as out:
            r = subprocess.run([sys.executable, "-c", CHILD, a.ckpt, a.psp, a.face, a.styles, out, a.device, root,
                                str(n)], capture_output=True, text=True)
            if r.returncode:
                sys.exit(r.stderr[-2000:])
            print(r.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
