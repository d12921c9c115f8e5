"""Correctness and validation tests for hwsim.kernels.basic, .measure and .gpu."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.errors import MeasurementError
from hwsim.kernels import basic as B
from hwsim.kernels.gpu import GpuUnavailable, gpu_available, gpu_unavailable_reason, require_gpu
from hwsim.kernels.measure import Timing, measure

REPO_ROOT = Path(__file__).resolve().parents[1]

SHAPES = {
    "gemm": [dict(m=1, n=1, k=1), dict(m=7, n=13, k=5), dict(m=33, n=17, k=65), dict(m=64, n=64, k=64)],
    "gemv": [dict(m=1, k=1), dict(m=13, k=7), dict(m=100, k=37)],
    "triad": [dict(n=1), dict(n=13), dict(n=1000)],
    "memcpy": [dict(nbytes=1), dict(nbytes=13), dict(nbytes=4099)],
}
CASES = [(op, size) for op, sizes in SHAPES.items() for size in sizes]
DTYPES = [np.float32, np.float64]


def _fresh(inputs: tuple) -> tuple:
    """Copy arrays so implementations never share output buffers."""
    return tuple(x.copy() if isinstance(x, np.ndarray) else x for x in inputs)


def _tolerances(op: str, size: dict, dtype) -> dict:
    k = size.get("k", 1)
    if np.dtype(dtype) == np.float32:
        return dict(rtol=1e-4, atol=1e-4 * math.sqrt(k))
    return dict(rtol=1e-12, atol=1e-12 * math.sqrt(k))


def _check_against_ref(table: dict, op: str, size: dict, dtype, seed: int = 0) -> None:
    inputs = B.make_inputs(op, size, dtype, seed)
    expected = B.REF_IMPLS[op](*_fresh(inputs))
    got = table[op](*_fresh(inputs))
    assert got.shape == expected.shape
    assert got.dtype == expected.dtype
    if op == "memcpy":
        np.testing.assert_array_equal(got, inputs[0])
    else:
        np.testing.assert_allclose(got, expected, **_tolerances(op, size, dtype))


# --------------------------------------------------------------------------- correctness


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("op,size", CASES, ids=[f"{op}-{'x'.join(map(str, s.values()))}" for op, s in CASES])
def test_cpu_impls_match_reference(op, size, dtype):
    _check_against_ref(B.CPU_IMPLS, op, size, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("op,size", CASES, ids=[f"{op}-{'x'.join(map(str, s.values()))}" for op, s in CASES])
def test_numba_impls_match_reference(op, size, dtype):
    _check_against_ref(B.NUMBA_IMPLS, op, size, dtype)


def test_reference_is_the_math():
    a, b, c, s = B.make_inputs("triad", dict(n=5), np.float64, 3)
    np.testing.assert_array_equal(B.triad_ref(a, b, c, s), b + 3.0 * c)
    a, x, y = B.make_inputs("gemv", dict(m=4, k=3), np.float64, 3)
    np.testing.assert_allclose(B.gemv_ref(a, x, y), [sum(a[i, p] * x[p] for p in range(3)) for i in range(4)])


def test_cpu_impl_table_is_the_fast_path():
    assert B.CPU_IMPLS["gemm"] is B.gemm_blas
    assert B.CPU_IMPLS["gemv"] is B.gemv_blas
    assert B.CPU_IMPLS["triad"] is B.triad_numba
    assert B.CPU_IMPLS["memcpy"] is B.memcpy_numba
    assert set(B.CPU_IMPLS) == set(B.GPU_IMPLS) == set(B.NUMBA_IMPLS) == set(B.REF_IMPLS) == set(B.OPS)


@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(1, 40),
    n=st.integers(1, 40),
    k=st.integers(1, 40),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**16),
)
def test_gemm_any_shape_matches_reference(m, n, k, dtype, seed):
    size = dict(m=m, n=n, k=k)
    a, b, c = B.make_inputs("gemm", size, dtype, seed)
    assert a.shape == (m, k) and b.shape == (k, n) and c.shape == (m, n)
    for table in (B.CPU_IMPLS, B.NUMBA_IMPLS):
        _check_against_ref(table, "gemm", size, dtype, seed)
    assert B.flops("gemm", size) == 2 * m * n * k
    assert B.bytes_moved("gemm", size, np.dtype(dtype).itemsize) == (a.nbytes + b.nbytes + c.nbytes)


def test_make_inputs_deterministic_by_seed():
    x1 = B.make_inputs("gemm", dict(m=3, n=4, k=5), np.float32, 7)
    x2 = B.make_inputs("gemm", dict(m=3, n=4, k=5), np.float32, 7)
    x3 = B.make_inputs("gemm", dict(m=3, n=4, k=5), np.float32, 8)
    for u, v in zip(x1, x2):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(x1[0], x3[0])
    assert x1[0].dtype == np.float32


# --------------------------------------------------------------------------- work accounting


def test_flops_and_bytes_hand_computed():
    assert B.flops("gemm", dict(m=2, n=3, k=4)) == 48
    assert B.bytes_moved("gemm", dict(m=2, n=3, k=4), 4) == (8 + 12 + 6) * 4
    assert B.flops("gemv", dict(m=3, k=5)) == 30
    assert B.bytes_moved("gemv", dict(m=3, k=5), 8) == (15 + 5 + 3) * 8
    assert B.flops("triad", dict(n=10)) == 20
    assert B.bytes_moved("triad", dict(n=10), 8) == 240
    assert B.flops("memcpy", dict(nbytes=100)) == 0
    assert B.bytes_moved("memcpy", dict(nbytes=100), 8) == 200


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "op,size,match",
    [
        ("gemm", dict(m=-1, n=2, k=2), r"size\['m'\] must be >= 1, got -1"),
        ("gemm", dict(m=2, n=0, k=2), r"size\['n'\] must be >= 1, got 0"),
        ("gemm", dict(m=2, n=2), r"size for gemm must have keys"),
        ("gemv", dict(m=2, k=2, n=3), r"size for gemv must have keys"),
        ("triad", dict(n=2.5), r"size\['n'\] must be an int, got 2.5"),
        ("triad", dict(n=True), r"size\['n'\] must be an int, got True"),
        ("memcpy", dict(n=8), r"size for memcpy must have keys \('nbytes',\)"),
        ("conv", dict(n=8), r"op must be one of .* got 'conv'"),
    ],
)
def test_bad_sizes_rejected(op, size, match):
    with pytest.raises(ValueError, match=match):
        B.make_inputs(op, size, np.float64, 0)
    with pytest.raises(ValueError, match=match):
        B.flops(op, size)
    with pytest.raises(ValueError, match=match):
        B.bytes_moved(op, size, 8)


@pytest.mark.parametrize(
    "dtype,match",
    [(np.int32, "got int32"), (np.float16, "got float16"), (np.complex128, "got complex128"), ("bogus", "got 'bogus'")],
)
def test_bad_dtype_rejected(dtype, match):
    with pytest.raises(ValueError, match=f"dtype must be float32 or float64, {match}"):
        B.make_inputs("triad", dict(n=4), dtype, 0)


def test_bad_seed_and_itemsize_rejected():
    with pytest.raises(ValueError, match="seed must be a non-negative int, got -1"):
        B.make_inputs("triad", dict(n=4), np.float64, -1)
    with pytest.raises(ValueError, match="itemsize must be a positive int, got 0"):
        B.bytes_moved("triad", dict(n=4), 0)


@pytest.mark.parametrize("table", [B.CPU_IMPLS, B.NUMBA_IMPLS, B.REF_IMPLS], ids=["cpu", "numba", "ref"])
def test_mismatched_shapes_and_dtypes_rejected(table):
    a, b, c = B.make_inputs("gemm", dict(m=3, n=4, k=5), np.float64, 0)
    with pytest.raises(ValueError, match=r"b.shape\[0\] must equal a.shape\[1\]=5, got b.shape=\(4, 5\)"):
        table["gemm"](a, b.T.copy(), c)
    with pytest.raises(ValueError, match=r"c.shape must be \(3, 4\), got \(4, 3\)"):
        table["gemm"](a, b, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="c.dtype must match a.dtype=float64, got float32"):
        table["gemm"](a, b, c.astype(np.float32))
    with pytest.raises(ValueError, match="a.dtype must be float32 or float64, got int64"):
        table["gemm"](a.astype(np.int64), b, c)
    a, x, y = B.make_inputs("gemv", dict(m=3, k=5), np.float32, 0)
    with pytest.raises(ValueError, match=r"x.shape must be \(5,\), got \(4,\)"):
        table["gemv"](a, x[:4], y)
    with pytest.raises(ValueError, match=r"y.shape must be \(3,\), got \(2,\)"):
        table["gemv"](a, x, y[:2])
    a, b, c, s = B.make_inputs("triad", dict(n=6), np.float32, 0)
    with pytest.raises(ValueError, match=r"a, b, c shapes must match, got a=\(6,\) b=\(6,\) c=\(5,\)"):
        table["triad"](a, b, c[:5], s)
    with pytest.raises(ValueError, match="s must be a real scalar"):
        table["triad"](a, b, c, np.ones(2))
    src, dst = B.make_inputs("memcpy", dict(nbytes=8), np.float64, 0)
    with pytest.raises(ValueError, match=r"dst.shape must equal src.shape=\(8,\), got \(7,\)"):
        table["memcpy"](src, dst[:7])
    with pytest.raises(ValueError, match="src/dst dtype must be uint8"):
        table["memcpy"](src.astype(np.float32), dst.astype(np.float32))


# --------------------------------------------------------------------------- measure


def test_measure_known_sleep_stats_ordered():
    t = measure(lambda: time.sleep(0.002), warmup=1, repeats=5)
    assert isinstance(t, Timing)
    assert t.repeats == 5 and len(t.samples_s) == 5 and t.warmup == 1
    assert t.device == "cpu"
    assert t.min_s <= t.median_s <= t.max_s
    assert t.min_s <= t.mean_s <= t.max_s
    assert t.min_s >= 0.002 * 0.95
    assert t.median_s < 0.1


def test_measure_counts_calls():
    calls = []
    t = measure(lambda: calls.append(1), warmup=3, repeats=7)
    assert len(calls) == 10 and t.repeats == 7 and t.warmup == 3


def test_measure_stops_early_but_keeps_three_samples():
    t = measure(lambda: time.sleep(0.005), warmup=0, repeats=100, max_time_s=0.001)
    assert t.repeats == 3
    t = measure(lambda: time.sleep(0.005), warmup=0, repeats=2, max_time_s=0.001)
    assert t.repeats == 2


def test_measure_is_frozen():
    t = measure(lambda: None, warmup=0, repeats=3)
    with pytest.raises(AttributeError):
        t.median_s = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(repeats=0), "repeats must be >= 1, got 0"),
        (dict(repeats=2.0), r"repeats must be an int, got 2.0"),
        (dict(warmup=-1), "warmup must be >= 0, got -1"),
        (dict(device="tpu"), "device must be 'cpu' or 'gpu', got 'tpu'"),
        (dict(max_time_s=0), "max_time_s must be finite and > 0, got 0"),
        (dict(max_time_s=float("nan")), "max_time_s must be finite and > 0, got nan"),
    ],
)
def test_measure_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        measure(lambda: None, **kwargs)


def test_measure_rejects_non_callable():
    with pytest.raises(ValueError, match="fn must be callable, got 3"):
        measure(3)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- GPU


def test_gpu_probe_is_consistent():
    if gpu_available():
        assert gpu_unavailable_reason() == ""
        assert require_gpu() is not None
    else:
        reason = gpu_unavailable_reason()
        assert reason.startswith(("CuPy is not installed", "CuPy failed to import", "no CUDA device", "no usable"))
        with pytest.raises(GpuUnavailable, match=reason[:20]):
            require_gpu()
        assert issubclass(GpuUnavailable, MeasurementError)


@pytest.mark.parametrize("op", B.OPS)
def test_gpu_impls_fail_cleanly_without_gpu(op):
    if gpu_available():
        pytest.skip("a GPU is present; the no-GPU path is not reachable")
    inputs = B.make_inputs(op, SHAPES[op][1], np.float32, 0)
    with pytest.raises(GpuUnavailable):
        B.GPU_IMPLS[op](*inputs)
    with pytest.raises(GpuUnavailable):
        B.to_gpu(inputs)
    with pytest.raises(GpuUnavailable):
        measure(lambda: None, device="gpu")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("op,size", CASES, ids=[f"{op}-{'x'.join(map(str, s.values()))}" for op, s in CASES])
def test_gpu_impls_match_reference(op, size, dtype):
    import cupy as cp

    inputs = B.make_inputs(op, size, dtype, 0)
    expected = B.REF_IMPLS[op](*_fresh(inputs))
    got = cp.asnumpy(B.GPU_IMPLS[op](*B.to_gpu(inputs)))
    tol = _tolerances(op, size, dtype)
    if op == "gemm" and np.dtype(dtype) == np.float32:
        tol = dict(rtol=1e-3, atol=1e-3 * math.sqrt(size["k"]))  # cuBLAS may use TF32
    np.testing.assert_allclose(got, expected, **tol)


@pytest.mark.gpu
def test_gpu_measure_uses_events():
    inputs = B.to_gpu(B.make_inputs("gemm", dict(m=256, n=256, k=256), np.float32, 0))
    t = measure(lambda: B.GPU_IMPLS["gemm"](*inputs), warmup=2, repeats=5, device="gpu")
    assert t.device == "gpu" and t.repeats == 5 and 0 < t.min_s <= t.median_s <= t.max_s


# --------------------------------------------------------------------------- import hygiene


def test_kernels_import_without_simulator_deps():
    code = (
        "import sys, hwsim.kernels, hwsim.kernels.basic, hwsim.kernels.measure, hwsim.kernels.gpu, hwsim.kernels.microbench\n"
        "bad = sorted(m for m in ('simpy', 'pulp') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
