"""The engine's hot paths (issue 17) are shortcuts, not new models: each gives bit for bit what the
general path it bypasses gives, and the objects it saves are really saved."""

from __future__ import annotations

from collections.abc import Generator

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.engine import CountingEnvironment, SharedBandwidth, Simulation, max_min_fair

# (start in tenths of a second, then the sizes a process issues back to back): starts collide often, so
# completions and arrivals share instants, which is where the settle and its known least are used
_streams = st.lists(st.tuples(st.integers(0, 6), st.lists(st.integers(1, 400), min_size=1, max_size=5)),
                    min_size=1, max_size=9)


def _run(streams, allocator, trace=False):
    env = CountingEnvironment()
    sim = Simulation(env=env, trace=trace)
    link = SharedBandwidth(env, 100.0, "link", sim.tracer, allocator)
    seen: list[tuple[int, int, float, object]] = []

    def stream(i: int, start: float, sizes: list[int]) -> Generator[simpy.Event, object, None]:
        yield env.timeout(start)
        for k, size in enumerate(sizes):
            took = yield link.transfer(float(size))
            seen.append((i, k, env.now, took))

    for i, (start, sizes) in enumerate(streams):
        env.process(stream(i, start / 10, sizes))
    env.run()
    return seen, link.bytes_moved, link.busy_s, link.transfers_done, env.events_processed


@settings(max_examples=120, deadline=None)
@given(_streams)
def test_common_path_equals_the_general_one_bit_for_bit(streams):
    """Uncapped weight-1 flows under max_min_fair take the common path (one rate for all, the least
    found in the completion pass, the settle inlined); a wrapped max_min_fair (not `is`) and a tracer
    each force the general one. Finish times, values and counters must be the same floats."""
    common = _run(streams, max_min_fair)
    assert common == _run(streams, lambda capacity, flows: max_min_fair(capacity, flows))
    assert common == _run(streams, max_min_fair, trace=True)


class _TimerKeepingEnvironment(CountingEnvironment):
    """Keeps every timeout it processes alive, so that distinct objects have distinct ids."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[simpy.Timeout] = []

    def step(self) -> None:
        queue = self._queue  # type: ignore[attr-defined]
        if queue and isinstance(queue[0][3], simpy.Timeout):
            self.timeouts.append(queue[0][3])
        super().step()


def test_a_fired_timer_is_armed_again():
    env = _TimerKeepingEnvironment()
    link = Simulation(env=env).bandwidth(100.0, "link")

    def stream() -> Generator[simpy.Event, object, None]:
        for size in range(1, 101):
            yield link.transfer(float(size))

    env.process(stream())
    env.run()
    assert len(env.timeouts) == 100                        # one timer firing per transfer...
    assert len({id(t) for t in env.timeouts}) == 1         # ...all of them the same object


def test_one_unit_shortcut_still_rejects_a_bool():
    cus = Simulation().compute(2, "cu")
    assert cus.run(1, 1.0) is not None
    with pytest.raises(ValueError, match="units must be an integer"):
        cus.run(True, 1.0)
