"""SpAtten (HPCA 2021) on the event engine: the attention pipeline, cascade pruning and the top-k engine.

What is simulated, per attention layer:

* DRAM is one :class:`~hwsim.engine.SharedBandwidth` per HBM channel, serving its requests in issue
  order (:func:`in_order` allocator). A fetch of R rows of
  ``head_dim`` values at ``b`` bits is R rows of ``ceil(head_dim*b/8 / 32) * 32`` bytes (32-byte
  transactions), interleaved row by row over the channels, so a fetch ends when its busiest channel
  does and concurrent fetches share each channel.
* Each kept head is an engine process: fetch Q and the kept keys (MSBs) -> Q.K on the multiplier
  array streaming into softmax -> progressive quantization (when a query's max probability is low,
  fetch the keys' LSBs once for the head and recompute those queries) -> local value pruning on the
  top-k engine -> fetch the kept V rows -> prob.V. The stages are counted resources (``qk+softmax``,
  ``topk``, ``pv``; pipelined: a head holds a unit while its data streams through, then drains for the
  unit's pipeline latency without blocking the next head), and a head is admitted only when the
  on-chip key/value SRAM has room for its kept rows, so head h+1's fetch overlaps head h's compute
  and a busy stage or a full SRAM stalls the next head.
* Between layers, cascade token pruning (top-k over accumulated token importance) and cascade head
  pruning (top-k over head importance) run on the top-k engine; pruned tokens and heads stay gone.

The top-k engine (:func:`topk_engine`) is quick-select with random pivots drawn from the seeded
generator: each iteration streams the current candidates through P comparators into two FIFOs
(larger / smaller than the pivot, zero-eliminator compaction), ``ceil(len/P) + overhead`` cycles,
and a final pass of ``ceil(n/P) + overhead`` cycles streams the original row out against the found
threshold. ``cycle_accurate=True`` walks it one cycle (P comparisons) at a time; tests hold the two
modes equal.

Modelling choices (each one a stated assumption, see the suite notes):
* values for the top-k engine are synthetic importance scores (seeded log-normal); which tokens are
  kept does not change bytes or cycles beyond the engine's own data-dependent iteration count;
* a query needs the LSB re-fetch with probability ``refetch_fraction`` (Bernoulli, seeded);
* GPT-2's 32 generation steps are simulated at ``steps_simulated`` evenly spaced steps and scaled
  (the key count grows from 993 to 1024, 3%); the 992-token prompt is one summarization pass with
  causal masking (a query scores (L+1)/2 keys on average) and no local value pruning;
* a head whose rows exceed the whole SRAM (SpAtten-1/8 on long prompts) takes all of it and is
  modelled as streaming through it (no extra traffic for re-reads).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Generator, Sequence

import numpy as np
import simpy

from hwsim.costs import OpCost, gemm, memcpy, softmax
from hwsim.engine import Flow, SharedBandwidth, Simulation, Tracer
from hwsim.errors import SimulationError
from hwsim.hardware import Hardware
from hwsim.hardware.model import Device
from hwsim.systems.spatten_workloads import SpAttenWorkload

__all__ = [
    "SpAttenConfig",
    "SpAttenResult",
    "TopKRun",
    "topk_engine",
    "topk_engine_mean_cycles",
    "simulate",
    "dense_baseline",
    "BaselineResult",
    "CONFIGS",
    "BREAKDOWN",
    "with_comparators",
]

TRANSACTION_BYTES_DEFAULT = 32  # issue text: keys/values fetched by index in 32-byte transactions
CONFIDENT = "confident"


def in_order(capacity_bytes_per_s: float, flows: Sequence[Flow]) -> None:
    """A channel serving requests in the order they were issued (SpAtten's fetcher issues row reads
    in order): the oldest outstanding transfer gets the whole channel, later ones wait."""
    for i, f in enumerate(flows):
        f.rate_bytes_per_s = capacity_bytes_per_s if i == 0 else 0.0


class SpAttenError(SimulationError):
    """The SpAtten model was asked for something it does not model."""


# ---------------------------------------------------------------------------------------------
# The top-k engine


@dataclass(frozen=True)
class TopKRun:
    """What one top-k engine run selected and what it cost."""

    indices: np.ndarray          # kept positions, ascending
    threshold: float
    cycles: int
    iterations: int
    lengths: tuple[int, ...]     # candidates streamed in each quick-select iteration


def _partition_cycle_by_cycle(seq: np.ndarray, pivot: float, comparators: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """One iteration walked a cycle at a time: each cycle P comparators read P candidates, and the
    zero eliminators append the larger ones to one FIFO and the smaller ones to the other."""
    fifo_hi: list[float] = []
    fifo_lo: list[float] = []
    equal = 0
    cycles = 0
    for start in range(0, seq.size, comparators):
        lane = seq[start:start + comparators]
        for v in lane.tolist():
            if v > pivot:
                fifo_hi.append(v)
            elif v < pivot:
                fifo_lo.append(v)
            else:
                equal += 1
        cycles += 1
    return np.asarray(fifo_hi, dtype=seq.dtype), np.asarray(fifo_lo, dtype=seq.dtype), equal, cycles


def topk_engine(values: np.ndarray | Sequence[float], k: int, comparators: int, rng: np.random.Generator,
                overhead_cycles: int = 3, cycle_accurate: bool = False) -> TopKRun:
    """Select the ``k`` largest of ``values`` (leftmost ties first) the way SpAtten's engine does."""
    row = np.asarray(values, dtype=np.float64).ravel()
    n = row.size
    if n < 1:
        raise SpAttenError("top-k engine: values must not be empty")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise SpAttenError(f"top-k engine: k must satisfy 1 <= k <= n={n}, got {k!r}")
    if isinstance(comparators, bool) or not isinstance(comparators, (int, np.integer)) or comparators < 1:
        raise SpAttenError(f"top-k engine: comparators must be a positive integer, got {comparators!r}")
    if np.isnan(row).any():
        raise SpAttenError("top-k engine: values contain NaN")
    seq = row
    need = int(k)
    cycles = 0
    lengths: list[int] = []
    strict = False
    threshold = float("nan")
    while True:
        pivot = float(seq[int(rng.integers(seq.size))])
        lengths.append(int(seq.size))
        if cycle_accurate:
            hi, lo, equal, walked = _partition_cycle_by_cycle(seq, pivot, int(comparators))
            cycles += walked + overhead_cycles
        else:
            hi, lo = seq[seq > pivot], seq[seq < pivot]
            equal = seq.size - hi.size - lo.size
            cycles += -(-seq.size // int(comparators)) + overhead_cycles
        if hi.size == need:          # everything above the pivot, nothing else
            threshold, strict = pivot, True
            break
        if hi.size > need:
            seq = hi
            continue
        if hi.size + equal >= need:  # the pivot is the k-th largest
            threshold = pivot
            break
        need -= hi.size + equal
        seq = lo
    # output pass: stream the row once more and keep what beats the threshold (leftmost ties)
    cycles += -(-n // int(comparators)) + overhead_cycles
    if strict:
        idx = np.flatnonzero(row > threshold)
    else:
        above = np.flatnonzero(row > threshold)
        ties = np.flatnonzero(row == threshold)[: k - above.size]
        idx = np.sort(np.concatenate([above, ties]))
    return TopKRun(indices=idx, threshold=threshold, cycles=int(cycles), iterations=len(lengths),
                   lengths=tuple(lengths))


def topk_engine_mean_cycles(n: int, k: int, comparators: int, rng: np.random.Generator, trials: int = 8,
                            overhead_cycles: int = 3, cycle_accurate: bool = False) -> float:
    """Mean cycles over ``trials`` random rows (uniform scores) and random pivots."""
    total = 0
    for _ in range(trials):
        total += topk_engine(rng.random(n), k, comparators, rng, overhead_cycles, cycle_accurate).cycles
    return total / trials


# ---------------------------------------------------------------------------------------------
# Configurations


@dataclass(frozen=True)
class SpAttenConfig:
    """Which techniques are on. ``dense_bits`` set: every tensor is fetched at that width and there is
    no progressive quantization (with every pruning flag off too, the dense baseline on the same datapath)."""

    name: str = "spatten"
    token_pruning: bool = True
    head_pruning: bool = True
    value_pruning: bool = True
    progressive_quant: bool = True
    dense_bits: int | None = None


CONFIGS: dict[str, SpAttenConfig] = {
    "dense-fp32": SpAttenConfig("dense-fp32", False, False, False, False, dense_bits=32),
    "dense-int8": SpAttenConfig("dense-int8", False, False, False, False, dense_bits=8),
    "spatten": SpAttenConfig(),
    "no-token-pruning": SpAttenConfig("no-token-pruning", token_pruning=False),
    "no-head-pruning": SpAttenConfig("no-head-pruning", head_pruning=False),
    "no-value-pruning": SpAttenConfig("no-value-pruning", value_pruning=False),
    "no-progressive-quant": SpAttenConfig("no-progressive-quant", progressive_quant=False),
}
"""Dense references, full SpAtten, and SpAtten with each technique off."""

BREAKDOWN: tuple[tuple[str, SpAttenConfig], ...] = (
    ("dense fp32", CONFIGS["dense-fp32"]),
    ("token pruning", SpAttenConfig("fp32+token", True, False, False, False, dense_bits=32)),
    ("head pruning", SpAttenConfig("fp32+token+head", True, True, False, False, dense_bits=32)),
    ("local V pruning", SpAttenConfig("fp32+token+head+value", True, True, True, False, dense_bits=32)),
    ("progressive quantization", CONFIGS["spatten"]),
)
"""Techniques switched on one at a time: each step's DRAM ratio is that technique's share of the reduction."""


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class SpAttenResult:
    workload: str
    hardware: str
    config: str
    latency_s: float = 0.0
    prompt_latency_s: float = 0.0
    step_latency_s: float = 0.0           # mean latency of one generation step (0 for BERT)
    dram_bytes: dict[str, float] = field(default_factory=lambda: {"q": 0.0, "k_msb": 0.0, "k_lsb": 0.0, "v": 0.0})
    topk_cycles: int = 0
    topk_runs: int = 0
    refetched_queries: int = 0
    queries: int = 0
    stage_busy_s: dict[str, float] = field(default_factory=dict)
    dram_busy_fraction: float = 0.0

    @property
    def total_dram_bytes(self) -> float:
        return float(sum(self.dram_bytes.values()))


# ---------------------------------------------------------------------------------------------
# The pipeline


class _Accelerator:
    """One simulated pass (a prompt, or one generation step) over all layers of a workload."""

    def __init__(self, hardware: Hardware, workload: SpAttenWorkload, config: SpAttenConfig,
                 rng: np.random.Generator, tracer: Tracer | None, tag: str):
        d = hardware.device
        self.d = d
        self.w = workload
        self.c = config
        self.rng = rng
        self.sim = Simulation(tracer=tracer)
        self.env = self.sim.env
        self.tag = tag
        self.clock_s = 1.0 / d.clock_hz
        self.txn = int(d.memory.transaction_bytes or TRANSACTION_BYTES_DEFAULT)
        channels = int(d.memory.channels)
        per_channel = d.memory.bandwidth_bytes_per_s / channels
        self.channels: list[SharedBandwidth] = [
            self.sim.bandwidth(per_channel, f"{tag}/dram ch{c}", allocator=in_order) for c in range(channels)]
        self._next_channel = 0
        self.keys_per_cycle = max(1, d.engine("qk_array").units // workload.head_dim)
        self.values_per_cycle = max(1, d.engine("pv_array").units // workload.head_dim)
        self.qk_latency = int(d.engine("qk_array").param("pipeline_cycles"))
        self.pv_latency = int(d.engine("pv_array").param("pipeline_cycles"))
        self.softmax_per_cycle = d.engine("softmax").units
        self.softmax_latency = int(d.engine("softmax").param("pipeline_cycles"))
        self.comparators = d.engine("topk").units
        self.topk_overhead = int(d.engine("topk").param("overhead_cycles"))
        self.qk_stage = simpy.Resource(self.env, 1)
        self.topk_stage = simpy.Resource(self.env, 1)
        self.pv_stage = simpy.Resource(self.env, 1)
        self.sram = simpy.Container(self.env, capacity=max(1, int(d.sram_bytes)), init=max(1, int(d.sram_bytes)))
        self.busy = {"qk+softmax": 0.0, "topk": 0.0, "pv": 0.0}
        self.bytes = {"q": 0.0, "k_msb": 0.0, "k_lsb": 0.0, "v": 0.0}
        self.topk_cycles = 0
        self.topk_runs = 0
        self.refetched = 0
        self.queries = 0

    # -- helpers --------------------------------------------------------------------------------
    def _span(self, track: str, label: str, start: float, **args: object) -> None:
        if self.sim.tracer is not None:
            self.sim.tracer.span(f"{self.tag}/{track}", label, start, self.env.now, "stage", **args)

    def row_bytes(self, bits: int) -> int:
        raw = self.w.head_dim * bits / 8
        return int(math.ceil(raw / self.txn) * self.txn)

    def fetch(self, rows: int, bits: int, kind: str, label: str) -> simpy.events.Event:
        """Rows interleaved over the channels starting where the last fetch stopped."""
        if rows <= 0:
            return self.env.timeout(0)
        size = self.row_bytes(bits)
        self.bytes[kind] += rows * size
        n = len(self.channels)
        base, extra = divmod(rows, n)
        events = []
        for i in range(min(rows, n)):
            ch = (self._next_channel + i) % n
            events.append(self.channels[ch].transfer((base + (1 if i < extra else 0)) * size, label=label))
        self._next_channel = (self._next_channel + rows) % n
        return simpy.AllOf(self.env, events)

    def cycles(self, count: float) -> simpy.events.Event:
        return self.env.timeout(count * self.clock_s)

    def run_topk(self, n: int, k: int, label: str) -> Generator[simpy.events.Event, object, None]:
        """Hold the top-k engine for the cycles one selection takes on synthetic importance scores."""
        if k >= n:
            return
        scores = self.rng.lognormal(0.0, 1.0, size=n)
        run = topk_engine(scores, k, self.comparators, self.rng, self.topk_overhead)
        with self.topk_stage.request() as req:
            yield req
            start = self.env.now
            yield self.cycles(run.cycles)
            self.busy["topk"] += self.env.now - start
            self._span("topk engine", label, start, n=n, k=k, cycles=run.cycles, iterations=run.iterations)
        self.topk_cycles += run.cycles
        self.topk_runs += 1

    # -- bits ------------------------------------------------------------------------------------
    def key_bits(self) -> int:
        if self.c.dense_bits is not None:
            return self.c.dense_bits
        if self.c.progressive_quant:
            return self.w.key_msb_bits
        return self.w.key_msb_bits + self.w.key_lsb_bits  # static quantization at full width

    def value_bits(self) -> int:
        return self.c.dense_bits if self.c.dense_bits is not None else self.w.value_bits

    def query_bits(self) -> int:
        return self.c.dense_bits if self.c.dense_bits is not None else self.w.query_bits

    # -- one head --------------------------------------------------------------------------------
    def head(self, layer: int, h: int, tokens: int, queries: int, scored_per_query: float,
             local_value_pruning: bool) -> Generator[simpy.events.Event, object, None]:
        label = f"L{layer} h{h}"
        # on-chip key/value SRAM is the admission limit: a head reserves room for its kept K (and V)
        # rows; a head bigger than the whole SRAM takes all of it (it streams)
        need = tokens * self.row_bytes(self.key_bits()) + (0 if local_value_pruning else tokens * self.row_bytes(self.value_bits()))
        room = int(min(need, self.sram.capacity))
        yield self.sram.get(room)
        start = self.env.now
        fetches = [self.fetch(queries, self.query_bits(), "q", f"{label} Q"),
                   self.fetch(tokens, self.key_bits(), "k_msb", f"{label} K")]
        if not local_value_pruning:  # summarization: V of all kept tokens, fetched with K
            fetches.append(self.fetch(tokens, self.value_bits(), "v", f"{label} V"))
        yield simpy.AllOf(self.env, fetches)
        self._span("fetch", f"{label} Q/K{'/V' if not local_value_pruning else ''}", start, tokens=tokens)

        self.queries += queries
        per_query_qk = math.ceil(scored_per_query / self.keys_per_cycle)
        per_query_sm = math.ceil(scored_per_query / self.softmax_per_cycle)
        per_query = max(per_query_qk, per_query_sm)  # Q.K streams into softmax
        progressive = self.c.dense_bits is None and self.c.progressive_quant and self.w.key_lsb_bits > 0
        unsure = int(self.rng.binomial(queries, self.w.refetch_fraction)) if progressive else 0
        # pipelined units: a head holds the array while its scores stream through, then drains
        # (pipeline latency) without blocking the next head. A query whose max probability is below
        # the threshold is recomputed in line: the array stalls until the keys' LSBs arrive (fetched
        # once per head, then kept in SRAM) and recomputes the unsure queries.
        with self.qk_stage.request() as req:
            yield req
            t0 = self.env.now
            yield self.cycles(queries * per_query)
            self._span("qk+softmax", label, t0, queries=queries, keys=tokens)
            if unsure:
                self.refetched += unsure
                yield self.cycles(self.qk_latency + self.softmax_latency)  # the decision needs the probabilities
                t1 = self.env.now
                yield self.fetch(tokens, self.w.key_lsb_bits, "k_lsb", f"{label} K LSB")
                self._span("fetch", f"{label} K LSB", t1, tokens=tokens)
                t1 = self.env.now
                yield self.cycles(unsure * per_query)
                self._span("qk+softmax", f"{label} recompute", t1, queries=unsure)
            self.busy["qk+softmax"] += self.env.now - t0
        yield self.cycles(self.qk_latency + self.softmax_latency)

        values = scored_per_query  # prob.V runs over the keys each query scored
        if local_value_pruning:
            values = max(1, int(round(self.w.value_keep * tokens)))
            for _ in range(queries):
                yield from self.run_topk(tokens, values, f"{label} local V")
            t0 = self.env.now
            yield self.fetch(queries * values, self.value_bits(), "v", f"{label} V")
            self._span("fetch", f"{label} V", t0, rows=values)
        with self.pv_stage.request() as req:
            yield req
            t0 = self.env.now
            per_query_pv = math.ceil(values / self.values_per_cycle)  # values per query
            yield self.cycles(queries * per_query_pv)
            self.busy["pv"] += self.env.now - t0
            self._span("pv", label, t0, values=values)
        yield self.cycles(self.pv_latency)
        yield self.sram.put(room)

    # -- one pass over the layers ---------------------------------------------------------------
    def layers(self, kv_tokens: int, queries_per_head: int | None, causal_prompt: bool,
               local_value_pruning: bool) -> Generator[simpy.events.Event, object, None]:
        """``queries_per_head`` None: summarization (every kept token is a query)."""
        w, c = self.w, self.c
        alive_tokens = kv_tokens
        alive_heads = w.heads
        for layer in range(w.layers):
            target_tokens = max(1, int(round(w.token_keep[layer] * kv_tokens))) if c.token_pruning else kv_tokens
            target_heads = w.heads_kept[layer] if c.head_pruning else w.heads
            if target_tokens < alive_tokens:   # cascade token pruning, chosen by the top-k engine
                yield from self.run_topk(alive_tokens, target_tokens, f"L{layer} token pruning")
                alive_tokens = target_tokens
            if target_heads < alive_heads:     # cascade head pruning
                yield from self.run_topk(alive_heads, target_heads, f"L{layer} head pruning")
                alive_heads = target_heads
            queries = alive_tokens if queries_per_head is None else queries_per_head
            scored = (alive_tokens + 1) / 2 if causal_prompt else alive_tokens
            t0 = self.env.now
            procs = [self.env.process(self.head(layer, h, alive_tokens, queries, scored, local_value_pruning))
                     for h in range(alive_heads)]
            yield simpy.AllOf(self.env, procs)
            self._span("layers", f"layer {layer}", t0, tokens=alive_tokens, heads=alive_heads)

    def run(self, kv_tokens: int, queries_per_head: int | None, causal_prompt: bool,
            local_value_pruning: bool) -> float:
        self.env.process(self.layers(kv_tokens, queries_per_head, causal_prompt, local_value_pruning))
        return self.sim.run()

    @property
    def dram_busy_s(self) -> float:
        return max(ch.busy_s for ch in self.channels)


def _steps(generated: int, steps_simulated: int) -> list[int]:
    if generated <= 0:
        return []
    s = max(1, min(generated, steps_simulated))
    return sorted({int(round(x)) for x in np.linspace(0, generated - 1, s)})


def simulate(hardware: Hardware, workload: SpAttenWorkload, config: SpAttenConfig = CONFIGS["spatten"], *,
             seed: int = 0, steps_simulated: int = 4, tracer: Tracer | None = None,
             trace_only_step: bool = False) -> SpAttenResult:
    """Simulate a workload end to end: the prompt (summarization) pass, then the generation steps.

    ``trace_only_step``: with a tracer, simulate just one generation step (the ``--trace`` timeline).
    """
    if hardware.device.kind != "accelerator" or "topk" not in hardware.device.engines:
        raise SpAttenError(f"hardware {hardware.name!r} is not a SpAtten accelerator (needs engines "
                           f"qk_array, pv_array, softmax, topk)")
    rng = np.random.default_rng(seed)
    result = SpAttenResult(workload=workload.name, hardware=hardware.name, config=config.name)
    local_v = config.value_pruning and workload.value_keep < 1.0
    busy = {"qk+softmax": 0.0, "topk": 0.0, "pv": 0.0}
    dram_busy = 0.0

    def absorb(acc: _Accelerator, scale: float) -> None:
        nonlocal dram_busy
        for key, value in acc.bytes.items():
            result.dram_bytes[key] += value * scale
        for key, value in acc.busy.items():
            busy[key] += value * scale
        dram_busy += acc.dram_busy_s * scale
        result.topk_cycles += int(round(acc.topk_cycles * scale))
        result.topk_runs += int(round(acc.topk_runs * scale))
        result.refetched_queries += int(round(acc.refetched * scale))
        result.queries += int(round(acc.queries * scale))

    if trace_only_step:
        if not workload.generation:
            raise SpAttenError(f"workload {workload.name!r} has no generation step to trace")
        acc = _Accelerator(hardware, workload, config, rng, tracer, f"spatten {workload.model} step")
        result.step_latency_s = acc.run(workload.prompt_tokens + 1, 1, False, local_v)
        result.latency_s = result.step_latency_s
        absorb(acc, 1.0)
    else:
        acc = _Accelerator(hardware, workload, config, rng, None, "prompt")
        result.prompt_latency_s = acc.run(workload.prompt_tokens, None, workload.generation, False)
        absorb(acc, 1.0)
        steps = _steps(workload.generated_tokens, steps_simulated)
        if steps:
            scale = workload.generated_tokens / len(steps)
            total = 0.0
            for step in steps:
                acc = _Accelerator(hardware, workload, config, rng, None, f"step {step}")
                total += acc.run(workload.prompt_tokens + step + 1, 1, False, local_v)
                absorb(acc, scale)
            result.step_latency_s = total / len(steps)
        result.latency_s = result.prompt_latency_s + result.step_latency_s * workload.generated_tokens
    result.stage_busy_s = busy
    result.dram_busy_fraction = dram_busy / result.latency_s if result.latency_s > 0 else 0.0
    return result


# ---------------------------------------------------------------------------------------------
# Dense GPU / CPU baselines from the cost models


@dataclass(frozen=True)
class BaselineResult:
    hardware: str
    workload: str
    latency_s: float
    dram_bytes: float
    kernels: int
    prompt_s: float = 0.0
    step_s: float = 0.0  # mean of one generation step (0 without generation)


def _attention_ops(device: Device, heads: int, q: int, kv: int, d: int, cache_concat: bool) -> list[OpCost]:
    """What a framework runs for one dense attention layer, kernel by kernel (fp32, batch 1):
    split heads for Q/K/V, [append to the K/V cache: a full copy, as torch.cat does],
    Q.K^T (batched GEMM over heads), softmax, prob.V, merge heads."""
    ops = [memcpy(device, 4.0 * heads * q * d) for _ in range(3)]
    if cache_concat:
        ops += [memcpy(device, 4.0 * heads * kv * d) for _ in range(2)]
    ops.append(gemm(device, q, kv, d, "fp32", batch=heads))
    ops.append(softmax(device, heads * q, kv, "fp32"))
    ops.append(gemm(device, q, d, kv, "fp32", batch=heads))
    ops.append(memcpy(device, 4.0 * heads * q * d))
    return ops


def dense_baseline(hardware: Hardware, workload: SpAttenWorkload) -> BaselineResult:
    """Dense fp32 attention of the whole workload on a GPU or CPU, kernels run back to back."""
    d = hardware.device
    ops: list[OpCost] = []
    for _ in range(workload.layers):
        ops += _attention_ops(d, workload.heads, workload.prompt_tokens, workload.prompt_tokens, workload.head_dim,
                              cache_concat=False)
    prompt_s = float(sum(o.time_s for o in ops))
    for step in range(workload.generated_tokens):
        kv = workload.prompt_tokens + step + 1
        for _ in range(workload.layers):
            ops += _attention_ops(d, workload.heads, 1, kv, workload.head_dim, cache_concat=True)
    total_s = float(sum(o.time_s for o in ops))
    steps = workload.generated_tokens
    return BaselineResult(hardware=hardware.name, workload=workload.name, latency_s=total_s,
                          dram_bytes=float(sum(o.bytes for o in ops)), kernels=len(ops), prompt_s=prompt_s,
                          step_s=(total_s - prompt_s) / steps if steps else 0.0)


def with_comparators(hardware: Hardware, comparators: int) -> Hardware:
    """A copy of a SpAtten preset whose top-k engine has ``comparators`` comparators."""
    d = hardware.device
    engines = dict(d.engines)
    engines["topk"] = replace(engines["topk"], units=int(comparators))
    return replace(hardware, device=replace(d, engines=engines))
