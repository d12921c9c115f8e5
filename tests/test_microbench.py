"""Tests for the calibration microbenchmarks in kernels.microbench."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from hwsim.kernels import microbench as M
from hwsim.kernels.gpu import GpuUnavailable, gpu_available, gpu_unavailable_reason

SMALL_SIZES_BYTES = (32 * 1024, 256 * 1024, 2 * 1024 * 1024)
SMALL_WORKS_FLOPS = (1e6, 1e7, 1e8)


def _assert_increasing_positive(points):
    assert points
    work = [w for w, _ in points]
    assert all(w > 0 for w in work)
    assert all(b > a for a, b in zip(work, work[1:]))
    assert all(s > 0 for _, s in points)


def test_stream_points_positive_and_increasing():
    pts = M.stream_triad_points(SMALL_SIZES_BYTES, seed=1, repeats=3)
    assert len(pts) == len(SMALL_SIZES_BYTES)
    _assert_increasing_positive(pts)
    for (moved, _), asked in zip(pts, SMALL_SIZES_BYTES):
        assert moved % 24 == 0 and asked - 24 < moved <= asked
        assert isinstance(moved, int)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fma_points_positive_and_increasing(dtype):
    pts = M.fma_peak_points(dtype, SMALL_WORKS_FLOPS, repeats=3)
    assert len(pts) == len(SMALL_WORKS_FLOPS)
    _assert_increasing_positive(pts)
    per_rep = 2 * M.FMA_ACCUMULATORS * M.FMA_UNROLL * numba.get_num_threads() * M.FMA_LANES
    assert all(f % per_rep == 0 for f, _ in pts)


def test_fma_points_stay_increasing_when_rounding_collides():
    pts = M.fma_peak_points(np.float64, (1.0, 2.0, 3.0), repeats=3)
    _assert_increasing_positive(pts)


def test_fma_reference_is_the_iteration():
    """The closed form equals literally iterating x <- x*m + c per chain, then averaging."""
    ms, offs, c = M.fma_multipliers(np.float64), M.fma_offsets(np.float64), M.FMA_ADDEND
    x = 0.3
    for _ in range(2):
        chains = [x + o for o in offs]
        for _ in range(M.FMA_UNROLL):
            chains = [v * m + c for v, m in zip(chains, ms)]
        x = sum(chains) / len(chains)
    assert M.fma_reference(np.array([0.3]), M.FMA_UNROLL, 2)[0] == pytest.approx(x, rel=1e-14)


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 2e-5), (np.float64, 1e-12)])
def test_fma_kernel_computes_closed_form(dtype, rtol):
    data = np.linspace(-1.0, 2.0, 2 * 24, dtype=dtype).reshape(2, 24)
    start = data.astype(np.float64).copy()
    flops = M.fma_chains(data, 5)
    assert data.dtype == dtype
    assert flops == 2 * M.FMA_ACCUMULATORS * M.FMA_UNROLL * data.size * 5
    np.testing.assert_allclose(data, M.fma_reference(start, M.FMA_UNROLL, 5), rtol=rtol)


def test_dispatch_overhead_small_and_positive():
    t = M.dispatch_overhead_s(repeats=5)
    assert 0 < t < 1e-3


def test_quick_calibration_shape():
    cal = M.cpu_calibration(quick=True, repeats=3)
    assert len(cal.stream_points) == len(M.QUICK_STREAM_SIZES_BYTES)
    assert len(cal.fma_fp32_points) == len(cal.fma_fp64_points) == len(M.QUICK_FMA_WORKS_FLOPS)
    assert cal.threads >= 1 and 0 < cal.dispatch_overhead_s < 1e-3


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: M.stream_triad_points((1024, 1024)), "sizes_bytes must be strictly increasing, got 1024 then 1024"),
        (lambda: M.stream_triad_points((8,)), "sizes_bytes entries must be finite and >= 24, got 8"),
        (lambda: M.stream_triad_points(()), "sizes_bytes must not be empty"),
        (lambda: M.stream_triad_points((1024.5,)), "sizes_bytes entries must be ints, got 1024.5"),
        (lambda: M.stream_triad_points((1024,), seed=-3), "seed must be a non-negative int, got -3"),
        (lambda: M.stream_triad_points((1024,), repeats=0), "repeats must be a positive int, got 0"),
        (lambda: M.fma_peak_points(np.int64, (1e6,)), "dtype must be float32 or float64, got int64"),
        (lambda: M.fma_peak_points(np.float32, (-1.0,)), r"works_flops entries must be finite and >= 1.0, got -1.0"),
        (lambda: M.fma_chains(np.ones(4), 1), "data must be a 2-D numpy array"),
        (lambda: M.fma_chains(np.ones((2, 4), dtype=np.int32), 1), "dtype must be float32 or float64, got int32"),
        (lambda: M.dispatch_overhead_s(repeats=-1), "repeats must be a positive int, got -1"),
        (lambda: M.cpu_calibration(quick="yes"), "quick must be a bool, got 'yes'"),
    ],
)
def test_bad_arguments_rejected(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_gpu_microbench_unavailable_is_clean():
    if gpu_available():
        pytest.skip("a GPU is present; the no-GPU path is not reachable")
    for call in (
        lambda: M.gpu_stream_points(),
        lambda: M.gpu_fma_peak_points(),
        lambda: M.gpu_launch_overhead_s(),
        lambda: M.gpu_fma_chains(np.float32, 1, 32),
        lambda: M.gpu_calibration(quick=True),
    ):
        with pytest.raises(GpuUnavailable, match=gpu_unavailable_reason()[:15]):
            call()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,rtol", [(np.float32, 2e-5), (np.float64, 1e-12)])
def test_gpu_fma_kernel_computes_closed_form(dtype, rtol):
    if not gpu_available():
        pytest.skip(f"GPU path not tested: {gpu_unavailable_reason()}")
    out, flops = M.gpu_fma_chains(dtype, 4, 300)
    assert out.shape == (300,) and flops == 2 * M.FMA_ACCUMULATORS * M.FMA_UNROLL * 4 * 512
    np.testing.assert_allclose(out, M.fma_reference(np.full(300, 0.5), 4 * M.FMA_UNROLL, 1), rtol=rtol)


@pytest.mark.gpu
def test_gpu_points_positive_and_increasing():
    if not gpu_available():
        pytest.skip(f"GPU path not tested: {gpu_unavailable_reason()}")
    _assert_increasing_positive(M.gpu_stream_points(M.GPU_STREAM_SIZES_BYTES[:3], seed=0, repeats=3))
    _assert_increasing_positive(M.gpu_fma_peak_points(np.float32, M.GPU_FMA_WORKS_FLOPS[:3], repeats=3))
    assert 0 < M.gpu_launch_overhead_s(repeats=5) < 1e-3
