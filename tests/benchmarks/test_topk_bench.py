"""CPU top-k against ``np.argpartition``, timed interleaved, and the GPU kernel against ``torch.topk``.

Run with ``pytest tests/benchmarks/test_topk_bench.py --benchmark-enable --benchmark-autosave
--benchmark-storage=results/benchmarks/topk``. Each CPU case alternates the two implementations
round by round (load on a shared machine hits both alike) and stores the ratio of medians,
``argpartition / numba`` (> 1: the kernel is faster), with ``os.getloadavg()``, in ``extra_info``.
Targets (issue 17): one thread, >= 2x on every shape and >= 5x on the long row; with a busy process
on another core, >= 1x. With ``--benchmark-disable`` (CI) each case runs once and is checked.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from hwsim.kernels.topk import topk_argpartition, topk_numba, topk_ref

# (rows, n, k): the shapes of issue 17
SHAPES = [(64, 4096, 256), (1536, 512, 64), (1024, 32768, 64), (4096, 4096, 64), (1, 1 << 24, 1024)]


def _ids(shape: tuple[int, int, int]) -> str:
    return "x".join(map(str, shape))


def _data(shape: tuple[int, int, int]) -> tuple[np.ndarray, int]:
    rows, n, k = shape
    return np.random.default_rng(0).standard_normal((rows, n)).astype(np.float32), k


def _interleaved(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _check(x: np.ndarray, k: int, threads: int | None) -> None:
    rows = min(x.shape[0], 4)
    ref_v, ref_i = topk_ref(x[:rows], k)
    v, i = topk_numba(x[:rows], k, threads=threads)
    np.testing.assert_array_equal(i, ref_i)
    np.testing.assert_array_equal(v, ref_v)


def _rounds(benchmark: Any, shape: tuple[int, int, int]) -> int:
    if not benchmark.enabled:
        return 1
    return 5 if shape[0] * shape[1] >= 1 << 24 else 15


@pytest.mark.benchmark(group="topk-cpu")
@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
def test_topk_one_thread_vs_argpartition(benchmark, shape):
    x, k = _data(shape)
    _check(x, k, threads=1)
    fns = {"numba": lambda: topk_numba(x, k, threads=1), "argpartition": lambda: topk_argpartition(x, k)}
    med = benchmark.pedantic(_interleaved, args=(fns, _rounds(benchmark, shape)), rounds=1, iterations=1)
    benchmark.extra_info.update(shape=list(shape), threads=1, numba_median_s=med["numba"],
                                argpartition_median_s=med["argpartition"], ratio=med["argpartition"] / med["numba"],
                                loadavg_at_end=list(os.getloadavg()))


@pytest.mark.benchmark(group="topk-cpu-busy")
@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
def test_topk_default_threads_with_a_busy_core(benchmark, shape):
    """A process spinning on one core while the kernel runs with its default thread count."""
    x, k = _data(shape)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        _check(x, k, threads=None)
        fns = {"numba": lambda: topk_numba(x, k), "argpartition": lambda: topk_argpartition(x, k)}
        med = benchmark.pedantic(_interleaved, args=(fns, _rounds(benchmark, shape)), rounds=1, iterations=1)
    finally:
        busy.kill()
        busy.wait()
    benchmark.extra_info.update(shape=list(shape), threads="default", busy_processes=1,
                                numba_median_s=med["numba"], argpartition_median_s=med["argpartition"],
                                ratio=med["argpartition"] / med["numba"], loadavg_at_end=list(os.getloadavg()))


# --------------------------------------------------------------------------------------------
# GPU: part of the GPU validation run (tests/benchmarks with --benchmark-enable on a lent device).

GPU_SHAPES = [(1, 1 << 24, 1024), (1024, 32768, 64), (4096, 4096, 64), (64, 4096, 256)]


def _gpu_or_skip() -> Any:
    from hwsim.kernels.gpu import gpu_available, gpu_unavailable_reason
    if not gpu_available():
        pytest.skip(f"no GPU: {gpu_unavailable_reason()}")
    import cupy as cp  # type: ignore[import-not-found]
    return cp


def _hbm_peak_bytes_per_s(cp: Any) -> float:
    """Theoretical DRAM bandwidth from the device's memory clock and bus width (double data rate)."""
    attrs = cp.cuda.Device().attributes
    return 2.0 * float(attrs["MemoryClockRate"]) * 1e3 * float(attrs["GlobalMemoryBusWidth"]) / 8.0


def _gpu_time_s(cp: Any, fn: Callable[[], Any], repeats: int) -> float:
    fn()
    cp.cuda.Device().synchronize()
    times = []
    for _ in range(repeats):
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end) / 1e3)
    return statistics.median(times)


@pytest.mark.gpu
@pytest.mark.benchmark(group="topk-gpu")
@pytest.mark.parametrize("shape", GPU_SHAPES, ids=_ids)
def test_topk_gpu_vs_torch(benchmark, shape):
    cp = _gpu_or_skip()
    from hwsim.kernels.topk import topk_cupy
    rows, n, k = shape
    x = cp.random.default_rng(0).standard_normal((rows, n), dtype=cp.float32)
    ref_v, ref_i = topk_ref(cp.asnumpy(x[:2]), k)
    v, i = topk_cupy(x[:2], k)
    np.testing.assert_array_equal(cp.asnumpy(i), ref_i)
    np.testing.assert_array_equal(cp.asnumpy(v), ref_v)
    repeats = 20 if benchmark.enabled else 1
    ours = benchmark.pedantic(_gpu_time_s, args=(cp, lambda: topk_cupy(x, k), repeats), rounds=1, iterations=1)
    info: dict[str, Any] = {"shape": list(shape), "topk_cupy_s": ours}
    peak = _hbm_peak_bytes_per_s(cp)
    info["hbm_fraction"] = (x.nbytes / ours) / peak  # one read of the input at the measured time
    info["hbm_peak_bytes_per_s"] = peak
    try:
        import torch  # type: ignore[import-not-found]
        xt = torch.as_tensor(x, device="cuda")
        theirs = _gpu_time_s(cp, lambda: torch.topk(xt, k, dim=1, sorted=False), repeats)
        info.update(torch_topk_s=theirs, speedup_vs_torch=theirs / ours, torch_hbm_fraction=(x.nbytes / theirs) / peak)
    except ImportError as exc:
        info["torch"] = f"not installed ({exc})"
    benchmark.extra_info.update(info)
