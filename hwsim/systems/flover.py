"""Flover (Yao et al., HiPC 2023): temporal fusion of autoregressive requests, against batching baselines.

Requests arrive over time; each is prefilled, then decoded one token per iteration. Iteration times
come from :mod:`hwsim.systems.serving_cost` (core roofline and collective models). Schedulers are
classes; :func:`simulate` runs any object with a ``simulate(run: ServingRun)`` method, so a user adds
one by subclassing :class:`BatchScheduler` (hooks: ``admit``, ``retire``, ...) or :class:`Scheduler`.

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
from dataclasses import dataclass, field
from typing import Generator, Sequence

import numpy as np
import simpy

from hwsim.engine import Simulation, Tracer
from hwsim.systems.serving_cost import IterationCost, ServingConfig
from hwsim.workloads.decoders import WorkloadError
from hwsim.workloads.serving import Request

__all__ = [
    "Active", "BatchScheduler", "ConcurrentInstances", "ContinuousPaged", "DynamicBatching", "FloverFusion",
    "RequestRecord", "RunResult", "Scheduler", "ServingRun", "StaticBatching", "min_reorder_moves",
    "reorder_slots", "simulate",
]


# ---------------------------------------------------------------------------------------------
# Records and results


@dataclass(frozen=True)
class RequestRecord:
    rid: int
    arrival_s: float
    start_s: float
    finish_s: float
    prompt_tokens: int
    gen_tokens: int
    lone_s: float
    preemptions: int = 0

    @property
    def latency_s(self) -> float:
        return self.finish_s - self.arrival_s

    @property
    def normalised(self) -> float:
        """Latency over the latency the same request has alone on the same hardware."""
        return self.latency_s / self.lone_s


@dataclass(frozen=True)
class Step:
    """One entry of the iteration log: ``iterations`` decode iterations (0 for a prefill or a copy)."""

    kind: str
    start_s: float
    duration_s: float
    iterations: int
    rows: int


@dataclass
class RunResult:
    scheduler: str
    records: list[RequestRecord]
    iterations: int
    reorder_moves: int
    reorder_bytes: float
    peak_memory_bytes: float
    capacity_bytes: float
    steps: list[Step]
    events: int

    def latencies_s(self) -> np.ndarray:
        return np.array([r.latency_s for r in self.records])

    def percentile_s(self, q: float) -> float:
        return float(np.percentile(self.latencies_s(), q))

    @property
    def mean_latency_s(self) -> float:
        return float(self.latencies_s().mean())

    @property
    def mean_normalised(self) -> float:
        return float(np.mean([r.normalised for r in self.records]))

    @property
    def makespan_s(self) -> float:
        return max(r.finish_s for r in self.records) - min(r.arrival_s for r in self.records)

    @property
    def tokens_per_s(self) -> float:
        return sum(r.gen_tokens for r in self.records) / self.makespan_s


# ---------------------------------------------------------------------------------------------
# The run context every scheduler sees


class ServingRun:
    """One simulation: the requests, the cost model, memory accounting and what is recorded."""

    def __init__(self, requests: Sequence[Request], config: ServingConfig, tracer: Tracer | None = None):
        if not requests:
            raise WorkloadError("a serving run needs at least one request")
        self.requests = sorted(requests, key=lambda r: (r.arrival_s, r.rid))
        self.config = config
        self.cost = IterationCost(config)
        self.sim = Simulation(tracer=tracer)
        self.env: simpy.Environment = self.sim.env
        self.capacity_bytes = self.cost.free_bytes
        self.reserved_bytes = 0.0
        self.peak_memory_bytes = 0.0
        self.records: list[RequestRecord] = []
        self.steps: list[Step] = []
        self.iterations = 0
        self.reorder_moves = 0
        self.reorder_bytes = 0.0
        self.events = 0
        self._lone: dict[tuple[int, int], float] = {}

    def reserve(self, nbytes: float) -> None:
        """Take ``nbytes`` of device memory; exceeding capacity is a scheduler bug, never silent."""
        self.reserved_bytes += nbytes
        if self.reserved_bytes > self.capacity_bytes * (1 + 1e-12):
            raise RuntimeError(f"memory over capacity: {self.reserved_bytes:.6g} > {self.capacity_bytes:.6g} bytes")
        self.peak_memory_bytes = max(self.peak_memory_bytes, self.reserved_bytes)

    def release(self, nbytes: float) -> None:
        self.reserved_bytes -= nbytes

    def lone_s(self, req: Request) -> float:
        key = (req.prompt_tokens, req.gen_tokens)
        hit = self._lone.get(key)
        if hit is None:
            hit = self.cost.prefill([req.prompt_tokens])[0] + self.cost.lone_decode(*key)[0]
            self._lone[key] = hit
        return hit

    def finish(self, req: Request, start_s: float, finish_s: float, preemptions: int = 0) -> None:
        self.records.append(RequestRecord(req.rid, req.arrival_s, start_s, finish_s, req.prompt_tokens,
                                          req.gen_tokens, self.lone_s(req), preemptions))

    def log(self, kind: str, start_s: float, duration_s: float, iterations: int = 0, rows: int = 0) -> None:
        self.steps.append(Step(kind, start_s, duration_s, iterations, rows))
        if self.sim.tracer is not None and duration_s > 0:
            self.sim.tracer.span("serving/batch", f"{kind} x{iterations} rows={rows}" if iterations else kind,
                                 start_s, start_s + duration_s, "serving")


class Scheduler:
    """Anything that can serve a :class:`ServingRun`: implement ``simulate`` (a SimPy generator)."""

    name = "scheduler"

    def simulate(self, run: ServingRun) -> Generator[simpy.events.Event, object, None]:
        raise NotImplementedError


def simulate(requests: Sequence[Request], config: ServingConfig, scheduler: Scheduler,
             tracer: Tracer | None = None) -> RunResult:
    """Serve ``requests`` with ``scheduler``; every request finishes (the run lasts until then)."""
    run = ServingRun(requests, config, tracer)
    run.env.process(scheduler.simulate(run))
    env = run.env
    while env.peek() != math.inf:
        env.step()
        run.events += 1
    if len(run.records) != len(run.requests):
        raise RuntimeError(f"{scheduler.name}: {len(run.requests) - len(run.records)} requests never finished")
    records = sorted(run.records, key=lambda r: r.rid)
    return RunResult(scheduler.name, records, run.iterations, run.reorder_moves, run.reorder_bytes,
                     run.peak_memory_bytes, run.capacity_bytes, run.steps, run.events)


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
        raise RuntimeError(f"{self.name}: out of memory with no preemption policy")

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
                continue
            if not state.live:
                if nxt >= len(reqs) and not state.waiting:
                    return
                wake = self.wake_s(state, now)
                until = arrivals[nxt] if nxt < len(reqs) else math.inf
                if wake is not None and wake > now:
                    until = min(until, wake)
                if math.isinf(until):
                    raise RuntimeError(f"{self.name}: {len(state.waiting)} requests wait and nothing will wake the scheduler")
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


class _Slotted(BatchScheduler):
    """Schedulers with ``S`` preallocated contiguous slots of ``max_seq_tokens`` (FasterTransformer style)."""

    def setup(self, run: ServingRun) -> None:
        self.slot_count = run.cost.slots()
        if run.config.max_seq_tokens < max(r.prompt_tokens + r.gen_tokens for r in run.requests):
            raise WorkloadError(f"max_seq_tokens={run.config.max_seq_tokens} is shorter than the longest request")
        run.reserve(self.slot_count * run.cost.slot_bytes)


class StaticBatching(_Slotted):
    """A batch of up to ``S`` waiting requests runs until its last request finishes; finished rows
    stay in the batch (padding) and keep being computed over their frozen context."""

    name = "static"

    def __init__(self, max_batch: int | None = None):
        super().__init__()
        self.max_batch = max_batch

    def _capacity(self) -> int:
        return self.slot_count if self.max_batch is None else min(self.slot_count, self.max_batch)

    def ready(self, state: BatchState, now_s: float) -> bool:
        return True

    def admit(self, run: ServingRun, state: BatchState, now_s: float) -> list:
        if state.live or state.dead_rows or not self.ready(state, now_s):
            return []
        take = state.waiting[: self._capacity()]
        del state.waiting[: len(take)]
        return take

    def retire(self, run: ServingRun, state: BatchState, finished: list[Active]) -> float:
        if state.live:
            state.dead_rows += len(finished)
            state.dead_ctx += sum(a.ctx(state.iteration) for a in finished)
        else:
            state.dead_rows = state.dead_ctx = 0
        return 0.0


class DynamicBatching(StaticBatching):
    """Static batches formed when ``max_batch`` requests wait or the oldest has waited ``window_s``."""

    name = "dynamic"

    def __init__(self, window_s: float, max_batch: int):
        super().__init__(max_batch)
        if not window_s >= 0 or max_batch < 1:
            raise WorkloadError(f"dynamic batching needs window_s >= 0 and max_batch >= 1, got {window_s}, {max_batch}")
        self.window_s = window_s

    def ready(self, state: BatchState, now_s: float) -> bool:
        oldest = self.waiting_request(state.waiting[0]).arrival_s
        return len(state.waiting) >= self._capacity() or now_s >= oldest + self.window_s - 1e-12

    def wake_s(self, state: BatchState, now_s: float) -> float | None:
        if not state.waiting:
            return None
        return self.waiting_request(state.waiting[0]).arrival_s + self.window_s


def min_reorder_moves(occupied: Sequence[bool]) -> int:
    """Fewest slot moves that make the occupied slots contiguous: slide a window of the occupied
    count over the array; every occupied slot outside the best window must move into one of its holes."""
    occ = np.asarray(occupied, dtype=np.int64)
    count = int(occ.sum())
    if count == 0:
        return 0
    sums = np.convolve(occ, np.ones(count, dtype=np.int64), mode="valid")
    return count - int(sums.max())


def reorder_slots(slots: list) -> tuple[int, list[tuple[int, int]]]:
    """Make the non-None entries of ``slots`` contiguous with the fewest moves, in place.

    Returns (window start, [(from, to), ...]). The window is the leftmost one holding the most
    occupied slots; holes inside it are filled, in order, by the occupied slots outside it.
    """
    occ = [s is not None for s in slots]
    count = sum(occ)
    if count == 0:
        return 0, []
    sums = np.convolve(np.asarray(occ, dtype=np.int64), np.ones(count, dtype=np.int64), mode="valid")
    start = int(np.argmax(sums))
    holes = [i for i in range(start, start + count) if slots[i] is None]
    outside = [i for i, o in enumerate(occ) if o and not start <= i < start + count]
    moves = list(zip(outside, holes))
    for src, dst in moves:
        slots[dst], slots[src] = slots[src], None
    return start, moves


_DEAD = object()


class FloverFusion(_Slotted):
    """Temporal fusion: a new request joins the running batch at the next iteration boundary.

    The fused kernel computes the contiguous span ``[lo, hi)`` of the slot array. Without
    reordering, a finished request in the middle stays computed (a dead row over its frozen KV)
    and its slot is reused only once it becomes an end of the span. With reordering, finished
    slots are evicted and the minimum set of live slots is moved to close the holes; each move
    copies that request's KV cache (its current context) over HBM.
    """

    def __init__(self, reorder: bool = True):
        super().__init__()
        self.reorder = reorder
        self.name = "flover" if reorder else "flover-no-reorder"

    def setup(self, run: ServingRun) -> None:
        super().setup(run)
        self.slots: list = [None] * self.slot_count
        self.lo = self.hi = 0
        self._dead_ctx: dict[int, int] = {}  # slot -> frozen context of the dead row there

    def _free_ends(self) -> int:
        return (self.slot_count - self.hi) + self.lo if self.hi > self.lo else self.slot_count

    def admit(self, run: ServingRun, state: BatchState, now_s: float) -> list:
        take = state.waiting[: self._free_ends()]
        del state.waiting[: len(take)]
        return take

    def on_join(self, act: Active) -> None:
        if self.hi == self.lo:
            self.lo = self.hi = 0
        if self.hi < self.slot_count:
            act.slot, self.hi = self.hi, self.hi + 1
        else:
            self.lo -= 1
            act.slot = self.lo
        self.slots[act.slot] = act

    def stop_on_arrival(self, state: BatchState) -> bool:
        return not state.waiting and self._free_ends() > 0

    def retire(self, run: ServingRun, state: BatchState, finished: list[Active]) -> float:
        for act in finished:
            self.slots[act.slot] = _DEAD
            state.dead_rows += 1
            state.dead_ctx += act.ctx(state.iteration)
            self._dead_ctx[act.slot] = act.ctx(state.iteration)
        copied = 0.0
        if self.reorder:
            for i in range(self.lo, self.hi):
                if self.slots[i] is _DEAD:
                    self._drop_dead(state, i)
            span = self.slots[self.lo:self.hi]
            start, moves = reorder_slots(span)
            self.slots[self.lo:self.hi] = span
            for src, dst in moves:
                act = span[dst]
                act.slot = self.lo + dst
                copied += act.ctx(state.iteration) * run.cost.kv_bytes_per_token
            run.reorder_moves += len(moves)
            run.reorder_bytes += copied
            count = len(state.live)
            self.lo, self.hi = self.lo + start, self.lo + start + count
        else:
            while self.lo < self.hi and self.slots[self.lo] is _DEAD:
                self._drop_dead(state, self.lo)
                self.lo += 1
            while self.hi > self.lo and self.slots[self.hi - 1] is _DEAD:
                self._drop_dead(state, self.hi - 1)
                self.hi -= 1
        return copied

    def _drop_dead(self, state: BatchState, slot: int) -> None:
        self.slots[slot] = None
        state.dead_rows -= 1
        state.dead_ctx -= self._dead_ctx.pop(slot)


class ContinuousPaged(BatchScheduler):
    """Continuous batching with a paged KV cache (vLLM-style): FCFS admission at every iteration
    boundary while the pages of the prompt fit above a watermark; pages are taken as contexts grow;
    when none are left, the most recently admitted request is preempted and later recomputed."""

    name = "continuous-paged"
    WATERMARK = 0.01  # vLLM keeps 1% of the blocks free at admission (BlockSpaceManager watermark)

    def __init__(self, max_batch: int = 256):  # vLLM's default max_num_seqs
        super().__init__()
        self.max_batch = max_batch

    def setup(self, run: ServingRun) -> None:
        self.blocks = run.cost.kv_blocks()
        self.block_tokens = run.config.block_tokens
        self.used = 0
        self.order: list[Active] = []
        self._base = np.zeros(0, dtype=np.int64)   # ctx0 - at_iter of each request in ``order``
        self._floor = np.zeros(0, dtype=np.int64)  # ctx0 + 1: pages held from admission on
        self.run = run

    def _blocks(self, tokens: int) -> int:
        return -(-tokens // self.block_tokens)

    def admit(self, run: ServingRun, state: BatchState, now_s: float) -> list:
        take = []
        reserve = max(1, int(self.WATERMARK * self.blocks))
        for item in state.waiting:
            if len(state.live) + len(take) >= self.max_batch:
                break
            req = self.waiting_request(item)
            done = req.gen_tokens - item.left0 if isinstance(item, Active) else 0
            need = self._blocks(req.prompt_tokens + done + 1)
            if need > self.blocks:
                raise WorkloadError(f"request {req.rid} needs {need} KV blocks; the device holds {self.blocks}")
            running = len(state.live) + len(take)
            if running and self.used + need + running > self.blocks - reserve:
                break  # keep a page for each running request's next token, and the watermark
            if self.used + need > self.blocks:
                break
            self.used += need
            run.reserve(need * run.cost.block_bytes)
            take.append(item)
        del state.waiting[: len(take)]
        return take

    def on_join(self, act: Active) -> None:
        self.order.append(act)
        self._base = np.append(self._base, act.ctx0 - act.at_iter)
        self._floor = np.append(self._floor, act.ctx0 + 1)

    def stop_on_arrival(self, state: BatchState) -> bool:
        return not state.waiting and len(state.live) < self.max_batch

    def _held(self, base: np.ndarray, floor: np.ndarray, now_iter: int) -> tuple[np.ndarray, np.ndarray]:
        """(contexts, pages held): a request holds the pages of its context, and from admission those
        of its first new token (``ctx0 + 1``)."""
        ctx = base + now_iter
        return ctx, -(-np.maximum(ctx, floor) // self.block_tokens)

    def _sync(self, held: np.ndarray) -> None:
        """Take the pages the live contexts have grown into since the last look."""
        total = int(held.sum())
        if total > self.used:
            self.run.reserve((total - self.used) * self.run.cost.block_bytes)
            self.used = total

    def max_iterations(self, run: ServingRun, state: BatchState) -> int | None:
        """Iterations until some request needs a page that is not there (exact, by bisection)."""
        ctx, held = self._held(self._base, self._floor, state.iteration)
        self._sync(held)
        free = self.blocks - self.used

        def extra(k: int) -> int:  # pages needed to run k iterations
            return int(np.maximum(-(-(ctx + k) // self.block_tokens) - held, 0).sum())

        if extra(state.horizon) <= free:
            return None
        if extra(1) > free:
            return 0
        lo, hi = 1, state.horizon
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if extra(mid) <= free:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _drop(self, run: ServingRun, state: BatchState, gone: list[Active]) -> None:
        """Sync every page (the gone ones included, as of now), then free the pages of ``gone``."""
        _, held = self._held(self._base, self._floor, state.iteration)
        self._sync(held)
        keep = np.fromiter((not a.gone for a in self.order), dtype=bool, count=len(self.order))
        freed = int(held[~keep].sum())
        self.used -= freed
        run.release(freed * run.cost.block_bytes)
        self.order = [a for a in self.order if not a.gone]
        self._base, self._floor = self._base[keep], self._floor[keep]

    def retire(self, run: ServingRun, state: BatchState, finished: list[Active]) -> float:
        self._drop(run, state, finished)
        return 0.0

    def preempt(self, run: ServingRun, state: BatchState) -> None:
        victim = self.order[-1]
        victim.gone = True
        del state.live[victim.req.rid]
        state.live_ctx -= victim.ctx(state.iteration)
        self._drop(run, state, [victim])
        left = victim.left0 - (state.iteration - victim.at_iter)
        state.waiting.insert(0, Active(victim.req, 0, left, 0, victim.start_s, victim.preemptions + 1))


# ---------------------------------------------------------------------------------------------
# Concurrent instances: one model instance per request, contending through shared HBM and compute


class ConcurrentInstances(Scheduler):
    """One instance per request (what Flover calls FasterTransformer): each prefills, then decodes
    alone, all at once. Instances share one copy of the weights but each reads them every iteration.

    Each instance is two flows on the engine: its prefill FLOPs on the device's shared compute and its
    decode bytes (weights + its KV, every iteration) on the shared HBM, each capped at the rate it
    reaches alone, so a lone instance takes exactly the sum of its iterations and concurrent ones
    slow each other down by max-min fair sharing. Each instance preallocates one slot of
    ``max_seq_tokens``; when none is free, requests wait in arrival order.
    """

    name = "concurrent"

    def simulate(self, run: ServingRun) -> Generator[simpy.events.Event, object, None]:
        cost, env = run.cost, run.env
        dev = cost.device
        eff = dev.efficiency
        hbm = run.sim.bandwidth(dev.memory.bandwidth_bytes_per_s * eff.memory_max, "hbm")
        flops = run.sim.bandwidth(dev.peak(cost.dtype) * eff.compute_max, "compute")
        count = cost.slots()
        run.reserve(count * cost.slot_bytes)
        pool = simpy.Container(env, capacity=count, init=count)

        def instance(req: Request) -> Generator[simpy.events.Event, object, None]:
            yield env.timeout(req.arrival_s - env.now)
            yield pool.get(1)
            start = env.now
            pre_s, pre_flops = cost.prefill([req.prompt_tokens])
            yield flops.transfer(pre_flops, cap_bytes_per_s=pre_flops / pre_s, label=f"prefill {req.rid}")
            dec_s, dec_bytes = cost.lone_decode(req.prompt_tokens, req.gen_tokens)
            yield hbm.transfer(dec_bytes, cap_bytes_per_s=dec_bytes / dec_s, label=f"decode {req.rid}")
            run.iterations += req.gen_tokens
            run.finish(req, start, env.now)
            yield pool.put(1)

        for req in run.requests:
            env.process(instance(req))
        yield env.timeout(0)
