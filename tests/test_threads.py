"""Sweep workers run a case with one BLAS and one Numba thread; the limits are undone afterwards."""

from __future__ import annotations

import numba
import pytest
from threadpoolctl import threadpool_info

from hwsim.suites.threads import limited_threads


def _blas_threads() -> list[int]:
    return [int(p["num_threads"]) for p in threadpool_info()]


def test_limits_apply_inside_and_are_restored():
    numba_before = numba.get_num_threads()
    blas_before = _blas_threads()
    with limited_threads(1, 1):
        assert numba.get_num_threads() == 1
        assert all(n == 1 for n in _blas_threads())
    assert numba.get_num_threads() == numba_before
    assert _blas_threads() == blas_before


def test_a_worker_case_runs_under_the_limits(monkeypatch):
    from hwsim.suites.registry import SuiteResult
    from hwsim.suites.sweep import worker
    from hwsim.suites.sweep.grid import Case

    seen = {}

    class Probe:
        name, description, default_hardware = "probe", "records the thread counts", "t3-gpu"

        def run(self, ctx):
            seen["numba"] = numba.get_num_threads()
            seen["blas"] = _blas_threads()
            return SuiteResult(records=[])

    monkeypatch.setattr(worker, "load_suite_target", lambda target: Probe())
    case = Case(params={}, suite_params={}, hardware=None, overrides=(), case_id="c", slug="c", seed=0)
    outcome = worker.run_case(worker.Task("x:y", case, quick=True, hardware=None))
    assert outcome.ok, outcome.error
    assert seen["numba"] == 1 and all(n == 1 for n in seen["blas"])


def test_bad_counts_are_rejected():
    with pytest.raises(ValueError, match="at least 1"), limited_threads(0, 1):
        pass
