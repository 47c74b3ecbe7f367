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

import hashlib
import importlib.util
import logging
import os
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

_lock = threading.Lock()
_modules: dict[str, object] = {}   # op name -> loaded extension module
_failures: dict[str, str] = {}     # op name -> reason the build failed


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
    """Cache directory for ``name``: hash of sources + torch/CUDA versions + GPU arch (CPU
    extensions: ``cpu``; their one binary serves every x86-64 CPU, see the source)."""
    import torch
    digest = hashlib.sha256()
    for rel in SOURCES[name]:
        path = source_dir() / rel
        digest.update(rel.encode())
        digest.update(path.read_bytes())
    digest.update(f"torch={torch.__version__};cuda={torch.version.cuda}".encode())
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
        namespace = _load_built_cpu_op(name, out)
        if namespace is not None:
            return namespace
    from torch.utils import cpp_extension
    if name in CUDA_OPS and cpp_extension.CUDA_HOME is None:
        raise RuntimeError("no CUDA toolkit found (set CUDA_HOME or put nvcc on PATH)")
    out.mkdir(parents=True, exist_ok=True)
    if not any(out.glob(f"blendgan_{name}*.so")):
        logging.getLogger("blendgan").info("building the %s extension (once; cached in %s)", name, out)
    sources = [str(src / rel) for rel in SOURCES[name]]
    if name in CPU_OPS:
        import torch
        # OpenMP for at::parallel_for; the extension links libgomp.so.1, which the loader
        # resolves to the copy torch has already loaded (one thread pool)
        cpp_extension.load(name=f"blendgan_{name}", sources=sources, build_directory=str(out),
                           extra_cflags=["-O3", "-fopenmp"], extra_ldflags=["-fopenmp"],
                           is_python_module=False, verbose=verbose)
        return getattr(torch.ops, f"blendgan_{name}")
    return cpp_extension.load(
        name=f"blendgan_{name}",
        sources=sources,
        build_directory=str(out),
        # No -std flag: torch adds the C++ standard its headers need (C++20 for torch 2.14);
        # a later -std=c++17 would override it and break the build.
        extra_cflags=["-O3"],
        extra_cuda_cflags=["-O3", "--use_fast_math"],
        verbose=verbose,
    )


def _load_built_cpu_op(name: str, out: Path):
    """The ``torch.ops`` namespace of CPU op ``name`` from a library already built in ``out``
    (None if there is none or it does not load).  The directory is keyed by the sources'
    hash, so a library there is current; loading it directly skips importing
    ``torch.utils.cpp_extension``, whose import warns on hosts without CUDA."""
    import torch
    built = out / f"blendgan_{name}.so"
    if not built.exists():
        return None
    try:
        torch.ops.load_library(str(built))
    except (OSError, RuntimeError):
        return None   # e.g. a link that was interrupted: build again
    return getattr(torch.ops, f"blendgan_{name}")


def get_module(name: str):
    """The built extension for ``name``, or None when it cannot be had (reason recorded)."""
    with _lock:
        if name in _modules:
            return _modules[name]
        if name in _failures:
            return None
        try:
            module = build(name)
        except Exception as exc:  # any build problem means: use the reference path
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
            _failures[name] = reason
            if mode() == "auto" or name in CPU_OPS:
                kind = "C++ CPU" if name in CPU_OPS else "CUDA"
                warnings.warn(f"blendgan: {kind} op {name!r} unavailable, using the PyTorch reference "
                              f"path ({reason})", RuntimeWarning, stacklevel=3)
            return None
        _modules[name] = module
        return module


def require_module(name: str):
    """The built extension for ``name``; raises with the recorded reason when unavailable."""
    module = get_module(name)
    if module is None:
        raise RuntimeError(f"blendgan: the {name} extension is unavailable: {_failures[name]}")
    return module


def use_cuda(name: str) -> bool:
    """Whether a CUDA tensor should go through our kernel for op ``name`` (builds lazily)."""
    requested = mode()
    if requested == "ref":
        return False
    if get_module(name) is not None:
        return True
    if requested == "cuda":
        raise RuntimeError(f"{ENV_MODE}=cuda but the CUDA op {name!r} is unavailable: {_failures[name]}")
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
    if name in _modules:
        return f"C++ (built in {build_directory(name)})"
    if name in _failures:
        return f"PyTorch reference (C++ build failed: {_failures[name]})"
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
            if name in _modules:
                info[name] = f"cuda (built in {build_directory(name)})"
            elif name in _failures:
                info[name] = f"ref (CUDA build failed: {_failures[name]})"
            else:
                info[name] = "cuda on first use (not built yet in this process)"
    return info
