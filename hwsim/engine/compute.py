"""Compute units as a counted resource: a kernel takes some units for some time.

A GEMM wave takes every free unit; a software collective takes a few and leaves the GEMM
fewer. Counting units (rather than one opaque busy flag) is what lets contention for them show.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from heapq import heappush

import simpy
from simpy.events import NORMAL, Event, Timeout

from hwsim.engine.bandwidth import event_queue
from hwsim.engine.trace import Lanes, Tracer

_ONE = 1   # CPython keeps one int 1, so `units is _ONE` is a one-instruction test for the common request


class _Hold(Timeout):
    """The timeout of one hold, carrying what its end needs (rather than a closure per hold).
    The class attributes are the common case, so a one-unit hold without a tracer sets nothing extra."""

    units = 1
    done: simpy.Event | None = None   # the event handed out when the hold had to queue
    lane = -1
    label = ""

    def __init__(self, env: simpy.Environment, delay: float, start: float,
                 finish: Callable[[_Hold], None]):
        # Timeout.__init__ with the end of the hold as its first callback, inlined as SimPy does it;
        # the caller schedules it
        self.env = env
        self.callbacks = [finish]
        self._value = start
        self._delay = delay
        self._ok = True


class ComputeUnits:
    """``count`` identical units; ``run`` holds ``units`` of them for ``duration_s``.

    Requests are granted strictly first come, first served (a request that does not fit blocks
    those behind it, as a SimPy ``Container`` would). No process per hold: a hold that starts at
    once is one timeout event, a queued one a timeout plus its completion event.
    """

    __slots__ = ("env", "count", "name", "tracer", "_free", "_waiting", "_lanes", "busy_unit_s", "_finish_cb",
                 "_queue", "_eid")

    def __init__(self, env: simpy.Environment, count: int, name: str = "compute", tracer: Tracer | None = None):
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"{name}: count must be a positive integer, got {count!r}")
        self.env = env
        self.count = count
        self.name = name
        self.tracer = tracer
        self._free = count
        # waiting requests, oldest first: (units, duration_s or None for a bare acquire, label, event)
        self._waiting: deque[tuple[int, float | None, str, simpy.Event]] = deque()
        self._lanes = Lanes()
        self.busy_unit_s = 0.0
        self._finish_cb = self._finish   # bound once, not per hold
        self._queue, self._eid = event_queue(env)

    @property
    def free(self) -> int:
        return self._free

    def acquire(self, units: int) -> simpy.events.Event:
        """An event that fires when ``units`` are granted; give them back with :meth:`release`."""
        self._check(units)
        event = self.env.event()
        if not self._waiting and self._free >= units:
            self._free -= units
            return event.succeed(units)
        self._waiting.append((units, None, "", event))
        return event

    def release(self, units: int) -> simpy.events.Event:
        self._check(units)
        if self._free + units > self.count:
            raise ValueError(f"{self.name}: releasing {units} units would exceed the {self.count} that exist")
        self._free += units
        self._grant()
        return self.env.event().succeed(units)

    def run(self, units: int, duration_s: float, label: str = "kernel") -> simpy.Event:
        """An event that fires when ``units`` have been held ``duration_s``; its value is when the hold began."""
        if units is not _ONE:   # (one unit, the common case, is always valid; the test is only a shortcut)
            self._check(units)
        if not duration_s >= 0:
            raise ValueError(f"{self.name}: duration_s must be non-negative, got {duration_s!r}")
        if not self._waiting and self._free >= units:  # _start(units, duration_s, label, None), inlined
            self._free -= units
            env = self.env
            now = env._now
            hold = _Hold(env, duration_s, now, self._finish_cb)
            queue = self._queue
            if queue is not None:
                heappush(queue, (now + duration_s, NORMAL, next(self._eid), hold))
            else:
                env.schedule(hold, NORMAL, duration_s)
            if units != 1:
                hold.units = units
            if self.tracer is not None:
                hold.lane = self._lanes.take()
                hold.label = label
            return hold
        done = Event(self.env)
        self._waiting.append((units, duration_s, label, done))
        return done

    def _start(self, units: int, duration_s: float, label: str, done: simpy.Event | None) -> simpy.Event:
        self._free -= units
        env = self.env
        # its end (_finish) runs before the waiters' callbacks, so a waiter that asks again finds the units free
        now = env._now
        hold = _Hold(env, duration_s, now, self._finish_cb)
        queue = self._queue
        if queue is not None:
            heappush(queue, (now + duration_s, NORMAL, next(self._eid), hold))
        else:
            env.schedule(hold, NORMAL, duration_s)
        if units != 1:
            hold.units = units
        if done is not None:
            hold.done = done
        if self.tracer is not None:
            hold.lane = self._lanes.take()
            hold.label = label
        return hold

    def _finish(self, hold: _Hold) -> None:
        units = hold.units
        self.busy_unit_s += units * hold._delay
        if self.tracer is not None:
            self.tracer.span(f"{self.name}[{hold.lane}]", hold.label, hold._value, self.env._now, "compute",
                             units=units)
            self._lanes.give(hold.lane)
        self._free += units
        done = hold.done
        if done is not None:   # done.succeed(start), inlined: the event is ours and still pending
            done._ok = True
            done._value = hold._value
            queue = self._queue
            if queue is not None:
                heappush(queue, (self.env._now, NORMAL, next(self._eid), done))
            else:
                self.env.schedule(done)
        waiting = self._waiting
        while waiting and waiting[0][0] <= self._free:   # _grant(), inlined
            units, duration_s, label, event = waiting.popleft()
            if duration_s is None:
                self._free -= units
                event.succeed(units)
            else:
                self._start(units, duration_s, label, event)

    def _grant(self) -> None:
        waiting = self._waiting
        while waiting and waiting[0][0] <= self._free:
            units, duration_s, label, event = waiting.popleft()
            if duration_s is None:
                self._free -= units
                event.succeed(units)
            else:
                self._start(units, duration_s, label, event)

    def _check(self, units: int) -> None:
        if isinstance(units, bool) or not isinstance(units, int) or not 1 <= units <= self.count:
            raise ValueError(f"{self.name}: units must be an integer in [1, {self.count}], got {units!r}")
