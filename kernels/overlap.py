"""Real contention between a compute-bound and a memory-bound kernel, alone and concurrent.

One GPU cannot run a real collective, but it can run a collective's resource footprint: the reduce
step of a reduce-scatter is ``c = a + b`` over large buffers, memory-bound, on some compute units.
We time it and a compute-bound kernel alone and then started together, and report each one's
slowdown and the overlap efficiency ``(t_a + t_b - t_both) / min(t_a, t_b)`` (1: perfect overlap,
0: no better than running them one after the other).

* CPU (Numba, runs everywhere): one thread runs a compute-bound FMA kernel over a small buffer, the
  other ``c = a + b`` over large buffers; both functions release the GIL, so two Python threads run
  them on two cores at once. Sweep: the reduction's buffer size.
* GPU (CuPy): a GEMM (``cupy.matmul``) on one stream and a grid-stride ``c = a + b`` kernel on another,
  timed with CUDA events. Sweep: the reduction kernel's grid size (the units it takes) and buffer size.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from numba import njit

from hwsim.kernels.gpu import require_gpu
from hwsim.kernels.measure import pair_interleaved

__all__ = [
    "CPU_BUFFER_BYTES",
    "QUICK_CPU_BUFFER_BYTES",
    "GPU_GRID_BLOCKS",
    "GPU_BUFFER_BYTES",
    "OverlapPoint",
    "fma_stream",
    "fma_stream_reference",
    "vector_add",
    "cpu_overlap_points",
    "cpu_control_slowdown",
    "gpu_overlap_points",
    "time_pair",
]

MiB = 1024 * 1024
#: c = a + b total bytes (three float64 arrays), from cache-resident to well past any LLC.
CPU_BUFFER_BYTES: tuple[int, ...] = (3 * MiB, 24 * MiB, 96 * MiB, 192 * MiB)
QUICK_CPU_BUFFER_BYTES: tuple[int, ...] = (3 * MiB, 96 * MiB)
GPU_GRID_BLOCKS: tuple[int, ...] = (4, 16, 33, 66, 132, 264)
GPU_BUFFER_BYTES: tuple[int, ...] = (96 * MiB, 384 * MiB, 1536 * MiB)  # all past a 50 MB L2
GPU_GEMM_SIZE = 8192  # fp16 GEMM, square: long enough to overlap every reduction size above
GPU_REDUCE_THREADS = 256

#: FMA kernel: elements in the (L1-resident) buffer and dependent FMA steps per element.
FMA_ELEMENTS = 4096
FMA_STEPS = 64
FMA_MULTIPLIER = 0.999
FMA_ADDEND = 1e-3


@dataclass(frozen=True)
class OverlapPoint:
    """One sweep point: each kernel alone, both together, and what the pair moved and did."""

    device: str
    grid_blocks: int            # units the reduction takes: GPU blocks; 1 thread on the CPU
    buffer_bytes: int           # the reduction's working set: a, b and c
    reduce_bytes: float         # bytes the reduction streams per timed call (several passes on the CPU)
    compute_alone_s: float
    reduce_alone_s: float
    compute_concurrent_s: float
    reduce_concurrent_s: float
    both_s: float
    compute_bytes: float
    compute_flops: float
    compute_blocks: int

    @property
    def compute_slowdown(self) -> float:
        return self.compute_concurrent_s / self.compute_alone_s

    @property
    def reduce_slowdown(self) -> float:
        return self.reduce_concurrent_s / self.reduce_alone_s

    @property
    def efficiency(self) -> float:
        return (self.compute_alone_s + self.reduce_alone_s - self.both_s) / min(self.compute_alone_s, self.reduce_alone_s)


# --------------------------------------------------------------------------------------- CPU


@njit(nogil=True, fastmath=True, cache=True)
def _fma_stream(x, out, steps, passes):  # pragma: no cover - compiled
    for _ in range(passes):
        for i in range(x.shape[0]):
            v = x[i]
            for _ in range(steps):
                v = v * FMA_MULTIPLIER + FMA_ADDEND
            out[i] = v


@njit(nogil=True, fastmath=True, cache=True)
def _vector_add(a, b, c):  # pragma: no cover - compiled
    for i in range(a.shape[0]):
        c[i] = a[i] + b[i]


def fma_stream(x: np.ndarray, out: np.ndarray, steps: int = FMA_STEPS, passes: int = 1) -> np.ndarray:
    """``out[i] = x[i]`` after ``steps`` dependent FMAs, ``passes`` times: compute-bound, tiny footprint."""
    if x.dtype != np.float64 or out.dtype != np.float64 or x.shape != out.shape or x.ndim != 1:
        raise ValueError(f"fma_stream needs two 1-D float64 arrays of one shape, got {x.dtype}{x.shape}, {out.dtype}{out.shape}")
    _fma_stream(x, out, int(steps), int(passes))
    return out


def fma_stream_reference(x: np.ndarray, steps: int = FMA_STEPS) -> np.ndarray:
    """NumPy reference of one pass of :func:`fma_stream` (closed form of the affine recurrence)."""
    m = FMA_MULTIPLIER**steps
    return x * m + FMA_ADDEND * (1.0 - m) / (1.0 - FMA_MULTIPLIER)


def vector_add(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``c = a + b``: the reduce step of a reduce-scatter, memory-bound."""
    if not (a.shape == b.shape == c.shape) or a.ndim != 1 or {a.dtype, b.dtype, c.dtype} != {np.dtype(np.float64)}:
        raise ValueError("vector_add needs three 1-D float64 arrays of one shape")
    _vector_add(a, b, c)
    return c


def time_pair(first: Callable[[], Any], second: Callable[[], Any], repeats: int = 7) -> tuple[float, float, float]:
    """Median (first_s, second_s, both_s) with both started together on two threads from a barrier."""
    firsts: list[float] = []
    seconds: list[float] = []
    boths: list[float] = []
    for _ in range(repeats):
        barrier = threading.Barrier(3)
        ends: dict[int, float] = {}

        def worker(index: int, fn: Callable[[], Any]) -> None:
            barrier.wait()
            fn()
            ends[index] = time.perf_counter()

        threads = [threading.Thread(target=worker, args=(0, first)), threading.Thread(target=worker, args=(1, second))]
        for t in threads:
            t.start()
        barrier.wait()
        start = time.perf_counter()
        for t in threads:
            t.join()
        firsts.append(ends[0] - start)
        seconds.append(ends[1] - start)
        boths.append(max(ends.values()) - start)
    return statistics.median(firsts), statistics.median(seconds), statistics.median(boths)


def _alone(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up (compile, page in)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def cpu_overlap_points(buffer_bytes: Sequence[int] = CPU_BUFFER_BYTES, seed: int = 0, repeats: int = 7,
                       target_s: float = 0.02, clock: str = "wall") -> list[OverlapPoint]:
    """The CPU sweep: FMA thread vs ``c = a + b`` thread, alone and together, per reduction size.

    The FMA kernel's pass count is chosen so that it runs about as long as the reduction alone
    (``target_s`` at least), so that the two overlap for most of their time.

    ``clock="wall"``: medians of wall times (what a user waits for, other jobs included).
    ``clock="thread_cpu"``: as calibration measures its interference pairs
    (:func:`hwsim.kernels.measure.pair_interleaved`): best of ``repeats`` interleaved rounds of each
    thread's own CPU time alone and together, so time-slicing by other processes drops out while
    the interference between the two kernels (shared core, caches, memory) stays in; ``both_s`` is
    the later of the two.
    """
    if clock not in ("wall", "thread_cpu"):
        raise ValueError(f"clock must be 'wall' or 'thread_cpu', got {clock!r}")
    rng = np.random.default_rng(seed)
    x = rng.random(FMA_ELEMENTS)
    out = np.empty_like(x)
    fma_stream(x, out, FMA_STEPS, 1)
    one_pass_s = _alone(lambda: fma_stream(x, out, FMA_STEPS, 1), repeats)
    points = []
    for size in buffer_bytes:
        n = max(1, int(size) // 24)
        a, b, c = rng.random(n), rng.random(n), np.empty(n)
        reps = max(1, int(round(target_s / max(_alone(lambda: vector_add(a, b, c), 3), 1e-7))))

        def reduce() -> None:
            for _ in range(reps):
                _vector_add(a, b, c)

        reduce_s = _alone(reduce, repeats)
        passes = max(1, int(round(reduce_s / max(one_pass_s, 1e-9))))

        def compute() -> None:
            _fma_stream(x, out, FMA_STEPS, passes)

        if clock == "thread_cpu":
            pair = pair_interleaved(reduce, compute, repeats)
            reduce_s, compute_s = pair.first_alone_s, pair.second_alone_s
            conc_reduce, conc_compute, both = pair.first_together_s, pair.second_together_s, pair.both_s
        else:
            compute_s = _alone(compute, repeats)
            conc_reduce, conc_compute, both = time_pair(reduce, compute, repeats)
        points.append(OverlapPoint(
            device="cpu", grid_blocks=1, buffer_bytes=24 * n, reduce_bytes=24.0 * n * reps,
            compute_alone_s=compute_s, reduce_alone_s=reduce_s,
            compute_concurrent_s=conc_compute, reduce_concurrent_s=conc_reduce, both_s=both,
            compute_bytes=16.0 * FMA_ELEMENTS * passes, compute_flops=2.0 * FMA_STEPS * FMA_ELEMENTS * passes,
            compute_blocks=1,
        ))
    return points


def cpu_control_slowdown(seed: int = 0, repeats: int = 7, target_s: float = 0.02) -> float:
    """Slowdown of two FMA threads run together: they share no memory traffic, so anything above 1
    is lost cores (other jobs, SMT siblings, clock limits), not memory contention. A control for
    reading :func:`cpu_overlap_points` on a busy machine."""
    x = np.random.default_rng(seed).random(FMA_ELEMENTS)
    out1, out2 = np.empty_like(x), np.empty_like(x)
    fma_stream(x, out1, FMA_STEPS, 1)
    one_pass_s = _alone(lambda: fma_stream(x, out1, FMA_STEPS, 1), repeats)
    passes = max(1, int(round(target_s / max(one_pass_s, 1e-9))))
    alone = _alone(lambda: _fma_stream(x, out1, FMA_STEPS, passes), repeats)
    first, second, _ = time_pair(lambda: _fma_stream(x, out1, FMA_STEPS, passes),
                                 lambda: _fma_stream(x, out2, FMA_STEPS, passes), repeats)
    return max(first, second) / alone


# --------------------------------------------------------------------------------------- GPU

_REDUCE_SRC = r"""
extern "C" __global__ void reduce_add(const float* a, const float* b, float* c, long long n) {
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        c[i] = a[i] + b[i];
    }
}
"""


def gpu_overlap_points(grid_blocks: Sequence[int] = GPU_GRID_BLOCKS, buffer_bytes: Sequence[int] = GPU_BUFFER_BYTES,
                       gemm_size: int = GPU_GEMM_SIZE, seed: int = 0, repeats: int = 10) -> list[OverlapPoint]:
    """The GPU sweep: fp16 GEMM on one stream, ``c = a + b`` on another, timed with CUDA events.

    Raises :class:`hwsim.kernels.gpu.GpuUnavailable` without CuPy or a device.
    """
    cp = require_gpu()
    kernel = cp.RawKernel(_REDUCE_SRC, "reduce_add")
    rs = cp.random.default_rng(seed) if hasattr(cp.random, "default_rng") else cp.random
    a_g = rs.random((gemm_size, gemm_size), dtype=cp.float32).astype(cp.float16)
    b_g = rs.random((gemm_size, gemm_size), dtype=cp.float32).astype(cp.float16)
    s_gemm, s_red = cp.cuda.Stream(non_blocking=True), cp.cuda.Stream(non_blocking=True)
    tiles = -(-gemm_size // 128) ** 2

    def timed(launch_gemm: bool, launch_reduce: bool, launch: Callable[[Any], None]) -> tuple[float, float, float]:
        start = cp.cuda.Event()
        e_g, e_r = cp.cuda.Event(), cp.cuda.Event()
        start.record(cp.cuda.Stream.null)
        s_gemm.wait_event(start)
        s_red.wait_event(start)
        if launch_gemm:
            with s_gemm:
                cp.matmul(a_g, b_g)
        if launch_reduce:
            launch(s_red)
        e_g.record(s_gemm)
        e_r.record(s_red)
        e_g.synchronize()
        e_r.synchronize()
        t_g = cp.cuda.get_elapsed_time(start, e_g) / 1e3
        t_r = cp.cuda.get_elapsed_time(start, e_r) / 1e3
        return t_g, t_r, max(t_g, t_r)

    def median_of(launch_gemm: bool, launch_reduce: bool, launch: Callable[[Any], None]) -> tuple[float, float, float]:
        for _ in range(3):
            timed(launch_gemm, launch_reduce, launch)
        runs = [timed(launch_gemm, launch_reduce, launch) for _ in range(repeats)]
        return tuple(statistics.median(r[i] for r in runs) for i in range(3))  # type: ignore[return-value]

    gemm_alone = median_of(True, False, lambda s: None)[0]
    points = []
    for size in buffer_bytes:
        n = int(size) // 12
        a, b, c = (cp.ones(n, dtype=cp.float32) for _ in range(3))
        for grid in grid_blocks:
            def launch(stream: Any, grid: int = grid) -> None:
                with stream:
                    kernel((grid,), (GPU_REDUCE_THREADS,), (a, b, c, np.int64(n)))

            reduce_alone = median_of(False, True, launch)[1]
            t_g, t_r, both = median_of(True, True, launch)
            points.append(OverlapPoint(
                device="gpu", grid_blocks=grid, buffer_bytes=12 * n, reduce_bytes=12.0 * n,
                compute_alone_s=gemm_alone, reduce_alone_s=reduce_alone,
                compute_concurrent_s=t_g, reduce_concurrent_s=t_r, both_s=both,
                compute_bytes=3.0 * gemm_size * gemm_size * 2, compute_flops=2.0 * gemm_size**3,
                compute_blocks=tiles,
            ))
        del a, b, c
    return points
