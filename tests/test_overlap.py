"""Concurrent-kernel prediction (hwsim.systems.overlap) and the contention microbenchmark kernels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hwsim.kernels.overlap import OverlapPoint, fma_stream, fma_stream_reference, time_pair, vector_add
from hwsim.systems.overlap import KernelFootprint, OverlapError, predict_concurrent


def test_ample_bandwidth_and_units_predict_no_slowdown():
    a = KernelFootprint("add", 2e-3, 20e6, 1)       # 10 GB/s
    b = KernelFootprint("fma", 3e-3, 1e3, 1)
    p = predict_concurrent(a, b, units=2, bandwidth_bytes_per_s=100e9)
    assert (p.first_s, p.second_s, p.both_s) == pytest.approx((2e-3, 3e-3, 3e-3))
    assert p.efficiency(2e-3, 3e-3) == pytest.approx(1.0)


def test_two_memory_bound_kernels_share_the_bandwidth():
    """Each alone at 0.75 of the bandwidth: together the pair ends when all bytes crossed at full rate."""
    c = 100e9
    a = KernelFootprint("a", 1e-3, 0.75 * c * 1e-3, 1)
    b = KernelFootprint("b", 1e-3, 0.75 * c * 1e-3, 1)
    p = predict_concurrent(a, b, units=4, bandwidth_bytes_per_s=c)
    assert p.both_s == pytest.approx(1.5e-3)
    assert p.efficiency(1e-3, 1e-3) == pytest.approx(0.5)


def test_units_taken_by_the_first_kernel_add_waves_to_the_second():
    """A reduction holding 16 of 80 units while it runs: the GEMM gets ceil(tiles / 64) waves meanwhile."""
    gemm = KernelFootprint("gemm", 10 * 1e-4, 0.0, 800)      # 10 waves of 1e-4 s alone on 80 units
    reduce = KernelFootprint("reduce", 1.0, 0.0, 16)         # outlives the GEMM
    p = predict_concurrent(reduce, gemm, units=80, bandwidth_bytes_per_s=1e12)
    assert p.second_s == pytest.approx(math.ceil(800 / 64) * 1e-4)


def test_footprint_errors():
    with pytest.raises(OverlapError):
        KernelFootprint("x", 0.0, 1.0, 1)
    with pytest.raises(OverlapError):
        predict_concurrent(KernelFootprint("x", 1.0, 0, 1), KernelFootprint("x", 1.0, 0, 1), 2, 1e9)


def test_fma_stream_matches_reference_and_vector_add_adds():
    rng = np.random.default_rng(0)
    x = rng.random(257)
    np.testing.assert_allclose(fma_stream(x, np.empty_like(x), 64, 1), fma_stream_reference(x, 64), rtol=1e-12)
    a, b = rng.random(1000), rng.random(1000)
    np.testing.assert_array_equal(vector_add(a, b, np.empty(1000)), a + b)
    with pytest.raises(ValueError):
        vector_add(a, b[:10], np.empty(1000))


def test_time_pair_pair_time_is_the_later_of_the_two():
    def spin(seconds):
        def run():
            import time
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                pass
        return run
    first, second, both = time_pair(spin(0.002), spin(0.004), repeats=3)
    assert both >= max(first, second) * (1 - 1e-9)
    assert second >= 0.004 and first >= 0.002


def test_overlap_point_efficiency_definition():
    p = OverlapPoint("cpu", 1, 24, 24.0, 2.0, 1.0, 2.2, 1.3, 2.4, 0.0, 1.0, 1)
    assert p.efficiency == pytest.approx((2.0 + 1.0 - 2.4) / 1.0)
    assert p.compute_slowdown == pytest.approx(1.1) and p.reduce_slowdown == pytest.approx(1.3)


@pytest.mark.gpu
def test_gpu_overlap_points_run():
    from hwsim.kernels.overlap import gpu_overlap_points

    points = gpu_overlap_points(grid_blocks=(8, 132), buffer_bytes=(96 * 2**20,), gemm_size=2048, repeats=3)
    assert len(points) == 2
    assert all(p.both_s >= max(p.compute_alone_s, p.reduce_alone_s) * 0.5 for p in points)
