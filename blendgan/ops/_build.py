"""The one place that decides between our CUDA kernels and the reference paths, and
owns their just-in-time build.

* Nothing is compiled at import.  The first CUDA call of an op builds its extension
  with ninja (``torch.utils.cpp_extension.load``) into a cache directory keyed by a
  hash of the sources, the torch and CUDA versions and the GPU architecture, so later
  processes load it without compiling.
* ``BLENDGAN_OPS=ref|cuda|auto`` (default auto) forces a path.  In ``auto`` a failed
  build warns once with the reason and falls back to the reference path; in ``cuda``
  it raises.
* :func:`backend_info` reports, per op, which path is active and why
  (``blendgan info`` prints it).
"""
from __future__ import annotations

import hashlib
import importlib.util
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
}

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
    """Cache directory for ``name``: hash of sources + torch/CUDA versions + GPU arch."""
    import torch
    digest = hashlib.sha256()
    for rel in SOURCES[name]:
        path = source_dir() / rel
        digest.update(rel.encode())
        digest.update(path.read_bytes())
    digest.update(f"torch={torch.__version__};cuda={torch.version.cuda}".encode())
    arch = _arch_tag(arch_list if arch_list is not None else os.environ.get("TORCH_CUDA_ARCH_LIST"))
    digest.update(arch.encode())
    return cache_root() / f"{name}-{arch}-{digest.hexdigest()[:16]}"


def build(name: str, verbose: bool = False):
    """Compile (or load from cache) the extension for op ``name`` and return the module.

    Raises on any failure; callers that want the fallback use :func:`get_module`.
    """
    from torch.utils import cpp_extension
    if name not in SOURCES:
        raise KeyError(f"unknown op {name!r}")
    src = source_dir()
    missing = [rel for rel in SOURCES[name] if not (src / rel).exists()]
    if missing:
        raise FileNotFoundError(f"sources missing in {src}: {', '.join(missing)}")
    if cpp_extension.CUDA_HOME is None:
        raise RuntimeError("no CUDA toolkit found (set CUDA_HOME or put nvcc on PATH)")
    out = build_directory(name)
    out.mkdir(parents=True, exist_ok=True)
    return cpp_extension.load(
        name=f"blendgan_{name}",
        sources=[str(src / rel) for rel in SOURCES[name]],
        build_directory=str(out),
        # No -std flag: torch adds the C++ standard its headers need (C++20 for torch 2.14);
        # a later -std=c++17 would override it and break the build.
        extra_cflags=["-O3"],
        extra_cuda_cflags=["-O3", "--use_fast_math"],
        verbose=verbose,
    )


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
            if mode() == "auto":
                warnings.warn(f"blendgan: CUDA op {name!r} unavailable, using the PyTorch reference "
                              f"path ({reason})", RuntimeWarning, stacklevel=3)
            return None
        _modules[name] = module
        return module


def require_module(name: str):
    """The built extension for ``name``; raises with the recorded reason when unavailable."""
    module = get_module(name)
    if module is None:
        raise RuntimeError(f"blendgan: the {name} CUDA extension is unavailable: {_failures[name]}")
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


def backend_info(build_now: bool = False) -> dict[str, str]:
    """Per op: the active backend and why, e.g. ``{'upfirdn2d': 'ref (no CUDA device)'}``.

    With ``build_now`` and a CUDA device, the extensions are built (or loaded) first so
    the answer reflects what a CUDA call would use.
    """
    import torch
    requested = mode()
    info = {}
    for name in SOURCES:
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
