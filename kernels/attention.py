"""Attention with cascade token/head pruning and progressive quantization of K (SpAtten's algorithm).

Shapes: ``q`` (H, Lq, d), ``k`` and ``v`` (H, Lk, d), float32 or float64. ``kept_heads`` and
``kept_tokens`` are index arrays (the top-k engine's output); the kernels gather those heads and
key/value tokens, then run softmax(q k^T / sqrt(d)) v. Output: (len(kept_heads), Lq, d).

Progressive quantization (``msb_bits`` > 0): keys are stored as signed integers of
``msb_bits + lsb_bits`` bits with one scale per head. A first pass uses only the MSBs (the low
``lsb_bits`` bits zeroed); a query whose largest probability is below ``threshold`` is recomputed
with the full-precision integer keys (the LSB "re-fetch"). :func:`quantize_keys` gives both key
versions, so every implementation sees the same integers.

Implementations: :func:`attention_ref` (float64 NumPy, the reference), :func:`attention_numba`
(parallel over heads x queries), :func:`attention_cupy` (gathers and batched matmuls on the GPU;
raises ``GpuUnavailable`` without one). Each returns ``(out, refetched)`` where ``refetched`` is a
bool array (kept heads, Lq) of the queries that needed their LSBs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit, prange

from hwsim.kernels.gpu import require_gpu

__all__ = ["check_attention_args", "quantize_keys", "attention_ref", "attention_numba", "attention_cupy"]


def check_attention_args(q: Any, k: Any, v: Any, kept_tokens: Any, kept_heads: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes and indices; return the index arrays as int64."""
    for name, a in (("q", q), ("k", k), ("v", v)):
        if getattr(a, "ndim", None) != 3:
            raise ValueError(f"{name} must be 3-D (heads, tokens, head_dim), got shape {getattr(a, 'shape', None)!r}")
    h, lq, d = q.shape
    if k.shape != v.shape or k.shape[0] != h or k.shape[2] != d:
        raise ValueError(f"k and v must have shape ({h}, Lk, {d}) like q {tuple(q.shape)}, got {tuple(k.shape)} and {tuple(v.shape)}")
    lk = k.shape[1]
    out = []
    for name, idx, total in (("kept_tokens", kept_tokens, lk), ("kept_heads", kept_heads, h)):
        arr = np.asarray(idx if not hasattr(idx, "get") else idx.get())
        if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{name} must be a non-empty 1-D integer index array, got {arr!r}")
        if arr.min() < 0 or arr.max() >= total:
            raise ValueError(f"{name} indices must lie in [0, {total}), got min {arr.min()} max {arr.max()}")
        if np.unique(arr).size != arr.size:
            raise ValueError(f"{name} has repeated indices")
        out.append(arr.astype(np.int64))
    return out[0], out[1]


def quantize_keys(k: np.ndarray, msb_bits: int, lsb_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(MSB-only keys, full keys), both dequantized to k's dtype; symmetric, one scale per head."""
    bits = msb_bits + lsb_bits
    if msb_bits < 1 or lsb_bits < 0 or bits > 24:
        raise ValueError(f"need msb_bits >= 1, lsb_bits >= 0, msb+lsb <= 24; got {msb_bits}+{lsb_bits}")
    qmax = 2 ** (bits - 1) - 1
    amax = np.abs(k).max(axis=(1, 2), keepdims=True).astype(np.float64)
    scale = np.where(amax > 0, amax / qmax, 1.0)
    ints = np.clip(np.rint(k / scale), -qmax - 1, qmax).astype(np.int64)
    step = 2 ** lsb_bits
    msb = (ints // step) * step + (step // 2 if lsb_bits else 0)  # MSBs, midpoint of the dropped range
    return (msb * scale).astype(k.dtype), (ints * scale).astype(k.dtype)


def _softmax_rows(s: np.ndarray) -> np.ndarray:
    s = s - s.max(axis=-1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=-1, keepdims=True)


def attention_ref(q: np.ndarray, k: np.ndarray, v: np.ndarray, kept_tokens: Any, kept_heads: Any,
                  msb_bits: int = 0, lsb_bits: int = 0, threshold: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Float64 reference. ``msb_bits == 0``: no quantization (exact pruned attention)."""
    toks, heads = check_attention_args(q, k, v, kept_tokens, kept_heads)
    q64, v64 = q.astype(np.float64), v.astype(np.float64)
    inv = 1.0 / math.sqrt(q.shape[2])
    vg = v64[heads][:, toks]
    if msb_bits == 0:
        kg = k.astype(np.float64)[heads][:, toks]
        p = _softmax_rows(np.einsum("hqd,hkd->hqk", q64[heads], kg) * inv)
        return p @ vg, np.zeros((heads.size, q.shape[1]), dtype=bool)
    k_msb, k_full = quantize_keys(k, msb_bits, lsb_bits)
    p = _softmax_rows(np.einsum("hqd,hkd->hqk", q64[heads], k_msb.astype(np.float64)[heads][:, toks]) * inv)
    refetch = p.max(axis=-1) < threshold
    if refetch.any():
        p_full = _softmax_rows(np.einsum("hqd,hkd->hqk", q64[heads], k_full.astype(np.float64)[heads][:, toks]) * inv)
        p = np.where(refetch[..., None], p_full, p)
    return p @ vg, refetch


@njit(parallel=True, cache=True)
def _attention_rows(q, k_first, k_full, v, toks, heads, inv, threshold, use_full, out, refetch):  # pragma: no cover - compiled
    hk = heads.size
    lq = q.shape[1]
    d = q.shape[2]
    n = toks.size
    for job in prange(hk * lq):
        hi = job // lq
        qi = job % lq
        h = heads[hi]
        s = np.empty(n, dtype=np.float64)
        for attempt in range(2):
            keys = k_first if attempt == 0 else k_full
            best = -np.inf
            for j in range(n):
                acc = 0.0
                t = toks[j]
                for c in range(d):
                    acc += q[h, qi, c] * keys[h, t, c]
                acc *= inv
                s[j] = acc
                if acc > best:
                    best = acc
            total = 0.0
            for j in range(n):
                s[j] = math.exp(s[j] - best)
                total += s[j]
            pmax = 0.0
            for j in range(n):
                s[j] /= total
                if s[j] > pmax:
                    pmax = s[j]
            if attempt == 0 and use_full and pmax < threshold:
                refetch[hi, qi] = True
                continue
            break
        acc_v = np.zeros(d, dtype=np.float64)
        for j in range(n):  # row-major over V: contiguous head_dim inner loop
            t = toks[j]
            w = s[j]
            for c in range(d):
                acc_v[c] += w * v[h, t, c]
        for c in range(d):
            out[hi, qi, c] = acc_v[c]


def attention_numba(q: np.ndarray, k: np.ndarray, v: np.ndarray, kept_tokens: Any, kept_heads: Any,
                    msb_bits: int = 0, lsb_bits: int = 0, threshold: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Parallel CPU kernel: gathers by index inside the loop (no copies of the kept K/V)."""
    toks, heads = check_attention_args(q, k, v, kept_tokens, kept_heads)
    if msb_bits:
        k_first, k_full = quantize_keys(k, msb_bits, lsb_bits)
    else:
        k_first = k_full = k
    out = np.empty((heads.size, q.shape[1], q.shape[2]), dtype=q.dtype)
    refetch = np.zeros((heads.size, q.shape[1]), dtype=np.bool_)
    _attention_rows(np.ascontiguousarray(q), np.ascontiguousarray(k_first), np.ascontiguousarray(k_full),
                    np.ascontiguousarray(v), toks, heads, 1.0 / math.sqrt(q.shape[2]), float(threshold),
                    bool(msb_bits), out, refetch)
    return out, refetch


def attention_cupy(q: Any, k: Any, v: Any, kept_tokens: Any, kept_heads: Any,
                   msb_bits: int = 0, lsb_bits: int = 0, threshold: float = 0.1) -> tuple[Any, Any]:
    """GPU version: gather kept heads/tokens, batched matmuls, refetch rows recomputed with full keys."""
    cp = require_gpu()
    toks, heads = check_attention_args(q, k, v, kept_tokens, kept_heads)
    if msb_bits:
        k_first, k_full = quantize_keys(np.asarray(k if not hasattr(k, "get") else k.get()), msb_bits, lsb_bits)
    else:
        k_first = k_full = k
    t, h = cp.asarray(toks), cp.asarray(heads)
    qg = cp.asarray(q)[h]
    vg = cp.asarray(v)[h][:, t]
    inv = 1.0 / math.sqrt(q.shape[2])

    def probs(keys: Any) -> Any:
        s = cp.matmul(qg, cp.swapaxes(cp.asarray(keys)[h][:, t], 1, 2)) * inv
        s = cp.exp(s - s.max(axis=-1, keepdims=True))
        return s / s.sum(axis=-1, keepdims=True)

    p = probs(k_first)
    refetch = cp.zeros(p.shape[:2], dtype=bool)
    if msb_bits:
        refetch = p.max(axis=-1) < threshold
        if bool(refetch.any()):
            p = cp.where(refetch[..., None], probs(k_full), p)
    return cp.matmul(p, vg), refetch
