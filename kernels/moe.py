"""MoE expert-parallel kernels: token dispatch (permute token-slots by expert) and the grouped expert
GEMM over skewed per-expert loads.

Three implementations each, one calling convention:
* NumPy reference (``dispatch_ref``, ``grouped_ffn_ref``): the ground truth for tests.
* Numba CPU (``dispatch_numba``, ``grouped_ffn_numba``): a counting-sort dispatch and a per-expert
  loop of BLAS GEMMs (what a grouped GEMM does on a CPU).
* CuPy GPU (``dispatch_cupy``, ``grouped_ffn_cupy``): raise ``GpuUnavailable`` without a GPU.

The expert FFN is two matrices (``relu(x @ w1[e]) @ w2[e]``), so its FLOPs are
``2 * 2 * slots * hidden * ffn``. Skew: expert choices are drawn from a Zipf popularity with exponent
``skew`` (0 = uniform), the k choices of a token distinct.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from hwsim.kernels.gpu import require_gpu

__all__ = [
    "MoEInputs",
    "make_inputs",
    "dispatch_ref",
    "dispatch_numba",
    "dispatch_cupy",
    "grouped_ffn_ref",
    "grouped_ffn_numba",
    "grouped_ffn_blas",
    "grouped_ffn_cupy",
    "ffn_flops",
    "dispatch_bytes",
]


@dataclass(frozen=True, eq=False)
class MoEInputs:
    x: np.ndarray          # [tokens, hidden]
    experts: np.ndarray    # [tokens, top_k] int64, distinct per token
    w1: np.ndarray         # [E, hidden, ffn]
    w2: np.ndarray         # [E, ffn, hidden]

    @property
    def counts(self) -> np.ndarray:
        return np.bincount(self.experts.ravel(), minlength=self.w1.shape[0])


def make_inputs(tokens: int, experts: int, top_k: int, hidden: int, ffn: int, skew: float, seed: int,
                dtype: str = "float32") -> MoEInputs:
    if not (tokens >= 1 and experts >= 1 and 1 <= top_k <= experts and hidden >= 1 and ffn >= 1 and skew >= 0):
        raise ValueError(f"bad MoE kernel shape: tokens={tokens} experts={experts} top_k={top_k} "
                         f"hidden={hidden} ffn={ffn} skew={skew}")
    rng = np.random.default_rng(seed)
    popularity = np.arange(1, experts + 1, dtype=float) ** -float(skew)
    popularity /= popularity.sum()
    # k distinct choices per token, popularity-weighted (Gumbel top-k)
    keys = np.log(popularity)[None, :] + rng.gumbel(size=(tokens, experts))
    choice = np.argsort(-keys, axis=1)[:, :top_k].astype(np.int64)
    scale = 1.0 / np.sqrt(hidden)
    return MoEInputs(
        x=rng.standard_normal((tokens, hidden)).astype(dtype),
        experts=np.ascontiguousarray(choice),
        w1=(rng.standard_normal((experts, hidden, ffn)) * scale).astype(dtype),
        w2=(rng.standard_normal((experts, ffn, hidden)) * scale).astype(dtype),
    )


def ffn_flops(counts: np.ndarray, hidden: int, ffn: int) -> float:
    return 4.0 * float(np.sum(counts)) * hidden * ffn


def dispatch_bytes(slots: int, hidden: int, itemsize: int) -> float:
    """Each slot's row is read once and written once."""
    return 2.0 * slots * hidden * itemsize


# ---------------------------------------------------------------------------------------------
# NumPy reference

def dispatch_ref(x: np.ndarray, experts: np.ndarray, num_experts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of ``x`` grouped by expert (stable in token order).

    Returns (permuted rows [slots, hidden], source token of each row, offsets [E+1])."""
    flat = experts.ravel()
    order = np.argsort(flat, kind="stable")
    token = order // experts.shape[1]
    counts = np.bincount(flat, minlength=num_experts)
    offsets = np.concatenate(([0], np.cumsum(counts)))
    return x[token], token, offsets


def grouped_ffn_ref(xp: np.ndarray, offsets: np.ndarray, w1: np.ndarray, w2: np.ndarray) -> np.ndarray:
    out = np.empty_like(xp)
    for e in range(w1.shape[0]):
        s, t = offsets[e], offsets[e + 1]
        if t > s:
            out[s:t] = np.maximum(xp[s:t] @ w1[e], 0) @ w2[e]
    return out


# ---------------------------------------------------------------------------------------------
# Numba CPU

@njit(cache=True)
def _dispatch_numba(x, experts, num_experts, out, token):  # type: ignore[no-untyped-def]
    tokens, k = experts.shape
    counts = np.zeros(num_experts + 1, dtype=np.int64)
    for t in range(tokens):
        for j in range(k):
            counts[experts[t, j] + 1] += 1
    for e in range(num_experts):
        counts[e + 1] += counts[e]
    offsets = counts.copy()
    cursor = counts[:num_experts].copy()
    for t in range(tokens):
        for j in range(k):
            e = experts[t, j]
            row = cursor[e]
            cursor[e] += 1
            token[row] = t
            out[row, :] = x[t, :]
    return offsets


def dispatch_numba(x: np.ndarray, experts: np.ndarray, num_experts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counting sort: histogram, prefix sum, scatter (stable, like the reference)."""
    out = np.empty((experts.size, x.shape[1]), dtype=x.dtype)
    token = np.empty(experts.size, dtype=np.int64)
    offsets = _dispatch_numba(x, experts, num_experts, out, token)
    return out, token, offsets


@njit(cache=True, parallel=True)
def _matmul_relu(a, b, out, relu):  # type: ignore[no-untyped-def]
    # row-parallel i-p-j loops (Numba's np.dot needs SciPy, which hwsim does not depend on)
    m, kk = a.shape
    n = b.shape[1]
    for i in prange(m):
        for j in range(n):
            out[i, j] = 0
        for p in range(kk):
            v = a[i, p]
            for j in range(n):
                out[i, j] += v * b[p, j]
        if relu:
            for j in range(n):
                if out[i, j] < 0:
                    out[i, j] = 0


def grouped_ffn_numba(xp: np.ndarray, offsets: np.ndarray, w1: np.ndarray, w2: np.ndarray) -> np.ndarray:
    """One expert after another, each a row-parallel Numba GEMM pair."""
    out = np.empty_like(xp)
    for e in range(w1.shape[0]):
        s, t = int(offsets[e]), int(offsets[e + 1])
        if t > s:
            h = np.empty((t - s, w1.shape[2]), dtype=xp.dtype)
            _matmul_relu(np.ascontiguousarray(xp[s:t]), w1[e], h, True)
            _matmul_relu(h, w2[e], out[s:t], False)
    return out


_held = threading.local()
#: Largest workspace (bytes) a thread keeps between grouped-FFN calls; a larger one is fresh per call.
HOLD_WORKSPACE_BYTES = 64 << 20


def _ffn_workspace(dtype: np.dtype, rows: int, ffn: int, hidden: int) -> tuple[np.ndarray, np.ndarray]:
    """The hidden activations [rows, ffn] and one expert's output [rows, hidden], kept per thread."""
    key = np.dtype(dtype).str
    held = getattr(_held, key, None)
    if held is not None and held[0].shape[0] >= rows and held[0].shape[1] == ffn and held[1].shape[1] == hidden:
        return held  # type: ignore[no-any-return]
    space = (np.empty((rows, ffn), dtype), np.empty((rows, hidden), dtype))
    if (space[0].nbytes + space[1].nbytes) <= HOLD_WORKSPACE_BYTES:
        setattr(_held, key, space)
    return space


def grouped_ffn_blas(xp: np.ndarray, offsets: np.ndarray, w1: np.ndarray, w2: np.ndarray,
                     out: np.ndarray | None = None) -> np.ndarray:
    """Per-expert NumPy BLAS GEMMs (the suites measure this one): per expert, the first GEMM, the
    ReLU in place, the second GEMM, the copy into the expert's output rows.

    Into workspaces the thread keeps, as a grouped-GEMM kernel does: NumPy's fresh temporaries of a
    few MB come from pages the allocator has just mapped (glibc returns a freed top of heap above its
    trim threshold), and on the development VM each first touch cost about 0.2 ns/B: 22.3 vs 19.8 ms
    for 1024 token-slots over 8 experts (hidden 512, ffn 1024). That is the allocator's cost, not the
    FFN's. ``out``: the [slots, hidden] result (fresh when None)."""
    out = np.empty_like(xp) if out is None else out
    counts = np.diff(offsets)
    if not counts.size or int(counts.max()) == 0:
        return out
    hid, y = _ffn_workspace(xp.dtype, int(counts.max()), w1.shape[2], w2.shape[2])
    for e in range(w1.shape[0]):
        s, t = int(offsets[e]), int(offsets[e + 1])
        if t > s:
            h = np.matmul(xp[s:t], w1[e], out=hid[: t - s])
            np.maximum(h, 0, out=h)
            out[s:t] = np.matmul(h, w2[e], out=y[: t - s])
    return out


# ---------------------------------------------------------------------------------------------
# CuPy GPU

def dispatch_cupy(x, experts, num_experts: int):  # type: ignore[no-untyped-def]
    cp = require_gpu()
    flat = experts.ravel()
    order = cp.argsort(flat, kind="stable") if hasattr(cp, "argsort") else None
    token = order // experts.shape[1]
    counts = cp.bincount(flat, minlength=num_experts)
    offsets = cp.concatenate((cp.zeros(1, dtype=counts.dtype), cp.cumsum(counts)))
    return x[token], token, offsets


def grouped_ffn_cupy(xp, offsets, w1, w2):  # type: ignore[no-untyped-def]
    cp = require_gpu()
    out = cp.empty_like(xp)
    host_offsets = cp.asnumpy(offsets)
    for e in range(w1.shape[0]):
        s, t = int(host_offsets[e]), int(host_offsets[e + 1])
        if t > s:
            out[s:t] = cp.maximum(xp[s:t] @ w1[e], 0) @ w2[e]
    return out
