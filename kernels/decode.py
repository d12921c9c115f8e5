"""One decode step of a transformer layer for a batch of requests with different context lengths.

What Flover fuses: every request in the batch contributes one token; the four weight matrices are
multiplied by the batch's activations at once (a GEMV at batch 1, a skinny GEMM beyond), so the
weights are read once per step whatever the batch; attention then reads each request's own KV cache
up to its own length. The weight read sets a floor on the step time: the flat region of time vs batch.

Implementations share one calling convention, ``impl(inputs) -> y`` with ``inputs = make_inputs(...)``:

* :func:`decode_ref` - NumPy, attention request by request: the ground truth.
* :func:`decode_numba` - Numba only: weight-streaming skinny GEMMs + a parallel attention over (request, head).
* :func:`decode_cupy` - cuBLAS GEMMs + padded, masked batched attention on the GPU (``GpuUnavailable`` without one).

Each call appends the new token's K and V at position ``lens[b]`` of request b's cache and attends
over ``lens[b] + 1`` tokens; it does not advance ``lens``, so repeated timed calls do the same work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit, prange

from hwsim.kernels.gpu import require_gpu

__all__ = ["LayerShape", "DecodeInputs", "make_inputs", "to_gpu", "decode_ref", "decode_numba", "decode_cupy",
           "kv_cache_bytes", "weight_bytes"]


@dataclass(frozen=True)
class LayerShape:
    """A GPT-style layer (fused QKV, output projection, GELU MLP)."""

    hidden: int = 1024
    heads: int = 8
    ffn: int = 4096

    def __post_init__(self) -> None:
        for name in ("hidden", "heads", "ffn"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.hidden % self.heads:
            raise ValueError(f"heads={self.heads} must divide hidden={self.hidden}")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


@dataclass
class DecodeInputs:
    x: Any          # [B, d] activations of the new tokens
    w_qkv: Any      # [3d, d]  weights as [out, in] (the nn.Linear layout: each output's row is contiguous)
    w_o: Any        # [d, d]
    w_1: Any        # [f, d]
    w_2: Any        # [d, f]
    k_cache: Any    # [B, H, max_len, hd]
    v_cache: Any    # [B, H, max_len, hd]
    lens: Any       # [B] int64, tokens already cached per request (< max_len)


def weight_bytes(shape: LayerShape, itemsize: int = 4) -> int:
    d, f = shape.hidden, shape.ffn
    return (4 * d * d + 2 * d * f) * itemsize


def kv_cache_bytes(shape: LayerShape, batch: int, max_len: int, itemsize: int = 4) -> int:
    return 2 * batch * shape.hidden * max_len * itemsize


def make_inputs(shape: LayerShape, lens: np.ndarray, seed: int = 0, dtype: Any = np.float32) -> DecodeInputs:
    """Random weights and caches; ``lens[b]`` tokens of request b are filled, one more slot is free."""
    lens = np.asarray(lens, dtype=np.int64)
    if lens.ndim != 1 or lens.size < 1 or (lens < 1).any():
        raise ValueError(f"lens must be a non-empty 1-D array of positive ints, got {lens!r}")
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dt.name}")
    rng = np.random.default_rng(seed)
    d, f, h, hd = shape.hidden, shape.ffn, shape.heads, shape.head_dim
    batch, max_len = lens.size, int(lens.max()) + 1

    def w(fan_in: int, fan_out: int) -> np.ndarray:
        return (rng.standard_normal((fan_out, fan_in), dtype=np.float32) / math.sqrt(fan_in)).astype(dt)

    k_cache = np.zeros((batch, h, max_len, hd), dtype=dt)
    v_cache = np.zeros((batch, h, max_len, hd), dtype=dt)
    for b, n in enumerate(lens):
        k_cache[b, :, :n] = rng.standard_normal((h, n, hd), dtype=np.float32)
        v_cache[b, :, :n] = rng.standard_normal((h, n, hd), dtype=np.float32)
    x = rng.standard_normal((batch, d), dtype=np.float32).astype(dt)
    return DecodeInputs(x, w(d, 3 * d), w(d, d), w(d, f), w(f, d), k_cache, v_cache, lens)


def to_gpu(inputs: DecodeInputs) -> DecodeInputs:
    cp = require_gpu()
    return DecodeInputs(*(cp.asarray(getattr(inputs, name)) for name in DecodeInputs.__dataclass_fields__))


def _gelu(x: Any, xp: Any = np) -> Any:
    """tanh approximation of GELU (GPT-J's activation)."""
    return 0.5 * x * (1.0 + xp.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


def _project_and_append(inp: DecodeInputs, xp: Any = np) -> Any:
    """QKV projection; writes K and V of the new token into each request's cache; returns Q [B, H, hd]."""
    batch, h, _, hd = inp.k_cache.shape
    qkv = (inp.x @ inp.w_qkv.T).reshape(batch, 3, h, hd)
    rows = xp.arange(batch)
    inp.k_cache[rows, :, inp.lens, :] = qkv[:, 1]
    inp.v_cache[rows, :, inp.lens, :] = qkv[:, 2]
    return qkv[:, 0]


def _finish(inp: DecodeInputs, att: Any, xp: Any = np) -> Any:
    """Output projection, residual, GELU MLP, residual."""
    x1 = inp.x + att.reshape(inp.x.shape) @ inp.w_o.T
    return x1 + _gelu(x1 @ inp.w_1.T, xp) @ inp.w_2.T


def decode_ref(inp: DecodeInputs) -> np.ndarray:
    """NumPy reference: attention request by request over its own ``lens[b] + 1`` tokens."""
    q = _project_and_append(inp)
    scale = 1.0 / math.sqrt(q.shape[-1])
    att = np.empty_like(q)
    for b, n in enumerate(inp.lens):
        keys = inp.k_cache[b, :, : n + 1]                         # [H, n+1, hd]
        scores = np.einsum("hd,htd->ht", q[b], keys) * scale
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores /= scores.sum(axis=1, keepdims=True)
        att[b] = np.einsum("ht,htd->hd", scores, inp.v_cache[b, :, : n + 1])
    return _finish(inp, att)


@njit(parallel=True, cache=True)
def _attend(q, k_cache, v_cache, lens, out):  # pragma: no cover - compiled
    batch, heads, hd = q.shape
    scale = 1.0 / math.sqrt(hd)
    for bh in prange(batch * heads):
        b = bh // heads
        h = bh - b * heads
        n = lens[b] + 1
        scores = np.empty(n, dtype=q.dtype)
        top = -np.inf
        for t in range(n):
            s = 0.0
            for d in range(hd):
                s += q[b, h, d] * k_cache[b, h, t, d]
            s *= scale
            scores[t] = s
            if s > top:
                top = s
        total = 0.0
        for t in range(n):
            e = math.exp(scores[t] - top)
            scores[t] = e
            total += e
        for d in range(hd):
            out[b, h, d] = 0.0
        for t in range(n):
            w = scores[t] / total
            for d in range(hd):
                out[b, h, d] += w * v_cache[b, h, t, d]


@njit(parallel=True, fastmath=True, cache=True)
def _linear(x, w, out):  # pragma: no cover - compiled
    """out[B, n] = x[B, k] @ w[n, k].T: one output feature per step, its weight row read once and
    reused from L1 by every request of the batch (the decode regime: weights stream, batch is cheap)."""
    batch, depth = x.shape
    for j in prange(w.shape[0]):
        for b in range(batch):
            acc = 0.0
            for kk in range(depth):
                acc += x[b, kk] * w[j, kk]
            out[b, j] = acc


def _mm(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    out = np.empty((x.shape[0], w.shape[0]), dtype=x.dtype)
    _linear(np.ascontiguousarray(x), w, out)
    return out


def decode_numba(inp: DecodeInputs) -> np.ndarray:
    """All in Numba: a weight-streaming skinny GEMM for the projections and a parallel attention over
    (request, head). One thread pool only: mixing BLAS threads with Numba's oversubscribes a small CPU."""
    batch, h, _, hd = inp.k_cache.shape
    qkv = _mm(inp.x, inp.w_qkv).reshape(batch, 3, h, hd)
    rows = np.arange(batch)
    inp.k_cache[rows, :, inp.lens, :] = qkv[:, 1]
    inp.v_cache[rows, :, inp.lens, :] = qkv[:, 2]
    q = np.ascontiguousarray(qkv[:, 0])
    att = np.empty_like(q)
    _attend(q, inp.k_cache, inp.v_cache, inp.lens, att)
    x1 = inp.x + _mm(att.reshape(inp.x.shape), inp.w_o)
    return x1 + _mm(_gelu(_mm(x1, inp.w_1)), inp.w_2)


def decode_cupy(inp: DecodeInputs) -> Any:
    """cuBLAS GEMMs; attention batched over the padded cache with positions past ``lens[b]`` masked."""
    cp = require_gpu()
    q = _project_and_append(inp, cp)
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = cp.einsum("bhd,bhtd->bht", q, inp.k_cache) * scale
    positions = cp.arange(inp.k_cache.shape[2])
    scores = cp.where(positions[None, None, :] <= inp.lens[:, None, None], scores, -cp.inf)
    scores = cp.exp(scores - scores.max(axis=2, keepdims=True))
    scores /= scores.sum(axis=2, keepdims=True)
    att = cp.einsum("bht,bhtd->bhd", scores, inp.v_cache)
    return _finish(inp, att, cp)
