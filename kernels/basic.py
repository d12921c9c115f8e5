"""The basic kernel family measured by the ``kernels-basic`` suite: GEMM, GEMV, triad, memcpy.

Each op has three implementations with one calling convention, ``impl(*inputs)``
where ``inputs = make_inputs(op, size, dtype, seed)`` (GPU: ``to_gpu(inputs)``);
every implementation writes into the output buffer carried in ``inputs`` and
returns it, so timed calls do not measure allocation.

* NumPy reference (``REF_IMPLS``) - the ground truth for tests.
* Numba CPU (``NUMBA_IMPLS``) - parallel loops, compiled once and cached.
* CuPy GPU (``GPU_IMPLS``) - raise ``GpuUnavailable`` when no GPU is present.

``CPU_IMPLS`` names what the suite measures on CPU: NumPy's BLAS matmul for
GEMM/GEMV (what a user really runs) and the Numba kernels for triad/memcpy.

Size dictionaries (positive ints, exactly these keys):
``gemm {m, n, k}``, ``gemv {m, k}``, ``triad {n}`` (elements), ``memcpy {nbytes}``.
memcpy copies raw bytes (uint8 buffers); ``dtype`` is still validated for it.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
from numba import njit, prange

from hwsim.kernels.gpu import require_gpu

__all__ = [
    "OPS",
    "SIZE_KEYS",
    "DTYPES",
    "check_op",
    "check_size",
    "check_dtype",
    "make_inputs",
    "to_gpu",
    "flops",
    "bytes_moved",
    "gemm_ref",
    "gemv_ref",
    "triad_ref",
    "memcpy_ref",
    "gemm_blas",
    "gemv_blas",
    "gemm_numba",
    "gemv_numba",
    "triad_numba",
    "memcpy_numba",
    "gemm_cupy",
    "gemv_cupy",
    "triad_cupy",
    "memcpy_cupy",
    "REF_IMPLS",
    "NUMBA_IMPLS",
    "CPU_IMPLS",
    "GPU_IMPLS",
]

OPS: tuple[str, ...] = ("gemm", "gemv", "triad", "memcpy")
SIZE_KEYS: dict[str, tuple[str, ...]] = {
    "gemm": ("m", "n", "k"),
    "gemv": ("m", "k"),
    "triad": ("n",),
    "memcpy": ("nbytes",),
}
DTYPES: tuple[np.dtype, ...] = (np.dtype(np.float32), np.dtype(np.float64))

#: Triad scalar; any non-trivial constant works, this one is exact in float32.
TRIAD_SCALAR = 3.0


# --------------------------------------------------------------------------- validation


def check_op(op: Any) -> str:
    """Return ``op`` if it names a known kernel, else raise ValueError."""
    if op not in SIZE_KEYS:
        raise ValueError(f"op must be one of {OPS}, got {op!r}")
    return op


def check_size(op: str, size: Any) -> dict[str, int]:
    """Validate ``size`` for ``op``: exactly the op's keys, each a positive int."""
    check_op(op)
    if not isinstance(size, Mapping):
        raise ValueError(f"size must be a dict with keys {SIZE_KEYS[op]}, got {size!r}")
    want = SIZE_KEYS[op]
    if set(size) != set(want):
        raise ValueError(f"size for {op} must have keys {want}, got {tuple(size)!r}")
    out: dict[str, int] = {}
    for key in want:
        value = size[key]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"size[{key!r}] must be an int, got {value!r}")
        if value < 1:
            raise ValueError(f"size[{key!r}] must be >= 1, got {value}")
        out[key] = int(value)
    return out


def check_dtype(dtype: Any) -> np.dtype:
    """Return the numpy dtype if it is float32 or float64, else raise ValueError."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}") from exc
    if dt not in DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dt.name}")
    return dt


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def _check_itemsize(itemsize: Any) -> int:
    if isinstance(itemsize, bool) or not isinstance(itemsize, (int, np.integer)) or itemsize < 1:
        raise ValueError(f"itemsize must be a positive int, got {itemsize!r}")
    return int(itemsize)


# --------------------------------------------------------------------------- work accounting


def flops(op: str, size: Mapping[str, int]) -> int:
    """Floating-point operations of one call (multiply and add counted separately)."""
    s = check_size(op, size)
    if op == "gemm":
        return 2 * s["m"] * s["n"] * s["k"]
    if op == "gemv":
        return 2 * s["m"] * s["k"]
    if op == "triad":
        return 2 * s["n"]
    return 0


def bytes_moved(op: str, size: Mapping[str, int], itemsize: int) -> int:
    """Compulsory bytes read + written by one call (each operand touched once)."""
    s = check_size(op, size)
    isz = _check_itemsize(itemsize)
    if op == "gemm":
        return (s["m"] * s["k"] + s["k"] * s["n"] + s["m"] * s["n"]) * isz
    if op == "gemv":
        return (s["m"] * s["k"] + s["k"] + s["m"]) * isz
    if op == "triad":
        return 3 * s["n"] * isz
    return 2 * s["nbytes"]


# --------------------------------------------------------------------------- inputs


def make_inputs(op: str, size: Mapping[str, int], dtype: Any, seed: int) -> tuple:
    """Deterministic inputs for ``op`` (output buffer included), from ``default_rng(seed)``.

    gemm: (a[m,k], b[k,n], c[m,n]); gemv: (a[m,k], x[k], y[m]);
    triad: (a[n], b[n], c[n], s) computing a = b + s*c; memcpy: (src[nbytes], dst[nbytes]) uint8.
    """
    s = check_size(op, size)
    dt = check_dtype(dtype)
    rng = np.random.default_rng(_check_seed(seed))

    def rand(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape, dtype=dt)

    if op == "gemm":
        m, n, k = s["m"], s["n"], s["k"]
        return rand(m, k), rand(k, n), np.zeros((m, n), dtype=dt)
    if op == "gemv":
        m, k = s["m"], s["k"]
        return rand(m, k), rand(k), np.zeros(m, dtype=dt)
    if op == "triad":
        n = s["n"]
        return np.zeros(n, dtype=dt), rand(n), rand(n), dt.type(TRIAD_SCALAR)
    nbytes = s["nbytes"]
    src = rng.integers(0, 256, size=nbytes, dtype=np.uint8)
    return src, np.zeros(nbytes, dtype=np.uint8)


def to_gpu(inputs: tuple) -> tuple:
    """Copy the array members of ``inputs`` to the GPU (scalars pass through)."""
    cp = require_gpu()
    return tuple(cp.asarray(x) if isinstance(x, np.ndarray) else x for x in inputs)


# --------------------------------------------------------------------------- shape checks


def _same_float_dtype(names: tuple[str, ...], arrays: tuple[Any, ...]) -> None:
    dt = arrays[0].dtype
    if dt not in DTYPES:
        raise ValueError(f"{names[0]}.dtype must be float32 or float64, got {dt}")
    for name, arr in zip(names[1:], arrays[1:]):
        if arr.dtype != dt:
            raise ValueError(f"{name}.dtype must match {names[0]}.dtype={dt}, got {arr.dtype}")


def _ndim(name: str, arr: Any, ndim: int) -> None:
    if not hasattr(arr, "shape") or not hasattr(arr, "dtype"):
        raise ValueError(f"{name} must be an array, got {type(arr).__name__}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")


def _check_gemm(a: Any, b: Any, c: Any) -> None:
    for name, arr in (("a", a), ("b", b), ("c", c)):
        _ndim(name, arr, 2)
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"b.shape[0] must equal a.shape[1]={a.shape[1]}, got b.shape={b.shape}")
    if c.shape != (a.shape[0], b.shape[1]):
        raise ValueError(f"c.shape must be {(a.shape[0], b.shape[1])}, got {c.shape}")
    _same_float_dtype(("a", "b", "c"), (a, b, c))


def _check_gemv(a: Any, x: Any, y: Any) -> None:
    _ndim("a", a, 2)
    _ndim("x", x, 1)
    _ndim("y", y, 1)
    if x.shape[0] != a.shape[1]:
        raise ValueError(f"x.shape must be ({a.shape[1]},), got {x.shape}")
    if y.shape[0] != a.shape[0]:
        raise ValueError(f"y.shape must be ({a.shape[0]},), got {y.shape}")
    _same_float_dtype(("a", "x", "y"), (a, x, y))


def _check_triad(a: Any, b: Any, c: Any, s: Any) -> None:
    for name, arr in (("a", a), ("b", b), ("c", c)):
        _ndim(name, arr, 1)
    if not (a.shape == b.shape == c.shape):
        raise ValueError(f"a, b, c shapes must match, got a={a.shape} b={b.shape} c={c.shape}")
    _same_float_dtype(("a", "b", "c"), (a, b, c))
    if not np.isscalar(s) or isinstance(s, (bool, np.bool_)):
        raise ValueError(f"s must be a real scalar, got {s!r}")


def _check_memcpy(src: Any, dst: Any) -> None:
    _ndim("src", src, 1)
    _ndim("dst", dst, 1)
    if src.dtype != np.uint8 or dst.dtype != np.uint8:
        raise ValueError(f"src/dst dtype must be uint8, got src={src.dtype} dst={dst.dtype}")
    if src.shape != dst.shape:
        raise ValueError(f"dst.shape must equal src.shape={src.shape}, got {dst.shape}")


# --------------------------------------------------------------------------- NumPy reference


def gemm_ref(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Reference GEMM in float64 accumulation, cast to c's dtype (ground truth for tests)."""
    _check_gemm(a, b, c)
    c[...] = (a.astype(np.float64) @ b.astype(np.float64)).astype(c.dtype)
    return c


def gemv_ref(a: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Reference GEMV in float64 accumulation."""
    _check_gemv(a, x, y)
    y[...] = (a.astype(np.float64) @ x.astype(np.float64)).astype(y.dtype)
    return y


def triad_ref(a: np.ndarray, b: np.ndarray, c: np.ndarray, s: Any) -> np.ndarray:
    """Reference triad a = b + s*c."""
    _check_triad(a, b, c, s)
    a[...] = b + b.dtype.type(s) * c
    return a


def memcpy_ref(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Reference byte copy."""
    _check_memcpy(src, dst)
    dst[...] = src
    return dst


# --------------------------------------------------------------------------- CPU fast path (BLAS)


def gemm_blas(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """GEMM through NumPy's BLAS matmul: the CPU path a user actually runs."""
    _check_gemm(a, b, c)
    return np.matmul(a, b, out=c)


def gemv_blas(a: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """GEMV through NumPy's BLAS matmul."""
    _check_gemv(a, x, y)
    return np.matmul(a, x, out=y)


# --------------------------------------------------------------------------- Numba CPU


@njit(parallel=True, fastmath=True, cache=True)
def _gemm_nb(a, b, c):  # pragma: no cover - compiled
    m, k = a.shape
    n = b.shape[1]
    for i in prange(m):
        for j in range(n):
            c[i, j] = 0.0
        for p in range(k):
            aip = a[i, p]
            for j in range(n):  # contiguous rows of b and c: vectorises
                c[i, j] += aip * b[p, j]


@njit(parallel=True, fastmath=True, cache=True)
def _gemv_nb(a, x, y):  # pragma: no cover - compiled
    m, k = a.shape
    for i in prange(m):
        acc = a[i, 0] * 0.0
        for p in range(k):
            acc += a[i, p] * x[p]
        y[i] = acc


@njit(parallel=True, fastmath=True, cache=True)
def _triad_nb(a, b, c, s):  # pragma: no cover - compiled
    for i in prange(a.shape[0]):
        a[i] = b[i] + s * c[i]


@njit(parallel=True, fastmath=True, cache=True)
def _memcpy_nb(src, dst):  # pragma: no cover - compiled
    for i in prange(src.shape[0]):
        dst[i] = src[i]


def gemm_numba(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Simple row-parallel Numba GEMM (i-p-j loop order)."""
    _check_gemm(a, b, c)
    _gemm_nb(a, b, c)
    return c


def gemv_numba(a: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-parallel Numba GEMV (one dot product per row)."""
    _check_gemv(a, x, y)
    _gemv_nb(a, x, y)
    return y


def triad_numba(a: np.ndarray, b: np.ndarray, c: np.ndarray, s: Any) -> np.ndarray:
    """Parallel Numba triad a = b + s*c (s cast to the array dtype to keep the width)."""
    _check_triad(a, b, c, s)
    _triad_nb(a, b, c, a.dtype.type(s))
    return a


def memcpy_numba(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Parallel Numba byte copy."""
    _check_memcpy(src, dst)
    _memcpy_nb(src, dst)
    return dst


# --------------------------------------------------------------------------- CuPy GPU

_TRIAD_KERNEL: Any = None


def _require_device_arrays(cp: Any, names: tuple[str, ...], arrays: tuple[Any, ...]) -> None:
    for name, arr in zip(names, arrays):
        if not isinstance(arr, cp.ndarray):
            raise ValueError(f"{name} must be a cupy.ndarray (use to_gpu), got {type(arr).__name__}")


def gemm_cupy(a: Any, b: Any, c: Any) -> Any:
    """GEMM with cupy.matmul (cuBLAS)."""
    cp = require_gpu()
    _require_device_arrays(cp, ("a", "b", "c"), (a, b, c))
    _check_gemm(a, b, c)
    return cp.matmul(a, b, out=c)


def gemv_cupy(a: Any, x: Any, y: Any) -> Any:
    """GEMV with cupy.matmul (cuBLAS gemv)."""
    cp = require_gpu()
    _require_device_arrays(cp, ("a", "x", "y"), (a, x, y))
    _check_gemv(a, x, y)
    return cp.matmul(a, x, out=y)


def triad_cupy(a: Any, b: Any, c: Any, s: Any) -> Any:
    """Triad with a CuPy ElementwiseKernel (one fused pass, no temporaries)."""
    global _TRIAD_KERNEL
    cp = require_gpu()
    _require_device_arrays(cp, ("a", "b", "c"), (a, b, c))
    _check_triad(a, b, c, s)
    if _TRIAD_KERNEL is None:
        _TRIAD_KERNEL = cp.ElementwiseKernel("T b, T c, T s", "T a", "a = b + s * c", "hwsim_triad")
    _TRIAD_KERNEL(b, c, a.dtype.type(s), a)
    return a


def memcpy_cupy(src: Any, dst: Any) -> Any:
    """Device-to-device byte copy (cudaMemcpy via cupy.copyto)."""
    cp = require_gpu()
    _require_device_arrays(cp, ("src", "dst"), (src, dst))
    _check_memcpy(src, dst)
    cp.copyto(dst, src)
    return dst


# --------------------------------------------------------------------------- tables

Impl = Callable[..., Any]

REF_IMPLS: dict[str, Impl] = {"gemm": gemm_ref, "gemv": gemv_ref, "triad": triad_ref, "memcpy": memcpy_ref}
NUMBA_IMPLS: dict[str, Impl] = {
    "gemm": gemm_numba,
    "gemv": gemv_numba,
    "triad": triad_numba,
    "memcpy": memcpy_numba,
}
#: What the suite measures on CPU.
CPU_IMPLS: dict[str, Impl] = {"gemm": gemm_blas, "gemv": gemv_blas, "triad": triad_numba, "memcpy": memcpy_numba}
#: What the suite measures on GPU (each raises GpuUnavailable without CuPy/a device).
GPU_IMPLS: dict[str, Impl] = {"gemm": gemm_cupy, "gemv": gemv_cupy, "triad": triad_cupy, "memcpy": memcpy_cupy}
