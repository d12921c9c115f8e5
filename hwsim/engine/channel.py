"""A channel that serves transfers one at a time in the order they were issued, in O(1) per transfer.

This is what a ``SharedBandwidth`` with an in-order allocator (the oldest transfer gets the whole
capacity, the others wait) computes, without re-running an allocation over every queued transfer
at every event: in first-in-first-out order a transfer's finish time is known the moment it is
issued, ``max(now, when the channel frees) + bytes / capacity``. So ``transfer`` returns a single
SimPy timeout that fires then, and the channel keeps two numbers instead of a queue.
"""

from __future__ import annotations

import math
from collections import deque

import simpy

from hwsim.engine.bandwidth import check_capacity
from hwsim.engine.trace import Tracer


class FifoChannel:
    """``capacity_bytes_per_s`` served to one transfer at a time, oldest first (e.g. a DRAM channel
    whose controller serves row reads in issue order). Same ``transfer`` call, counters and trace
    spans as :class:`~hwsim.engine.bandwidth.SharedBandwidth`; one event per transfer."""

    def __init__(self, env: simpy.Environment, capacity_bytes_per_s: float, name: str = "channel",
                 tracer: Tracer | None = None):
        check_capacity(name, capacity_bytes_per_s)
        self.env = env
        self.capacity_bytes_per_s = float(capacity_bytes_per_s)
        self.name = name
        self.tracer = tracer
        self._free_at_s = float(env.now)   # when the last issued transfer leaves the channel
        self._issued_bytes = 0.0
        self._issued_busy_s = 0.0
        self._ends: deque[float] = deque()  # finish times of issued transfers not yet counted done
        self._done = 0

    def transfer(self, nbytes: float, *, label: str = "transfer") -> simpy.Event:
        """An event that fires, with the time since issue as its value, when the last byte has left."""
        delay = self.reserve(nbytes, label=label)
        if nbytes == 0:
            return self.env.event().succeed(0.0)
        return self.env.timeout(delay, value=delay)

    def reserve(self, nbytes: float, *, label: str = "transfer") -> float:
        """Book a transfer without an event of its own; return the seconds from now until its last byte leaves.

        For a caller that waits on several channels at once (a fetch striped over DRAM channels):
        one ``env.timeout(max(delays))`` then replaces one event per channel plus a condition, and
        fires at the very instant the last of them would have.
        """
        if not nbytes >= 0 or math.isinf(nbytes):
            raise ValueError(f"{self.name}: transfer size must be a non-negative finite number of bytes, "
                             f"got {nbytes!r}")
        now = self.env.now
        if nbytes == 0:
            return 0.0
        start = self._free_at_s if self._free_at_s > now else now  # noqa: FURB136 (hot path)
        service = float(nbytes) / self.capacity_bytes_per_s
        end = start + service
        self._free_at_s = end
        self._issued_bytes += float(nbytes)
        self._issued_busy_s += service
        delay = end - now
        # the time SimPy fires a timeout of `delay` (may differ from `end` in the last bit)
        self._ends.append(now + delay)
        if self.tracer is not None:  # serial service: one row of the trace holds every transfer
            self.tracer.span(f"{self.name}[0]", label, start, end, "transfer", bytes=float(nbytes))
        return delay

    @property
    def queued_s(self) -> float:
        """Service time already issued but not yet delivered."""
        left = self._free_at_s - self.env.now
        return left if left > 0 else 0.0

    @property
    def busy_s(self) -> float:
        """Simulated time so far with a transfer in service."""
        return self._issued_busy_s - self.queued_s

    @property
    def bytes_moved(self) -> float:
        """Bytes delivered so far (the transfer in service counts the part it has sent)."""
        return self._issued_bytes - self.queued_s * self.capacity_bytes_per_s

    @property
    def transfers_done(self) -> int:
        now = self.env.now
        while self._ends and self._ends[0] <= now:
            self._ends.popleft()
            self._done += 1
        return self._done

    @property
    def utilisation(self) -> float:
        """Fraction of elapsed simulated time with a transfer in service."""
        return self.busy_s / self.env.now if self.env.now > 0 else 0.0
