#!/usr/bin/env python
"""onnxruntime (CPU) vs our PyTorch CPU path, side by side, on the same machine and inputs.

    python tools/benchmark_onnx.py --ckpt pretrained_models/blendgan.pt \
        --psp pretrained_models/psp_encoder.pt --onnx onnx/ --batch 4 --rounds 3

Exports the graphs into ``--onnx`` first when ``blendgan.json`` is not there.  Times, per
stage, the best of ``--rounds`` interleaved rounds (PyTorch, then onnxruntime, in each round,
so both see the same machine load) after one warm-up call each:

* style encoder, pSp encoder: ``--batch`` 256×256 images;
* synthesis: style mapping + blending + synthesis of ``--batch`` images;
* transfer: one face and one style encoded, one image synthesized (batch 1).

Both run with the same number of threads (``--threads``, default: torch's).  Prints a
Markdown table (ms per image) and appends one JSON line to ``--json-out`` when given.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blendgan import BlendGAN  # noqa: E402
from blendgan.export import export_onnx, metadata  # noqa: E402
from blendgan.runtime import cpu_name  # noqa: E402



def best(fn, rounds: int) -> float:
    """Seconds of the fastest of ``rounds`` calls."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--psp", required=True)
    p.add_argument("--onnx", type=Path, required=True, help="exported graphs (made when missing)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="threads for both (default: torch's)")
    p.add_argument("--machine", default=None, help="machine description for the report")
    p.add_argument("--json-out", type=Path, default=None)
    a = p.parse_args()

    import onnxruntime as ort
    if a.threads:
        torch.set_num_threads(a.threads)
    threads = torch.get_num_threads()
    model = BlendGAN.from_pretrained(a.ckpt, psp_encoder=a.psp, device="cpu")
    if not (a.onnx / "blendgan.json").exists():
        print(f"exporting into {a.onnx} ...", file=sys.stderr)
        export_onnx(model, a.onnx)
    meta = metadata(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    sessions = {name: ort.InferenceSession(str(a.onnx / f"{name}.onnx"), options, providers=["CPUExecutionProvider"])
                for name in ("style_encoder", "psp_encoder", "synthesis")}

    g = torch.Generator().manual_seed(0)
    n = a.batch
    images = torch.rand(n, 3, 256, 256, generator=g) * 2 - 1
    weight = model.generator.blend_weights(meta["add_weight_index"]).reshape(1, -1).expand(n, -1).contiguous()
    with torch.no_grad():
        w_plus = model.encode_face(images)
        z_embed = model.embed_style(images)
    feeds = {"image": images.numpy()}
    syn_feeds = {"w_plus": w_plus.numpy(), "z_embed": z_embed.numpy(), "face_weight": weight.numpy()}

    def torch_synthesis(w, z, idx=meta["add_weight_index"]):
        return model.synthesize(w_plus=w, z_embed=z, add_weight_index=idx)

    def torch_transfer():
        return torch_synthesis(model.encode_face(images[:1]), model.embed_style(images[1:2] if n > 1 else images))

    def ort_transfer():
        w = sessions["psp_encoder"].run(None, {"image": feeds["image"][:1]})[0]
        z = sessions["style_encoder"].run(None, {"image": feeds["image"][1:2] if n > 1 else feeds["image"]})[0]
        return sessions["synthesis"].run(None, {"w_plus": w, "z_embed": z, "face_weight": syn_feeds["face_weight"][:1]})

    stages = {
        "style encoder": (n, lambda: model.embed_style(images), lambda: sessions["style_encoder"].run(None, feeds)),
        "pSp encoder": (n, lambda: model.encode_face(images), lambda: sessions["psp_encoder"].run(None, feeds)),
        "synthesis": (n, lambda: torch_synthesis(w_plus, z_embed), lambda: sessions["synthesis"].run(None, syn_feeds)),
        "transfer (1 face x 1 style)": (1, torch_transfer, ort_transfer),
    }
    results = {}
    with torch.no_grad():
        for name, (count, ours, theirs) in stages.items():
            ours(), theirs()  # warm-up: first calls build caches (Winograd weights, ORT arenas)
            t_torch = t_ort = float("inf")
            for _ in range(a.rounds):
                t_torch = min(t_torch, best(ours, 1))
                t_ort = min(t_ort, best(theirs, 1))
            results[name] = {"images": count, "torch_ms": 1000 * t_torch / count, "ort_ms": 1000 * t_ort / count}

    machine = a.machine or f"{cpu_name()}, {threads} threads"
    print(f"{model.size}px checkpoint, batch {n}, best of {a.rounds} interleaved rounds; {machine}; "
          f"torch {torch.__version__}, onnxruntime {ort.__version__}")
    print("| stage | images | PyTorch CPU (ms/image) | onnxruntime CPU (ms/image) | onnxruntime / PyTorch |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['images']} | {r['torch_ms']:.0f} | {r['ort_ms']:.0f} | {r['ort_ms'] / r['torch_ms']:.2f}x |")
    if a.json_out:
        with open(a.json_out, "a", encoding="utf-8") as f:
            f.write(json.dumps({"size": model.size, "batch": n, "rounds": a.rounds, "threads": threads,
                                "machine": machine, "torch": torch.__version__, "onnxruntime": ort.__version__,
                                "results": results}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
