#!/usr/bin/env python
"""Does ``pip install blendgan`` keep the torch a user already has?  Measured, not assumed:

    python tools/check_install_keeps_torch.py \
        --torch /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl --torchvision torchvision==0.28.0

makes a fresh venv, installs the given torch and torchvision there (a wheel file or a
requirement), then asks pip to resolve ``pip install -e .`` of this checkout with
``--dry-run --report`` and prints what it would install.  Exit status 0 when neither torch nor
torchvision would be replaced, 1 when they would.  ``--keep DIR`` leaves the venv in DIR.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pip(python: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--torch", required=True, help="torch wheel file or requirement (e.g. torch==2.13.0)")
    p.add_argument("--torchvision", required=True, help="torchvision wheel file or requirement")
    p.add_argument("--extras", default="", help="extras of blendgan to resolve too, e.g. video,export")
    p.add_argument("--keep", type=Path, default=None, help="build the venv here and keep it")
    a = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        env_dir = a.keep or Path(tmp) / "venv"
        venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
        python = env_dir / "bin" / "python"
        done = pip(python, "install", "-q", a.torch, a.torchvision)
        if done.returncode:
            print(done.stderr, file=sys.stderr)
            return 2
        before = {d["name"].lower(): d["version"] for d in json.loads(pip(python, "list", "--format=json").stdout)}
        report = Path(tmp) / "report.json"
        target = f"{ROOT}[{a.extras}]" if a.extras else str(ROOT)
        done = pip(python, "install", "--dry-run", "-q", "--report", str(report), "-e", target)
        if done.returncode:
            print(done.stderr, file=sys.stderr)
            return 2
        planned = {item["metadata"]["name"].lower(): item["metadata"]["version"]
                   for item in json.loads(report.read_text())["install"]}
    print(f"installed first: torch {before.get('torch')}, torchvision {before.get('torchvision')}")
    print(f"pip install -e {target} would install {len(planned)} distributions: "
          + ", ".join(f"{k} {v}" for k, v in sorted(planned.items())))
    replaced = [name for name in ("torch", "torchvision") if name in planned]
    for name in replaced:
        print(f"REPLACED: {name} {before.get(name)} -> {planned[name]}")
    if not replaced:
        print("kept: torch and torchvision stay as they are")
    return 1 if replaced else 0


if __name__ == "__main__":
    sys.exit(main())
