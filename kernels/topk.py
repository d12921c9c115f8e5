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
(parallel over rows; per row a quick-select finds the k-th largest value, then one pass keeps
everything above it and the leftmost ties), :func:`topk_cupy` (a RawKernel radix select, one
thread block per row; raises ``GpuUnavailable`` without a GPU). :func:`topk_argpartition` is
the NumPy built-in baseline the CPU kernel is benchmarked against.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import get_num_threads, njit, prange

from hwsim.kernels.gpu import require_gpu

__all__ = [
    "check_topk_args",
    "topk_ref",
    "topk_argpartition",
    "topk_numba",
    "topk_cupy",
    "CUPY_KERNEL_SOURCE",
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
        raise ValueError(f"k must be an integer, got {k!r}")
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


@njit(cache=True, inline="always")
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


_SAMPLE = 32        # sample size for choosing a bracket around the k-th largest value
_BRACKET = 3        # bracket half-width in sample positions: keeps ~7/32 of the elements per pass
_SMALL = 64         # below this many candidates, finish with the Hoare quick-select


@njit(cache=True)
def _band_pass(src: np.ndarray, m: int, dst: np.ndarray, lo: float, hi: float, has_lo: bool,
               has_hi: bool) -> tuple[int, int]:
    """Count ``src[:m]`` above ``hi`` and copy those in ``[lo, hi]`` to ``dst``, branch-free."""
    above = 0
    inside = 0
    for j in range(m):
        v = src[j]
        above += (v > hi) & has_hi
        dst[inside] = v
        inside += ((v >= lo) | (not has_lo)) & ((v <= hi) | (not has_hi))
    return above, inside


@njit(cache=True)
def _select_kth(row: np.ndarray, k: int, buf: np.ndarray, samp: np.ndarray, bracket: int, small: int) -> float:
    """k-th largest value of ``row`` (1-based). Sample-bracket quick-select: each pass sorts a small
    strided sample, brackets the target rank between two sample values, counts what lies above the
    bracket and copies what lies inside it to the other half of ``buf`` (ping-pong), branch-free so
    that random data costs no branch mispredictions. A pass whose bracket misses the target is
    redone once with the bracket opened to infinity on the side the target lies; a pass that makes
    no progress (heavy ties) finishes with :func:`_kth_largest` on what is left."""
    n = row.shape[0]
    half = buf.shape[0] // 2
    ns = samp.shape[0]  # tuning comes in as arguments, not globals: a stale JIT cache cannot disagree
    src = row
    m = n
    flip = 0
    while m > small:
        step = m // ns
        for i in range(ns):  # insertion sort, descending
            v = src[i * step]
            q = i
            while q > 0 and samp[q - 1] < v:
                samp[q] = samp[q - 1]
                q -= 1
            samp[q] = v
        p = ((k - 1) * ns) // m
        has_hi = p - bracket >= 0
        has_lo = p + bracket <= ns - 1
        hi = samp[p - bracket] if has_hi else samp[0]
        lo = samp[p + bracket] if has_lo else samp[ns - 1]
        dst = buf[flip * half:(flip + 1) * half]
        above, inside = _band_pass(src, m, dst, lo, hi, has_lo, has_hi)
        if k <= above:      # target above the bracket: keep everything above hi
            above = 0
            inside = 0
            for j in range(m):
                v = src[j]
                dst[inside] = v
                inside += v > hi
        elif k > above + inside:  # target below the bracket: keep everything below lo
            skipped = 0
            inside = 0
            for j in range(m):
                v = src[j]
                skipped += v >= lo
                dst[inside] = v
                inside += v < lo
            above = skipped
        if inside == m:     # no progress (ties)
            for j in range(m):
                dst[j] = src[j]
            return _kth_largest(dst[:m], k)
        k -= above
        m = inside
        src = dst
        flip ^= 1
    if m == n:  # a short row: nothing copied yet
        for j in range(n):
            buf[j] = row[j]
        return _kth_largest(buf[:n], k)
    return _kth_largest(src[:m], k)


def _topk_rows_impl(x: np.ndarray, k: int, out_v: np.ndarray, out_i: np.ndarray, chunks: int, sample: int,
               bracket: int, small: int) -> int:
    rows, n = x.shape
    bad = 0
    per = (rows + chunks - 1) // chunks
    for c in prange(chunks):  # one chunk of rows per thread: scratch allocated once per chunk
        buf = np.empty(2 * (n + 1), dtype=x.dtype)
        samp = np.empty(sample, dtype=x.dtype)
        idx = np.empty(n + 1, dtype=np.int64)
        for r in range(c * per, min(rows, (c + 1) * per)):
            row = x[r]
            nan = 0
            for j in range(n):
                nan += row[j] != row[j]
            if nan:
                bad += 1
                continue
            t = _select_kth(row, k, buf, samp, bracket, small)
            m = 0
            for j in range(n):  # branch-free compaction of v >= t in index order
                idx[m] = j
                m += row[j] >= t
            if m > k:  # more ties at t than places: keep the leftmost ones
                greater = 0
                for j in range(n):
                    greater += row[j] > t
                ties = k - greater
                m = 0
                for j in range(n):
                    v = row[j]
                    idx[m] = j
                    eq = v == t
                    take = (v > t) | (eq & (ties > 0))
                    ties -= eq & take
                    m += take
            for q in range(k):
                out_i[r, q] = idx[q]
                out_v[r, q] = row[idx[q]]
    return bad


_topk_rows = njit(parallel=True, cache=True)(_topk_rows_impl)
_topk_rows_serial = njit(cache=True)(_topk_rows_impl)  # prange runs as range
PARALLEL_MIN_ELEMENTS = 1 << 16
"""Below this many elements a batch runs on one thread: forking costs more than it saves, and on a
shared machine a parallel region waits for its slowest (possibly descheduled) worker."""


def topk_numba(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Parallel quick-select top-k on the CPU; same result as :func:`topk_ref`, bit for bit."""
    check_topk_args(x, k)
    x = np.ascontiguousarray(x)
    rows = x.shape[0]
    out_v = np.empty((rows, int(k)), dtype=x.dtype)
    out_i = np.empty((rows, int(k)), dtype=np.int64)
    parallel = rows * x.shape[1] >= PARALLEL_MIN_ELEMENTS
    chunks = max(1, min(rows, 4 * get_num_threads())) if parallel else 1
    kernel = _topk_rows if parallel else _topk_rows_serial
    if rows and kernel(x, int(k), out_v, out_i, chunks, _SAMPLE, _BRACKET, _SMALL):
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
    unsigned int b = __float_as_uint(v);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
template <>
__device__ __forceinline__ unsigned long long to_key<double, unsigned long long>(double v) {
    unsigned long long b = (unsigned long long)__double_as_longlong(v);
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
"""

_CUPY_THREADS = 256


def _cupy_kernels(cp: Any) -> Any:
    cached = getattr(_cupy_kernels, "_module", None)
    if cached is None:
        cached = cp.RawModule(code=CUPY_KERNEL_SOURCE, options=("-std=c++14",),
                              name_expressions=("radix_topk_f32", "radix_topk_f64"))
        _cupy_kernels._module = cached  # type: ignore[attr-defined]
    return cached


def topk_cupy(x: Any, k: int) -> tuple[Any, Any]:
    """Radix-select top-k on the GPU (``x`` a CuPy or NumPy array; results are CuPy arrays).

    Same contract as :func:`topk_ref`. Raises ``GpuUnavailable`` (with the reason) without a GPU.
    """
    cp = require_gpu()
    check_topk_args(x, k)
    xd = cp.ascontiguousarray(cp.asarray(x))
    if bool(cp.isnan(xd).any()):
        raise ValueError("x contains NaN; top-k of NaN is undefined")
    rows, n = xd.shape
    out_v = cp.empty((rows, int(k)), dtype=xd.dtype)
    out_i = cp.empty((rows, int(k)), dtype=cp.int64)
    name = "radix_topk_f32" if xd.dtype == cp.float32 else "radix_topk_f64"
    kernel = _cupy_kernels(cp).get_function(name)
    if rows:
        kernel((rows,), (_CUPY_THREADS,), (xd, out_v, out_i, np.int32(n), np.int32(k)))
    return out_v, out_i
