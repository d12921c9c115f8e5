"""Engine throughput: hwsim's flow and pipeline workloads against bare SimPy, per event.

Run with ``pytest tests/benchmarks/test_engine_bench.py --benchmark-enable --benchmark-autosave
--benchmark-storage=results/benchmarks/engine``. The ``*_vs_simpy`` benchmarks time hwsim and bare
SimPy alternately (interleaved, so load on a shared machine hits both alike) and store the
per-event ratio, the event counts and ``os.getloadavg()`` in ``extra_info``; the target (issue 17)
is a ratio <= 1.2. With ``--benchmark-disable`` (CI) each runs once and only its counts are checked.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable, Generator

import pytest
import simpy

from hwsim.engine import CountingEnvironment, Simulation

STREAMS = 8          # concurrent flows on one link at any time
TRANSFERS = 2_000    # transfers per stream
STAGES = 4           # pipeline stages, each a pool of compute units
UNITS = 2            # units per stage
WORKERS = 8          # items in flight
ITEMS = 1_000        # items per worker


def flow_heavy() -> int:
    """STREAMS processes, each issuing back-to-back transfers of random size on one shared link."""
    sim = Simulation(env=CountingEnvironment())
    link = sim.bandwidth(1e9, "hbm")
    rng = random.Random(7)

    def stream() -> Generator[simpy.Event, object, None]:
        for _ in range(TRANSFERS):
            yield link.transfer(rng.uniform(1e3, 1e6))

    for _ in range(STREAMS):
        sim.process(stream())
    sim.run()
    return sim.env.events_processed


def pipeline() -> int:
    """WORKERS processes each push ITEMS through STAGES stages of UNITS compute units (queueing when busy)."""
    sim = Simulation(env=CountingEnvironment())
    stages = [sim.compute(UNITS, f"stage{s}") for s in range(STAGES)]
    rng = random.Random(11)

    def worker() -> Generator[simpy.Event, object, None]:
        for _ in range(ITEMS):
            for stage in stages:
                yield stage.run(1, rng.uniform(1e-6, 1e-5))

    for _ in range(WORKERS):
        sim.process(worker())
    sim.run()
    return sim.env.events_processed


def bare_simpy(events: int, processes: int) -> int:
    """About ``events`` events from ``processes`` processes of plain timeouts: what SimPy itself costs."""
    env = CountingEnvironment()
    rng = random.Random(7)
    per_process = events // processes

    def proc() -> Generator[simpy.Event, object, None]:
        for _ in range(per_process - 1):
            yield env.timeout(rng.uniform(1e-6, 1e-3))

    for _ in range(processes):
        env.process(proc())
    env.run()
    return env.events_processed


FLOW_EVENTS = flow_heavy()
PIPELINE_EVENTS = pipeline()


def _per_event_ratio(workload: Callable[[], int], events: int, processes: int, rounds: int) -> dict[str, float]:
    """Median over interleaved rounds of (hwsim s/event) / (bare SimPy s/event)."""
    ratios = []
    hwsim_s = []
    simpy_s = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        n_hw = workload()
        t1 = time.perf_counter()
        n_sp = bare_simpy(events, processes)
        t2 = time.perf_counter()
        hwsim_s.append(t1 - t0)
        simpy_s.append(t2 - t1)
        ratios.append(((t1 - t0) / n_hw) / ((t2 - t1) / n_sp))
    return {"ratio_per_event": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "hwsim_median_s": statistics.median(hwsim_s), "simpy_median_s": statistics.median(simpy_s),
            "events": events, "rounds": rounds}


@pytest.mark.benchmark(group="engine")
@pytest.mark.parametrize("name", ["flow", "pipeline"])
def test_engine_vs_simpy_per_event(benchmark, name):
    workload, events, processes = {"flow": (flow_heavy, FLOW_EVENTS, STREAMS),
                                   "pipeline": (pipeline, PIPELINE_EVENTS, WORKERS)}[name]
    rounds = 7 if benchmark.enabled else 1
    info = benchmark.pedantic(_per_event_ratio, args=(workload, events, processes, rounds), rounds=1, iterations=1)
    assert info["ratio_per_event"] > 0
    benchmark.extra_info.update(info)
    benchmark.extra_info["loadavg"] = os.getloadavg()


def test_event_counts_are_what_the_engine_needs():
    # flows: one timer per transfer plus its completion (48013 before timers were re-armed once per
    # instant); pipeline: one timeout per hold, plus a completion event for a hold that queued
    assert FLOW_EVENTS == 32019
    holds = STAGES * WORKERS * ITEMS
    assert holds <= PIPELINE_EVENTS < 2 * holds


@pytest.mark.benchmark(group="engine")
def test_flow_heavy_events_per_second(benchmark):
    events = benchmark.pedantic(flow_heavy, rounds=5, iterations=1)
    assert events == FLOW_EVENTS
    if benchmark.stats:
        benchmark.extra_info["events"] = events
        benchmark.extra_info["events_per_s"] = events / benchmark.stats.stats.median
        benchmark.extra_info["loadavg"] = os.getloadavg()


@pytest.mark.benchmark(group="engine")
def test_bare_simpy_events_per_second(benchmark):
    events = benchmark.pedantic(bare_simpy, args=(FLOW_EVENTS, STREAMS), rounds=5, iterations=1)
    assert abs(events - FLOW_EVENTS) <= STREAMS * 2
    if benchmark.stats:
        benchmark.extra_info["events"] = events
        benchmark.extra_info["events_per_s"] = events / benchmark.stats.stats.median
        benchmark.extra_info["loadavg"] = os.getloadavg()
