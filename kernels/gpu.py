"""Optional CuPy access.

CuPy is an optional dependency: these helpers let callers probe for a usable
GPU once, get a human-readable reason when there is none, and fail with a
single exception type (``GpuUnavailable``) that tests can turn into a skip.
"""

from __future__ import annotations

from functools import lru_cache
from types import ModuleType

from hwsim.errors import MeasurementError

__all__ = [
    "GpuUnavailable",
    "cupy_module",
    "gpu_available",
    "gpu_unavailable_reason",
    "require_gpu",
]


class GpuUnavailable(MeasurementError):
    """Raised when a GPU path is requested but CuPy or a CUDA device is missing."""


@lru_cache(maxsize=1)
def _probe() -> tuple[ModuleType | None, str]:
    """Import CuPy and touch the device once; return (module or None, reason)."""
    try:
        import cupy  # type: ignore[import-not-found]
    except ImportError as exc:
        return None, f"CuPy is not installed ({exc})"
    except Exception as exc:  # broken install (missing CUDA libs, etc.)
        return None, f"CuPy failed to import: {type(exc).__name__}: {exc}"
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # cupy raises CUDARuntimeError without a driver/device
        return None, f"no CUDA device: {type(exc).__name__}: {exc}"
    if count < 1:
        return None, "no CUDA device: getDeviceCount() returned 0"
    try:
        # A tiny allocation proves the context can actually be created.
        cupy.zeros(1, dtype=cupy.float32).sum().item()
    except Exception as exc:
        return None, f"no usable CUDA device: {type(exc).__name__}: {exc}"
    return cupy, ""


def cupy_module() -> ModuleType | None:
    """Return the ``cupy`` module when a usable CUDA device exists, else None."""
    return _probe()[0]


def gpu_available() -> bool:
    """True when CuPy imports and at least one CUDA device works."""
    return _probe()[0] is not None


def gpu_unavailable_reason() -> str:
    """Why the GPU path is unavailable ("" when it is available)."""
    return _probe()[1]


def require_gpu() -> ModuleType:
    """Return cupy or raise ``GpuUnavailable`` carrying the reason."""
    cp, reason = _probe()
    if cp is None:
        raise GpuUnavailable(reason)
    return cp
