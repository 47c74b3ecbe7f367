"""Where and how computations run: devices, precisions, backend switches, random generators,
and the processes of a sharded job.

Nothing here runs at import.  The process-wide settings (:func:`configure_backends`) are
changed only by entry points that own the process: the commands and the benchmarks.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import os
import platform
from dataclasses import dataclass, field
from typing import Iterator, Mapping

import numpy as np
import torch

from .errors import UsageError


def cpu_name() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else what the platform says: benchmarks
    name the machine their figures come from."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


# -- devices and precisions ---------------------------------------------------------------------
def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``'auto'``/None -> CUDA when available, else CPU; anything else as given."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


#: Compute precisions -> weight/activation dtype.  ``tf32`` keeps float32 tensors and lets
#: CUDA convolutions and matmuls use TF32 tensor cores (see :func:`configure_backends`).
PRECISIONS = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """``'fp32'``/``'tf32'``/``'bf16'``/``'fp16'`` (or a torch dtype) -> torch dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in PRECISIONS:
        raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, got {dtype!r}")
    return PRECISIONS[dtype]


def configure_backends(precision: str) -> None:
    """Set this process's ``torch.backends`` switches for a job at ``precision``.

    * TF32 on for ``'tf32'``, off otherwise.  PyTorch lets cuDNN convolutions use TF32 by
      default, which moves CUDA float32 outputs about 1e-3 away from the official ones;
      ``'fp32'`` means strict float32.
    * cuDNN autotuning on: a job runs the same few shapes many times, and the default
      heuristics pick very slow algorithms for some of the generator's convolutions.
    * The C allocator keeps freed memory for reuse (:func:`keep_freed_memory`).

    These settings are process-wide, so only entry points that own the process call this
    (the ``blendgan`` commands, the benchmark); library calls leave them as the caller set them.
    """
    enabled = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = enabled
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.benchmark = True
    keep_freed_memory()


#: glibc ``mallopt`` parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> bool:
    """Let glibc's allocator serve large tensors from its heap and keep freed memory there.

    By default glibc maps every block over 32 MiB afresh and unmaps it when freed, so each
    large activation costs a page fault per 4 KiB page on every use.  Raising the mmap and
    trim thresholds to 1 GiB and 2 GiB makes freed blocks reusable: on the 2-core development
    VM a 256-px job of 24 pairs spent 1.4 s in the kernel instead of 9.3 s and ran 12 % faster
    (30.1 -> 26.5 s) for 8 % more peak memory.  Process-wide, so only entry points call it;
    returns whether the allocator took the settings (False off glibc).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(M_TRIM_THRESHOLD, (1 << 31) - 1))


# -- randomness ---------------------------------------------------------------------------------
def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (the global RNG is untouched).

    On CUDA this reproduces the random stream of the official scripts, which called
    ``torch.manual_seed(seed)`` and drew on the GPU.
    """
    return torch.Generator(device=torch.device(device)).manual_seed(int(seed))


def derive_seed(seed: int, *parts: int | str) -> int:
    """A 63-bit seed from the user's ``seed`` and a purpose (strings and ints), stable across runs."""
    words = [int(seed) & 0xFFFFFFFF]
    for p in parts:
        if isinstance(p, str):
            words.append(int.from_bytes(hashlib.sha1(p.encode()).digest()[:4], "little"))
        else:
            words.append(int(p) & 0xFFFFFFFF)
    state = np.random.SeedSequence(words).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31 | int(state[1]) >> 1) & ((1 << 63) - 1)


@contextlib.contextmanager
def seeded_init(seed: int) -> Iterator[None]:
    """Build modules with a reproducible random initialisation without touching the global RNG.

    PyTorch's initialisers draw from the (CPU) global generator; inside this block it is
    seeded with ``seed`` and restored on exit (``torch.random.fork_rng``).  Build on the CPU.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# -- processes ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shard:
    """This process's share of a job: work units ``k`` with ``k % world == rank``.

    Units are whole batches (or whole videos), so every image is computed in the same
    batch as in a single-process run.  ``torchrun`` sets ``RANK``/``WORLD_SIZE``.
    """
    rank: int = 0
    world: int = 1

    def __post_init__(self):
        if not 0 <= self.rank < self.world:
            raise UsageError(f"invalid shard {self.rank}/{self.world}")

    def mine(self, unit: int) -> bool:
        return unit % self.world == self.rank

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Shard":
        env = os.environ if environ is None else environ
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)))


@dataclass
class DistEnv:
    """Where this process stands: ``rank`` of ``world`` processes, on ``device``."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> Shard:
        return Shard(self.rank, self.world)

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist
            dist.barrier()


@contextlib.contextmanager
def process_group(device: str | torch.device = "auto",
                  environ: Mapping[str, str] | None = None) -> Iterator[DistEnv]:
    """This process's place in a job, joining the process group when launched by ``torchrun``.

    With ``WORLD_SIZE`` > 1 (read from ``environ``, default ``os.environ``) the group is joined
    (NCCL on GPUs, gloo on CPUs; rendezvous ``env://``), each rank takes its own GPU
    (``cuda:LOCAL_RANK``), all ranks meet at the end of the block and the group is left.
    A CUDA device is made this process's current one.
    """
    env = os.environ if environ is None else environ
    world = int(env.get("WORLD_SIZE", "1"))
    rank = int(env.get("RANK", "0"))
    local_rank = int(env.get("LOCAL_RANK", str(rank)))
    dev = resolve_device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device {device}: CUDA is not available on this machine")
        if world > 1 or dev.index is None:
            dev = torch.device("cuda", local_rank if world > 1 else torch.cuda.current_device())
        torch.cuda.set_device(dev)
    if world == 1:
        yield DistEnv(rank, world, local_rank, dev)
        return
    import torch.distributed as dist
    joined = not dist.is_initialized()
    if joined:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", init_method="env://")
    try:
        dist_env = DistEnv(dist.get_rank(), dist.get_world_size(), local_rank, dev)
        yield dist_env
        dist_env.barrier()
    finally:
        if joined:
            dist.destroy_process_group()
