"""Every benchmark carries the machine's load: timings on a shared machine mean little without it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _record_load(request: pytest.FixtureRequest) -> Iterator[None]:
    if "benchmark" in request.fixturenames:
        request.getfixturevalue("benchmark").extra_info["loadavg_at_start"] = list(os.getloadavg())
    yield


def pytest_benchmark_update_machine_info(config: Any, machine_info: dict[str, Any]) -> None:
    machine_info["loadavg_at_save"] = list(os.getloadavg())
    machine_info["cpu_count"] = os.cpu_count()
