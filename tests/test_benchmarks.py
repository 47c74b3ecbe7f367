"""The benchmark and GPU-check scripts: argument checking and syntax (their runs need
weights, a GPU or the official code, see the README's Performance section)."""
import subprocess
import sys

from tests.conftest import ROOT


def test_benchmark_vs_official_refuses_a_folder_without_the_official_scripts(tmp_path):
    (tmp_path / "model.py").write_text("")
    res = subprocess.run([sys.executable, "tools/benchmark_vs_official.py", "--official", str(tmp_path),
                          "--ckpt-dir", str(tmp_path), "--size", "256"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "no generate_image_pairs.py" in res.stderr and str(tmp_path) in res.stderr


def test_benchmark_vs_official_knows_every_precision():
    res = subprocess.run([sys.executable, "tools/benchmark_vs_official.py", "--help"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    for variant in ("fp32", "fp32c", "tf32", "bf16", "bf16c", "fp16", "fp16c"):
        assert variant in res.stdout


def test_gpu_checks_script_parses():
    res = subprocess.run(["bash", "-n", "tools/gpu_checks.sh"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_benchmark_winograd_times_every_layer_and_reports_the_rule():
    import json
    res = subprocess.run([sys.executable, "tools/benchmark_winograd.py", "--size", "16", "--batch", "1",
                          "--reps", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    rules = {row["layer"]: row["rule"] for row in report["rows"]}
    # 512-channel layers: plain 3x3 convs from 8x8 take Winograd, upsampling from 512 does not
    assert rules == {"up 4->8": "direct", "conv 8": "winograd", "up 8->16": "direct", "conv 16": "winograd"}
    assert all(row["winograd_ms"] > 0 and row["direct_ms"] > 0 for row in report["rows"])


def test_benchmark_winograd_encoders_finds_every_conv_shape_and_the_rule():
    import json
    res = subprocess.run([sys.executable, "tools/benchmark_winograd.py", "--encoders", "--batch", "1",
                          "--reps", "1"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout.strip().splitlines()[-1])["rows"]
    rules = {(row["layer"], row["in"], row["out"]): row["rule"] for row in rows}
    def count(net):
        return sum(int(label.rsplit("x", 1)[1]) for label, _, _ in rules if label.startswith(f"{net} ")
                   and "whole" not in label)
    assert count("style") == 16         # VGG19's 16 convolutions
    assert count("psp") == 48 - 4       # IR-SE50's 24 units x 2, less the 4 stride-2 ones
    assert rules[("style 256px x1", 3, 64)] == "direct"            # the input layer: 3 channels
    assert rules[("style 256px x1", 64, 64)] == "winograd"
    assert rules[("psp 16px x4", 512, 512)] == "direct"            # 16x16 maps: weights kept direct
    assert rules[("psp 32px x26", 256, 256)] == "winograd"
    whole = {row["layer"] for row in rows if row["direct_ms"] > 0 and row["winograd_ms"] > 0}
    assert {"style (whole, rule)", "psp (whole, rule)"} <= whole


def test_benchmark_inversion_checks_its_methods_before_loading():
    res = subprocess.run([sys.executable, "tools/benchmark_inversion.py", "--ckpt", "none.pt", "--psp", "none.pt",
                          "--methods", "psp,gan"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "--methods must be from" in res.stderr
