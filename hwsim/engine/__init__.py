"""The event engine on SimPy: shared bandwidth, compute units and a tracer in one simulation."""

from __future__ import annotations

from collections.abc import Generator

import simpy

from hwsim.engine.bandwidth import Allocator, Flow, SharedBandwidth, max_min_fair
from hwsim.engine.channel import FifoChannel
from hwsim.engine.compute import ComputeUnits
from hwsim.engine.trace import Span, Tracer


class CountingEnvironment(simpy.Environment):
    """A SimPy environment that counts processed events, for pinning event counts in tests."""

    def __init__(self, initial_time: float = 0) -> None:
        super().__init__(initial_time)
        self.events_processed = 0

    def step(self) -> None:
        super().step()
        self.events_processed += 1


class Simulation:
    """One simulated run: an environment, an optional tracer, and factories for resources on it."""

    def __init__(self, *, trace: bool = False, env: simpy.Environment | None = None, tracer: Tracer | None = None):
        """``tracer`` shares one trace across simulations (a suite's ``ctx.tracer``); ``trace`` makes a new one."""
        self.env = env if env is not None else simpy.Environment()
        self.tracer: Tracer | None = tracer if tracer is not None else (Tracer() if trace else None)

    @property
    def now_s(self) -> float:
        return float(self.env.now)

    def bandwidth(self, capacity_bytes_per_s: float, name: str, allocator: Allocator = max_min_fair) -> SharedBandwidth:
        return SharedBandwidth(self.env, capacity_bytes_per_s, name, self.tracer, allocator)

    def fifo_channel(self, capacity_bytes_per_s: float, name: str) -> FifoChannel:
        """A channel serving transfers one at a time in issue order, O(1) per transfer."""
        return FifoChannel(self.env, capacity_bytes_per_s, name, self.tracer)

    def compute(self, count: int, name: str) -> ComputeUnits:
        return ComputeUnits(self.env, count, name, self.tracer)

    def process(self, generator: Generator[simpy.events.Event, object, object]) -> simpy.Process:
        return self.env.process(generator)

    def timed(self, track: str, label: str, duration_s: float) -> simpy.Process:
        """A plain delay that also appears in the trace (a pipeline stage with a fixed latency)."""
        def stage() -> Generator[simpy.events.Event, object, None]:
            start = self.env.now
            yield self.env.timeout(duration_s)
            if self.tracer is not None:
                self.tracer.span(track, label, start, self.env.now, "stage")
        return self.env.process(stage())

    def run(self, until: float | simpy.events.Event | None = None) -> float:
        self.env.run(until=until)
        return self.now_s


__all__ = [
    "Allocator",
    "ComputeUnits",
    "CountingEnvironment",
    "FifoChannel",
    "Flow",
    "SharedBandwidth",
    "Simulation",
    "Span",
    "Tracer",
    "max_min_fair",
]
