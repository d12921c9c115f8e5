"""MoE kernels: the Numba CPU versions against the NumPy reference; GPU versions skip without CuPy."""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.kernels import moe
from hwsim.kernels.gpu import GpuUnavailable, gpu_available


@pytest.mark.parametrize("skew", [0.0, 1.0, 2.5])
def test_dispatch_numba_matches_reference(skew):
    inp = moe.make_inputs(300, 8, 2, 16, 32, skew, seed=1)
    ref = moe.dispatch_ref(inp.x, inp.experts, 8)
    got = moe.dispatch_numba(inp.x, inp.experts, 8)
    for a, b in zip(ref, got):
        assert np.array_equal(a, b)
    rows, token, offsets = ref
    assert np.array_equal(np.diff(offsets), inp.counts)
    for e in range(8):  # every row in expert e's group really chose e
        assert all(e in inp.experts[t] for t in token[offsets[e]:offsets[e + 1]])
    assert np.array_equal(rows, inp.x[token])


@pytest.mark.parametrize("skew", [0.0, 2.0])
def test_grouped_ffn_numba_matches_reference(skew):
    inp = moe.make_inputs(200, 6, 2, 24, 40, skew, seed=2)
    xp, _, offsets = moe.dispatch_ref(inp.x, inp.experts, 6)
    ref = moe.grouped_ffn_ref(xp, offsets, inp.w1, inp.w2)
    for impl in (moe.grouped_ffn_numba, moe.grouped_ffn_blas):
        assert np.allclose(impl(xp, offsets, inp.w1, inp.w2), ref, rtol=1e-4, atol=1e-4)
    # expert 0's rows are relu(x @ w1[0]) @ w2[0]
    rows = xp[offsets[0]:offsets[1]]
    assert np.allclose(ref[offsets[0]:offsets[1]], np.maximum(rows @ inp.w1[0], 0) @ inp.w2[0], rtol=1e-5, atol=1e-5)


def test_grouped_ffn_blas_runs_in_kept_workspaces_and_writes_into_out():
    """Repeated calls allocate no per-expert temporaries (fresh pages cost the allocator's page
    faults, not the FFN's work): after a first call, a call with ``out`` given allocates under one
    expert's hidden activations, and still matches the reference."""
    import tracemalloc

    inp = moe.make_inputs(512, 4, 2, 64, 256, 1.0, seed=4)
    xp, _, offsets = moe.dispatch_ref(inp.x, inp.experts, 4)
    out = np.empty_like(xp)
    moe.grouped_ffn_blas(xp, offsets, inp.w1, inp.w2, out=out)
    one_expert_hidden = int(np.diff(offsets).max()) * 256 * 4
    tracemalloc.start()
    try:
        got = moe.grouped_ffn_blas(xp, offsets, inp.w1, inp.w2, out=out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got is out
    assert peak < one_expert_hidden / 4
    assert np.allclose(out, moe.grouped_ffn_ref(xp, offsets, inp.w1, inp.w2), rtol=1e-4, atol=1e-4)


def test_skew_concentrates_load_and_choices_are_distinct():
    flat = moe.make_inputs(4000, 8, 2, 4, 4, 0.0, seed=3).counts
    skewed = moe.make_inputs(4000, 8, 2, 4, 4, 2.0, seed=3)
    assert skewed.counts.max() / skewed.counts.mean() > 1.5 * flat.max() / flat.mean()
    assert np.all(skewed.experts[:, 0] != skewed.experts[:, 1])
    assert moe.ffn_flops(skewed.counts, 4, 4) == 4.0 * 8000 * 16


def test_bad_shapes():
    with pytest.raises(ValueError, match="top_k"):
        moe.make_inputs(10, 4, 5, 8, 8, 0.0, seed=0)


@pytest.mark.skipif(gpu_available(), reason="checks the no-GPU path")
def test_gpu_dispatch_without_a_gpu_raises_gpu_unavailable():
    with pytest.raises(GpuUnavailable):
        moe.dispatch_cupy(None, None, 4)


@pytest.mark.gpu
def test_gpu_versions_match():
    import cupy as cp
    inp = moe.make_inputs(300, 8, 2, 16, 32, 1.0, seed=1)
    xp, token, offsets = moe.dispatch_cupy(cp.asarray(inp.x), cp.asarray(inp.experts), 8)
    ref = moe.dispatch_ref(inp.x, inp.experts, 8)
    assert np.array_equal(cp.asnumpy(xp), ref[0])
    out = moe.grouped_ffn_cupy(xp, offsets, cp.asarray(inp.w1), cp.asarray(inp.w2))
    assert np.allclose(cp.asnumpy(out), moe.grouped_ffn_ref(ref[0], ref[2], inp.w1, inp.w2), rtol=1e-3, atol=1e-3)
