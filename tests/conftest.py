"""Shared test configuration: ``@pytest.mark.gpu`` tests are skipped once, with the reason, without a GPU."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every ``gpu``-marked test when CuPy or a CUDA device is missing, probing the GPU once."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return
    from hwsim.kernels.gpu import gpu_available, gpu_unavailable_reason

    if gpu_available():
        return
    skip = pytest.mark.skip(reason=f"no GPU: {gpu_unavailable_reason()}")
    for item in gpu_items:
        item.add_marker(skip)
