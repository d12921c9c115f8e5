"""The vector compare-and-compress primitives against NumPy, for both widths."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from hwsim.kernels.simd import SLACK, eq_mask, ge_or_nan_mask, gt_mask, lanes, nan_mask, store_indices, store_values


@njit(cache=False)
def _compress_all(x, t, out_v, out_i):
    """Every full block of ``x``: the values > t, their indices, and the other masks' popcounts as bit lists."""
    w = lanes(x)
    m = 0
    masks = np.zeros((x.shape[0] // w, 4), dtype=np.uint32)
    for b, base in enumerate(range(0, x.shape[0] - w + 1, w)):
        bits = gt_mask(x, base, t)
        masks[b, 0] = bits
        masks[b, 1] = ge_or_nan_mask(x, base, t)
        masks[b, 2] = eq_mask(x, base, t)
        masks[b, 3] = nan_mask(x, base)
        store_values(out_v, m, x, base, bits, x)
        m = store_indices(out_i, m, base, bits, x)
    return m, masks


def _bits(flags: np.ndarray) -> np.ndarray:
    return (flags.astype(np.uint64) << np.arange(flags.shape[1], dtype=np.uint64)).sum(axis=1).astype(np.uint32)


@pytest.mark.parametrize("dtype,width", [(np.float32, 16), (np.float64, 8)])
def test_masks_and_compress_match_numpy(dtype, width):
    rng = np.random.default_rng(5)
    x = rng.choice(np.array([-1.0, 0.0, 0.5, 2.0, np.nan]), size=10 * width).astype(dtype)
    t = dtype(0.5)
    out_v = np.full(x.size + SLACK, -7, dtype)
    out_i = np.full(x.size + SLACK, -7, np.int32)
    m, masks = _compress_all(x, t, out_v, out_i)
    blocks = x.reshape(-1, width)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(masks[:, 0], _bits(blocks > t))
        np.testing.assert_array_equal(masks[:, 1], _bits((blocks >= t) | np.isnan(blocks)))
        np.testing.assert_array_equal(masks[:, 2], _bits(blocks == t))
    np.testing.assert_array_equal(masks[:, 3], _bits(np.isnan(blocks)))
    keep = np.flatnonzero(np.nan_to_num(x, nan=-np.inf) > t)
    assert m == keep.size
    np.testing.assert_array_equal(out_i[:m], keep)
    np.testing.assert_array_equal(out_v[:m], x[keep])
