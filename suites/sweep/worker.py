"""Run one sweep case, wherever it lands: in this process, a pool process or a Dask worker.

The worker only computes: it returns the records (or the error) to the process that started the
sweep, which writes the files. So a cluster needs no shared file system, and a case is on disk
exactly when its complete result has come back.
"""

from __future__ import annotations

import socket
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import lru_cache

from hwsim.hardware import Hardware
from hwsim.records import CaseValue, Provenance, Record
from hwsim.suites.registry import SuiteContext, load_suite_target
from hwsim.suites.sweep.grid import Case
from hwsim.suites.threads import limited_threads


@dataclass(frozen=True)
class Task:
    suite_target: str          # module:attribute, resolved where the sweep started, so any registered suite runs
    case: Case
    quick: bool
    hardware: Hardware | None  # loaded and overridden where the sweep started; None: the suite's default
    threads: int = 1           # BLAS and Numba threads for the case: workers run side by side, one core each


@dataclass(frozen=True)
class Outcome:
    """What comes back from a case: its records, or the error that stopped it."""

    case_id: str
    records: tuple[Record, ...] = ()
    provenance: Provenance | None = None
    error: Mapping[str, str] | None = None   # type, message, traceback
    elapsed_s: float = 0.0
    cpu_s: float = 0.0                       # the worker process's CPU time for this case
    host: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


@lru_cache(maxsize=1)
def _process_provenance() -> Provenance:
    return Provenance.collect()  # versions and commit once per process; the time is set per case


def _tag(record: Record, params: Mapping[str, CaseValue]) -> Record:
    """The record with the sweep's parameters added to its case, so cases stay apart in the merged file.

    A key the suite already reports keeps the suite's value: it says what actually ran (a quick
    run may shrink a size the grid asked for).
    """
    case = dict(record.case)
    for key, value in params.items():
        case.setdefault(key, value)
    return replace(record, case=case)


def run_case(task: Task) -> Outcome:
    """Run one case of a suite; an exception becomes the outcome's error, never a lost sweep."""
    started, cpu_started = time.perf_counter(), time.process_time()
    case = task.case
    try:
        suite = load_suite_target(task.suite_target)
        # suites compute and never print, so nothing needs silencing; the case's tables are not shown mid-sweep
        ctx = SuiteContext(hardware=task.hardware, quick=task.quick, seed=case.seed, params=dict(case.suite_params))
        with limited_threads(task.threads, task.threads):
            result = suite.run(ctx)
        provenance = replace(_process_provenance(),
                             created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        records = tuple(_tag(r, case.params) for r in result.records)
        return Outcome(case.case_id, records, provenance, None, time.perf_counter() - started,
                       time.process_time() - cpu_started, socket.gethostname())
    except Exception as exc:  # noqa: BLE001 - a failing case is data for the sweep, not a crash
        return Outcome(case.case_id, error=error_info(exc), elapsed_s=time.perf_counter() - started,
                       cpu_s=time.process_time() - cpu_started, host=socket.gethostname())


def error_info(exc: BaseException) -> dict[str, str]:
    return {"type": type(exc).__name__, "message": str(exc),
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))}


__all__ = ["Outcome", "Task", "error_info", "run_case"]
