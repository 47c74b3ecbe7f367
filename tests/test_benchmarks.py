"""The benchmark and GPU-check scripts: argument checking and syntax (their runs need
weights, a GPU or the official code, see the README's Performance section)."""
import subprocess
import sys

from tests.conftest import ROOT


def test_benchmark_vs_official_refuses_a_folder_without_the_official_scripts(tmp_path):
    (tmp_path / "model.py").write_text("")
    res = subprocess.run([sys.executable, "scripts/benchmark_vs_official.py", "--official", str(tmp_path),
                          "--ckpt-dir", str(tmp_path), "--size", "256"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "no generate_image_pairs.py" in res.stderr and str(tmp_path) in res.stderr


def test_benchmark_vs_official_knows_every_precision():
    res = subprocess.run([sys.executable, "scripts/benchmark_vs_official.py", "--help"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    for variant in ("fp32", "fp32c", "tf32", "bf16", "bf16c", "fp16", "fp16c"):
        assert variant in res.stdout


def test_gpu_checks_script_parses():
    res = subprocess.run(["bash", "-n", "scripts/gpu_checks.sh"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
