"""The one place that decides between our compiled kernels and the reference paths, and
owns their just-in-time build.

Two CUDA extensions (``bias_act``, ``upfirdn2d``) and one C++ CPU extension (``winograd``,
the transforms of :mod:`blendgan.ops.winograd`).

* Nothing is compiled at import.  The first call that needs an extension builds it with
  ninja (``torch.utils.cpp_extension.load``) into a cache directory keyed by a hash of the
  sources, the torch and CUDA versions and (CUDA only) the GPU architecture, so later
  processes load it without compiling.  A build logs one line on the ``blendgan`` logger.
* ``BLENDGAN_OPS=ref|cuda|auto`` (default auto) forces a path.  ``ref`` runs the PyTorch
  reference paths everywhere.  In ``auto`` a failed build warns once with the reason and
  falls back to the reference path; ``cuda`` raises instead when a CUDA kernel is missing
  (the CPU extension falls back as in ``auto``).
* :func:`backend_info` reports, per CUDA op, which path is active and why, and
  :func:`cpu_backend_info` the same for the CPU extension (``blendgan info`` prints both).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import platform
import re
import sys
import threading
import warnings
from pathlib import Path

MODES = ("auto", "ref", "cuda")
ENV_MODE = "BLENDGAN_OPS"
ENV_CACHE = "BLENDGAN_CACHE_DIR"

# Sources of each extension, relative to the op source directory.
SOURCES = {
    "bias_act": ("bias_act.cpp", "bias_act_kernel.cu"),
    "upfirdn2d": ("upfirdn2d.cpp", "upfirdn2d_kernel.cu"),
    "winograd": ("winograd_cpu.cpp",),
}
CUDA_OPS = ("bias_act", "upfirdn2d")
CPU_OPS = ("winograd",)   # registered as torch.ops.blendgan_<name>, not as a Python module

# Compiler flags (part of the cache key).  No -std flag: torch adds the C++ standard its
# headers need (C++20 for torch 2.14); a later -std=c++17 would override it and break the build.
# The CPU op uses OpenMP for at::parallel_for; it links libgomp.so.1, which the loader
# resolves to the copy torch has already loaded (one thread pool).
CPU_CFLAGS = ("-O3", "-fopenmp")
CPU_LDFLAGS = ("-fopenmp",)
CUDA_CFLAGS = ("-O3",)
CUDA_NVCC_FLAGS = ("-O3", "--use_fast_math")
BUILD_LOG = "build.log"   # the full compiler output of a failed build, in its build directory

lock = threading.Lock()
modules: dict[str, object] = {}   # op name -> loaded extension module
failures: dict[str, str] = {}     # op name -> reason the build failed


def mode() -> str:
    """The requested backend from ``BLENDGAN_OPS`` (read on every call, never written)."""
    value = os.environ.get(ENV_MODE, "auto").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"{ENV_MODE}={value!r} is not one of {', '.join(MODES)}")
    return value


def source_dir() -> Path:
    """Directory holding the C++/CUDA sources: the installed copy, else the repo's ``op/``."""
    spec = importlib.util.find_spec("blendgan._op_src")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            if (Path(location) / SOURCES["bias_act"][0]).exists():
                return Path(location)
    return Path(__file__).resolve().parents[2] / "op"


def cache_root() -> Path:
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "blendgan" / "ops"


def _arch_tag(arch_list: str | None) -> str:
    import torch
    if arch_list:
        return arch_list.replace(";", "_").replace(" ", "_").replace(".", "")
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        return f"sm{major}{minor}"
    return "noarch"


def build_directory(name: str, arch_list: str | None = None) -> Path:
    """Cache directory for ``name``: hash of sources, compiler flags, torch/CUDA/Python
    versions, machine type and GPU arch (CPU extensions: ``cpu``; their one binary serves
    every CPU of the machine type, see the source)."""
    import torch
    digest = hashlib.sha256()
    for rel in SOURCES[name]:
        path = source_dir() / rel
        digest.update(rel.encode())
        digest.update(path.read_bytes())
    flags = (CPU_CFLAGS + CPU_LDFLAGS) if name in CPU_OPS else (CUDA_CFLAGS + CUDA_NVCC_FLAGS)
    digest.update(f"torch={torch.__version__};cuda={torch.version.cuda};python={sys.version_info[:2]};"
                  f"machine={platform.machine()};flags={' '.join(flags)}".encode())
    arch = "cpu" if name in CPU_OPS else \
        _arch_tag(arch_list if arch_list is not None else os.environ.get("TORCH_CUDA_ARCH_LIST"))
    digest.update(arch.encode())
    return cache_root() / f"{name}-{arch}-{digest.hexdigest()[:16]}"


def build(name: str, verbose: bool = False):
    """Compile (or load from cache) the extension for op ``name`` and return it: the Python
    module of a CUDA op, the ``torch.ops.blendgan_<name>`` namespace of a CPU op.

    Raises on any failure; callers that want the fallback use :func:`get_module`.
    """
    if name not in SOURCES:
        raise KeyError(f"unknown op {name!r}")
    src = source_dir()
    missing = [rel for rel in SOURCES[name] if not (src / rel).exists()]
    if missing:
        raise FileNotFoundError(f"sources missing in {src}: {', '.join(missing)}")
    out = build_directory(name)
    if name in CPU_OPS:
        # a vouched-for library loads without writing anything (a read-only cache works)
        namespace = load_built_cpu_op(name, out)
        if namespace is not None:
            return namespace
        out.mkdir(parents=True, exist_ok=True)
        with file_lock(out / ".blendgan.lock"):  # one process builds; the others wait, then load
            namespace = load_built_cpu_op(name, out)
            if namespace is not None:
                return namespace
            return compile_extension(name, src, out, verbose)
    return compile_extension(name, src, out, verbose)


def compile_extension(name: str, src: Path, out: Path, verbose: bool):
    """Build (or let ninja find up to date) extension ``name`` in ``out`` and load it; a
    failure raises with the compiler's error lines, the full output kept in ``out/build.log``."""
    cpp_extension = _import_cpp_extension(quiet=name in CPU_OPS)
    if name in CUDA_OPS and cpp_extension.CUDA_HOME is None:
        raise RuntimeError("no CUDA toolkit found (set CUDA_HOME or put nvcc on PATH)")
    out.mkdir(parents=True, exist_ok=True)
    if not any(out.glob(f"blendgan_{name}*.so")):
        logging.getLogger("blendgan").info("building the %s extension (once; cached in %s)", name, out)
    sources = [str(src / rel) for rel in SOURCES[name]]
    try:
        if name in CPU_OPS:
            import torch
            library = out / f"blendgan_{name}.so"
            library.unlink(missing_ok=True)  # not vouched for (see load_built_cpu_op): relink it
            cpp_extension.load(name=f"blendgan_{name}", sources=sources, build_directory=str(out),
                               extra_cflags=list(CPU_CFLAGS), extra_ldflags=list(CPU_LDFLAGS),
                               is_python_module=False, verbose=verbose)
            vouch(library)
            return getattr(torch.ops, f"blendgan_{name}")
        return cpp_extension.load(name=f"blendgan_{name}", sources=sources, build_directory=str(out),
                                  extra_cflags=list(CUDA_CFLAGS), extra_cuda_cflags=list(CUDA_NVCC_FLAGS),
                                  verbose=verbose)
    except Exception as exc:
        text = str(exc)
        if len(text.splitlines()) <= 1:
            raise
        log = out / BUILD_LOG
        try:
            log.write_text(text)
            where = f"full output: {log}"
        except OSError:
            where = "full output: rerun with verbose=True"
        raise RuntimeError(f"{build_error_summary(text)} ({where})") from None


def _import_cpp_extension(quiet: bool):
    """``torch.utils.cpp_extension``; with ``quiet``, without the warning its first import logs
    on hosts without a CUDA runtime (irrelevant to a CPU extension)."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    if quiet:
        logger.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension
    finally:
        logger.setLevel(level)
    return cpp_extension


def build_error_summary(output: str, limit: int = 2) -> str:
    """The first ``limit`` compiler error lines of a build's ``output`` (else its last line)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"\berror\b", line)
              and not line.startswith(("ninja:", "FAILED:", "subprocess.CalledProcessError"))]
    return "; ".join(errors[:limit]) if errors else (lines[-1] if lines else "build failed")


@contextlib.contextmanager
def file_lock(path: Path):
    """An exclusive lock between processes (released by the OS if the holder dies)."""
    try:
        import fcntl
    except ImportError:  # no fcntl (Windows): ninja and torch's own lock still serialise the build
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _stamp(library: Path) -> Path:
    return library.with_name(library.name + ".ok")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def vouch(library: Path) -> None:
    """Record, atomically, that ``library`` was linked completely: its size and hash."""
    stamp = _stamp(library)
    tmp = stamp.with_name(f".{stamp.name}.{os.getpid()}")
    tmp.write_text(f"{library.stat().st_size} {_digest(library)}\n")
    os.replace(tmp, stamp)


def load_built_cpu_op(name: str, out: Path):
    """The ``torch.ops`` namespace of CPU op ``name`` from a library already built in ``out``
    (None if there is none, or if it is not the complete file recorded when it was linked:
    loading a truncated library can crash the process instead of raising).  The directory
    is keyed by the sources' hash, so a vouched-for library there is current; loading it
    directly skips importing ``torch.utils.cpp_extension``, whose import warns on hosts
    without CUDA."""
    import torch
    built = out / f"blendgan_{name}.so"
    try:
        size, digest = _stamp(built).read_text().split()
        if built.stat().st_size != int(size) or _digest(built) != digest:
            return None
    except (OSError, ValueError):
        return None
    try:
        torch.ops.load_library(str(built))
    except (OSError, RuntimeError):
        return None
    return getattr(torch.ops, f"blendgan_{name}")


def get_module(name: str):
    """The built extension for ``name``, or None when it cannot be had (reason recorded)."""
    module = modules.get(name)
    if module is not None:  # lock-free once built: torch.compile traces through this call
        return module
    with lock:
        if name in modules:
            return modules[name]
        if name in failures:
            return None
        try:
            module = build(name)
        except Exception as exc:  # any build problem means: use the reference path
            text = str(exc).strip()
            reason = f"{type(exc).__name__}: {build_error_summary(text) if text else ''}"
            failures[name] = reason
            if mode() == "auto" or name in CPU_OPS:
                kind = "C++ CPU" if name in CPU_OPS else "CUDA"
                warnings.warn(f"blendgan: {kind} op {name!r} unavailable, using the PyTorch reference "
                              f"path ({reason})", RuntimeWarning, stacklevel=3)
            return None
        modules[name] = module
        return module


def require_module(name: str):
    """The built extension for ``name``; raises with the recorded reason when unavailable."""
    module = get_module(name)
    if module is None:
        raise RuntimeError(f"blendgan: the {name} extension is unavailable: {failures[name]}")
    return module


def use_cuda(name: str) -> bool:
    """Whether a CUDA tensor should go through our kernel for op ``name`` (builds lazily)."""
    requested = mode()
    if requested == "ref":
        return False
    if get_module(name) is not None:
        return True
    if requested == "cuda":
        raise RuntimeError(f"{ENV_MODE}=cuda but the CUDA op {name!r} is unavailable: {failures[name]}")
    return False


def use_native_cpu(name: str) -> bool:
    """Whether CPU tensors should go through our C++ extension for op ``name`` (builds
    lazily; any failure falls back to the reference path with one warning)."""
    return mode() != "ref" and get_module(name) is not None


def cpu_backend_info(name: str = "winograd", build_now: bool = False) -> str:
    """The active path of CPU op ``name`` and why, e.g. ``'C++ (built in ...)'``; with
    ``build_now`` the extension is built (or loaded) first."""
    if mode() == "ref":
        return f"PyTorch reference ({ENV_MODE}=ref)"
    if build_now:
        get_module(name)
    if name in modules:
        return f"C++ (built in {build_directory(name)})"
    if name in failures:
        return f"PyTorch reference (C++ build failed: {failures[name]})"
    return "C++ on first use (not built yet in this process)"


def backend_info(build_now: bool = False) -> dict[str, str]:
    """Per op: the active backend and why, e.g. ``{'upfirdn2d': 'ref (no CUDA device)'}``.

    With ``build_now`` and a CUDA device, the extensions are built (or loaded) first so
    the answer reflects what a CUDA call would use.
    """
    import torch
    requested = mode()
    info = {}
    for name in CUDA_OPS:
        if requested == "ref":
            info[name] = f"ref ({ENV_MODE}=ref)"
        elif not torch.cuda.is_available():
            info[name] = "ref (no CUDA device; CPU tensors always use the reference path)"
        else:
            if build_now:
                get_module(name)
            if name in modules:
                info[name] = f"cuda (built in {build_directory(name)})"
            elif name in failures:
                info[name] = f"ref (CUDA build failed: {failures[name]})"
            else:
                info[name] = "cuda on first use (not built yet in this process)"
    return info
