"""Sharding jobs across processes: `torchrun -m blendgan ...` writes exactly what one process writes."""
import os
import socket
import subprocess
import sys

import pytest

from blendgan.runtime import Shard
from tests.conftest import ROOT


def test_shard_partition():
    shards = [Shard(r, 3) for r in range(3)]
    for unit in range(10):
        assert sum(s.mine(unit) for s in shards) == 1
    assert Shard.from_env({"RANK": "1", "WORLD_SIZE": "2"}) == Shard(1, 2)
    assert Shard.from_env({}) == Shard(0, 1)
    with pytest.raises(ValueError):
        Shard(2, 2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args, env):
    r = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.mark.parametrize("job", ["pairs", "transfer"])
def test_torchrun_two_processes_write_the_same_files(golden_ckpts, sample_dirs, tmp_path, job):
    # torchrun gives each process one thread; the single-process reference uses the same
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    args = {"pairs": ["pairs", "--ckpt", str(golden_ckpts.blendgan), "--pics", "5"],
            "transfer": ["transfer", "--ckpt", str(golden_ckpts.blendgan), "--psp-encoder", str(golden_ckpts.psp),
                         "--input", str(sample_dirs.faces), "--style", str(sample_dirs.styles)]}[job]
    common = ["--batch-size", "1" if job == "transfer" else "2", "--format", "png", "--quiet", "--device", "cpu"]
    run(["-m", "blendgan", *args, *common, "--outdir", str(tmp_path / "one")], env)
    run(["-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
         "--master-port", str(free_port()), "-m", "blendgan", *args, *common, "--outdir", str(tmp_path / "two")], env)
    one = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert one and one == sorted(p.name for p in (tmp_path / "two").iterdir())
    for name in one:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
