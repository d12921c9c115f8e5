"""Fused (batched) decoding: one loop that every batching scheduler shares, changed only through hooks.

Event efficiency. Between two changes of the batch (an admission, a finish, a preemption) the batch
is fixed and every context grows by one token per iteration, so the iterations in between are costed
in one vectorised call and simulated as one timeout: the simulation does O(arrivals + finishes)
events, not one per iteration and never one per request per token. Contexts and remaining lengths
are kept relative to a global iteration counter, so a segment costs O(1) Python work per request
that joins or leaves, not per request in the batch.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Generator
from dataclasses import dataclass, field

import numpy as np
import simpy

from hwsim.errors import SimulationError, WorkloadError
from hwsim.systems.serving.run import Scheduler, ServingRun
from hwsim.workloads.serving import Request

__all__ = ["Active", "BatchScheduler", "BatchState", "SlottedBatchScheduler"]


# ---------------------------------------------------------------------------------------------
# Batched (fused) decoding: one loop, scheduler hooks


@dataclass(eq=False)
class Active:
    """A request in the batch. ``ctx`` and ``left`` are stored as of global iteration ``at_iter``."""

    req: Request
    ctx0: int
    left0: int
    at_iter: int
    start_s: float
    preemptions: int = 0
    slot: int = -1
    gone: bool = False
    seq: int = 0

    def ctx(self, now_iter: int) -> int:
        return self.ctx0 + (now_iter - self.at_iter)

    def end_iter(self) -> int:
        return self.at_iter + self.left0


@dataclass
class BatchState:
    """What the fused loop keeps; schedulers read and change it through their hooks."""

    waiting: list = field(default_factory=list)     # arrived, not admitted (Request or preempted Active)
    live: dict = field(default_factory=dict)        # rid -> Active still generating
    dead_rows: int = 0                              # finished requests still computed (padding, holes)
    dead_ctx: int = 0                               # their (frozen) attended context, summed
    live_ctx: int = 0                               # sum of live contexts as of ``iteration``
    iteration: int = 0
    horizon: int = 0                                # iterations until the next request finishes
    seq: itertools.count = field(default_factory=itertools.count)  # join order, breaks heap ties


class BatchScheduler(Scheduler):
    """Fused decoding of a batch: every iteration computes all rows the scheduler keeps in the batch.

    Hooks (override in a subclass; the loop itself never needs editing):
    ``admit(run, state, now)`` -> requests to add at this iteration boundary (reserve their memory);
    ``retire(run, state, finished)`` -> bytes copied to keep the batch contiguous (finished rows
    may stay computed as dead rows); ``stop_on_arrival(state)`` -> whether an arrival should end
    the current run of iterations; ``wake_s(state, now)`` -> when an idle scheduler wants to look
    again without an arrival; ``max_iterations(run, state)`` -> iterations allowed before memory runs
    out (paged caches), 0 to ask ``preempt``.
    """

    name = "batch"

    # ---- hooks --------------------------------------------------------------------------
    def setup(self, run: ServingRun) -> None:
        """Reserve preallocated memory and the like, before the first arrival."""

    def admit(self, run: ServingRun, state: BatchState, now_s: float) -> list:
        raise NotImplementedError

    def retire(self, run: ServingRun, state: BatchState, finished: list[Active]) -> float:
        return 0.0

    def stop_on_arrival(self, state: BatchState) -> bool:
        return False

    def wake_s(self, state: BatchState, now_s: float) -> float | None:
        return None

    def max_iterations(self, run: ServingRun, state: BatchState) -> int | None:
        return None

    def preempt(self, run: ServingRun, state: BatchState) -> None:
        raise SimulationError(f"{self.name}: out of memory with no preemption policy")

    # ---- helpers for hooks ---------------------------------------------------------------
    @staticmethod
    def waiting_request(item: Request | Active) -> Request:
        return item.req if isinstance(item, Active) else item

    # ---- the loop -------------------------------------------------------------------------
    def simulate(self, run: ServingRun) -> Generator[simpy.events.Event, object, None]:
        env, cost, reqs = run.env, run.cost, run.requests
        state = BatchState()
        heap: list[tuple[int, int, Active]] = []
        arrivals = [r.arrival_s for r in reqs]
        nxt = 0
        self.setup(run)
        while True:
            now = env.now
            while nxt < len(reqs) and arrivals[nxt] <= now:
                state.waiting.append(reqs[nxt])
                nxt += 1
            # admissions, with their prefill as one step
            admitted = self.admit(run, state, now) if state.waiting else []
            if admitted:
                prompts = []
                for item in admitted:
                    act = self._join(state, item, now)
                    heapq.heappush(heap, (act.end_iter(), act.seq, act))
                    prompts.append(act.ctx0)
                prefill_s, _ = cost.prefill(prompts)
                run.log("prefill", now, prefill_s, 0, len(prompts))
                yield env.timeout(prefill_s)
                run.first_tokens([self.waiting_request(item) for item in admitted], env.now)
                continue
            if not state.live:
                if nxt >= len(reqs) and not state.waiting:
                    return
                wake = self.wake_s(state, now)
                until = arrivals[nxt] if nxt < len(reqs) else math.inf
                if wake is not None and wake > now:
                    until = min(until, wake)
                if math.isinf(until):
                    raise SimulationError(f"{self.name}: {len(state.waiting)} requests wait and nothing will wake the scheduler")
                yield env.timeout(until - now)
                continue
            # a run of iterations with a fixed batch
            while heap[0][2].gone:
                heapq.heappop(heap)
            n = state.horizon = heap[0][0] - state.iteration
            limit = self.max_iterations(run, state)
            if limit == 0:
                self.preempt(run, state)
                continue
            if limit is not None:
                n = min(n, limit)
            rows = len(state.live) + state.dead_rows
            grow = len(state.live)
            base = state.live_ctx + grow + state.dead_ctx
            times = cost.decode_times(rows, base + grow * np.arange(n, dtype=float))
            cum = np.cumsum(times)
            if nxt < len(reqs) and self.stop_on_arrival(state) and arrivals[nxt] < now + cum[-1]:
                n = min(n, int(np.searchsorted(cum, arrivals[nxt] - now, side="left")) + 1)
            duration = float(cum[n - 1])
            run.log("decode", now, duration, n, rows)
            yield env.timeout(duration)
            state.iteration += n
            state.live_ctx += grow * n
            run.iterations += n
            finished: list[Active] = []
            while heap and (heap[0][2].gone or heap[0][0] <= state.iteration):
                _, _, act = heapq.heappop(heap)
                if act.gone:
                    continue
                finished.append(act)
            if finished:
                end = env.now
                for act in finished:
                    del state.live[act.req.rid]
                    act.gone = True
                    state.live_ctx -= act.ctx(state.iteration)
                    run.finish(act.req, act.start_s, end, act.preemptions)
                copied = self.retire(run, state, finished)
                if copied > 0:
                    copy_s = cost.copy_time(copied)
                    run.log("reorder", end, copy_s)
                    yield env.timeout(copy_s)

    def _join(self, state: BatchState, item: Request | Active, now_s: float) -> Active:
        if isinstance(item, Active):  # a preempted request, recomputed from its prompt and its output so far
            done = item.req.gen_tokens - item.left0
            act = Active(item.req, item.req.prompt_tokens + done, item.left0, state.iteration, item.start_s,
                         item.preemptions, item.slot)
        else:
            act = Active(item, item.prompt_tokens, item.gen_tokens, state.iteration, now_s)
        act.seq = next(state.seq)
        state.live[act.req.rid] = act
        state.live_ctx += act.ctx0
        self.on_join(act)
        return act

    def on_join(self, act: Active) -> None:
        """Called for each admitted request (slot placement and the like)."""


# ---------------------------------------------------------------------------------------------
# Contiguous preallocated slots


class SlottedBatchScheduler(BatchScheduler):
    """Schedulers with ``S`` preallocated contiguous slots of ``max_seq_tokens`` (FasterTransformer style)."""

    def setup(self, run: ServingRun) -> None:
        self.slot_count = run.cost.slots()
        if run.config.max_seq_tokens < max(r.prompt_tokens + r.gen_tokens for r in run.requests):
            raise WorkloadError(f"max_seq_tokens={run.config.max_seq_tokens} is shorter than the longest request "
                                "(refuse over-long requests first: hwsim.workloads.serving.split_by_context)")
        run.reserve(self.slot_count * run.cost.slot_bytes)


