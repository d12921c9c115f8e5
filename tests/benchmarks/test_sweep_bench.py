"""Sweep speed-up: 64 cases of the link-sharing suite on a 2-worker Dask LocalCluster vs serially.

Run with ``python -m pytest tests/benchmarks/test_sweep_bench.py --benchmark-enable -s``. The timed
parallel run includes starting the cluster; the serial run is the same grid in this process. The
ratio lands in ``extra_info['speedup']`` (goal: at least 1.7 on a quiet 2-core machine). With
benchmarks disabled (CI) the same code runs a small grid once and only checks the records match.
"""

from __future__ import annotations

import os
import resource
import time

import pytest
from rich.console import Console

from hwsim.suites.registry import get_suite
from hwsim.suites.sweep import expand, run_sweep
from hwsim.suites.sweep.executors import DaskBackend, SerialBackend, dask_available

WORKERS = 2
LOADS = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85]
BANDWIDTHS = ["25 GB/s", "50 GB/s", "75 GB/s", "100 GB/s", "150 GB/s", "200 GB/s", "300 GB/s", "400 GB/s"]
FLOWS = 100_000        # per case: about 1 s of engine time each on one core
SMOKE_FLOWS = 1_000    # when benchmarks are disabled


def _grid(flows: int, cases: int):
    loads, bandwidths = (LOADS, BANDWIDTHS) if cases == 64 else (LOADS[:2], BANDWIDTHS[:2])
    doc = {"fixed": {"flows": flows}, "axes": {"load": loads, "hw.topology.link.bandwidth": bandwidths}}
    return expand(doc, "bench-grid", get_suite("link-sharing"))


def _cpu_s() -> float:
    """CPU seconds of this process and of its children that have exited (the cluster, once closed)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _quiet() -> Console:
    return Console(file=open(os.devnull, "w"), width=120)


def _rows(rep):
    return [r.to_dict(with_provenance=False) for r in rep.records]


@pytest.mark.skipif(not dask_available(), reason="dask[distributed] is not installed (pip install 'hwsim[dist]')")
@pytest.mark.benchmark(group="sweep")
def test_sweep_two_workers_vs_serial(benchmark, tmp_path):
    full = not benchmark.disabled
    grid = _grid(FLOWS, 64) if full else _grid(SMOKE_FLOWS, 4)
    runs = iter(range(1000))

    def parallel():
        return run_sweep(grid, tmp_path / f"dask-{next(runs)}", DaskBackend(workers=WORKERS), _quiet(), progress=False)

    cpu_before = _cpu_s()
    rep = benchmark.pedantic(parallel, rounds=1, iterations=1)
    parallel_cpu_s = _cpu_s() - cpu_before  # this process (client, scheduler) plus the exited cluster processes
    started, cpu_before = time.perf_counter(), _cpu_s()
    serial = run_sweep(grid, tmp_path / "serial", SerialBackend(), _quiet(), progress=False)
    serial_s, serial_cpu_s = time.perf_counter() - started, _cpu_s() - cpu_before
    assert len(grid.cases) == (64 if full else 4)
    assert not rep.failed and _rows(rep) == _rows(serial)
    if full:
        parallel_s = benchmark.stats.stats.median
        benchmark.extra_info.update(cases=len(grid.cases), workers=WORKERS, flows_per_case=FLOWS,
                                    serial_s=serial_s, parallel_s=parallel_s, speedup=serial_s / parallel_s,
                                    serial_case_s=serial.case_s, parallel_case_s=rep.case_s,
                                    serial_case_cpu_s=serial.case_cpu_s, parallel_case_cpu_s=rep.case_cpu_s,
                                    serial_total_cpu_s=serial_cpu_s, parallel_total_cpu_s=parallel_cpu_s,
                                    cpu_count=os.cpu_count(), load_average=os.getloadavg()[0])
        print(f"\nsweep of {len(grid.cases)} cases: serial {serial_s:.1f} s, {WORKERS} Dask workers {parallel_s:.1f} s, "
              f"speed-up {serial_s / parallel_s:.2f}x; sum of case times serial {serial.case_s:.1f} s, "
              f"on the workers {rep.case_s:.1f} s; case CPU time serial {serial.case_cpu_s:.1f} s, "
              f"workers {rep.case_cpu_s:.1f} s; all CPU serial {serial_cpu_s:.1f} s, Dask run {parallel_cpu_s:.1f} s "
              f"(load average {os.getloadavg()[0]:.2f})")
