"""Bandwidth shared by concurrent flows: the engine's central primitive.

An HBM port read by a GEMM and a collective at once, a link carrying many all-to-all messages,
SpAtten's DRAM channels: in each, concurrent transfers split a fixed capacity. The split is
weighted max-min fair (water-filling), optionally with a per-flow cap, and is recomputed at every
arrival and departure, so every flow's finish time is always the exact one for the current mix.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from heapq import heappush
from itertools import count, repeat
from typing import Any

import simpy
from simpy.events import NORMAL, Event, Timeout

from hwsim.engine.trace import Lanes, Tracer

_INF = math.inf
DONE_FRACTION = 1e-9
"""A flow within this fraction of its size of the end is done: rounding, not data."""


class Flow:
    """One transfer in progress. Mutable on purpose: the resource updates it in place."""

    __slots__ = (
        "cap_bytes_per_s",
        "done",
        "done_below_bytes",
        "label",
        "lane",
        "rate_bytes_per_s",
        "remaining_bytes",
        "size_bytes",
        "start_s",
        "weight",
    )

    def __init__(self, size_bytes: float, weight: float, cap_bytes_per_s: float | None,
                 done: simpy.Event, label: str, start_s: float):
        self.size_bytes = size_bytes
        self.remaining_bytes = size_bytes
        self.done_below_bytes = DONE_FRACTION * size_bytes  # finished once no more than this is left
        self.weight = weight
        self.cap_bytes_per_s = cap_bytes_per_s
        self.rate_bytes_per_s = 0.0
        self.done = done
        self.label = label
        self.start_s = start_s
        self.lane = -1


class _Transfer(Flow, Event):
    """What ``transfer`` hands out: the flow and its completion event in one object (one allocation,
    one constructor, per transfer)."""

    def __init__(self, env: simpy.Environment, size_bytes: float, weight: float, cap_bytes_per_s: float | None,
                 label: str, start_s: float):
        self.env = env   # Event.__init__, inlined
        self.callbacks = []
        self.size_bytes = size_bytes
        self.remaining_bytes = size_bytes
        self.done_below_bytes = DONE_FRACTION * size_bytes
        self.weight = weight
        self.cap_bytes_per_s = cap_bytes_per_s
        self.rate_bytes_per_s = 0.0
        self.label = label
        self.start_s = start_s
        self.lane = -1

    @property
    def done(self) -> simpy.Event:  # type: ignore[override]
        return self


_new_transfer = _Transfer.__new__


class _Timer(Timeout):
    """A resource's completion timer: a plain timeout whose callback list is given at creation
    (``Timeout.__init__`` inlined, as SimPy does it). The caller schedules it (see ``SharedBandwidth._arm``)."""

    def __init__(self, env: simpy.Environment, delay: float, callbacks: list[Callable[[Any], None]]):
        self.env = env
        self.callbacks = callbacks
        self._value = None
        self._delay = delay
        self._ok = True


Allocator = Callable[[float, Sequence[Flow]], None]
"""Sets ``rate_bytes_per_s`` of every flow given the capacity; swap it to model arbitration."""


def event_queue(env: simpy.Environment) -> tuple[list[Any] | None, Iterator[int]]:
    """The environment's event queue and id counter, for inlining SimPy's ``Environment.schedule`` on a
    hot path (``heappush(queue, (at, priority, next(eid), event))``, exactly what it does); ``None`` for
    an environment that schedules in a way of its own, which then keeps being called."""
    queue, eid = getattr(env, "_queue", None), getattr(env, "_eid", None)
    if getattr(type(env), "schedule", None) is simpy.Environment.schedule and isinstance(queue, list) and eid is not None:
        return queue, eid
    return None, count()  # another SimPy layout, or an environment of its own: go through env.schedule


def check_capacity(name: str, capacity_bytes_per_s: float) -> None:
    """A resource's rate must be a positive, finite number of bytes per second."""
    if not capacity_bytes_per_s > 0 or math.isinf(capacity_bytes_per_s):
        raise ValueError(f"{name}: capacity_bytes_per_s must be positive and finite, got {capacity_bytes_per_s!r}")


def max_min_fair(capacity_bytes_per_s: float, flows: Sequence[Flow]) -> None:
    """Weighted water-filling: capped flows get their cap if it is below their fair share,
    the capacity they leave is shared by the others in proportion to weight."""
    if not flows:
        return
    if all(f.cap_bytes_per_s is None for f in flows):
        total_weight = sum(f.weight for f in flows)
        for f in flows:
            f.rate_bytes_per_s = capacity_bytes_per_s * f.weight / total_weight
        return
    order = sorted(flows, key=lambda f: math.inf if f.cap_bytes_per_s is None else f.cap_bytes_per_s / f.weight)
    left = capacity_bytes_per_s
    total_weight = sum(f.weight for f in flows)
    for index, f in enumerate(order):
        share = left * f.weight / total_weight
        if f.cap_bytes_per_s is not None and f.cap_bytes_per_s <= share:
            f.rate_bytes_per_s = f.cap_bytes_per_s
            left -= f.cap_bytes_per_s
            total_weight -= f.weight
            continue
        for rest in order[index:]:
            rest.rate_bytes_per_s = left * rest.weight / total_weight
        return


class SharedBandwidth:
    """A capacity in bytes/s shared by the flows currently crossing it.

    ``transfer`` returns an event that fires when the flow's last byte has crossed; a process
    waits on it with ``yield``. Zero-byte transfers complete at once.

    The hot path (every event of a busy link) is written for CPython: locals instead of repeated
    attribute loads, SimPy events built and triggered directly, and one rate for all flows while
    every flow is uncapped with weight 1 (the common case). The arithmetic is the same operations in
    the same order as the plain formulation, so finish times are bit for bit those of it.
    """

    _DONE_FRACTION = DONE_FRACTION
    # slots: the hot paths read and write a dozen of these per event
    __slots__ = ("env", "capacity_bytes_per_s", "name", "tracer", "allocator", "flows", "_done_bytes", "busy_s",
                 "transfers_done", "_updated_s", "_timer", "_pending", "_timer_at", "_due_s", "_settling",
                 "_total_weight", "_capped", "_weighted", "_uniform_rate", "_least", "_order", "_order_keys",
                 "_lanes", "_on_timer_cb", "_settle_cb", "_timer_callbacks", "_queue", "_eid")

    def __init__(self, env: simpy.Environment, capacity_bytes_per_s: float, name: str = "bandwidth",
                 tracer: Tracer | None = None, allocator: Allocator = max_min_fair):
        check_capacity(name, capacity_bytes_per_s)
        self.env = env
        self.capacity_bytes_per_s = float(capacity_bytes_per_s)
        self.name = name
        self.tracer = tracer
        self.allocator = allocator
        self.flows: list[_Transfer] = []
        self._done_bytes = 0.0   # the sizes of the finished transfers, summed as they finish
        self.busy_s = 0.0
        self.transfers_done = 0
        self._updated_s = env.now
        # The timer armed last, and whether it is still pending. One that has fired is armed again rather
        # than a new one built: SimPy is done with an event once its callbacks have run.
        self._timer: _Timer | None = None
        self._pending = False
        self._timer_at = _INF   # when the pending timer fires
        self._due_s = _INF      # when the next flow is actually due (>= _timer_at while a timer is pending)
        self._settling = False  # completions just fired: reschedule once their waiters have issued more
        self._total_weight = 0.0
        self._capped = 0
        self._weighted = 0      # active flows with a weight other than 1
        # The rate every active flow got at the last reschedule when it gave them all the same one
        # (max_min_fair, no caps, every weight 1), else None. While it is set, that rate is what each
        # flow moves at and the flows' own rate_bytes_per_s are not written.
        self._uniform_rate: float | None = None
        self._least: float | None = None   # while settling: the least remaining_bytes of any flow, if known
        # flows in max_min_fair's order (cap/weight ascending, uncapped last, ties by arrival), kept sorted
        # as flows come and go instead of sorted at every reschedule; only while some flow is capped
        self._order: list[Flow] = []
        self._order_keys: list[float] = []
        self._lanes = Lanes()
        self._on_timer_cb = self._on_timer   # bound once, not per timer
        self._settle_cb = self._settle
        # the callbacks of every timer of this resource: one list, never changed (SimPy only iterates it)
        self._timer_callbacks: list[Callable[[Any], None]] = [self._on_timer_cb]
        self._queue, self._eid = event_queue(env)

    def transfer(self, nbytes: float, *, weight: float = 1.0, cap_bytes_per_s: float | None = None,
                 label: str = "transfer") -> simpy.Event:
        env = self.env
        if cap_bytes_per_s is None and weight == 1.0 and 0.0 < nbytes < _INF and not self._capped \
                and self.tracer is None:  # noqa: PLR2004 (the common case, on its own)
            now = env._now
            if now != self._updated_s:  # (within one instant there is nothing to advance)
                self._advance()
            size = float(nbytes)
            flow = _new_transfer(_Transfer)   # _Transfer(env, size, 1.0, None, label, now), inlined
            flow.env = env
            flow.callbacks = []
            flow.size_bytes = flow.remaining_bytes = size
            flow.done_below_bytes = DONE_FRACTION * size
            flow.weight = 1.0
            flow.cap_bytes_per_s = None
            flow.rate_bytes_per_s = 0.0
            flow.label = label
            flow.start_s = now
            flow.lane = -1
            self.flows.append(flow)
            self._total_weight += 1.0
            if self._settling:
                least = self._least
                if least is not None and size < least:
                    self._least = size
            else:
                self._reschedule()
            return flow
        self._check_transfer(nbytes, weight, cap_bytes_per_s)
        if nbytes == 0:
            return env.event().succeed(0.0)
        now = env._now
        if now != self._updated_s:
            self._advance()
        flow = _Transfer(env, float(nbytes), float(weight), cap_bytes_per_s, label, now)
        self.flows.append(flow)
        self._total_weight += flow.weight
        if flow.weight != 1.0:  # noqa: PLR2004
            self._weighted += 1
        if cap_bytes_per_s is not None:
            self._capped += 1
        if self.tracer is not None:
            flow.lane = self._lanes.take()
        if self._capped and self.allocator is max_min_fair:
            if not self._order and len(self.flows) > 1:   # first capped flow: order the rest
                for f in self.flows[:-1]:
                    self._insert_ordered(f)
            self._insert_ordered(flow)
        if self._settling:
            # The pending settle recomputes once for every arrival of this instant (time cannot move on
            # before it runs, so no flow is advanced at a rate that is not yet set); off the common path,
            # it does so in full.
            self._least = None
        else:
            self._reschedule()
        return flow

    def _check_transfer(self, nbytes: float, weight: float, cap_bytes_per_s: float | None) -> None:
        if not nbytes >= 0 or math.isinf(nbytes):
            raise ValueError(f"{self.name}: transfer size must be a non-negative finite number of bytes, got {nbytes!r}")
        if not weight > 0:
            raise ValueError(f"{self.name}: weight must be positive, got {weight!r}")
        if cap_bytes_per_s is not None and not cap_bytes_per_s > 0:
            raise ValueError(f"{self.name}: cap_bytes_per_s must be positive, got {cap_bytes_per_s!r}")

    def _insert_ordered(self, flow: Flow) -> None:
        key = _INF if flow.cap_bytes_per_s is None else flow.cap_bytes_per_s / flow.weight
        i = bisect_right(self._order_keys, key)   # after equal keys: the stable sort's arrival order
        self._order_keys.insert(i, key)
        self._order.insert(i, flow)

    def _water_fill(self) -> float:
        """``max_min_fair`` over the kept order, bit for bit (same operations in the same order), and the
        soonest finish in the same pass."""
        left = self.capacity_bytes_per_s
        total_weight = sum(f.weight for f in self.flows)   # arrival order, as max_min_fair sums
        soonest = _INF
        order = self._order
        for index, f in enumerate(order):
            weight = f.weight
            cap = f.cap_bytes_per_s
            if cap is not None and cap <= left * weight / total_weight:
                f.rate_bytes_per_s = cap
                left -= cap
                total_weight -= weight
                t = f.remaining_bytes / cap
                if t < soonest:  # noqa: PLR1730 (hot loop)
                    soonest = t
                continue
            for rest in order[index:]:
                rest.rate_bytes_per_s = rate = left * rest.weight / total_weight
                if rate > 0:
                    t = rest.remaining_bytes / rate
                    if t < soonest:  # noqa: PLR1730 (hot loop)
                        soonest = t
            break
        return soonest

    @property
    def bytes_moved(self) -> float:
        """Bytes delivered so far: every finished transfer in full and what the active ones had sent at
        the last arrival or departure (computed when read rather than added up at every event)."""
        return self._done_bytes + sum(f.size_bytes - f.remaining_bytes for f in self.flows)

    @property
    def utilisation(self) -> float:
        """Fraction of elapsed simulated time with at least one flow active."""
        self._advance()
        return self.busy_s / self.env.now if self.env.now > 0 else 0.0

    def _advance(self) -> None:
        now = self.env._now
        elapsed = now - self._updated_s
        if elapsed > 0 and self.flows:
            self.busy_s += elapsed
            rate = self._uniform_rate
            if rate is not None:
                step = rate * elapsed   # what each flow's own rate times elapsed gives
                for f in self.flows:
                    f.remaining_bytes -= step
            else:
                for f in self.flows:
                    f.remaining_bytes -= f.rate_bytes_per_s * elapsed
        self._updated_s = now

    def _reschedule(self, least: float | None = None) -> None:
        """Recompute the rates and arm the completion timer; ``least``, when given, is the least
        ``remaining_bytes`` of any flow (the completion pass found it already)."""
        flows = self.flows
        if not flows:
            self._timer = None
            self._pending = False
            self._uniform_rate = None
            return
        self._uniform_rate = None
        if self._capped == 0 and self.allocator is max_min_fair:
            per_weight = self.capacity_bytes_per_s / self._total_weight  # fast path: pure weighted sharing
            if self._weighted == 0:
                # every weight is 1: one rate for all (per_weight * 1.0), and since rounding a division is
                # monotonic, the least remaining over it is exactly the least of the per-flow quotients
                if least is None:
                    least = _INF
                    for f in flows:
                        r = f.remaining_bytes
                        if r < least:  # noqa: PLR1730 (hot loop: a call to min costs more)
                            least = r
                soonest = least / per_weight
                self._uniform_rate = per_weight
            else:
                soonest = _INF
                for f in flows:
                    f.rate_bytes_per_s = rate = per_weight * f.weight
                    t = f.remaining_bytes / rate
                    if t < soonest:  # noqa: PLR1730 (hot loop)
                        soonest = t
        elif self.allocator is max_min_fair and len(self._order) == len(flows):
            soonest = self._water_fill()
            if math.isinf(soonest):
                raise RuntimeError(f"{self.name}: allocator left every active flow without bandwidth")
        else:
            self.allocator(self.capacity_bytes_per_s, flows)
            soonest = min(f.remaining_bytes / f.rate_bytes_per_s if f.rate_bytes_per_s > 0 else _INF for f in flows)
            if math.isinf(soonest):
                raise RuntimeError(f"{self.name}: allocator left every active flow without bandwidth")
        env = self.env
        if self.tracer is not None:
            uniform = self._uniform_rate
            used = sum(f.rate_bytes_per_s for f in flows) if uniform is None else sum(repeat(uniform, len(flows)))
            self.tracer.counter(self.name, f"{self.name} GB/s", env._now, allocated=used / 1e9)
        delay = soonest if soonest > 0 else 0.0
        due = env._now + delay  # the sum SimPy forms for the timeout below
        self._due_s = due
        if self._pending and self._timer_at <= due:
            return  # the pending timer fires first; if the mix changed since, it wakes early and re-arms
        # a pending timer that is now late stays queued as a stale event: SimPy cannot cancel, so it is
        # skipped when it fires (the only case that leaves one; an arrival that only delays flows does not)
        self._arm(delay, due)

    def _arm(self, delay: float, due: float) -> None:
        """Schedule a new completion timer ``delay`` from now, at ``due`` (the sum SimPy forms)."""
        timer = self._timer
        if timer is None or self._pending:   # (a pending one stays queued, stale)
            self._timer = timer = _Timer(self.env, delay, self._timer_callbacks)
        else:   # the one that fired last, armed again
            timer.callbacks = self._timer_callbacks
            timer._delay = delay
        self._pending = True
        self._timer_at = due
        if self._queue is not None:
            heappush(self._queue, (due, NORMAL, next(self._eid), timer))
        else:
            self.env.schedule(timer, NORMAL, delay)

    def _on_timer(self, timer: _Timer) -> None:
        if timer is not self._timer:
            return  # superseded by an earlier timer
        self._pending = False   # (_timer_at only counts while a timer is pending)
        env = self.env
        now = env._now
        if self._due_s > now:  # arrivals since it was set pushed the next completion later
            self._advance()
            self._reschedule()
            return
        rate = self._uniform_rate
        if rate is None or self.tracer is not None:
            self._complete(now)
            return
        # The common case on its own: every flow uncapped with weight 1, moving at `rate`, no tracer.
        # Same operations in the same order as _complete, less its bookkeeping for caps and weights.
        flows = self.flows
        finished: list[_Transfer] = []
        least = _INF   # least remaining of the flows that go on
        elapsed = now - self._updated_s
        if elapsed > 0:
            self.busy_s += elapsed
            step = rate * elapsed
            for f in flows:
                f.remaining_bytes = left = f.remaining_bytes - step
                if left <= f.done_below_bytes:
                    finished.append(f)
                elif left < least:  # noqa: PLR1730 (hot loop)
                    least = left
        else:
            for f in flows:
                left = f.remaining_bytes
                if left <= f.done_below_bytes:
                    finished.append(f)
                elif left < least:  # noqa: PLR1730
                    least = left
        self._updated_s = now
        if not finished:  # rounding left a sliver: finish the flow that was due
            due = min(flows, key=lambda f: f.remaining_bytes / rate)
            finished = [due]
            least = min((f.remaining_bytes for f in flows if f is not due), default=_INF)
        total_weight = self._total_weight
        done_bytes = self._done_bytes
        queue = self._queue
        for f in finished:
            flows.remove(f)   # the rest go on, in arrival order
            done_bytes += f.size_bytes
            f.remaining_bytes = 0.0
            total_weight -= 1.0
            f._ok = True   # f.succeed(now - f.start_s), inlined: the event is ours and still pending
            f._value = now - f.start_s
            if queue is not None:
                heappush(queue, (now, NORMAL, next(self._eid), f))
            else:
                env.schedule(f)
        self._done_bytes = done_bytes
        self._total_weight = total_weight if flows else 0.0
        self.transfers_done += len(finished)
        self._least = least if self.allocator is max_min_fair else None
        self._settling = True   # see _complete
        f.callbacks.append(self._settle_cb)   # (f: the last finished)

    def _complete(self, now: float) -> None:
        """Advance every flow to ``now``, finish the ones that are done and have the rest rescheduled
        once the waiters of these completions have run (the general case of _on_timer)."""
        env = self.env
        # advance every flow to now and sort out the finished ones in one loop (as _advance would)
        finished: list[_Transfer] = []
        flows = self.flows
        rate = self._uniform_rate
        elapsed = now - self._updated_s
        if elapsed > 0 and flows:
            self.busy_s += elapsed
            if rate is not None:
                step = rate * elapsed
                for f in flows:
                    f.remaining_bytes = left = f.remaining_bytes - step
                    if left <= f.done_below_bytes:
                        finished.append(f)
            else:
                for f in flows:
                    step = f.rate_bytes_per_s * elapsed
                    f.remaining_bytes = left = f.remaining_bytes - step
                    if left <= f.done_below_bytes:
                        finished.append(f)
        else:
            for f in flows:
                if f.remaining_bytes <= f.done_below_bytes:
                    finished.append(f)
        self._updated_s = now
        if not finished:  # rounding left a sliver: finish the flow that was due
            if rate is None:
                due = min(flows, key=lambda f: f.remaining_bytes / f.rate_bytes_per_s if f.rate_bytes_per_s > 0 else _INF)
            else:
                due = min(flows, key=lambda f: f.remaining_bytes / rate)
            finished = [due]
        for f in finished:   # the rest go on, in arrival order
            flows.remove(f)
        self._least = None   # (the settle finds it)
        if self._order:
            if self._capped - sum(f.cap_bytes_per_s is not None for f in finished) > 0:
                gone = {id(f) for f in finished}
                keep = [i for i, f in enumerate(self._order) if id(f) not in gone]
                self._order = [self._order[i] for i in keep]
                self._order_keys = [self._order_keys[i] for i in keep]
            else:
                self._order, self._order_keys = [], []
        schedule = env.schedule
        tracer = self.tracer
        total_weight = self._total_weight
        for f in finished:
            self._done_bytes += f.size_bytes
            f.remaining_bytes = 0.0
            weight = f.weight
            total_weight -= weight
            if weight != 1.0:  # noqa: PLR2004
                self._weighted -= 1
            if f.cap_bytes_per_s is not None:
                self._capped -= 1
            if tracer is not None:
                tracer.span(f"{self.name}[{f.lane}]", f.label, f.start_s, now, "transfer", bytes=f.size_bytes)
                self._lanes.give(f.lane)
            f._ok = True   # f.succeed(now - f.start_s), inlined: the event is ours and still pending
            f._value = now - f.start_s
            schedule(f)
        self._total_weight = total_weight if flows else 0.0  # (none left: no drift from repeated subtraction)
        self.transfers_done += len(finished)
        # The waiters of these completions usually issue their next transfer at this same instant:
        # rescheduling now would arm a timer that their arrival makes stale at once. Instead the
        # rates are recomputed once, by a callback that runs after the last completion's waiters.
        self._settling = True
        finished[-1].callbacks.append(self._settle_cb)

    def _settle(self, _event: simpy.Event) -> None:
        self._settling = False
        least = self._least
        env = self.env
        # `least` is known only on the common path: every flow uncapped with weight 1 under max_min_fair
        # and no tracer (see _on_timer and transfer); it is read only while settling, so not cleared here.
        # A settle runs in the instant of its completions, so every flow is up to date.
        if least is not None:
            if least < _INF:
                # _reschedule's common case, inlined (every flow left has bytes left, so the delay is > 0)
                self._uniform_rate = per_weight = self.capacity_bytes_per_s / self._total_weight
                delay = least / per_weight
                self._due_s = due = env._now + delay
                timer = self._timer   # _arm(delay, due), inlined
                if timer is None or self._pending:
                    self._timer = timer = _Timer(env, delay, self._timer_callbacks)
                else:
                    timer.callbacks = self._timer_callbacks
                    timer._delay = delay
                self._pending = True
                self._timer_at = due
                queue = self._queue
                if queue is not None:
                    heappush(queue, (due, NORMAL, next(self._eid), timer))
                else:
                    env.schedule(timer, NORMAL, delay)
                return
        if env._now != self._updated_s:
            self._advance()
            least = None
        self._reschedule(least)
