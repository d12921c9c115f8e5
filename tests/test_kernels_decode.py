"""The decode-step kernel: implementations agree with the reference, and the reference is right."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hwsim.kernels import decode as D
from hwsim.kernels.gpu import GpuUnavailable, gpu_available, gpu_unavailable_reason

SMALL = D.LayerShape(hidden=64, heads=4, ffn=128)


@pytest.mark.parametrize("lens", [[1], [5, 17, 2, 40], [31] * 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_matches_reference(lens, dtype):
    ref = D.decode_ref(D.make_inputs(SMALL, np.array(lens), seed=3, dtype=dtype))
    got = D.decode_numba(D.make_inputs(SMALL, np.array(lens), seed=3, dtype=dtype))
    tol = 2e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)


def test_reference_attends_to_exactly_its_own_context():
    """Request 0 must ignore request 1's cache and anything past its own length."""
    inp = D.make_inputs(SMALL, np.array([3, 9]), seed=1, dtype=np.float64)
    base = D.decode_ref(inp)
    inp2 = D.make_inputs(SMALL, np.array([3, 9]), seed=1, dtype=np.float64)
    inp2.k_cache[0, :, 4:] = 1e3   # padding past request 0's 3 + 1 tokens (max_len is 10)
    inp2.k_cache[1] += 1.0          # request 1's cache
    out = D.decode_ref(inp2)
    np.testing.assert_allclose(out[0], base[0], rtol=1e-12)
    assert not np.allclose(out[1], base[1])


def test_single_token_context_is_a_plain_projection():
    """With one cached token plus the new one, attention is a 2-way softmax: check it by hand."""
    shape = D.LayerShape(hidden=8, heads=2, ffn=16)
    inp = D.make_inputs(shape, np.array([1]), seed=0, dtype=np.float64)
    x = inp.x.copy()
    k_old, v_old = inp.k_cache[0, :, 0].copy(), inp.v_cache[0, :, 0].copy()
    got = D.decode_ref(inp)
    q, k, v = (x @ inp.w_qkv.T).reshape(3, 2, 4)
    att = np.empty((2, 4))
    for h in range(2):
        s = np.array([q[h] @ k_old[h], q[h] @ k[h]]) / 2.0
        p = np.exp(s - s.max())
        p /= p.sum()
        att[h] = p[0] * v_old[h] + p[1] * v[h]
    x1 = x + att.reshape(1, 8) @ inp.w_o.T
    u = x1 @ inp.w_1.T
    gelu = 0.5 * u * (1 + np.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u ** 3)))
    np.testing.assert_allclose(got, x1 + gelu @ inp.w_2.T, rtol=1e-12)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="must divide"):
        D.LayerShape(hidden=10, heads=3)
    with pytest.raises(ValueError, match="lens"):
        D.make_inputs(SMALL, np.array([0, 3]))


@pytest.mark.gpu
def test_cupy_matches_reference():
    if not gpu_available():
        pytest.skip(f"no GPU: {gpu_unavailable_reason()}")
    import cupy as cp
    lens = np.array([5, 17, 2, 40])
    ref = D.decode_ref(D.make_inputs(SMALL, lens, seed=3))
    got = cp.asnumpy(D.decode_cupy(D.to_gpu(D.make_inputs(SMALL, lens, seed=3))))
    np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-4)


def test_cupy_path_fails_cleanly_without_gpu():
    if gpu_available():
        pytest.skip("a GPU is present")
    with pytest.raises(GpuUnavailable):
        D.decode_cupy(D.make_inputs(SMALL, np.array([3])))
