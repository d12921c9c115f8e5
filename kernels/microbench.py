"""Calibration microbenchmarks: sustained memory bandwidth, peak FMA rate, call overhead.

These are what the machine calibration fits its roofline parameters to, so they
are deliberately *not* the GEMM/GEMV suite cases: each isolates one resource.

* ``stream_triad_points`` - STREAM-style triad, bandwidth-bound at large sizes.
* ``fma_peak_points`` - independent FMA chains held in registers, compute-bound.
* ``dispatch_overhead_s`` - cost of calling an already-compiled Numba function.

GPU equivalents (``gpu_*``) use CuPy kernels timed with CUDA events and raise
``GpuUnavailable`` when CuPy or a device is missing.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numba
import numpy as np
from numba import njit, prange

from hwsim.kernels.basic import check_dtype
from hwsim.kernels.gpu import require_gpu
from hwsim.kernels.measure import measure

__all__ = [
    "FMA_ACCUMULATORS",
    "FMA_ADDEND",
    "FMA_LANES",
    "FMA_UNROLL",
    "FMA_WORKS_FLOPS",
    "GPU_FMA_WORKS_FLOPS",
    "GPU_STREAM_SIZES_BYTES",
    "QUICK_FMA_WORKS_FLOPS",
    "QUICK_STREAM_SIZES_BYTES",
    "STREAM_SIZES_BYTES",
    "CpuCalibration",
    "GpuCalibration",
    "cpu_calibration",
    "dispatch_overhead_s",
    "fma_chains",
    "fma_multipliers",
    "fma_offsets",
    "fma_peak_points",
    "fma_reference",
    "gpu_calibration",
    "gpu_fma_chains",
    "gpu_fma_peak_points",
    "gpu_launch_overhead_s",
    "gpu_stream_points",
    "stream_triad_points",
]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

#: Triad total bytes (3 float64 arrays): L1/L2-resident up to DRAM-bound.
STREAM_SIZES_BYTES: tuple[int, ...] = tuple(32 * KiB * 4**i for i in range(7)) + (256 * MiB,)
QUICK_STREAM_SIZES_BYTES: tuple[int, ...] = (32 * KiB, 512 * KiB, 8 * MiB, 32 * MiB)
#: FMA work per point: launch-overhead-bound up to clearly compute-bound.
FMA_WORKS_FLOPS: tuple[float, ...] = tuple(float(2 ** (20 + 2 * i)) for i in range(8))  # 1e6 .. 1.7e10
QUICK_FMA_WORKS_FLOPS: tuple[float, ...] = (2.0**20, 2.0**24, 2.0**28, 2.0**30)
GPU_STREAM_SIZES_BYTES: tuple[int, ...] = tuple(32 * KiB * 8**i for i in range(5)) + (512 * MiB, 1 * GiB)
GPU_FMA_WORKS_FLOPS: tuple[float, ...] = tuple(float(2 ** (24 + 3 * i)) for i in range(7))  # 1.7e7 .. 4.4e12

_STREAM_BYTES_PER_ELEMENT = 3 * 8  # read b, read c, write a (float64); write-allocate not counted

# FMA kernel shape, tuned on a 2-core AMD EPYC (Zen 5, AVX-512 + FMA): 8 independent
# chains per lane cover FMA latency x pipes (4 x 2); LLVM vectorises the lane loop
# (zmm vfmadd, fp32 stays fp32); 1024 lanes per thread (4-8 KiB) stay in L1, so
# the kernel is compute-bound: ~440 GFLOP/s fp32, ~225 fp64 on that machine.
FMA_ACCUMULATORS = 8
FMA_UNROLL = 16
FMA_LANES = 1024
#: Shared addend; with multipliers m_j = 1 - (j+1)/1024 chain j converges to 1/(j+1).
FMA_ADDEND = 2.0**-10


# --------------------------------------------------------------------------- validation


def _check_repeats(repeats: Any) -> int:
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    return int(repeats)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def _check_increasing(name: str, values: Any, minimum: float) -> list[float]:
    """Non-empty, strictly increasing, finite, each >= minimum."""
    try:
        vals = list(values)
    except TypeError as exc:
        raise ValueError(f"{name} must be a sequence of numbers, got {values!r}") from exc
    if not vals:
        raise ValueError(f"{name} must not be empty, got {values!r}")
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise ValueError(f"{name} entries must be numbers, got {v!r}")
        if not math.isfinite(v) or v < minimum:
            raise ValueError(f"{name} entries must be finite and >= {minimum}, got {v!r}")
    for lo, hi in zip(vals, vals[1:]):
        if not hi > lo:
            raise ValueError(f"{name} must be strictly increasing, got {lo!r} then {hi!r}")
    return vals


def _check_sizes_bytes(sizes_bytes: Any, minimum: int) -> list[int]:
    vals = _check_increasing("sizes_bytes", sizes_bytes, minimum)
    for v in vals:
        if not isinstance(v, (int, np.integer)):
            raise ValueError(f"sizes_bytes entries must be ints, got {v!r}")
    return [int(v) for v in vals]


# --------------------------------------------------------------------------- CPU: stream triad


@njit(parallel=True, fastmath=True, cache=True)
def _stream_triad(a, b, c, s):  # pragma: no cover - compiled
    for i in prange(a.shape[0]):
        a[i] = b[i] + s * c[i]


def stream_triad_points(
    sizes_bytes: Sequence[int] = STREAM_SIZES_BYTES, seed: int = 0, repeats: int = 15
) -> list[tuple[int, float]]:
    """(bytes moved, median s) of a parallel float64 triad per total size.

    Each size is the total of the three arrays; it is rounded down to whole
    elements and the returned bytes are the exact 24 bytes/element moved.
    """
    sizes = _check_sizes_bytes(sizes_bytes, _STREAM_BYTES_PER_ELEMENT)
    rng = np.random.default_rng(_check_seed(seed))
    reps = _check_repeats(repeats)
    points: list[tuple[int, float]] = []
    for size in sizes:
        n = size // _STREAM_BYTES_PER_ELEMENT
        b = rng.random(n)
        c = rng.random(n)
        a = np.empty(n)
        t = measure(lambda: _stream_triad(a, b, c, 3.0), warmup=2, repeats=reps)
        points.append((n * _STREAM_BYTES_PER_ELEMENT, t.median_s))
    return points


# --------------------------------------------------------------------------- CPU: FMA peak


@njit(parallel=True, fastmath=True, cache=True)
def _fma_chains(data, ms, offs, consts, reps):  # pragma: no cover - compiled
    # 8 independent chains per lane, each with its own runtime multiplier so the
    # compiler cannot merge them; the lane loop vectorises (AVX2/AVX-512 FMA).
    # Every constant arrives as an array of data's dtype: a Python float literal
    # would silently promote the float32 kernel to float64.
    m0, m1, m2, m3, m4, m5, m6, m7 = ms[0], ms[1], ms[2], ms[3], ms[4], ms[5], ms[6], ms[7]
    o0, o1, o2, o3, o4, o5, o6, o7 = offs[0], offs[1], offs[2], offs[3], offs[4], offs[5], offs[6], offs[7]
    c = consts[0]
    inv_k = consts[1]
    for t in prange(data.shape[0]):
        row = data[t]
        for _rep in range(reps):
            for i in range(row.shape[0]):
                x = row[i]
                x0 = x + o0
                x1 = x + o1
                x2 = x + o2
                x3 = x + o3
                x4 = x + o4
                x5 = x + o5
                x6 = x + o6
                x7 = x + o7
                for _r in range(16):  # == FMA_UNROLL; literal so LLVM fully unrolls
                    x0 = x0 * m0 + c
                    x1 = x1 * m1 + c
                    x2 = x2 * m2 + c
                    x3 = x3 * m3 + c
                    x4 = x4 * m4 + c
                    x5 = x5 * m5 + c
                    x6 = x6 * m6 + c
                    x7 = x7 * m7 + c
                row[i] = (x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7) * inv_k


def fma_multipliers(dtype: Any) -> np.ndarray:
    """Per-chain multipliers m_j = 1 - (j+1)/1024 (exact in float32); |m_j| < 1 keeps values bounded."""
    dt = check_dtype(dtype)
    return (1.0 - (np.arange(FMA_ACCUMULATORS) + 1.0) / 1024.0).astype(dt)


def fma_offsets(dtype: Any) -> np.ndarray:
    """Per-chain start offsets o_j = j/8, so the chains start from distinct values."""
    dt = check_dtype(dtype)
    return (np.arange(FMA_ACCUMULATORS) / 8.0).astype(dt)


def _fma_flops_per_rep(rows: int, lanes: int) -> int:
    return 2 * FMA_ACCUMULATORS * FMA_UNROLL * rows * lanes


def fma_chains(data: np.ndarray, reps: int) -> int:
    """Run the FMA kernel in place on ``data`` (rows x lanes) ``reps`` times; return FMA flops done.

    Per lane and rep: chains x_j = x + o_j take FMA_UNROLL steps x_j <- x_j*m_j + c,
    then x <- mean_j(x_j). Only the FMAs are counted (2 flops each).
    """
    if not isinstance(data, np.ndarray) or data.ndim != 2:
        raise ValueError(f"data must be a 2-D numpy array, got {type(data).__name__} {getattr(data, 'shape', '')}")
    dt = check_dtype(data.dtype)
    if not data.flags.c_contiguous or data.size == 0:
        raise ValueError(f"data must be non-empty and C-contiguous, got shape {data.shape}")
    r = _check_repeats(reps)
    consts = np.array([FMA_ADDEND, 1.0 / FMA_ACCUMULATORS], dtype=dt)
    _fma_chains(data, fma_multipliers(dt), fma_offsets(dt), consts, r)
    return _fma_flops_per_rep(*data.shape) * r


def fma_reference(x0: np.ndarray, steps: int, reps: int) -> np.ndarray:
    """Closed form of the FMA kernel in float64: after n steps x_j = f_j + (x_j0 - f_j) m_j**n.

    f_j = c / (1 - m_j) is the chain's fixed point; each rep then averages the chains.
    """
    ms = fma_multipliers(np.float64)
    offs = fma_offsets(np.float64)
    fixed = FMA_ADDEND / (1.0 - ms)
    decay = ms**steps
    x = np.asarray(x0, dtype=np.float64)
    for _ in range(reps):
        x = np.mean(fixed + (x[..., None] + offs - fixed) * decay, axis=-1)
    return x


def fma_peak_points(
    dtype: Any = np.float64, works_flops: Sequence[float] = FMA_WORKS_FLOPS, repeats: int = 15
) -> list[tuple[float, float]]:
    """(flops, median s) of the register-resident FMA kernel per requested work.

    Work is rounded to whole reps over (threads x FMA_LANES) lanes; the returned
    flops are the exact count executed.
    """
    dt = check_dtype(dtype)
    works = _check_increasing("works_flops", works_flops, 1.0)
    reps_n = _check_repeats(repeats)
    rows = numba.get_num_threads()
    data = np.full((rows, FMA_LANES), 0.5, dtype=dt)
    per_rep = _fma_flops_per_rep(rows, FMA_LANES)
    points: list[tuple[float, float]] = []
    for work in works:
        reps = max(1, round(work / per_rep))
        if points and reps * per_rep <= points[-1][0]:
            reps = int(points[-1][0] // per_rep) + 1  # keep work strictly increasing
        t = measure(lambda: fma_chains(data, reps), warmup=2, repeats=reps_n)
        points.append((float(reps * per_rep), t.median_s))
    return points


# --------------------------------------------------------------------------- CPU: dispatch overhead


@njit(cache=True)
def _noop(x):  # pragma: no cover - compiled
    return x


_DISPATCH_BATCH = 1000


def dispatch_overhead_s(repeats: int = 15) -> float:
    """Median per-call cost of an already-compiled trivial Numba function (batched timing)."""
    reps = _check_repeats(repeats)
    _noop(1)  # compile / load from cache outside the timing

    def batch() -> None:
        f = _noop
        for i in range(_DISPATCH_BATCH):
            f(i)

    return measure(batch, warmup=2, repeats=reps).median_s / _DISPATCH_BATCH


# --------------------------------------------------------------------------- CPU calibration bundle


@dataclass(frozen=True)
class CpuCalibration:
    """All CPU calibration points, as taken by ``cpu_calibration``."""

    stream_points: tuple[tuple[int, float], ...]
    fma_fp32_points: tuple[tuple[float, float], ...]
    fma_fp64_points: tuple[tuple[float, float], ...]
    dispatch_overhead_s: float
    threads: int


def cpu_calibration(quick: bool = False, seed: int = 0, repeats: int | None = None) -> CpuCalibration:
    """Run all CPU microbenchmarks (quick: small size lists and fewer repeats, ~seconds)."""
    if not isinstance(quick, bool):
        raise ValueError(f"quick must be a bool, got {quick!r}")
    reps = _check_repeats(repeats) if repeats is not None else (5 if quick else 11)
    sizes = QUICK_STREAM_SIZES_BYTES if quick else STREAM_SIZES_BYTES
    works = QUICK_FMA_WORKS_FLOPS if quick else FMA_WORKS_FLOPS
    return CpuCalibration(
        stream_points=tuple(stream_triad_points(sizes, seed, reps)),
        fma_fp32_points=tuple(fma_peak_points(np.float32, works, reps)),
        fma_fp64_points=tuple(fma_peak_points(np.float64, works, reps)),
        dispatch_overhead_s=dispatch_overhead_s(reps),
        threads=numba.get_num_threads(),
    )


# --------------------------------------------------------------------------- GPU (CuPy)

_GPU_FMA_SOURCE = r"""
extern "C" __global__ void hwsim_fma_NAME(REAL* out, const REAL* ms, const REAL* offs,
                                          const REAL c, const REAL inv_k, const int iters) {
    const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const REAL x = out[tid];
    const REAL m0 = ms[0], m1 = ms[1], m2 = ms[2], m3 = ms[3];
    const REAL m4 = ms[4], m5 = ms[5], m6 = ms[6], m7 = ms[7];
    REAL x0 = x + offs[0], x1 = x + offs[1], x2 = x + offs[2], x3 = x + offs[3];
    REAL x4 = x + offs[4], x5 = x + offs[5], x6 = x + offs[6], x7 = x + offs[7];
    for (int it = 0; it < iters; ++it) {
#pragma unroll
        for (int r = 0; r < UNROLL; ++r) {
            x0 = FMA(x0, m0, c); x1 = FMA(x1, m1, c); x2 = FMA(x2, m2, c); x3 = FMA(x3, m3, c);
            x4 = FMA(x4, m4, c); x5 = FMA(x5, m5, c); x6 = FMA(x6, m6, c); x7 = FMA(x7, m7, c);
        }
    }
    out[tid] = (x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7) * inv_k;
}
"""

_GPU_EMPTY_SOURCE = r'extern "C" __global__ void hwsim_empty() {}'
_GPU_BLOCK = 256
_GPU_BLOCKS_PER_SM = 8
_gpu_cache: dict[str, Any] = {}


def _gpu_fma_kernel(cp: Any, dt: np.dtype) -> Any:
    key = f"fma_{dt.name}"
    if key not in _gpu_cache:
        real, fma, name = ("float", "fmaf", "f32") if dt == np.float32 else ("double", "fma", "f64")
        src = (
            _GPU_FMA_SOURCE.replace("NAME", name)
            .replace("REAL", real)
            .replace("FMA(", f"{fma}(")
            .replace("UNROLL", str(FMA_UNROLL))
        )
        _gpu_cache[key] = cp.RawKernel(src, f"hwsim_fma_{name}")
    return _gpu_cache[key]


def _gpu_triad_kernel(cp: Any) -> Any:
    if "triad" not in _gpu_cache:
        _gpu_cache["triad"] = cp.ElementwiseKernel("T b, T c, T s", "T a", "a = b + s * c", "hwsim_stream_triad")
    return _gpu_cache["triad"]


def _gpu_threads(cp: Any) -> int:
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    return int(props["multiProcessorCount"]) * _GPU_BLOCKS_PER_SM * _GPU_BLOCK


def gpu_stream_points(
    sizes_bytes: Sequence[int] = GPU_STREAM_SIZES_BYTES, seed: int = 0, repeats: int = 15
) -> list[tuple[int, float]]:
    """GPU version of ``stream_triad_points`` (CuPy ElementwiseKernel, CUDA-event timing)."""
    cp = require_gpu()
    sizes = _check_sizes_bytes(sizes_bytes, _STREAM_BYTES_PER_ELEMENT)
    rng = np.random.default_rng(_check_seed(seed))
    reps = _check_repeats(repeats)
    kernel = _gpu_triad_kernel(cp)
    points: list[tuple[int, float]] = []
    for size in sizes:
        n = size // _STREAM_BYTES_PER_ELEMENT
        b = cp.asarray(rng.random(n))
        c = cp.asarray(rng.random(n))
        a = cp.empty(n, dtype=cp.float64)
        s = np.float64(3.0)
        t = measure(lambda: kernel(b, c, s, a), warmup=2, repeats=reps, device="gpu")
        points.append((n * _STREAM_BYTES_PER_ELEMENT, t.median_s))
        del a, b, c
    return points


def gpu_fma_chains(dtype: Any, iters: int, threads: int) -> tuple[np.ndarray, int]:
    """Run the GPU FMA kernel once from x=0.5 on ``threads`` threads; return (host result, flops).

    Same arithmetic as ``fma_chains`` with FMA_UNROLL*iters steps and one rep, so
    ``fma_reference(0.5, FMA_UNROLL * iters, 1)`` is its closed form.
    """
    cp = require_gpu()
    dt = check_dtype(dtype)
    it = _check_repeats(iters)
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    n_threads = int(math.ceil(threads / _GPU_BLOCK)) * _GPU_BLOCK
    out = cp.full(n_threads, 0.5, dtype=dt)
    _launch_fma(cp, dt, out, it)
    flops = 2 * FMA_ACCUMULATORS * FMA_UNROLL * it * n_threads
    return cp.asnumpy(out[:threads]), flops


def _launch_fma(cp: Any, dt: np.dtype, out: Any, iters: int) -> None:
    kernel = _gpu_fma_kernel(cp, dt)
    ms = cp.asarray(fma_multipliers(dt))
    offs = cp.asarray(fma_offsets(dt))
    grid = (out.size // _GPU_BLOCK,)
    kernel(grid, (_GPU_BLOCK,), (out, ms, offs, dt.type(FMA_ADDEND), dt.type(1.0 / FMA_ACCUMULATORS), np.int32(iters)))


def gpu_fma_peak_points(
    dtype: Any = np.float32, works_flops: Sequence[float] = GPU_FMA_WORKS_FLOPS, repeats: int = 15
) -> list[tuple[float, float]]:
    """GPU version of ``fma_peak_points``: register-resident FMA chains over a full grid."""
    cp = require_gpu()
    dt = check_dtype(dtype)
    works = _check_increasing("works_flops", works_flops, 1.0)
    reps_n = _check_repeats(repeats)
    n_threads = _gpu_threads(cp)
    out = cp.full(n_threads, 0.5, dtype=dt)
    kernel = _gpu_fma_kernel(cp, dt)
    ms = cp.asarray(fma_multipliers(dt))
    offs = cp.asarray(fma_offsets(dt))
    c = dt.type(FMA_ADDEND)
    inv_k = dt.type(1.0 / FMA_ACCUMULATORS)
    grid = (n_threads // _GPU_BLOCK,)
    per_iter = 2 * FMA_ACCUMULATORS * FMA_UNROLL * n_threads
    points: list[tuple[float, float]] = []
    for work in works:
        iters = max(1, round(work / per_iter))
        if points and iters * per_iter <= points[-1][0]:
            iters = int(points[-1][0] // per_iter) + 1
        if iters > np.iinfo(np.int32).max:
            raise ValueError(f"works_flops entry too large for one launch, got {work!r}")
        args = (out, ms, offs, c, inv_k, np.int32(iters))
        t = measure(lambda: kernel(grid, (_GPU_BLOCK,), args), warmup=2, repeats=reps_n, device="gpu")
        points.append((float(iters * per_iter), t.median_s))
    return points


def gpu_launch_overhead_s(repeats: int = 15) -> float:
    """Median device time between events around an empty kernel launch (launch latency)."""
    cp = require_gpu()
    reps = _check_repeats(repeats)
    if "empty" not in _gpu_cache:
        _gpu_cache["empty"] = cp.RawKernel(_GPU_EMPTY_SOURCE, "hwsim_empty")
    kernel = _gpu_cache["empty"]
    return measure(lambda: kernel((1,), (1,), ()), warmup=3, repeats=reps, device="gpu").median_s


@dataclass(frozen=True)
class GpuCalibration:
    """All GPU calibration points, as taken by ``gpu_calibration``."""

    stream_points: tuple[tuple[int, float], ...]
    fma_fp32_points: tuple[tuple[float, float], ...]
    fma_fp64_points: tuple[tuple[float, float], ...]
    launch_overhead_s: float


def gpu_calibration(quick: bool = False, seed: int = 0, repeats: int | None = None) -> GpuCalibration:
    """Run all GPU microbenchmarks; raises GpuUnavailable without CuPy/a device."""
    require_gpu()
    if not isinstance(quick, bool):
        raise ValueError(f"quick must be a bool, got {quick!r}")
    reps = _check_repeats(repeats) if repeats is not None else (5 if quick else 11)
    sizes = GPU_STREAM_SIZES_BYTES[:4] if quick else GPU_STREAM_SIZES_BYTES
    works = GPU_FMA_WORKS_FLOPS[:4] if quick else GPU_FMA_WORKS_FLOPS
    return GpuCalibration(
        stream_points=tuple(gpu_stream_points(sizes, seed, reps)),
        fma_fp32_points=tuple(gpu_fma_peak_points(np.float32, works, reps)),
        fma_fp64_points=tuple(gpu_fma_peak_points(np.float64, works, reps)),
        launch_overhead_s=gpu_launch_overhead_s(reps),
    )


# --------------------------------------------------------------------------- per-family calibration (CPU)
#
# Each builder returns {case name: (work description, zero-argument callable)}: the caller times them
# interleaved (kernels.measure.measure_interleaved) and fits the family's parameters. The shapes here
# are the CALIBRATION shapes; the validation suite (suites/validate.py) uses disjoint ones and a test
# checks that the two sets never meet.

#: Working sets (total bytes touched) of the staircase sweep: L1 to well past any cache. 3.5 MiB sits
#: just past a 2 MiB L2 (as on the development host), so a working set a little larger than the L2 is
#: priced at the rate past it instead of interpolated halfway from the L2's own rate (not 3 MiB: its
#: triad arrays would be 1 MiB, the byte count of a validation copy).
#: Between 6 and 96 MiB the steps double: on a shared host the share of the last-level cache this
#: process gets moves with its neighbours' load (measured here: reads at cache speed up to 48 MiB at
#: one moment, only up to a few MiB at another), so the drop to memory can fall anywhere in that range.
STAIRCASE_BYTES: tuple[int, ...] = (6 * KiB, 24 * KiB, 96 * KiB, 384 * KiB, 1536 * KiB, 3584 * KiB, 6 * MiB,
                                    12 * MiB, 24 * MiB, 48 * MiB, 96 * MiB, 384 * MiB)
#: Staircase steps up to this working set are measured on STAIRCASE_BUFFERS separately allocated
#: buffers each, at start offsets cycling through 0, 16, 32 and 48 bytes past a 64-byte line (what
#: NumPy's 16-byte-aligned allocations get). Both move an in-cache pass's rate between runs: a read
#: whose vector loads straddle cache lines runs up to a third slower from L2, and which physical pages
#: (so which cache sets) a buffer gets decides how much of it stays in a nearly full L2. The mean time
#: over that balanced set is what a kernel on arbitrary arrays costs on average, and it does not
#: depend on where this process's allocator happens to place a buffer. Past this size the data
#: streams from memory and one buffer is representative.
STAIRCASE_MULTI_BUFFER_BYTES = 8 * MiB
STAIRCASE_BUFFERS = 8
#: Steps from half to twice the L2's size get this many buffers instead: there how much of a buffer
#: stays in the L2 depends most on its pages (a 1.5 MiB step moved 19-27% between two calibrations
#: with 8 buffers each), and the mean over more allocations moves less.
STAIRCASE_EDGE_BUFFERS = 16
STAIRCASE_OFFSETS_BYTES: tuple[int, ...] = (0, 16, 32, 48)
#: Row length of the weights step's matrix (not a row length any validation decode layer uses).
STAIRCASE_WEIGHT_K = 1536
#: Calibration GEMM shapes (m, n, k), fp32 BLAS.
CAL_GEMM_SHAPES: tuple[tuple[int, int, int], ...] = ((128, 128, 128), (192, 192, 192), (384, 384, 384),
                                                     (640, 640, 640), (768, 768, 768), (1536, 1536, 768))
#: Calibration GEMMs with few rows (m, n, k): they separate the per-call packing of the operands,
#: which grows with k * (m + n), from the flops (a small per-expert MoE GEMM is this shape).
CAL_GEMM_FEW_ROWS_SHAPES: tuple[tuple[int, int, int], ...] = ((24, 1536, 768), (48, 768, 1536), (96, 2304, 384),
                                                              (160, 1536, 640))
#: Calibration GEMV shapes (m, k), fp32 BLAS.
CAL_GEMV_SHAPES: tuple[tuple[int, int], ...] = ((1536, 1536), (3072, 3072), (6144, 3072))
#: Calibration GEMVs from memory (m, k): 288 MiB each, past the last-level cache this process gets on
#: the development hosts (its read rate reaches its DRAM value by 256 MiB). From memory the BLAS GEMV
#: reads at 0.8-1.0 of a plain read's rate depending on the shape, in cache at the read's own rate,
#: so one fraction does not fit both (measured: 29.2-29.8 GB/s at 9-72 MiB, 15.9-19.8 at 240-288 MiB
#: against reads of 29.5 and 19.3-19.6): three shapes, and the median fraction.
CAL_GEMV_DRAM_SHAPES: tuple[tuple[int, int], ...] = ((12288, 6144), (24576, 3072), (6144, 12288))
#: Calibration top-k shapes (rows, n, k). Two have rows of 2^20, where the kernel samples 8x as many
#: values (kernels/topk.py): without them that regime would be extrapolated. (Longer rows would leave
#: the regime where a thread keeps its workspace between calls; one row would be the validation
#: case's own array.) The last two hold their rows in the L2 and differ only in k, so in the number
#: of filter blocks that store candidates: where the pass over the row is cheap, each such block's
#: mispredicted test is what grows with k (measured here, 4 rows of 100,000: 11.6 us per row at k = 16,
#: 21.5 at k = 1024, about 7 ns per extra block that stores).
CAL_TOPK_SHAPES: tuple[tuple[int, int, int], ...] = (
    (1, 3 << 16, 48), (24, 6000, 24), (96, 12000, 96), (256, 768, 48), (512, 300, 30), (64, 1000, 200),
    (32, 3000, 100), (200, 1500, 60), (2, 400_000, 64), (8, 60_000, 300), (3, 250_000, 1000), (48, 20_000, 16),
    (2, 1 << 20, 40), (3, 1 << 20, 600), (5, 80_000, 64), (5, 80_000, 900))
#: Calibration attention shapes (heads, q_len, kv_len, head_dim), all kept.
CAL_ATTENTION_SHAPES: tuple[tuple[int, int, int, int], ...] = ((6, 24, 768, 64), (12, 48, 384, 64))
#: Pruned calibration attention (heads, q_len, kv_len, head_dim, kept fraction): fits the gather rate.
CAL_ATTENTION_PRUNED: tuple[tuple[int, int, int, int, float], ...] = ((10, 2, 3072, 64, 0.33), (6, 8, 1536, 64, 0.6))
#: Softmax calibration (rows, cols).
CAL_SOFTMAX_SHAPES: tuple[tuple[int, int], ...] = ((384, 768), (1536, 1536))


@njit(parallel=True, fastmath=True, cache=True)
def _stream_sum(b):  # pragma: no cover - compiled
    acc = 0.0
    for i in prange(b.shape[0]):
        acc += b[i]
    return acc


@njit(parallel=True, fastmath=True, cache=True)
def softmax_rows(x, out):  # pragma: no cover - compiled
    for r in prange(x.shape[0]):
        m = x[r, 0]
        for j in range(x.shape[1]):
            m = max(m, x[r, j])
        s = 0.0
        for j in range(x.shape[1]):
            e = math.exp(x[r, j] - m)
            out[r, j] = e
            s += e
        inv = 1.0 / s
        for j in range(x.shape[1]):
            out[r, j] *= inv


def _at_offset(rng: np.random.Generator, nbytes: int, dtype: Any, offset_bytes: int) -> np.ndarray:
    """A fresh array of ``nbytes`` starting ``offset_bytes`` past a page boundary, filled randomly."""
    raw = np.empty(nbytes + 4096 + offset_bytes, dtype=np.uint8)
    start = (-raw.ctypes.data) % 4096 + offset_bytes
    out = raw[start : start + nbytes].view(dtype)
    if out.dtype.kind == "f":
        out[:] = rng.random(out.size)
    else:
        out[:] = rng.integers(0, 255, out.size, dtype=out.dtype)
    return out


def l2_bytes() -> int:
    """This CPU's per-core L2 size (sysconf; 2 MiB where the system does not say)."""
    try:
        size = int(os.sysconf("SC_LEVEL2_CACHE_SIZE"))
    except (AttributeError, ValueError, OSError):
        size = 0
    return size if size > 0 else 2 * MiB


#: The C library's tunable behind a copy's two regimes (glibc on x86: ``ld.so --list-tunables``).
_NT_TUNABLE = re.compile(r"glibc\.cpu\.x86_non_temporal_threshold:\s*(0x[0-9a-fA-F]+|\d+)")


def parse_nontemporal_threshold(tunables: str) -> int | None:
    """The x86 non-temporal threshold (bytes) in the output of ``ld.so --list-tunables``, or None."""
    match = _NT_TUNABLE.search(tunables)
    if match is None:
        return None
    value = int(match.group(1), 0)
    return value if value > 0 else None


def _dynamic_loader() -> str | None:
    """Path of the dynamic loader this process runs under (from its memory map), or None."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.split()[-1] if line.split() else ""
                if "/ld-linux" in path or "/ld64.so" in path:
                    return path
    except OSError:
        return None
    return None


def nontemporal_copy_bytes() -> int | None:
    """Bytes per copy call from which this process's C library copies with non-temporal stores.

    glibc's ``memcpy`` (which the copy kernels' loops compile to) writes a copy at least this large
    past the caches, without first reading the destination's lines: from memory such a copy ran 1.8x
    as fast as one a little smaller on the development host (28.4 vs 15.8 GB/s, 192 vs 160 MiB, one
    thread; threshold 181.5 MiB, which glibc derives from the last-level cache's size, and the
    ``GLIBC_TUNABLES`` environment variable can set). Each thread of a parallel copy calls it on its
    own share of the range. None where the loader does not say (another C library, another CPU)."""
    loader = _dynamic_loader()
    if loader is None:
        return None
    try:
        out = subprocess.run([loader, "--list-tunables"], capture_output=True, text=True, timeout=10.0,
                             check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nontemporal_threshold(out)


def chunked_copy(src: np.ndarray, dst: np.ndarray, chunk_bytes: int) -> np.ndarray:
    """The copy kernel over ``chunk_bytes`` pieces: the same bytes and working set as one call, every
    call below the non-temporal threshold, so it copies through the caches whatever its size."""
    from hwsim.kernels.basic import memcpy_numba

    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be >= 1, got {chunk_bytes}")
    for start in range(0, src.size, chunk_bytes):
        memcpy_numba(src[start : start + chunk_bytes], dst[start : start + chunk_bytes])
    return dst


def staircase_cases(sizes_bytes: Sequence[int], seed: int, buffers: int = STAIRCASE_BUFFERS,
                    nontemporal_bytes: int | None = None) -> dict[str, tuple[int, Any]]:
    """Per working set: read (parallel sum), read+write (the project's triad kernel), copy (its
    memcpy kernel) and weights (the decode kernel's weight-streaming linear on one input row, a
    [rows, STAIRCASE_WEIGHT_K] float32 matrix); value: bytes moved. Steps up to
    STAIRCASE_MULTI_BUFFER_BYTES get ``buffers`` separately allocated buffer sets at cycling line
    offsets (at least STAIRCASE_EDGE_BUFFERS from half to twice the L2's size), named ``kind:size#i``
    (see :func:`staircase_step_s`).

    The copy kind is the copy through the caches at every step: where an array reaches
    ``nontemporal_bytes`` (the host's: :func:`nontemporal_copy_bytes`) it is copied in pieces below
    it; the copy past the caches is :func:`nontemporal_copy_cases`' own case."""
    from hwsim.kernels.basic import memcpy_numba, triad_numba
    from hwsim.kernels.decode import _linear

    rng = np.random.default_rng(_check_seed(seed))
    cases: dict[str, tuple[int, Any]] = {}
    l2 = l2_bytes()
    for size in _check_sizes_bytes(sizes_bytes, 24):
        edge = l2 / 2 <= size <= 2 * l2
        count = max(buffers, STAIRCASE_EDGE_BUFFERS) if edge else buffers
        for i in range(_check_repeats(count) if size <= STAIRCASE_MULTI_BUFFER_BYTES else 1):
            off = STAIRCASE_OFFSETS_BYTES[i % len(STAIRCASE_OFFSETS_BYTES)]
            n = size // 24
            b, c, a = (_at_offset(rng, 8 * n, np.float64, off) for _ in range(3))
            cases[f"triad:{size}#{i}"] = (24 * n, lambda a=a, b=b, c=c: triad_numba(a, b, c, 3.0))
            r = _at_offset(rng, 8 * (size // 8), np.float64, off)
            cases[f"read:{size}#{i}"] = (8 * r.size, lambda r=r: _stream_sum(r))
            src = _at_offset(rng, size // 2, np.uint8, off)
            dst = _at_offset(rng, size // 2, np.uint8, off)
            if nontemporal_bytes is not None and src.size >= nontemporal_bytes:
                copy = partial(chunked_copy, src, dst, nontemporal_bytes // 2)
            else:
                copy = partial(memcpy_numba, src, dst)
            cases[f"copy:{size}#{i}"] = (2 * src.size, copy)
            k = STAIRCASE_WEIGHT_K
            w = _at_offset(rng, 4 * k * max(1, size // (4 * k)), np.float32, off).reshape(-1, k)
            x, y = rng.standard_normal((1, k)).astype(np.float32), np.empty((1, w.shape[0]), np.float32)
            cases[f"weights:{size}#{i}"] = (w.nbytes, partial(_linear, x, w, y))
    return cases


def staircase_step_s(best_s: Mapping[str, float], kind: str, size: int) -> float:
    """A staircase step's time: the mean over its buffers of each buffer's best time (a best-of per
    buffer removes other processes; the mean over a balanced set of offsets and allocations is the
    expected cost on an arbitrary array, where a median would jump between the aligned and the
    straddling mode)."""
    times = [t for name, t in best_s.items() if name.startswith(f"{kind}:{size}#")]
    if not times:
        raise KeyError(f"no staircase case {kind}:{size}")
    return float(np.mean(times))


#: Largest array the calibration copies past the caches (bytes); a host whose threshold lies beyond
#: keeps the copy's one regime.
NONTEMPORAL_COPY_MAX_BYTES = 1 << 30


def nontemporal_copy_cases(threshold_bytes: int | None, threads: int, seed: int) -> dict[str, tuple[int, Any]]:
    """The copy kernel with each thread's share 8 MiB past ``threshold_bytes`` (rounded up to a MiB):
    the copy that writes past the caches. Value: bytes moved (read + written). Empty when the
    threshold is unknown or the arrays would pass NONTEMPORAL_COPY_MAX_BYTES."""
    from hwsim.kernels.basic import memcpy_numba

    if threshold_bytes is None:
        return {}
    per_thread = -(-int(threshold_bytes) // MiB) * MiB + 8 * MiB
    nbytes = max(1, int(threads)) * per_thread
    if nbytes > NONTEMPORAL_COPY_MAX_BYTES:
        return {}
    rng = np.random.default_rng(_check_seed(seed))
    src, dst = _at_offset(rng, nbytes, np.uint8, 0), _at_offset(rng, nbytes, np.uint8, 0)
    return {f"copy_nt:{nbytes}": (2 * nbytes, partial(memcpy_numba, src, dst))}


#: Arrays (bytes) the strided-gather microbenchmark reads from: in the L2, in the last-level cache and
#: past it on the development hosts (not a byte count any validation case uses).
GATHER_BYTES: tuple[int, ...] = (1280 * KiB, 6 * MiB, 96 * MiB)
#: Its stride: one float32 per 512 bytes, the top-k sample's stride on a row of 2^20 (8192 samples).
GATHER_STRIDE_BYTES = 512


@njit(cache=True, nogil=True)
def _gather(src, out, step):  # pragma: no cover - compiled
    for i in range(out.shape[0]):
        out[i] = src[i * step]
    return out[0]


def gather_cases(sizes_bytes: Sequence[int], seed: int) -> dict[str, tuple[int, Any]]:
    """Per array size: a strided gather of one float32 per GATHER_STRIDE_BYTES, as the top-k kernel's
    sample reads a long row (kernels/topk.py); value: cache lines gathered."""
    rng = np.random.default_rng(_check_seed(seed))
    cases: dict[str, tuple[int, Any]] = {}
    step = GATHER_STRIDE_BYTES // 4
    for size in _check_sizes_bytes(sizes_bytes, GATHER_STRIDE_BYTES):
        src = rng.random(size // 4, dtype=np.float32)
        out = np.empty(src.size // step, dtype=np.float32)
        cases[f"gather:{size}"] = (out.size, partial(_gather, src, out, step))
    return cases


def launch_s(repeats: int = 15) -> float:
    """Steady-state cost of one call of the project's parallel triad kernel on 64 elements (best of
    batched runs): the fixed cost of a memory-bound kernel call. On one thread it is timed by the
    calling thread's CPU clock, so another process taking the core does not inflate it."""
    from hwsim.kernels.basic import triad_numba

    clock = time.thread_time if numba.get_num_threads() == 1 else time.perf_counter
    a, b, c = np.empty(64), np.ones(64), np.ones(64)
    triad_numba(a, b, c, 3.0)
    best = math.inf
    for _ in range(_check_repeats(repeats)):
        t0 = clock()
        for _ in range(500):
            triad_numba(a, b, c, 3.0)
        best = min(best, (clock() - t0) / 500)
    return best


def gemm_cases(shapes: Sequence[tuple[int, int, int]], seed: int) -> dict[str, tuple[tuple[int, int, int], Any]]:
    rng = np.random.default_rng(_check_seed(seed))
    cases: dict[str, tuple[tuple[int, int, int], Any]] = {}
    for m, n, k in shapes:
        a = rng.random((m, k), dtype=np.float32)
        b = rng.random((k, n), dtype=np.float32)
        c = np.empty((m, n), dtype=np.float32)
        cases[f"gemm:{m}x{n}x{k}"] = ((m, n, k), lambda a=a, b=b, c=c: np.matmul(a, b, out=c))
    return cases


def gemv_cases(shapes: Sequence[tuple[int, int]], seed: int) -> dict[str, tuple[tuple[int, int], Any]]:
    rng = np.random.default_rng(_check_seed(seed))
    cases: dict[str, tuple[tuple[int, int], Any]] = {}
    for m, k in shapes:
        a = rng.random((m, k), dtype=np.float32)
        x = rng.random(k, dtype=np.float32)
        y = np.empty(m, dtype=np.float32)
        cases[f"gemv:{m}x{k}"] = ((m, k), lambda a=a, x=x, y=y: np.matmul(a, x, out=y))
    return cases


def softmax_cases(shapes: Sequence[tuple[int, int]], seed: int) -> dict[str, tuple[tuple[int, int], Any]]:
    rng = np.random.default_rng(_check_seed(seed))
    cases: dict[str, tuple[tuple[int, int], Any]] = {}
    for rows, cols in shapes:
        x = rng.random((rows, cols), dtype=np.float32)
        out = np.empty_like(x)
        cases[f"softmax:{rows}x{cols}"] = ((rows, cols), lambda x=x, out=out: softmax_rows(x, out))
    return cases


def topk_cases(shapes: Sequence[tuple[int, int, int]], seed: int) -> dict[str, tuple[tuple[int, int, int], Any]]:
    """The project's CPU top-k kernel (kernels/topk.py), whatever algorithm it runs."""
    from hwsim.kernels.topk import topk_numba

    rng = np.random.default_rng(_check_seed(seed))
    cases: dict[str, tuple[tuple[int, int, int], Any]] = {}
    for rows, n, k in shapes:
        x = rng.standard_normal((rows, n)).astype(np.float32)
        cases[f"topk:{rows}x{n}:k{k}"] = ((rows, n, k), lambda x=x, k=k: topk_numba(x, k))
    return cases


def attention_cases(shapes: Sequence[tuple[int, int, int, int]], seed: int,
                    kept: float = 1.0) -> dict[str, tuple[tuple[int, int, int, int], Any]]:
    """The project's CPU attention kernel over ``kept`` of the tokens and all heads; value: (h, q, kept, d)."""
    from hwsim.kernels.attention import attention_numba

    rng = np.random.default_rng(_check_seed(seed))
    cases: dict[str, tuple[tuple[int, int, int, int], Any]] = {}
    for heads, q_len, kv_len, d in shapes:
        q = rng.standard_normal((heads, q_len, d)).astype(np.float32)
        k = rng.standard_normal((heads, kv_len, d)).astype(np.float32)
        v = rng.standard_normal((heads, kv_len, d)).astype(np.float32)
        toks = np.sort(rng.permutation(kv_len)[: max(1, int(kv_len * kept))])
        hs = np.arange(heads)
        cases[f"attention:{heads}x{q_len}x{kv_len}x{d}:kept{len(toks)}"] = (
            (heads, q_len, len(toks), d), lambda q=q, k=k, v=v, t=toks, h=hs: attention_numba(q, k, v, t, h))
    return cases


#: Calibration shapes of the decode kernels: skinny GEMM (rows, n, k) and attention (batch, heads, len, head_dim).
CAL_SKINNY_SHAPES: tuple[tuple[int, int, int], ...] = (
    (1, 2304, 768), (4, 1536, 1536), (8, 3072, 768), (2, 768, 3072), (1, 6144, 2048), (2, 2048, 6144),
    # weights within the L2 (about 1 MiB): the dot products dominate, so these pin the dot-product rate
    # and leave the streaming fraction to the large ones (a better-conditioned fit of the two)
    (8, 640, 384), (4, 896, 384),
)
CAL_DECODE_ATTENTION: tuple[tuple[int, int, int, int], ...] = ((3, 6, 384, 64), (6, 12, 160, 64))


def skinny_cases(shapes: Sequence[tuple[int, int, int]], seed: int) -> dict[str, tuple[tuple[int, int, int], Any]]:
    """The decode kernel's weight-streaming linear (kernels/decode.py ``_linear``)."""
    from hwsim.kernels.decode import _linear

    rng = np.random.default_rng(_check_seed(seed))
    cases: dict[str, tuple[tuple[int, int, int], Any]] = {}
    for rows, n, k in shapes:
        x = rng.standard_normal((rows, k)).astype(np.float32)
        w = rng.standard_normal((n, k)).astype(np.float32)
        out = np.empty((rows, n), dtype=np.float32)
        cases[f"skinny:{rows}x{n}x{k}"] = ((rows, n, k), partial(_linear, x, w, out))
    return cases


def decode_attention_cases(shapes: Sequence[tuple[int, int, int, int]],
                           seed: int) -> dict[str, tuple[tuple[int, int, int, int], Any]]:
    """The decode kernel's attention over contiguous caches (kernels/decode.py ``_attend``)."""
    from hwsim.kernels.decode import _attend

    rng = np.random.default_rng(_check_seed(seed))
    cases: dict[str, tuple[tuple[int, int, int, int], Any]] = {}
    for batch, heads, length, hd in shapes:
        q = rng.standard_normal((batch, heads, hd)).astype(np.float32)
        kc = rng.standard_normal((batch, heads, length + 1, hd)).astype(np.float32)
        vc = rng.standard_normal((batch, heads, length + 1, hd)).astype(np.float32)
        lens = np.full(batch, length, dtype=np.int64)
        out = np.empty_like(q)
        cases[f"decode_attention:{batch}x{heads}x{length}x{hd}"] = ((batch, heads, length, hd),
                                                                     partial(_attend, q, kc, vc, lens, out))
    return cases


#: MoE dispatch calibration (tokens, experts, top_k, hidden).
CAL_DISPATCH: tuple[tuple[int, int, int, int], ...] = ((384, 4, 2, 384), (1536, 32, 1, 128), (768, 12, 3, 192))


def dispatch_cases(shapes: Sequence[tuple[int, int, int, int]],
                   seed: int) -> dict[str, tuple[tuple[int, int, int], Any]]:
    """The MoE counting-sort dispatch (kernels/moe.py); value: (tokens, slots, hidden)."""
    from hwsim.kernels.moe import dispatch_numba

    rng = np.random.default_rng(_check_seed(seed))
    cases: dict[str, tuple[tuple[int, int, int], Any]] = {}
    for tokens, experts, top_k, hidden in shapes:
        x = rng.standard_normal((tokens, hidden)).astype(np.float32)
        choice = np.argsort(rng.random((tokens, experts)), axis=1)[:, :top_k].astype(np.int64)
        cases[f"dispatch:{tokens}x{experts}x{top_k}x{hidden}"] = ((tokens, tokens * top_k, hidden),
                                                                  partial(dispatch_numba, x, choice, experts))
    return cases
