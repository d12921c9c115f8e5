"""CPU top-k: the Numba quick-select kernel against ``np.argpartition`` on batched rows.

Run with ``pytest tests/benchmarks/test_topk_bench.py --benchmark-enable``; the goal (issue 3) is the
Numba kernel >= 2x faster than ``np.argpartition`` (+ gathering the values) on 2 cores. With
``--benchmark-disable`` (CI) each case still runs once and its result is checked.
"""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.kernels.topk import topk_argpartition, topk_numba, topk_ref

# (rows, n, k): SpAtten's local V pruning over a GPT-2 medium key cache per head and step, and a
# large batch of token-importance rows
SHAPES = [(384, 1024, 307), (4096, 1024, 256), (1024, 4096, 64)]
IMPLS = {"numba": topk_numba, "np.argpartition": topk_argpartition}


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("impl", list(IMPLS))
def test_topk_cpu(benchmark, impl, shape):
    rows, n, k = shape
    x = np.random.default_rng(0).standard_normal((rows, n)).astype(np.float32)
    fn = IMPLS[impl]
    fn(x, k)  # compile / warm up outside the timing
    benchmark.extra_info.update(rows=rows, n=n, k=k, impl=impl)
    values, _ = benchmark(fn, x, k)
    ref_values, _ = topk_ref(x[:8], k)
    np.testing.assert_array_equal(np.sort(values[:8], axis=1), np.sort(ref_values, axis=1))
