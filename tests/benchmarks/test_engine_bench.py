"""Engine throughput: events per second of a flow-heavy scenario against bare SimPy.

Run with ``pytest tests/benchmarks --benchmark-enable``; each benchmark stores its events/s in
``extra_info`` so the JSON that pytest-benchmark writes carries the comparison.
"""

from __future__ import annotations

import random

import pytest

from hwsim.engine import CountingEnvironment, Simulation

STREAMS = 8          # concurrent flows on one link at any time
TRANSFERS = 2_000    # transfers per stream


def flow_heavy() -> int:
    """STREAMS processes, each issuing back-to-back transfers of random size on one shared link."""
    sim = Simulation(env=CountingEnvironment())
    link = sim.bandwidth(1e9, "hbm")
    rng = random.Random(7)

    def stream():
        for _ in range(TRANSFERS):
            yield link.transfer(rng.uniform(1e3, 1e6))

    for _ in range(STREAMS):
        sim.process(stream())
    sim.run()
    return sim.env.events_processed


EVENTS = flow_heavy()


def bare_simpy() -> int:
    """The same number of events with plain timeouts: what SimPy itself costs."""
    env = CountingEnvironment()
    rng = random.Random(7)
    per_stream = EVENTS // STREAMS

    def stream():
        for _ in range(per_stream - 1):
            yield env.timeout(rng.uniform(1e-6, 1e-3))

    for _ in range(STREAMS):
        env.process(stream())
    env.run()
    return env.events_processed


@pytest.mark.benchmark(group="engine")
def test_flow_heavy_events_per_second(benchmark):
    events = benchmark.pedantic(flow_heavy, rounds=5, iterations=1)
    assert events == EVENTS
    if benchmark.stats:
        benchmark.extra_info["events"] = events
        benchmark.extra_info["events_per_s"] = events / benchmark.stats.stats.median


@pytest.mark.benchmark(group="engine")
def test_bare_simpy_events_per_second(benchmark):
    events = benchmark.pedantic(bare_simpy, rounds=5, iterations=1)
    assert abs(events - EVENTS) <= STREAMS * 2
    if benchmark.stats:
        benchmark.extra_info["events"] = events
        benchmark.extra_info["events_per_s"] = events / benchmark.stats.stats.median
