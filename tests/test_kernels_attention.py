"""Pruned, progressively quantized attention: CPU kernel vs the float64 reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.kernels.attention import attention_cupy, attention_numba, attention_ref, quantize_keys


def _inputs(seed: int, h: int, lq: int, lk: int, d: int, dtype=np.float32, sharp: float = 1.0):
    rng = np.random.default_rng(seed)
    q = (rng.standard_normal((h, lq, d)) * sharp).astype(dtype)
    k = rng.standard_normal((h, lk, d)).astype(dtype)
    v = rng.standard_normal((h, lk, d)).astype(dtype)
    return q, k, v, rng


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), h=st.integers(1, 4), lq=st.integers(1, 6), lk=st.integers(1, 40),
       d=st.sampled_from([1, 8, 16]), msb=st.sampled_from([0, 4, 6, 8]), sharp=st.sampled_from([0.1, 1.0, 3.0]))
def test_numba_matches_float64_reference(seed, h, lq, lk, d, msb, sharp):
    q, k, v, rng = _inputs(seed, h, lq, lk, d, sharp=sharp)
    toks = np.sort(rng.choice(lk, size=int(rng.integers(1, lk + 1)), replace=False))
    heads = np.sort(rng.choice(h, size=int(rng.integers(1, h + 1)), replace=False))
    ref, ref_mask = attention_ref(q, k, v, toks, heads, msb_bits=msb, lsb_bits=4 if msb else 0, threshold=0.1)
    out, mask = attention_numba(q, k, v, toks, heads, msb_bits=msb, lsb_bits=4 if msb else 0, threshold=0.1)
    assert out.shape == (heads.size, lq, d)
    np.testing.assert_array_equal(mask, ref_mask)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_pruning_equals_attention_on_the_gathered_tensors():
    q, k, v, _ = _inputs(1, 4, 3, 50, 16, dtype=np.float64)
    toks, heads = np.array([0, 3, 7, 20, 49]), np.array([1, 3])
    out, mask = attention_ref(q, k, v, toks, heads)
    assert not mask.any()
    for i, h in enumerate(heads):
        s = q[h] @ k[h, toks].T / math.sqrt(16)
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(out[i], p @ v[h, toks], rtol=1e-12)


def test_progressive_quantization_refetches_only_unconfident_queries():
    # sharp queries are confident (max prob high); flat ones (q ~ 0) are not and must re-fetch
    q, k, v, _ = _inputs(2, 1, 2, 64, 16, dtype=np.float64)
    q[0, 0] = 8.0 * k[0, 5] / np.linalg.norm(k[0, 5]) * 4
    q[0, 1] = 1e-3
    out, mask = attention_numba(q, k, v, np.arange(64), np.array([0]), msb_bits=4, lsb_bits=4, threshold=0.1)
    assert mask.tolist() == [[False, True]]
    # the re-fetched query used full-precision keys: closer to exact attention than the MSB-only pass
    exact, _ = attention_ref(q, k, v, np.arange(64), np.array([0]))
    k_msb, k_full = quantize_keys(k, 4, 4)
    assert np.abs(k_full - k).max() < np.abs(k_msb - k).max()
    assert np.abs(out[0, 1] - exact[0, 1]).max() < 1e-3


def test_quantization_error_shrinks_with_bits():
    q, k, v, _ = _inputs(3, 2, 4, 32, 16, dtype=np.float64)
    exact, _ = attention_ref(q, k, v, np.arange(32), np.arange(2))
    errs = []
    for msb in (2, 4, 8, 12):
        out, _ = attention_ref(q, k, v, np.arange(32), np.arange(2), msb_bits=msb, lsb_bits=0, threshold=0.0)
        errs.append(np.abs(out - exact).max())
    assert errs == sorted(errs, reverse=True) and errs[-1] < 1e-2


@pytest.mark.parametrize("bad", [dict(kept_tokens=np.array([0, 0])), dict(kept_tokens=np.array([99])),
                                 dict(kept_heads=np.array([], dtype=np.int64)), dict(kept_heads=np.array([0.5]))])
def test_bad_indices_are_clear_errors(bad):
    q, k, v, _ = _inputs(0, 2, 1, 8, 4)
    args = dict(kept_tokens=np.arange(8), kept_heads=np.arange(2)) | bad
    with pytest.raises(ValueError, match="kept_"):
        attention_numba(q, k, v, **args)


@pytest.mark.gpu
def test_cupy_matches_reference():
    q, k, v, _ = _inputs(4, 4, 3, 100, 16, dtype=np.float32)
    toks, heads = np.arange(0, 100, 3), np.array([0, 2, 3])
    ref, ref_mask = attention_ref(q, k, v, toks, heads, msb_bits=6, lsb_bits=4)
    out, mask = attention_cupy(q, k, v, toks, heads, msb_bits=6, lsb_bits=4)
    np.testing.assert_array_equal(mask.get(), ref_mask)
    np.testing.assert_allclose(out.get(), ref, rtol=1e-4, atol=1e-5)
