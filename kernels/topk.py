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

CPU algorithm (:func:`topk_numba`), per row of ``n`` elements; what a cost model of it counts:

1. **Estimate.** A strided sample of ``s = min(n/8, max(64, 16 n/k), 1024)`` elements (8192 for rows
   of 2^20 or more) is selected (branch-free quick-select, ~2-3 passes over ``s``) for the value of
   descending rank ``q = e + 2 sqrt(e) + 2`` with ``e = k s / n``: a threshold ``t`` that at least
   ``k`` elements reach unless the sample misled (a few percent of random rows; a wider margin
   cost more in candidates than it saved in misses, measured on the benchmark shapes).
2. **Filter: one pass over the row.** The indices of elements ``>= t`` are compacted, branch-free,
   in index order (``m`` candidates, about ``n (q+1)/s``). When the expected candidate fraction is
   under 1/64 the pass first counts each block of 32 with SIMD compares and compacts only blocks
   that hit, so it runs near memory speed. NaNs are counted in the same pass.
3. **Select exactly among the ``m`` candidates.** A branch-free quick-select finds the k-th largest
   value ``T`` among them; one pass keeps every candidate ``> T`` and the leftmost ``== T`` ones.
   Every element ``>= T`` is ``>= t`` (at least k are), so the result is exact. If the filter kept
   fewer than ``k`` (the sample missed) the row falls back to steps 3 over all ``n`` elements.

Cost: one read of the row plus ``O(s + m)`` work. Rows are independent: a batch of at least
:data:`PARALLEL_MIN_ELEMENTS` elements is split into many small chunks of rows that threads take as
they free up; a single row, or a smaller batch, runs on the calling thread.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from numba import get_num_threads, njit

from hwsim.kernels.gpu import require_gpu

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
# Numba CPU: quick-select per row, rows in parallel.


@njit(cache=True, nogil=True)
def _kth_largest(buf: np.ndarray, k: int) -> float:
    """Value of rank k (1-based, descending) in ``buf``, which it reorders. Hoare partition with a
    median-of-three pivot; an iteration cap falls back to a sort so adversarial rows stay O(n log n)."""
    lo = 0
    hi = buf.shape[0] - 1
    target = k - 1  # position in descending order
    guard = 0
    limit = 2 * 64
    while hi > lo:
        guard += 1
        if guard > limit:
            seg = np.sort(buf[lo:hi + 1])[::-1]
            return seg[target - lo]
        mid = (lo + hi) >> 1
        a = buf[lo]
        b = buf[mid]
        c = buf[hi]
        if a < b:
            if b < c:
                pivot = b
            elif a < c:
                pivot = c
            else:
                pivot = a
        else:
            if a < c:
                pivot = a
            elif b < c:
                pivot = c
            else:
                pivot = b
        i = lo
        j = hi
        while i <= j:  # descending partition: > pivot to the left
            while buf[i] > pivot:
                i += 1
            while buf[j] < pivot:
                j -= 1
            if i <= j:
                t = buf[i]
                buf[i] = buf[j]
                buf[j] = t
                i += 1
                j -= 1
        # now buf[lo..j] >= pivot, buf[i..hi] <= pivot, and buf[j+1..i-1] == pivot
        if target <= j:
            hi = j
        elif target >= i:
            lo = i
        else:
            return pivot
    return buf[lo]


@njit(cache=True, nogil=True)
def _kth_largest_bf(buf: np.ndarray, tmp: np.ndarray, m: int, k: int) -> float:
    """Value of rank k (1-based, descending) among ``buf[:m]``; reorders ``buf`` and uses ``tmp``.

    Quick-select whose partition is branch-free (each element is written to both ends of the
    other buffer and one end advances), so random data costs no branch mispredictions; the two
    buffers swap roles each pass. A pass that makes no progress (the pivot is the largest value)
    and the last 16 or fewer finish with :func:`_kth_largest`."""
    src = buf[:m]
    spare = tmp
    while m > 16:
        a = src[0]
        b = src[m >> 1]
        c = src[m - 1]
        pivot = max(min(a, b), min(max(a, b), c))  # median of three
        dst = spare[:m]
        lo = 0
        hi = m - 1
        for i in range(m):
            v = src[i]
            gt = v > pivot
            dst[lo] = v
            dst[hi] = v
            lo += gt
            hi -= 1 - gt
        if lo == 0:  # nothing above the pivot: it is the maximum; let the Hoare select handle the ties
            return _kth_largest(src, k)
        spare = src
        if k <= lo:
            m = lo
            src = dst[:lo]
        else:  # the rest, <= pivot, sits in dst[lo:m] (in reverse order, which does not matter)
            k -= lo
            src = dst[lo:m]
            m -= lo
    return _kth_largest(src, k)


# Per row: estimate, filter, select exactly (see the module docstring). Tuning comes in as
# arguments, not globals, so that a stale JIT cache can never disagree with this file.
_SAMPLE = 1024      # most sample points per row (8x that for rows of a million or more)
_SIGMAS = 2.0       # threshold at the sample rank k*s/n + 2 sqrt(k*s/n) + 2: a miss is rare (measured best)
_BLOCK = 32         # sparse filter: a vectorised count per block of 32, compaction only where it hits
_SPARSE_BELOW = 1.0 / 64   # expected candidate fraction under which the block-skipping filter pays


@njit(cache=True, nogil=True)
def _filter_dense(row: np.ndarray, t: float, cand_i: np.ndarray, lo: int = 0, m: int = 0) -> tuple[int, int]:
    """Indices ``j >= lo`` of ``row >= t`` appended in index order after the first ``m`` of ``cand_i``,
    branch-free; returns the new count and the number of NaNs seen."""
    nan = 0
    for j in range(lo, row.shape[0]):
        v = row[j]
        cand_i[m] = j
        m += v >= t
        nan += v != v  # noqa: PLR0124 (NaN test, branch-free)
    return m, nan


@njit(cache=True, nogil=True)
def _filter_sparse(row: np.ndarray, t: float, cand_i: np.ndarray, block: int) -> tuple[int, int]:
    """As :func:`_filter_dense`, but a block whose vectorised count finds nothing is skipped: when
    few elements pass, the pass runs at the speed of a SIMD compare and add."""
    n = row.shape[0]
    m = 0
    nan = 0
    full = n - n % block
    for base in range(0, full, block):
        hit = 0
        below = 0
        for j in range(base, base + block):
            v = row[j]
            hit += v >= t
            below += v < t
        nan += block - hit - below  # NaN compares false both ways
        if hit:
            for j in range(base, base + block):
                cand_i[m] = j
                m += row[j] >= t
    m, tail_nan = _filter_dense(row, t, cand_i, full, m)  # the last, partial block
    return m, nan + tail_nan


@njit(cache=True, nogil=True)
def _row_topk(row: np.ndarray, k: int, out_v: np.ndarray, out_i: np.ndarray, cand_v: np.ndarray,
              cand_i: np.ndarray, samp: np.ndarray, sample: int, sigmas: float, block: int,
              sparse_below: float) -> int:
    """Top-k of one row into ``out_v``/``out_i`` (index order, leftmost ties); 1 if the row has NaN."""
    n = row.shape[0]
    # enough sample points that ~16 of them lie above the k-th largest value, within the limits
    s = min(n // 8, max(64, (16 * n) // k), sample if n < (1 << 20) else 8 * sample)
    m = 0
    hit = False
    if s >= 16 and k < n:
        step = n // s
        for i in range(s):
            samp[i] = row[i * step]
        expected = k * s / n
        q = int(expected + sigmas * np.sqrt(expected) + 2.0)  # 0-based descending sample rank
        if q < s - 1:
            t = _kth_largest_bf(samp, cand_v, s, q + 1)
            if (q + 1) / s < sparse_below:
                m, nan = _filter_sparse(row, t, cand_i, block)
            else:
                m, nan = _filter_dense(row, t, cand_i)
            if nan:
                return 1
            hit = m >= k  # else the sample missed (or t is NaN): take every element
    if not hit:
        nan = 0
        for j in range(n):
            v = row[j]
            cand_i[j] = j
            nan += v != v  # noqa: PLR0124 (NaN test, branch-free)
        if nan:
            return 1
        m = n
    # every element >= the k-th largest value is a candidate, in index order; select among them
    for j in range(m):
        cand_v[j] = row[cand_i[j]]
    if m == k:
        for q in range(k):
            out_i[q] = cand_i[q]
            out_v[q] = cand_v[q]
        return 0
    kth = _kth_largest_bf(cand_v, samp, m, k)  # reorders cand_v; the output pass reads the row again
    greater = 0
    for j in range(m):
        greater += row[cand_i[j]] > kth
    ties = k - greater
    q = 0
    for j in range(m):  # branch-free compaction in place (q <= j): what is above kth, then leftmost ties
        c = cand_i[j]
        v = row[c]
        eq = v == kth
        take = (v > kth) | (eq & (ties > 0))
        ties -= eq & take
        cand_i[q] = c
        q += take
    for q in range(k):
        c = cand_i[q]
        out_i[q] = c
        out_v[q] = row[c]
    return 0


@njit(cache=True, nogil=True)
def _topk_rows(x: np.ndarray, k: int, out_v: np.ndarray, out_i: np.ndarray, lo: int, hi: int, sample: int,
               sigmas: float, block: int, sparse_below: float) -> int:
    """Rows ``lo..hi-1`` one after another with scratch allocated once; the number of rows with NaN."""
    n = x.shape[1]
    cand_v = np.empty(n, dtype=x.dtype)
    cand_i = np.empty(n + 1, dtype=np.int64)  # +1: the branch-free filter writes one past the count
    samp = np.empty(max(n, 8 * sample), dtype=x.dtype)  # the sample, then selection scratch
    bad = 0
    for r in range(lo, hi):
        bad += _row_topk(x[r], k, out_v[r], out_i[r], cand_v, cand_i, samp, sample, sigmas, block, sparse_below)
    return bad


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
    k = int(k)
    out_v = np.empty((rows, k), dtype=x.dtype)
    out_i = np.empty((rows, k), dtype=np.int64)
    if rows == 0:
        return out_v, out_i
    args = (_SAMPLE, _SIGMAS, _BLOCK, _SPARSE_BELOW)
    workers = _threads_for(rows, n, threads)
    if workers == 1:
        bad = _topk_rows(x, k, out_v, out_i, 0, rows, *args)
    else:
        per = max(1, rows // (workers * _CHUNKS_PER_THREAD))
        bounds = [(lo, min(rows, lo + per)) for lo in range(0, rows, per)]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            bad = sum(pool.map(lambda b: _topk_rows(x, k, out_v, out_i, b[0], b[1], *args), bounds))
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
