"""Top-k kernels: the Numba kernel equals the stable-sort reference bit for bit on every shape."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hwsim.kernels.gpu import gpu_available
from hwsim.kernels.topk import topk_argpartition, topk_cupy, topk_numba, topk_ref


@st.composite
def rows_and_k(draw):
    rows = draw(st.integers(1, 5))
    n = draw(st.integers(1, 300))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    # few distinct values half the time, so ties are common
    elements = st.one_of(st.integers(-3, 3).map(float),
                         st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=32))
    x = draw(hnp.arrays(dtype, (rows, n), elements=elements))
    k = draw(st.integers(1, n))
    return x, k


@settings(max_examples=80, deadline=None)
@given(rows_and_k())
def test_numba_matches_reference(case):
    _assert_numba_matches_reference(*case)


def _assert_numba_matches_reference(x, k):
    """Same indices and values as the stable-sort reference; returns both values for further checks."""
    ref_v, ref_i = topk_ref(x, k)
    v, i = topk_numba(x, k)
    np.testing.assert_array_equal(i, ref_i)
    np.testing.assert_array_equal(v, ref_v)
    return v, ref_v


@settings(max_examples=60, deadline=None)
@given(rows_and_k())
def test_reference_selects_the_k_largest_with_leftmost_ties(case):
    x, k = case
    v, i = topk_ref(x, k)
    for r in range(x.shape[0]):
        kept = set(i[r].tolist())
        assert len(kept) == k and list(i[r]) == sorted(kept)
        threshold = v[r].min()
        # nothing left out is larger than anything kept
        assert all(x[r, j] <= threshold for j in range(x.shape[1]) if j not in kept)
        # a left-out tie never sits left of a kept tie
        tied_out = [j for j in range(x.shape[1]) if j not in kept and x[r, j] == threshold]
        tied_in = [j for j in kept if x[r, j] == threshold]
        if tied_out:
            assert max(tied_in) < min(tied_out)


@st.composite
def long_rows_and_k(draw):
    """Rows long enough for the sampled-threshold path (and, with few distinct values, its misses)."""
    rows = draw(st.integers(1, 3))
    n = draw(st.integers(1025, 6000))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["normal", "few", "sorted", "signed-zeros"]))
    if kind == "normal":
        x = rng.standard_normal((rows, n))
    elif kind == "few":
        x = rng.integers(-2, 3, size=(rows, n)).astype(float)
    elif kind == "sorted":
        x = np.sort(rng.standard_normal((rows, n)), axis=1)[:, :: draw(st.sampled_from([1, -1]))]
    else:
        x = rng.choice([-0.0, 0.0, 1.0, -np.inf, np.inf], size=(rows, n))
    k = draw(st.one_of(st.integers(1, 64), st.integers(1, n)))
    return np.ascontiguousarray(x.astype(dtype)), k


@settings(max_examples=60, deadline=None)
@given(long_rows_and_k())
def test_numba_matches_reference_on_long_rows(case):
    v, ref_v = _assert_numba_matches_reference(*case)
    assert np.signbit(v).tolist() == np.signbit(ref_v).tolist()  # -0.0 stays -0.0


@pytest.mark.parametrize("n", [7, 16, 300, 1024, 1025, 4096 + 5, 70_000])
@pytest.mark.parametrize("where", ["first", "middle", "tail"])
def test_a_nan_anywhere_is_found(n, where):
    """Short rows (direct select), long rows (sampled threshold: a NaN in a block the filter would skip,
    or in the scalar tail) and the NaN inside or outside the sample all raise."""
    x = np.random.default_rng(n).standard_normal((2, n)).astype(np.float32)
    x[1, {"first": 0, "middle": n // 2 + 1, "tail": n - 1}[where]] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        topk_numba(x, min(5, n))


def test_vector_paths_agree_with_the_generic_cpu_build(tmp_path):
    """On a CPU without AVX-512 the compress stores lower to LLVM's generic form: same results."""
    import subprocess
    import sys
    code = ("import numpy as np\n"
            "from hwsim.kernels import simd\n"
            "from hwsim.kernels.topk import topk_numba, topk_ref\n"
            "assert not simd.HAVE_AVX512\n"
            "x = np.random.default_rng(1).standard_normal((3, 5000)).astype(np.float32)\n"
            "x[:, ::7] = 0.5\n"
            "for k in (1, 40, 700, 5000):\n"
            "    v, i = topk_numba(x, k); rv, ri = topk_ref(x, k)\n"
            "    assert (i == ri).all() and (v == rv).all(), k\n"
            "print('same')\n")
    env = {**__import__("os").environ, "NUMBA_CPU_NAME": "generic", "NUMBA_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "same" in out.stdout


@pytest.mark.parametrize("shape,k", [((3, 1), 1), ((4, 1000), 1), ((4, 1000), 1000), ((2, 1023), 511),
                                     ((8, 4097), 64), ((520, 4100), 700)])  # the last: the parallel path
def test_edge_shapes_large_rows(shape, k):
    from hwsim.kernels.topk import PARALLEL_MIN_ELEMENTS
    assert shape != (520, 4100) or shape[0] * shape[1] >= PARALLEL_MIN_ELEMENTS
    rng = np.random.default_rng(3)
    for x in (rng.standard_normal(shape).astype(np.float32), np.sort(rng.standard_normal(shape), axis=1),
              rng.integers(0, 3, size=shape).astype(np.float64), np.zeros(shape, np.float32)):
        ref_v, ref_i = topk_ref(x, k)
        v, i = topk_numba(x, k)
        np.testing.assert_array_equal(i, ref_i)
        np.testing.assert_array_equal(v, ref_v)
        # argpartition finds the same multiset of values
        pv, _ = topk_argpartition(x, k)
        np.testing.assert_array_equal(np.sort(pv, axis=1), np.sort(ref_v, axis=1))


@pytest.mark.parametrize("fn", [topk_ref, topk_numba, topk_argpartition])
@pytest.mark.parametrize("k", [0, -1, 6])
def test_bad_k_is_a_clear_error(fn, k):
    with pytest.raises(ValueError, match=r"1 <= k <= n=5"):
        fn(np.zeros((2, 5), np.float32), k)


def test_bad_inputs():
    with pytest.raises(ValueError, match="2-D"):
        topk_numba(np.zeros(5), 1)
    with pytest.raises(ValueError, match="dtype"):
        topk_numba(np.zeros((2, 5), np.int32), 1)
    with pytest.raises(ValueError, match="integer"):
        topk_numba(np.zeros((2, 5)), 2.0)
    x = np.zeros((2, 5))
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        topk_numba(x, 2)
    with pytest.raises(ValueError, match="NaN"):
        topk_ref(x, 2)


@pytest.mark.gpu
@pytest.mark.parametrize("shape,k", [((3, 7), 3), ((16, 1024), 1), ((16, 1024), 1024), ((5, 4099), 300),
                                     ((3, 200_003), 777), ((1, 1 << 20), 1)])  # the last two: two-pass path
def test_cupy_matches_reference(shape, k):
    rng = np.random.default_rng(5)
    for x in (rng.standard_normal(shape).astype(np.float32), rng.integers(0, 3, size=shape).astype(np.float64)):
        ref_v, ref_i = topk_ref(x, k)
        v, i = topk_cupy(x, k)
        np.testing.assert_array_equal(i.get(), ref_i)
        np.testing.assert_array_equal(v.get(), ref_v)


@pytest.mark.skipif(gpu_available(), reason="checks the no-GPU path")
def test_cupy_path_skips_cleanly_without_gpu():
    from hwsim.kernels.gpu import GpuUnavailable
    with pytest.raises(GpuUnavailable):
        topk_cupy(np.zeros((2, 5), np.float32), 1)


# The GPU algorithms, mirrored step by step in NumPy, hold to the reference without a GPU.

@settings(max_examples=60, deadline=None)
@given(rows_and_k(), st.integers(0, 2**32 - 1))
def test_gpu_algorithms_mirrored_in_numpy_match_reference(case, seed):
    from hwsim.kernels.topk import topk_radix_numpy, topk_two_pass_numpy
    x, k = case
    ref_v, ref_i = topk_ref(x, k)
    for v, i in (topk_radix_numpy(x, k), topk_two_pass_numpy(x, k, np.random.default_rng(seed))):
        np.testing.assert_array_equal(i, ref_i)
        np.testing.assert_array_equal(v, ref_v)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_two_pass_mirror_on_a_long_row_with_infinities_and_ties(dtype):
    from hwsim.kernels.topk import topk_two_pass_numpy
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 200_000)).astype(dtype)
    x[0, ::1000] = np.inf          # more infinities than... fewer than k: all kept
    x[1, :] = np.round(x[1], 1)    # heavy ties at the k-th value
    x[1, -5:] = -np.inf
    for k in (1, 150, 1024):
        ref_v, ref_i = topk_ref(x, k)
        v, i = topk_two_pass_numpy(x, k, rng)
        np.testing.assert_array_equal(i, ref_i)
        np.testing.assert_array_equal(v, ref_v)
    low = -np.abs(x[:1]) - 1  # every value negative; k = n takes all, including the -inf padding's neighbours
    v, i = topk_two_pass_numpy(low, low.shape[1])
    np.testing.assert_array_equal(i, np.arange(low.shape[1])[None, :])


@pytest.mark.parametrize("shape,k", [((3, 100_003), 10), ((2, 70_001), 1)])  # the block-skipping filter
def test_sparse_filter_rows(shape, k):
    rng = np.random.default_rng(4)
    for x in (rng.standard_normal(shape).astype(np.float32), np.round(rng.standard_normal(shape), 1)):
        ref_v, ref_i = topk_ref(x, k)
        v, i = topk_numba(x, k, threads=1)
        np.testing.assert_array_equal(i, ref_i)
        np.testing.assert_array_equal(v, ref_v)


def test_a_misleading_sample_falls_back_to_the_exact_answer():
    # the largest values sit exactly where the strided sample looks, so its threshold is too high
    # and fewer than k elements pass the filter: the row must still come out exact
    n, k = 4096, 256
    x = -np.random.default_rng(6).random((2, n))
    s = min(n // 8, max(64, 16 * n // k), 1024)
    x[:, :: n // s] += 10.0
    ref_v, ref_i = topk_ref(x, k)
    v, i = topk_numba(x, k, threads=1)
    np.testing.assert_array_equal(i, ref_i)
    np.testing.assert_array_equal(v, ref_v)


def test_threads_split_rows_without_changing_the_answer():
    x = np.random.default_rng(8).standard_normal((600, 4000)).astype(np.float32)  # >= PARALLEL_MIN_ELEMENTS
    one = topk_numba(x, 50, threads=1)
    two = topk_numba(x, 50, threads=2)
    np.testing.assert_array_equal(one[1], two[1])
    with pytest.raises(ValueError, match="threads"):
        topk_numba(x, 50, threads=0)
