"""Batched row-wise top-k: the k largest values of every row and their column indices.

One contract for every implementation, so that the suite can compare them and tests can hold
them to the reference:

* ``x`` is 2-D ``(rows, n)``, float32 or float64, no NaN; ``1 <= k <= n`` (anything else is a
  ``ValueError`` that names the value).
* Ties are broken deterministically: among equal values the lower column index wins, i.e. the
  selected set is the first ``k`` entries of a *stable* sort of ``-x``.
* Output: ``(values, indices)`` of shape ``(rows, k)``, each row's entries in ascending column
  order (the order the SpAtten top-k engine emits them, and the order a gather wants).

Implementations: :func:`topk_ref` (NumPy, stable argsort: the ground truth), :func:`topk_numba`
(below), :func:`topk_cupy` (a RawKernel radix select, below; raises ``GpuUnavailable`` without a
GPU). :func:`topk_argpartition` is the NumPy built-in baseline the CPU kernel is benchmarked against.

CPU algorithm (:func:`topk_numba`), per row of ``n`` elements; what a cost model of it counts. Every
pass works on blocks of 16 float32 (8 float64): one vector compare gives a bit mask and an AVX-512
compress packs the selected lanes (:mod:`hwsim.kernels.simd`), so a pass costs a fraction of a cycle
per element instead of the ~2 cycles of a scalar branch-free loop.

* **Vector quick-select** (used below): partition around a median-of-three pivot, values above it
  to one buffer and the rest to another, keep the side that holds rank ``k``; at most 16 values left,
  each one's rank is counted with vector compares. About ``2 m`` elements partitioned for ``m``
  values; a run of passes that barely shrink ends in a sort (worst case ``O(m log m)``).
* **Short rows** (``n <= 1024``): the quick-select runs on the row itself (its first pass also counts
  NaNs), then one pass keeps, in index order, every element above the k-th value and the leftmost
  of its ties.
* **Long rows**: (1) *estimate*: the quick-select on a strided sample of
  ``s = min(n/8, max(64, 16 n/k), 1024)`` elements (8192 for rows of 2^20 or more) gives the value of
  descending rank ``q = e + 2 sqrt(e) + 2`` with ``e = k s / n``: a threshold ``t`` that at least ``k``
  elements reach unless the sample misled (a few percent of random rows). (2) *filter*, one pass over
  the row: the values and indices of elements ``>= t`` (and of NaNs, counted on the way) are packed
  in index order; a block without a hit costs a compare and a test, so the pass runs near memory
  speed (``m`` candidates, about ``n (q+1)/s``). (3) *select exactly* among the ``m``: the
  quick-select finds the k-th value ``T``, one pass keeps what is above it and its leftmost ties.
  Every element ``>= T`` is ``>= t`` (at least ``k`` are), so the result is exact. If fewer than ``k``
  passed (the sample missed) the row is selected as a short row is.

Cost: one read of the row plus ``O(s + m)`` vector work (short rows: about three vector passes).
Rows are independent: a batch of at least :data:`PARALLEL_MIN_ELEMENTS` elements is split into many
small chunks of rows that threads take as they free up; a single row, or a smaller batch, runs on
the calling thread. Indices are int32 inside (rows of up to ``2^31 - 65`` elements).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from numba import get_num_threads, njit

from hwsim.kernels.gpu import require_gpu
from hwsim.kernels.simd import (
    SLACK,
    eq_mask,
    ge_or_nan_mask,
    gt_mask,
    lanes,
    nan_mask,
    popcount,
    store_indices,
    store_values,
)

__all__ = [
    "CUPY_KERNEL_SOURCE",
    "check_topk_args",
    "topk_argpartition",
    "topk_cupy",
    "topk_numba",
    "topk_radix_numpy",
    "topk_ref",
    "topk_two_pass_numpy",
]


def check_topk_args(x: Any, k: Any) -> tuple[int, int]:
    """Validate ``x`` (2-D float array) and ``k``; return ``(rows, n)``."""
    if getattr(x, "ndim", None) != 2:
        raise ValueError(f"x must be a 2-D array (rows, n), got shape {getattr(x, 'shape', None)!r}")
    if str(x.dtype) not in ("float32", "float64"):
        raise ValueError(f"x must be float32 or float64, got dtype {x.dtype}")
    rows, n = (int(s) for s in x.shape)
    if n < 1:
        raise ValueError(f"x must have at least one column, got shape {tuple(x.shape)}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be an integer, got {k!r}")  # noqa: TRY004 (the contract: ValueError)
    if not 1 <= int(k) <= n:
        raise ValueError(f"k must satisfy 1 <= k <= n={n}, got k={int(k)}")
    return rows, n


def topk_ref(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference: stable sort of ``-x`` picks the set (lower index wins ties), then index order."""
    check_topk_args(x, k)
    if np.isnan(x).any():
        raise ValueError("x contains NaN; top-k of NaN is undefined")
    order = np.argsort(-x, axis=1, kind="stable")[:, :k]
    idx = np.sort(order, axis=1).astype(np.int64)
    return np.take_along_axis(x, idx, axis=1), idx


def topk_argpartition(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """NumPy's built-in route (introselect on indices): the CPU baseline. Ties are not ordered."""
    check_topk_args(x, k)
    n = x.shape[1]
    idx = np.argpartition(x, n - k, axis=1)[:, n - k:]
    return np.take_along_axis(x, idx, axis=1), idx


# ---------------------------------------------------------------------------------------------
# Numba CPU: vector quick-select and sampled-threshold filter per row, rows in parallel.


@njit(cache=True, nogil=True)
def _kth_small(cur: np.ndarray, m: int, k: int) -> tuple[float, int]:
    """Value of rank k (1-based, descending) among ``cur[:m]`` for ``m`` up to a few blocks, and how
    many of them are greater: each element's rank is counted with vector compares over all ``m``
    (``cur`` has :data:`SLACK` readable spare elements; the lanes past ``m`` are masked off)."""
    w = lanes(cur)
    full = np.uint32((1 << w) - 1)
    for i in range(m):
        v = cur[i]
        gt = 0
        ge = 0
        for base in range(0, m, w):
            valid = m - base
            keep = full if valid >= w else np.uint32((1 << valid) - 1)
            gt += popcount(gt_mask(cur, base, v) & keep)
            ge += popcount(ge_or_nan_mask(cur, base, v) & keep)
        if gt < k <= ge:
            return v, gt
    return cur[0], 0  # only with NaN among them (no element has rank k); the caller has counted the NaNs


_SMALL = 16  # at or below this many values the rank count finishes the select


@njit(cache=True, nogil=True)
def _kth_largest_simd(src: np.ndarray, scratch: np.ndarray, m: int, k: int) -> tuple[float, int, int]:
    """Value of rank k (1-based, descending) among ``src[:m]``, which it leaves untouched; also how
    many of them are greater than it, and how many of ``src[:m]`` are NaN (then the value means nothing).

    Quick-select whose partition is one vector compare and two compresses per block (values above
    the pivot to one scratch row, the rest to another; ``scratch`` is ``(3, >= m + SLACK)`` and the
    rows rotate so the side kept is never overwritten). Few values left: :func:`_kth_small`. A run
    of passes that barely shrink (an adversarial order) ends in a sort, so the worst case stays
    O(m log m)."""
    w = lanes(src)
    full = np.uint32((1 << w) - 1)
    cur = src
    cur_id = -1
    passes = 0
    limit = 2 * int(np.log2(m + 1)) + 8
    greater = 0  # elements already known to lie above the answer
    nan = 0
    while m > _SMALL:
        passes += 1
        a = cur[0]
        b = cur[m >> 1]
        c = cur[m - 1]
        pivot = max(min(a, b), min(max(a, b), c))  # median of three
        g_id = 1 if cur_id == 0 else (2 if cur_id == 1 else 0)
        l_id = 3 - g_id - cur_id if cur_id >= 0 else 1
        above = scratch[g_id]
        rest = scratch[l_id]
        g = 0
        r = 0
        blocks = m - m % w
        for base in range(0, blocks, w):
            bits = gt_mask(cur, base, pivot)
            if cur_id == -1:  # the first pass reads the caller's values: count their NaNs on the way
                nan += popcount(nan_mask(cur, base))
            g = store_values(above, g, cur, base, bits, cur)
            r = store_values(rest, r, cur, base, bits ^ full, cur)
        for j in range(blocks, m):
            v = cur[j]
            above[g] = v
            rest[r] = v
            gt = v > pivot
            g += gt
            r += 1 - gt
            if cur_id == -1:
                nan += v != v  # noqa: PLR0124 (NaN test)
        if nan:
            return pivot, 0, nan
        if g == 0 or passes > limit:  # the pivot is the largest value, or no progress: sort what is left
            ordered = np.sort(cur[:m])
            kth = ordered[m - k]
            return kth, greater + int(np.sum(ordered > kth)), 0
        if k <= g:
            cur, cur_id, m = above, g_id, g
        else:
            cur, cur_id, m, k, greater = rest, l_id, r, k - g, greater + g
    if cur_id == -1:  # still the caller's array, which may end right after m: count NaNs, read a copy
        for j in range(m):
            scratch[0, j] = cur[j]
            nan += cur[j] != cur[j]  # noqa: PLR0124 (NaN test)
        if nan:
            return cur[0], 0, nan
        cur = scratch[0]
    kth, above_kth = _kth_small(cur, m, k)
    return kth, greater + above_kth, 0


# Per row: estimate, filter, select exactly (see the module docstring). Tuning comes in as
# arguments, not globals, so that a stale JIT cache can never disagree with this file.
_SAMPLE = 1024      # most sample points per row (8x that for rows of a million or more)
_SIGMAS = 2.0       # threshold at the sample rank k*s/n + 2 sqrt(k*s/n) + 2: a miss is rare (measured best)
_DIRECT_MAX = 1024  # rows this short are selected directly (two vector passes cost less than a sample)
_SPARSE_BELOW = 32  # expected candidates under 1 in this many: the filter tests each block before storing


@njit(cache=True, nogil=True)
def _filter(row: np.ndarray, t: float, cand_v: np.ndarray, cand_i: np.ndarray, sparse: bool) -> tuple[int, int]:
    """Values and indices of ``row >= t`` in index order into ``cand_v``/``cand_i``; returns their
    count and the number of NaNs in the row (NaN lanes always pass). ``sparse`` (few blocks expected
    to hit): a block with no hit costs a compare and a test, so the pass runs at memory speed;
    otherwise every block is stored without a test, which a hit rate near one half would mispredict."""
    n = row.shape[0]
    w = lanes(row)
    blocks = n - n % w
    m = 0
    nan = 0
    for base in range(0, blocks, w):
        bits = ge_or_nan_mask(row, base, t)
        if bits or not sparse:
            nan += popcount(nan_mask(row, base))
            store_values(cand_v, m, row, base, bits, row)
            m = store_indices(cand_i, m, base, bits, row)
    for j in range(blocks, n):
        v = row[j]
        cand_v[m] = v
        cand_i[m] = j
        m += not v < t
        nan += v != v  # noqa: PLR0124 (NaN test, branch-free)
    return m, nan


@njit(cache=True, nogil=True)
def _take_top(vals: np.ndarray, idx: np.ndarray, m: int, k: int, kth: float, greater: int, direct: bool,
              out_v: np.ndarray, out_i: np.ndarray, cand_v: np.ndarray, cand_i: np.ndarray) -> None:
    """Everything above ``kth`` among ``vals[:m]`` plus its leftmost ties, ``k`` in all, in index
    order into ``out_v``/``out_i``; ``greater`` of them are above ``kth``. ``direct``: ``vals`` is the row (indices are positions), else
    candidates with indices ``idx``. Compacts through ``cand_v``/``cand_i`` (vector stores need
    their slack; the outputs have exactly ``k`` slots), which may be ``vals``/``idx`` themselves:
    a block is stored at or before where it was read."""
    w = lanes(vals)
    blocks = m - m % w
    ties = k - greater  # how many equal to kth to take, leftmost first
    q = 0
    for base in range(0, blocks, w):
        take = gt_mask(vals, base, kth)
        if ties > 0:
            eq = eq_mask(vals, base, kth)
            while eq and ties > 0:  # the leftmost ties, lowest bit first
                low = eq & (~eq + np.uint32(1))
                take |= low
                eq ^= low
                ties -= 1
        if take:
            store_values(cand_v, q, vals, base, take, vals)
            if direct:
                q = store_indices(cand_i, q, base, take, vals)
            else:
                q = store_values(cand_i, q, idx, base, take, vals)
    for j in range(blocks, m):  # the tail, branch-free
        v = vals[j]
        eq = v == kth
        take = (v > kth) | (eq & (ties > 0))
        ties -= eq & take
        cand_v[q] = v
        cand_i[q] = j if direct else idx[j]
        q += take
    for j in range(k):
        out_v[j] = cand_v[j]
        out_i[j] = cand_i[j]


@njit(cache=True, nogil=True)
def _row_topk(row: np.ndarray, k: int, out_v: np.ndarray, out_i: np.ndarray, cand_v: np.ndarray,
              cand_i: np.ndarray, samp: np.ndarray, scratch: np.ndarray, sample: int, sigmas: float,
              direct_max: int, sparse_below: int) -> int:
    """Top-k of one row into ``out_v``/``out_i`` (index order, leftmost ties); 1 if the row has NaN."""
    n = row.shape[0]
    # enough sample points that ~16 of them lie above the k-th largest value, within the limits
    s = min(n // 8, max(64, (16 * n) // k), sample if n < (1 << 20) else 8 * sample)
    if n > direct_max and s >= 16 and k < n:
        step = n // s
        for i in range(s):
            samp[i] = row[i * step]
        expected = k * s / n
        q = int(expected + sigmas * np.sqrt(expected) + 2.0)  # 0-based descending sample rank
        if q < s - 1:
            t = _kth_largest_simd(samp, scratch, s, q + 1)[0]
            m, nan = _filter(row, t, cand_v, cand_i, (q + 1) * sparse_below < s)  # NaNs pass and are counted
            if nan:
                return 1
            if m >= k:  # every element >= the k-th largest value is a candidate: select among them
                if m == k:
                    kth, greater = -np.inf, 0
                else:
                    kth, greater, _ = _kth_largest_simd(cand_v, scratch, m, k)
                _take_top(cand_v, cand_i, m, k, kth, greater, False, out_v, out_i, cand_v, cand_i)
                return 0
    # a short row, or the sample missed: select over the whole row
    kth, greater, nan = _kth_largest_simd(row, scratch, n, k)
    if nan:
        return 1
    _take_top(row, cand_i, n, k, kth, greater, True, out_v, out_i, cand_v, cand_i)
    return 0


@njit(cache=True, nogil=True)
def _topk_rows(x: np.ndarray, k: int, out_v: np.ndarray, out_i: np.ndarray, lo: int, hi: int,
               cand_v: np.ndarray, cand_i: np.ndarray, samp: np.ndarray, scratch: np.ndarray, sample: int,
               sigmas: float, direct_max: int, sparse_below: int) -> int:
    """Rows ``lo..hi-1`` one after another on one workspace (:func:`_workspace`); the number of rows with NaN."""
    bad = 0
    for r in range(lo, hi):
        bad += _row_topk(x[r], k, out_v[r], out_i[r], cand_v, cand_i, samp, scratch, sample, sigmas, direct_max,
                         sparse_below)
    return bad


_held = threading.local()
_HOLD_ELEMENTS = 1 << 20  # a workspace for rows up to this long is kept by its thread between calls


def _workspace(dtype: np.dtype, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Candidate values and indices, sample, and the select's three rotating partition rows, each
    with SLACK spare elements for the vector stores. Kept per thread for rows of up to
    :data:`_HOLD_ELEMENTS`: fresh buffers of several row lengths cost page mappings on every call,
    as much as a short batch's whole selection."""
    cap = max(n, 8 * _SAMPLE) + 2 * SLACK
    key = np.dtype(dtype).str
    held = getattr(_held, key, None)
    if held is not None and held[0].shape[0] >= cap:
        return held  # type: ignore[no-any-return]
    space = (np.empty(cap, dtype), np.empty(cap, np.int32), np.empty(cap, dtype), np.empty((3, cap), dtype))
    if n <= _HOLD_ELEMENTS:
        setattr(_held, key, space)
    return space


_MAX_ROW = (1 << 31) - 1 - 64  # candidate indices are int32, with room for the vector stores

PARALLEL_MIN_ELEMENTS = 1 << 21
"""A batch of fewer elements (about a millisecond of work) runs on one thread: splitting costs more
than it saves, and on a shared machine a split waits for its slowest (possibly descheduled) thread."""

_CHUNKS_PER_THREAD = 8  # rows go out in small chunks that idle threads take: a busy core takes fewer


def _threads_for(rows: int, n: int, threads: int | None) -> int:
    wanted = get_num_threads() if threads is None else int(threads)
    if wanted < 1:
        raise ValueError(f"threads must be at least 1, got {threads!r}")
    if rows < 2 or rows * n < PARALLEL_MIN_ELEMENTS:
        return 1
    return min(wanted, rows)


def topk_numba(x: np.ndarray, k: int, *, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sample-threshold top-k on the CPU; same result as :func:`topk_ref`, bit for bit.

    ``threads``: most threads to use (default: Numba's thread count). A batch smaller than
    :data:`PARALLEL_MIN_ELEMENTS` or a single row always runs on the calling thread; a larger batch
    is cut into many chunks of rows that threads take as they free up (the kernel releases the GIL),
    so a thread on a busy core simply takes fewer chunks.
    """
    check_topk_args(x, k)
    x = np.ascontiguousarray(x)
    rows, n = x.shape
    if n > _MAX_ROW:
        raise ValueError(f"topk_numba: rows of at most {_MAX_ROW} elements (int32 candidate indices), got n={n}")
    k = int(k)
    out_v = np.empty((rows, k), dtype=x.dtype)
    out_i = np.empty((rows, k), dtype=np.int64)
    if rows == 0:
        return out_v, out_i
    args = (_SAMPLE, _SIGMAS, _DIRECT_MAX, _SPARSE_BELOW)
    workers = _threads_for(rows, n, threads)
    if workers == 1:
        bad = _topk_rows(x, k, out_v, out_i, 0, rows, *_workspace(x.dtype, n), *args)
    else:
        per = max(1, rows // (workers * _CHUNKS_PER_THREAD))
        bounds = [(lo, min(rows, lo + per)) for lo in range(0, rows, per)]

        def chunk(b: tuple[int, int]) -> int:
            return int(_topk_rows(x, k, out_v, out_i, b[0], b[1], *_workspace(x.dtype, n), *args))

        with ThreadPoolExecutor(max_workers=workers) as pool:
            bad = sum(pool.map(chunk, bounds))
    if bad:
        raise ValueError("x contains NaN; top-k of NaN is undefined")
    return out_v, out_i


# ---------------------------------------------------------------------------------------------
# CuPy GPU: radix select, one block per row.
#
# Floats map to order-preserving uint32/uint64 keys (flip all bits of negatives, the sign bit of
# positives). Pass p builds a 256-bin histogram of digit p among the keys that match the prefix
# found so far and walks it from the top to find the digit of the k-th largest key; after all
# passes the prefix *is* the k-th largest key. A final pass compacts, in index order (a block-wide
# scan per tile), everything above it plus the leftmost ties: deterministic, no atomics on output.

CUPY_KERNEL_SOURCE = r"""
template <typename F, typename U>
__device__ __forceinline__ U to_key(F v);
template <>
__device__ __forceinline__ unsigned int to_key<float, unsigned int>(float v) {
    unsigned int b = __float_as_uint(v == 0.0f ? 0.0f : v);  // -0 == +0: one key, or ties would split
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
template <>
__device__ __forceinline__ unsigned long long to_key<double, unsigned long long>(double v) {
    unsigned long long b = (unsigned long long)__double_as_longlong(v == 0.0 ? 0.0 : v);
    return (b & 0x8000000000000000ull) ? ~b : (b | 0x8000000000000000ull);
}

template <typename F, typename U>
__device__ void radix_topk(const F* __restrict__ x, F* __restrict__ out_v, long long* __restrict__ out_i,
                           int n, int k) {
    const int BINS = 256;
    __shared__ unsigned int hist[256];
    __shared__ U prefix_s;
    __shared__ int remaining_s;
    __shared__ unsigned int scan[1024];
    __shared__ int base_s, ties_left_s;
    const int row = blockIdx.x;
    const F* xr = x + (long long)row * n;
    const int tid = threadIdx.x, nt = blockDim.x;
    const int bits = sizeof(U) * 8;
    if (tid == 0) { prefix_s = 0; remaining_s = k; }
    __syncthreads();
    U mask = 0;
    for (int shift = bits - 8; shift >= 0; shift -= 8) {
        for (int b = tid; b < BINS; b += nt) hist[b] = 0;
        __syncthreads();
        U prefix = prefix_s;
        for (int j = tid; j < n; j += nt) {
            U key = to_key<F, U>(xr[j]);
            if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 0xFF], 1u);
        }
        __syncthreads();
        if (tid == 0) {
            int rem = remaining_s;
            int d = BINS - 1;
            for (; d > 0; --d) {
                if ((int)hist[d] >= rem) break;
                rem -= hist[d];
            }
            prefix_s = prefix | ((U)d << shift);
            remaining_s = rem;
        }
        mask |= ((U)0xFF << shift);
        __syncthreads();
    }
    const U kth = prefix_s;
    if (tid == 0) { base_s = 0; ties_left_s = remaining_s; }
    __syncthreads();
    for (int start = 0; start < n; start += nt) {
        int j = start + tid;
        unsigned int gt = 0, eq = 0;
        if (j < n) {
            U key = to_key<F, U>(xr[j]);
            gt = key > kth; eq = key == kth;
        }
        // inclusive scan of eq to rank ties in index order
        scan[tid] = eq;
        __syncthreads();
        for (int off = 1; off < nt; off <<= 1) {
            unsigned int v = tid >= off ? scan[tid - off] : 0;
            __syncthreads();
            scan[tid] += v;
            __syncthreads();
        }
        unsigned int take = gt || (eq && (int)scan[tid] <= ties_left_s);
        int tie_total = scan[nt - 1];
        __syncthreads();
        scan[tid] = take;
        __syncthreads();
        for (int off = 1; off < nt; off <<= 1) {
            unsigned int v = tid >= off ? scan[tid - off] : 0;
            __syncthreads();
            scan[tid] += v;
            __syncthreads();
        }
        if (take) {
            int pos = base_s + scan[tid] - 1;
            out_v[(long long)row * k + pos] = xr[j];
            out_i[(long long)row * k + pos] = j;
        }
        __syncthreads();
        if (tid == 0) {
            base_s += scan[nt - 1];
            ties_left_s -= min(tie_total, ties_left_s);
        }
        __syncthreads();
    }
}

extern "C" __global__ void radix_topk_f32(const float* x, float* v, long long* i, int n, int k) {
    radix_topk<float, unsigned int>(x, v, i, n, k);
}
extern "C" __global__ void radix_topk_f64(const double* x, double* v, long long* i, int n, int k) {
    radix_topk<double, unsigned long long>(x, v, i, n, k);
}

// Large rows, many blocks per row (grid.y = row). Pass 1: histogram of the top TOP_BITS bits of
// every key, per block in shared memory, then added into the row's global histogram.
#define TOP_BINS 2048
template <typename F, typename U>
__device__ void top_histogram(const F* __restrict__ x, unsigned int* __restrict__ hist, long long n, int shift) {
    __shared__ unsigned int h[TOP_BINS];
    for (int b = threadIdx.x; b < TOP_BINS; b += blockDim.x) h[b] = 0;
    __syncthreads();
    const F* xr = x + (long long)blockIdx.y * n;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < n; j += stride) {
        U key = to_key<F, U>(xr[j]);
        atomicAdd(&h[(unsigned int)(key >> shift)], 1u);
    }
    __syncthreads();
    unsigned int* hr = hist + (long long)blockIdx.y * TOP_BINS;
    for (int b = threadIdx.x; b < TOP_BINS; b += blockDim.x) {
        if (h[b]) atomicAdd(&hr[b], h[b]);
    }
}

// Pass 2: the index of every element whose top bits are >= the row's bin (the bin that holds the
// k-th largest key: fewer than k elements lie above it), appended in any order; the host sorts them.
template <typename F, typename U>
__device__ void top_collect(const F* __restrict__ x, const int* __restrict__ bin, unsigned int* __restrict__ count,
                            long long* __restrict__ cand, long long n, int shift) {
    const int row = blockIdx.y;
    const F* xr = x + (long long)row * n;
    const unsigned int b = (unsigned int)bin[row];
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < n; j += stride) {
        U key = to_key<F, U>(xr[j]);
        if ((unsigned int)(key >> shift) >= b) {
            unsigned int pos = atomicAdd(&count[row], 1u);
            cand[(long long)row * n + pos] = j;  // capacity n per row: never overflows
        }
    }
}

extern "C" __global__ void top_histogram_f32(const float* x, unsigned int* h, long long n, int shift) {
    top_histogram<float, unsigned int>(x, h, n, shift);
}
extern "C" __global__ void top_histogram_f64(const double* x, unsigned int* h, long long n, int shift) {
    top_histogram<double, unsigned long long>(x, h, n, shift);
}
extern "C" __global__ void top_collect_f32(const float* x, const int* b, unsigned int* c, long long* i, long long n,
                                           int shift) {
    top_collect<float, unsigned int>(x, b, c, i, n, shift);
}
extern "C" __global__ void top_collect_f64(const double* x, const int* b, unsigned int* c, long long* i, long long n,
                                           int shift) {
    top_collect<double, unsigned long long>(x, b, c, i, n, shift);
}
"""

_CUPY_THREADS = 256
TOP_BITS = 11            # pass 1 histograms the top 11 bits of each key (2048 bins: 8 KiB of shared memory)
LARGE_ROW = 1 << 17      # rows this long, when there are too few to fill the GPU one block each, use 2 passes
_FEW_ROWS = 64           # fewer rows than this leave most SMs idle with one block per row
_KERNEL_NAMES = ("radix_topk_f32", "radix_topk_f64", "top_histogram_f32", "top_histogram_f64",
                 "top_collect_f32", "top_collect_f64")


def _cupy_kernels(cp: Any) -> Any:
    cached = getattr(_cupy_kernels, "_module", None)
    if cached is None:
        cached = cp.RawModule(code=CUPY_KERNEL_SOURCE, options=("-std=c++14",), name_expressions=_KERNEL_NAMES)
        _cupy_kernels._module = cached  # type: ignore[attr-defined]
    return cached


def _rows_one_block_each(cp: Any, xd: Any, k: int) -> tuple[Any, Any]:
    rows, n = xd.shape
    out_v = cp.empty((rows, k), dtype=xd.dtype)
    out_i = cp.empty((rows, k), dtype=cp.int64)
    name = "radix_topk_f32" if xd.dtype == cp.float32 else "radix_topk_f64"
    if rows:
        _cupy_kernels(cp).get_function(name)((rows,), (_CUPY_THREADS,), (xd, out_v, out_i, np.int32(n), np.int32(k)))
    return out_v, out_i


def _rows_two_passes(cp: Any, xd: Any, k: int) -> tuple[Any, Any]:
    """Few long rows: two reads of HBM by many blocks per row, then a one-block select among the few
    candidates. Mirrored step by step by :func:`topk_two_pass_numpy`, which the CPU tests check."""
    rows, n = xd.shape
    suffix = "f32" if xd.dtype == cp.float32 else "f64"
    shift = 8 * xd.dtype.itemsize - TOP_BITS
    module = _cupy_kernels(cp)
    device = cp.cuda.Device()
    sms = int(device.attributes["MultiProcessorCount"])
    blocks_x = max(1, min((4 * sms + rows - 1) // rows, (n + _CUPY_THREADS - 1) // _CUPY_THREADS))
    hist = cp.zeros((rows, 1 << TOP_BITS), dtype=cp.uint32)
    module.get_function(f"top_histogram_{suffix}")((blocks_x, rows), (_CUPY_THREADS,), (xd, hist, np.int64(n), np.int32(shift)))
    from_top = cp.cumsum(hist[:, ::-1].astype(cp.int64), axis=1)
    bins = ((1 << TOP_BITS) - 1 - cp.argmax(from_top >= k, axis=1)).astype(cp.int32)
    count = cp.zeros(rows, dtype=cp.uint32)
    cand = cp.empty((rows, n), dtype=cp.int64)
    module.get_function(f"top_collect_{suffix}")((blocks_x, rows), (_CUPY_THREADS,),
                                                 (xd, bins, count, cand, np.int64(n), np.int32(shift)))
    m = int(count.max())  # >= k: the bin and everything above it hold at least k elements
    idx = cand[:, :m]
    idx = cp.sort(cp.where(cp.arange(m)[None, :] < count[:, None].astype(cp.int64), idx, n), axis=1)
    vals = cp.take_along_axis(xd, cp.minimum(idx, n - 1), axis=1)
    vals = cp.ascontiguousarray(cp.where(idx < n, vals, -cp.inf).astype(xd.dtype))  # padding: last, lowest
    out_v, pos = _rows_one_block_each(cp, vals, k)
    return out_v, cp.take_along_axis(idx, pos, axis=1)


def topk_cupy(x: Any, k: int) -> tuple[Any, Any]:
    """Radix-select top-k on the GPU (``x`` a CuPy or NumPy array; results are CuPy arrays).

    Same contract as :func:`topk_ref`. Raises ``GpuUnavailable`` (with the reason) without a GPU.
    Batched rows: one thread block per row. A few rows of at least :data:`LARGE_ROW` elements:
    two passes over HBM by many blocks per row (:func:`topk_two_pass_numpy` is the same algorithm).
    """
    cp = require_gpu()
    check_topk_args(x, k)
    xd = cp.ascontiguousarray(cp.asarray(x))
    if bool(cp.isnan(xd).any()):
        raise ValueError("x contains NaN; top-k of NaN is undefined")
    rows, n = xd.shape
    if rows and rows < _FEW_ROWS and n >= LARGE_ROW:
        return _rows_two_passes(cp, xd, int(k))
    return _rows_one_block_each(cp, xd, int(k))


# ---------------------------------------------------------------------------------------------
# NumPy mirrors of the GPU algorithms, step for step, so that their logic is tested without a GPU.


def _keys_numpy(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Order-preserving unsigned keys as the CUDA ``to_key`` makes them (as uint64), and their width."""
    bits = 8 * x.dtype.itemsize
    x = np.where(x == 0, np.zeros((), x.dtype), x)  # -0 and +0 compare equal: give them one key
    raw = x.view(np.uint32 if bits == 32 else np.uint64).astype(np.uint64)
    sign = np.uint64(1 << (bits - 1))
    full = np.uint64((1 << bits) - 1)
    return np.where(raw & sign, ~raw & full, raw | sign), bits


def topk_radix_numpy(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The one-block-per-row CUDA kernel in NumPy: 8-bit digit passes find the k-th largest key and
    how many of its ties to take, then index order keeps everything above it and the leftmost ties."""
    check_topk_args(x, k)
    rows = x.shape[0]
    keys, bits = _keys_numpy(np.ascontiguousarray(x))
    out_v = np.empty((rows, k), dtype=x.dtype)
    out_i = np.empty((rows, k), dtype=np.int64)
    for r in range(rows):
        row_keys = keys[r]
        prefix, mask, remaining = 0, 0, int(k)
        for shift in range(bits - 8, -1, -8):
            match = row_keys[(row_keys & np.uint64(mask)) == np.uint64(prefix)]
            hist = np.bincount(((match >> np.uint64(shift)) & np.uint64(0xFF)).astype(np.int64), minlength=256)
            d = 255
            while d > 0 and hist[d] < remaining:
                remaining -= int(hist[d])
                d -= 1
            prefix |= d << shift
            mask |= 0xFF << shift
        kth = np.uint64(prefix)
        eq = row_keys == kth
        take = (row_keys > kth) | (eq & (np.cumsum(eq) <= remaining))
        idx = np.flatnonzero(take)
        out_i[r] = idx
        out_v[r] = x[r, idx]
    return out_v, out_i


def topk_two_pass_numpy(x: np.ndarray, k: int, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The GPU's large-row path in NumPy: histogram of the top bits (pass 1), the bin holding the k-th
    largest, the indices at or above that bin (pass 2; ``rng`` shuffles them as atomics would), sorted,
    padded with -inf at the end, and the one-block select among them."""
    check_topk_args(x, k)
    rows, n = x.shape
    keys, bits = _keys_numpy(np.ascontiguousarray(x))
    digit = (keys >> np.uint64(bits - TOP_BITS)).astype(np.int64)
    found: list[np.ndarray] = []
    for r in range(rows):
        hist = np.bincount(digit[r], minlength=1 << TOP_BITS)
        from_top = np.cumsum(hist[::-1])
        b = (1 << TOP_BITS) - 1 - int(np.argmax(from_top >= k))
        cand = np.flatnonzero(digit[r] >= b)
        if rng is not None:
            cand = rng.permutation(cand)
        found.append(cand)
    m = max(len(c) for c in found)
    idx = np.full((rows, m), n, dtype=np.int64)
    for r, cand in enumerate(found):
        idx[r, :len(cand)] = cand
    idx = np.sort(idx, axis=1)
    vals = np.where(idx < n, np.take_along_axis(x, np.minimum(idx, n - 1), axis=1), -np.inf).astype(x.dtype)
    out_v, pos = topk_radix_numpy(vals, k)
    return out_v, np.take_along_axis(idx, pos, axis=1)
