"""The serving simulation itself: one run's context, its records, and the loop that drives a scheduler.

Any object with a ``simulate(run: ServingRun)`` SimPy generator is a scheduler; :func:`simulate`
runs it over a list of requests until every one has finished, and :func:`simulate_replicas` spreads
the requests over independent copies of the deployment with a named router first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

import numpy as np
import simpy

from hwsim.engine import Simulation, Tracer
from hwsim.errors import SimulationError, WorkloadError
from hwsim.systems.serving.cost import IterationCost, ServingConfig
from hwsim.workloads.serving import Request

__all__ = [
    "ROUTERS",
    "SLO_TPOT_S",
    "SLO_TTFT_S",
    "RequestRecord",
    "RunResult",
    "Scheduler",
    "ServingRun",
    "Step",
    "route",
    "simulate",
    "simulate_replicas",
]

SLO_TTFT_S = 2.0
"""Assumption: a chat service's time-to-first-token objective for goodput (no paper states one for these traces)."""
SLO_TPOT_S = 0.1
"""Assumption: its time-per-output-token objective (10 tokens/s, faster than reading speed)."""


@dataclass(frozen=True)
class RequestRecord:
    """What happened to one request. ``first_token_s`` is when its prefill (which yields the first
    token) finished; the decode iterations after it produce the rest."""

    rid: int
    arrival_s: float
    start_s: float
    finish_s: float
    prompt_tokens: int
    gen_tokens: int
    lone_s: float
    preemptions: int = 0
    first_token_s: float = math.nan

    @property
    def latency_s(self) -> float:
        return self.finish_s - self.arrival_s

    @property
    def ttft_s(self) -> float:
        return self.first_token_s - self.arrival_s

    @property
    def tpot_s(self) -> float:
        """Mean inter-token time after the first token (vLLM's TPOT / mean ITL)."""
        return (self.finish_s - self.first_token_s) / self.gen_tokens

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
    instances: int = 1
    """Concurrently running model copies (FasterTransformer-style instances), else 1."""

    def latencies_s(self) -> np.ndarray:
        return np.array([r.latency_s for r in self.records])

    def ttfts_s(self) -> np.ndarray:
        return np.array([r.ttft_s for r in self.records])

    def tpots_s(self) -> np.ndarray:
        return np.array([r.tpot_s for r in self.records])

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

    def goodput_per_s(self, ttft_s: float = SLO_TTFT_S, tpot_s: float = SLO_TPOT_S) -> float:
        """Requests per second that met both objectives (DistServe's goodput), over the makespan."""
        ok = (self.ttfts_s() <= ttft_s) & (self.tpots_s() <= tpot_s)
        return float(ok.sum()) / self.makespan_s


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
        self.instances = 1
        self._lone: dict[tuple[int, int], float] = {}
        self.first_token: dict[int, float] = {}

    def reserve(self, nbytes: float) -> None:
        """Take ``nbytes`` of device memory; exceeding capacity is a scheduler bug, never silent."""
        self.reserved_bytes += nbytes
        if self.reserved_bytes > self.capacity_bytes * (1 + 1e-12):
            raise SimulationError(f"memory over capacity: {self.reserved_bytes:.6g} > {self.capacity_bytes:.6g} bytes")
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

    def note_lone(self, req: Request, lone_s: float) -> None:
        """A scheduler that already costed ``req`` alone hands the figure over (saves recomputing it)."""
        self._lone.setdefault((req.prompt_tokens, req.gen_tokens), lone_s)

    def first_tokens(self, reqs: Sequence[Request], when_s: float) -> None:
        """Note the end of these requests' first prefill (a recomputation after preemption does not count)."""
        for req in reqs:
            self.first_token.setdefault(req.rid, when_s)

    def finish(self, req: Request, start_s: float, finish_s: float, preemptions: int = 0) -> None:
        self.records.append(RequestRecord(req.rid, req.arrival_s, start_s, finish_s, req.prompt_tokens,
                                          req.gen_tokens, self.lone_s(req), preemptions,
                                          self.first_token.get(req.rid, start_s)))

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
        raise SimulationError(f"{scheduler.name}: {len(run.requests) - len(run.records)} requests never finished")
    records = sorted(run.records, key=lambda r: r.rid)
    return RunResult(scheduler.name, records, run.iterations, run.reorder_moves, run.reorder_bytes,
                     run.peak_memory_bytes, run.capacity_bytes, run.steps, run.events, run.instances)


# ---------------------------------------------------------------------------------------------
# Replicas: N independent copies of the deployment, requests spread by a router


def _round_robin(requests: Sequence[Request], replicas: int) -> list[int]:
    return [i % replicas for i in range(len(requests))]


def _least_tokens(requests: Sequence[Request], replicas: int) -> list[int]:
    """Each request to the replica with the fewest tokens (prompt + output) still owed at its arrival,
    draining each replica at the same nominal rate: a join-shortest-queue router that needs no feedback."""
    owed = np.zeros(replicas)
    last = 0.0
    # nominal drain: the trace's own token rate spread evenly (an estimate, used only to order replicas)
    span = max(requests[-1].arrival_s - requests[0].arrival_s, 1e-9) if len(requests) > 1 else 1.0
    rate = sum(r.prompt_tokens + r.gen_tokens for r in requests) / span / replicas
    choice = []
    for req in requests:
        owed = np.maximum(owed - rate * (req.arrival_s - last), 0.0)
        last = req.arrival_s
        k = int(np.argmin(owed))
        owed[k] += req.prompt_tokens + req.gen_tokens
        choice.append(k)
    return choice


ROUTERS: dict[str, Callable[[Sequence[Request], int], list[int]]] = {
    "round-robin": _round_robin,
    "least-tokens": _least_tokens,
}


def route(requests: Sequence[Request], replicas: int, router: str) -> list[list[Request]]:
    """Requests of each replica, in arrival order."""
    if replicas < 1:
        raise WorkloadError(f"replicas must be >= 1, got {replicas}")
    if router not in ROUTERS:
        raise WorkloadError(f"unknown router {router!r}; known: {', '.join(ROUTERS)}")
    ordered = sorted(requests, key=lambda r: (r.arrival_s, r.rid))
    parts: list[list[Request]] = [[] for _ in range(replicas)]
    for req, k in zip(ordered, ROUTERS[router](ordered, replicas)):
        parts[k].append(req)
    return parts


def simulate_replicas(requests: Sequence[Request], config: ServingConfig, make: Callable[[], Scheduler],
                      replicas: int = 1, router: str = "round-robin") -> RunResult:
    """Serve ``requests`` on ``replicas`` independent deployments (no shared memory or bandwidth
    between them), each with its own scheduler from ``make``; the records of all are merged."""
    if replicas == 1:
        return simulate(requests, config, make())
    parts = [simulate(p, config, make()) for p in route(requests, replicas, router) if p]
    first = parts[0]
    return RunResult(first.scheduler, sorted((r for p in parts for r in p.records), key=lambda r: r.rid),
                     sum(p.iterations for p in parts), sum(p.reorder_moves for p in parts),
                     sum(p.reorder_bytes for p in parts), max(p.peak_memory_bytes for p in parts),
                     first.capacity_bytes, [s for p in parts for s in p.steps], sum(p.events for p in parts),
                     sum(p.instances for p in parts))
