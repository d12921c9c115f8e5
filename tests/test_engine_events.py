"""The engine schedules only the events it needs: pinned timer counts, the O(1) FIFO channel and
compute units without a process per hold, each checked against the slower construction it replaces."""

from __future__ import annotations

import random
from collections.abc import Generator, Sequence

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.engine import CountingEnvironment, FifoChannel, Flow, Simulation


class TimerCountingEnvironment(CountingEnvironment):
    """Also counts the timeouts processed (a superseded completion timer is one that fired for nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts_processed = 0

    def step(self) -> None:
        queue = self._queue  # type: ignore[attr-defined]
        if queue and isinstance(queue[0][3], simpy.Timeout):
            self.timeouts_processed += 1
        super().step()


def _back_to_back(streams: int, transfers: int) -> tuple[TimerCountingEnvironment, int]:
    env = TimerCountingEnvironment()
    sim = Simulation(env=env)
    link = sim.bandwidth(1e9, "hbm")
    rng = random.Random(7)

    def stream() -> Generator[simpy.Event, object, None]:
        for _ in range(transfers):
            yield link.transfer(rng.uniform(1e3, 1e6))

    for _ in range(streams):
        sim.process(stream())
    sim.run()
    return env, link.transfers_done


def test_back_to_back_transfers_need_one_timer_each():
    # Before: every completion re-armed a timer that the waiter's next transfer made stale at once,
    # ~2 timer firings per transfer (31997 for these 16000). Now the rates are recomputed once per
    # instant, after the waiters have issued: one timer per transfer (+3 where ties coincide).
    env, done = _back_to_back(8, 2000)
    assert done == 16000
    assert env.timeouts_processed == 16003
    assert env.events_processed == 32019  # was 48013


def test_a_burst_of_arrivals_arms_one_timer():
    env = TimerCountingEnvironment()
    sim = Simulation(env=env)
    link = sim.bandwidth(100.0, "link")
    finish: dict[int, float] = {}

    def flow(i: int) -> Generator[simpy.Event, object, None]:
        yield link.transfer(100.0 * (i + 1))
        finish[i] = env.now

    for i in range(10):  # ten processes issue at t=0: the shared rate changes nine times in one instant
        sim.process(flow(i))
    sim.run()
    # processor sharing: flow i (size 100(i+1)) ends when the i+1 smallest have drained
    expected = {i: sum(min(100.0 * (j + 1), 100.0 * (i + 1)) for j in range(10)) / 100.0 for i in range(10)}
    assert finish == pytest.approx(expected)
    # one timer armed at t=0 and woken early once (its deadline moved), then one per completion
    assert env.timeouts_processed == 11


def _in_order(capacity_bytes_per_s: float, flows: Sequence[Flow]) -> None:
    for i, f in enumerate(flows):
        f.rate_bytes_per_s = capacity_bytes_per_s if i == 0 else 0.0


def _channel_run(make, requests: list[tuple[int, int]]) -> tuple[dict[int, float], object, CountingEnvironment]:
    env = CountingEnvironment()
    sim = Simulation(env=env, trace=True)
    channel = make(sim)
    finish: dict[int, float] = {}

    def request(i: int, start: float, size: float) -> Generator[simpy.Event, object, None]:
        yield env.timeout(start)
        took = yield channel.transfer(size, label=f"r{i}")
        finish[i] = env.now
        assert took == pytest.approx(env.now - start)

    for i, (start, size) in enumerate(requests):
        sim.process(request(i, start / 10, float(size)))
    sim.run()
    return finish, channel, env


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 400)), min_size=1, max_size=12))
def test_fifo_channel_equals_in_order_shared_bandwidth(requests):
    fifo_finish, fifo, fifo_env = _channel_run(lambda sim: sim.fifo_channel(50.0, "ch"), requests)
    ref_finish, ref, ref_env = _channel_run(lambda sim: sim.bandwidth(50.0, "ch", allocator=_in_order), requests)
    assert fifo_finish == pytest.approx(ref_finish, rel=1e-12, abs=1e-12)
    assert fifo.bytes_moved == pytest.approx(ref.bytes_moved) == pytest.approx(sum(s for _, s in requests))
    assert fifo.busy_s == pytest.approx(ref.busy_s, abs=1e-12)
    assert fifo.transfers_done == ref.transfers_done
    assert fifo_env.events_processed <= ref_env.events_processed


def test_fifo_channel_is_one_event_per_transfer_and_counts_progress():
    env = CountingEnvironment()
    channel = FifoChannel(env, 10.0, "ch")
    events = [channel.transfer(100.0) for _ in range(50)]  # 10 s each, issued at once
    env.run(until=25.0)
    assert channel.transfers_done == 2
    assert channel.bytes_moved == pytest.approx(250.0)  # the third is half sent
    assert channel.busy_s == pytest.approx(25.0)
    env.run()
    assert env.events_processed == 50 + 1  # one timeout per transfer, plus the `until` stop event
    assert [e.value for e in events[:3]] == [10.0, 20.0, 30.0]
    assert channel.utilisation == pytest.approx(1.0)
    with pytest.raises(ValueError, match="ch: transfer size"):
        channel.transfer(-1.0)


class _ProcessPerHold:
    """The construction ComputeUnits replaced: a Container and a process per hold."""

    def __init__(self, env: simpy.Environment, count: int) -> None:
        self.env = env
        self.pool = simpy.Container(env, capacity=count, init=count)

    def run(self, units: int, duration_s: float) -> simpy.Process:
        def hold() -> Generator[simpy.Event, object, float]:
            yield self.pool.get(units)
            start = self.env.now
            yield self.env.timeout(duration_s)
            yield self.pool.put(units)
            return start
        return self.env.process(hold())


def _compute_run(make, jobs: list[tuple[int, int, int]]) -> tuple[list[tuple[float, float]], CountingEnvironment]:
    env = CountingEnvironment()
    units = make(env)
    out: list[tuple[float, float]] = [(0.0, 0.0)] * len(jobs)

    def job(i: int, at: int, need: int, dur: int) -> Generator[simpy.Event, object, None]:
        yield env.timeout(at)
        start = yield units.run(need, float(dur))
        out[i] = (float(start), env.now)  # type: ignore[arg-type]

    for i, (at, need, dur) in enumerate(jobs):
        env.process(job(i, at, need, dur))
    env.run()
    return out, env


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(1, 4), st.integers(0, 5)), min_size=1, max_size=12))
def test_compute_units_grant_as_the_container_did(jobs):
    from hwsim.engine import ComputeUnits

    got, env = _compute_run(lambda env: ComputeUnits(env, 4, "cu"), jobs)
    ref, ref_env = _compute_run(lambda env: _ProcessPerHold(env, 4), jobs)
    assert got == ref
    assert env.events_processed < ref_env.events_processed


def test_a_hold_that_starts_at_once_is_one_event():
    sim = Simulation(env=CountingEnvironment())
    cus = sim.compute(8, "cu")
    holds = [cus.run(2, 1.0) for _ in range(4)]  # all fit
    sim.run()
    assert sim.env.events_processed == 4  # was 5 per hold: process start, get, timeout, put, process end
    assert all(h.value == 0.0 for h in holds)
    assert cus.free == 8 and cus.busy_unit_s == pytest.approx(8.0)


def test_acquire_and_release_share_the_queue_with_holds():
    sim = Simulation()
    cus = sim.compute(4, "cu")
    got = cus.acquire(3)
    blocked = cus.run(2, 1.0)  # waits for the acquired units
    sim.run()
    assert got.triggered and not blocked.triggered and cus.free == 1
    cus.release(3)
    sim.run()
    assert blocked.value == 0.0 and cus.free == 4
    with pytest.raises(ValueError, match="exceed"):
        cus.release(1)


def test_reserving_on_several_channels_fires_once_when_the_last_would():
    # a fetch striped over channels: one timeout for the slowest equals waiting on every transfer
    def run(striped_once: bool) -> tuple[list[float], int]:
        env = CountingEnvironment()
        channels = [FifoChannel(env, 10.0 + c, f"ch{c}") for c in range(4)]
        ends: list[float] = []

        def fetcher(sizes: list[float]):
            for size in sizes:
                if striped_once:
                    yield env.timeout(max(ch.reserve(size * (c + 1)) for c, ch in enumerate(channels)))
                else:
                    yield env.all_of([ch.transfer(size * (c + 1)) for c, ch in enumerate(channels)])
                ends.append(env.now)

        rng = random.Random(3)
        for _ in range(3):
            env.process(fetcher([rng.uniform(1, 50) for _ in range(20)]))
        env.run()
        assert sum(ch.transfers_done for ch in channels) == 4 * 60
        return ends, env.events_processed

    once, once_events = run(True)
    each, each_events = run(False)
    assert once == each  # the same instants, bit for bit
    assert once_events < each_events / 4
