"""Compute units as a counted resource: a kernel takes some units for some time.

A GEMM wave takes every free unit; a software collective takes a few and leaves the GEMM
fewer. Counting units (rather than one opaque busy flag) is what lets contention for them show.
"""

from __future__ import annotations

from typing import Generator

import simpy

from hwsim.engine.trace import Lanes, Tracer


class ComputeUnits:
    """``count`` identical units; ``run`` holds ``units`` of them for ``duration_s``."""

    def __init__(self, env: simpy.Environment, count: int, name: str = "compute", tracer: Tracer | None = None):
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"{name}: count must be a positive integer, got {count!r}")
        self.env = env
        self.count = count
        self.name = name
        self.tracer = tracer
        self._pool = simpy.Container(env, capacity=count, init=count)
        self._lanes = Lanes()
        self.busy_unit_s = 0.0

    @property
    def free(self) -> int:
        return int(self._pool.level)

    def acquire(self, units: int) -> simpy.events.Event:
        self._check(units)
        return self._pool.get(units)

    def release(self, units: int) -> simpy.events.Event:
        self._check(units)
        return self._pool.put(units)

    def run(self, units: int, duration_s: float, label: str = "kernel") -> simpy.Process:
        """Start a process that waits for ``units``, holds them ``duration_s``, then frees them."""
        self._check(units)
        if not duration_s >= 0:
            raise ValueError(f"{self.name}: duration_s must be non-negative, got {duration_s!r}")
        return self.env.process(self._hold(units, duration_s, label))

    def _hold(self, units: int, duration_s: float, label: str) -> Generator[simpy.events.Event, object, float]:
        yield self._pool.get(units)
        start = self.env.now
        lane = self._lanes.take() if self.tracer is not None else -1
        yield self.env.timeout(duration_s)
        self.busy_unit_s += units * duration_s
        if self.tracer is not None:
            self.tracer.span(f"{self.name}[{lane}]", label, start, self.env.now, "compute", units=units)
            self._lanes.give(lane)
        yield self._pool.put(units)
        return start

    def _check(self, units: int) -> None:
        if isinstance(units, bool) or not isinstance(units, int) or not 1 <= units <= self.count:
            raise ValueError(f"{self.name}: units must be an integer in [1, {self.count}], got {units!r}")
