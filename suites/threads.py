"""Explicit thread counts for BLAS (NumPy's linear algebra) and Numba while a piece of work runs.

Left alone, each process starts as many BLAS and Numba threads as the machine has cores; two sweep
workers on two cores then run four busy threads, and a short parallel region waits for whichever
thread the OS has parked (``moe.dispatch_slots`` ran 61x slower that way). A sweep worker therefore
runs each case with one thread of each unless asked otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def limited_threads(blas: int = 1, numba_threads: int = 1) -> Iterator[None]:
    """Run the body with at most ``blas`` BLAS/OpenMP threads and ``numba_threads`` Numba threads."""
    if blas < 1 or numba_threads < 1:
        raise ValueError(f"thread counts must be at least 1, got blas={blas}, numba={numba_threads}")
    import numba
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    before = numba.get_num_threads()
    numba.set_num_threads(min(numba_threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    try:
        with threadpool_limits(limits=blas):
            yield
    finally:
        numba.set_num_threads(before)
