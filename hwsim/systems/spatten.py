"""SpAtten (HPCA 2021) on the event engine, driven by the authors' released workload rows.

One request per workload row (generation iteration, layer, head), mapped the way the authors' RTL
testbench maps it (public repository mit-han-lab/spatten,
``spatten_hardware/hardware/src/main/scala/spatten/sim/TestSpAtten.scala``, "TestSpAtten" below):

* keys and values fetched: ``key_fetch_num`` / ``value_fetch_num`` rounded up to a multiple of 8;
* key bits: full precision (-1), 10 and 12 bits become 8 MSB bits with a forced LSB re-fetch;
  otherwise the row's bits and its ``if_requant`` (decided by the authors from real scores);
  value bits: -1, 10 and 12 become 8;
* 6-bit keys (values) of two consecutive heads are fused into one fetch (``fused_mat = 2``), and
  the local-value top-k latency is charged once per fused pair;
* the LSB re-fetch is 4 bits per key element (``requantBitCount = 4`` in
  ``spatten/SpAttenController.scala``), a key row being ``head_dim * bits * fused / 8`` bytes;
* the query arrives with the request (no DRAM read).

What is simulated per request (an engine process; requests are admitted in file order):

* admission: key-buffer lines (``ceil(keys / (multipliers / head_dim))`` rounded to 2, as
  ``keymatNumLines`` in SpAttenController.scala) and one of 8 request slots (the controller's
  16-deep request FIFO halts new requests below half free);
* fetch the keys' MSBs -> Q.K on the multiplier array streaming into softmax (held for the
  streaming cycles, then drains its pipeline latency without blocking the next request);
* progressive quantization: a request whose row says re-fetch issues the LSB fetch and re-enters
  the Q.K queue with priority when the LSBs arrive (the controller's ``input_requantize`` path,
  lower-first arbiter): it holds the array only to recompute, so other heads proceed meanwhile;
* local value pruning on the top-k engine (:func:`topk_engine`, the released latency model) ->
  fetch the kept values -> prob.V.
* cascade token pruning (``if_topk`` rows): the top-k engine selects ``topk`` of the previous
  layer's kept tokens before the layer's requests are admitted (TestSpAtten charges no time for
  this; we do).

DRAM (:class:`HbmTiming`): one in-order channel per HBM2 channel with the Ramulator2 ``HBM2_2Gbps``
timings the released flow uses (``spatten_hardware/hardware/ramulator_config.yaml``: HBM2_8Gb,
FR-FCFS, all-bank refresh, RoBaRaCoCh mapping). A fetch is spread over the channels in 32-byte
beats (``Crossbar`` in ``spatten/SpAtten.scala`` interleaves on address bit 5); each channel pays
the fetch's data beats, plus one row activation and CAS latency (tRCD + tCL) per fetch, and loses
tRFC of every tREFI to refresh. Under RoBaRaCoCh a fetch's successive DRAM rows lie in different
banks, so later activations overlap the previous row's data (assumption: FR-FCFS hides them).

The top-k engine is the released latency model (``spatten/sim/TopKLatencyModel.scala``):
quick-select with a random pivot, ``ceil(len / P) + 3`` cycles per iteration, and no output pass.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import simpy

from hwsim.costs import OpCost, elementwise, gemm, memcpy, softmax
from hwsim.engine import FifoChannel, Flow, Simulation, Tracer
from hwsim.errors import SimulationError
from hwsim.hardware import Hardware
from hwsim.hardware.model import Device
from hwsim.systems.spatten_energy import SpAttenEnergy
from hwsim.systems.spatten_workloads import Benchmark
from hwsim.workloads.spatten_csv import WorkloadRow

__all__ = [
    "BREAKDOWN",
    "CONFIGS",
    "HBM2_2GBPS",
    "BaselineResult",
    "HbmTiming",
    "Request",
    "SpAttenConfig",
    "SpAttenResult",
    "TopKRun",
    "attention_ops",
    "dense_baseline",
    "map_row",
    "plan_bytes",
    "plan_iteration",
    "simulate",
    "topk_engine",
    "topk_engine_mean_cycles",
    "with_comparators",
]

TRANSACTION_BYTES_DEFAULT = 32  # AXI data width 256 bits (TestSpAtten: Axi4Config(32, 256))
REQUANT_BITS = 4                # SpAttenController.scala: requantBitCount = 4
FETCH_ROUND = 8                 # TestSpAtten: key/val_fetch_num rounded up to a multiple of 8
REQUEST_SLOTS = 8               # SpAttenController.scala: req FIFO depth 16, new requests halt below 8 free
TOPK_OVERHEAD_CYCLES = 3        # TopKLatencyModel.scala: ceil(len / P) + 3 per iteration


def in_order(capacity_bytes_per_s: float, flows: Sequence[Flow]) -> None:
    """A channel serving requests in the order they were issued: the oldest gets the whole channel."""
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
        for v in seq[start:start + comparators].tolist():
            if v > pivot:
                fifo_hi.append(v)
            elif v < pivot:
                fifo_lo.append(v)
            else:
                equal += 1
        cycles += 1
    return np.asarray(fifo_hi, dtype=seq.dtype), np.asarray(fifo_lo, dtype=seq.dtype), equal, cycles


def topk_engine(values: np.ndarray | Sequence[float], k: int, comparators: int, rng: np.random.Generator,
                overhead_cycles: int = TOPK_OVERHEAD_CYCLES, cycle_accurate: bool = False) -> TopKRun:
    """Select the ``k`` largest of ``values`` (leftmost ties first) the way the released model does.

    Each iteration streams the candidates through P comparators (``ceil(len / P) + overhead``
    cycles) around a random pivot; it stops when fewer than ``k`` remaining-needed candidates lie
    above the pivot and the pivot's ties complete them (TopKLatencyModel.scala, mirrored: it keeps
    the ``k`` smallest). The kept set is then known from the pivot; the released model charges no
    output pass and neither do we.
    """
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
    threshold = float("nan")
    while seq.size > 0:
        cycles += -(-seq.size // int(comparators)) + overhead_cycles
        lengths.append(int(seq.size))
        pivot = float(seq[int(rng.integers(seq.size))])
        if cycle_accurate:
            hi, lo, equal, _ = _partition_cycle_by_cycle(seq, pivot, int(comparators))
        else:
            hi, lo = seq[seq > pivot], seq[seq < pivot]
            equal = seq.size - hi.size - lo.size
        if hi.size <= need:
            if hi.size + equal > need:
                threshold = pivot
                break
            need -= hi.size + equal
            seq = lo
        else:
            seq = hi
    if math.isnan(threshold):   # k == n: every candidate was consumed, all are kept
        threshold = float(row.min())
    above = np.flatnonzero(row > threshold)
    ties = np.flatnonzero(row == threshold)[: k - above.size]
    idx = np.sort(np.concatenate([above, ties]))
    return TopKRun(indices=idx, threshold=threshold, cycles=int(cycles), iterations=len(lengths),
                   lengths=tuple(lengths))


def topk_engine_mean_cycles(n: int, k: int, comparators: int, rng: np.random.Generator, trials: int = 8,
                            overhead_cycles: int = TOPK_OVERHEAD_CYCLES, cycle_accurate: bool = False) -> float:
    """Mean cycles over ``trials`` random rows (uniform scores) and random pivots."""
    total = 0
    for _ in range(trials):
        total += topk_engine(rng.random(n), k, comparators, rng, overhead_cycles, cycle_accurate).cycles
    return total / trials


# ---------------------------------------------------------------------------------------------
# DRAM timing


@dataclass(frozen=True)
class HbmTiming:
    """HBM2 channel timing in DRAM clocks (Ramulator2 ``HBM2_2Gbps`` preset, the one the released
    ``ramulator_config.yaml`` names: tCK 1 ns, nRCD 7, nCL 7, nRP 7, nRFC 160, nREFI 3900)."""

    tck_s: float = 1e-9
    n_rcd: int = 7
    n_cl: int = 7
    n_rfc: int = 160
    n_refi: int = 3900

    @property
    def refresh_factor(self) -> float:
        """Fraction of time a channel is not blocked by all-bank refresh."""
        return 1.0 - self.n_rfc / self.n_refi

    @property
    def first_access_s(self) -> float:
        """Row activation plus CAS latency, paid once per fetch on each channel it touches."""
        return (self.n_rcd + self.n_cl) * self.tck_s


HBM2_2GBPS = HbmTiming()


# ---------------------------------------------------------------------------------------------
# Configurations


@dataclass(frozen=True)
class SpAttenConfig:
    """Which techniques are on. ``dense_bits`` set: every key/value at that width, no re-fetch.
    ``progressive_quant`` off with quantization: keys at MSB + LSB bits, always (static)."""

    name: str = "spatten"
    token_pruning: bool = True
    head_pruning: bool = True
    value_pruning: bool = True
    progressive_quant: bool = True
    dense_bits: int | None = None
    local_topk: bool = True       # charge the local-value top-k (False: a design without a top-k engine)


CONFIGS: dict[str, SpAttenConfig] = {
    "dense-fp32": SpAttenConfig("dense-fp32", False, False, False, False, dense_bits=32),
    "dense-int8": SpAttenConfig("dense-int8", False, False, False, False, dense_bits=8),
    "spatten": SpAttenConfig(),
    "no-progressive-quant": SpAttenConfig("no-progressive-quant", progressive_quant=False),
    # A3 (Ham et al., HPCA'20) as we model it: every key and value fetched at 8 bits; its approximate
    # candidate search cuts multiplies, not DRAM traffic (assumption: 8-bit operands, search overlapped)
    "a3": SpAttenConfig("a3", False, False, False, False, dense_bits=8, local_topk=False),
    # MNNFast (Jang et al., ISCA'19) as we model it: every key at 8 bits, values skipped where the
    # probability is small (assumption: as many kept as SpAtten's local value pruning keeps)
    "mnnfast": SpAttenConfig("mnnfast", False, False, True, False, dense_bits=8, local_topk=False),
}
"""Dense references, full SpAtten, static quantization, and the A3 / MNNFast models."""

BREAKDOWN: tuple[tuple[str, SpAttenConfig], ...] = (
    ("dense fp32", CONFIGS["dense-fp32"]),
    ("token pruning", SpAttenConfig("fp32+token", True, False, False, False, dense_bits=32)),
    ("head pruning", SpAttenConfig("fp32+token+head", True, True, False, False, dense_bits=32)),
    ("local V pruning", SpAttenConfig("fp32+token+head+value", True, True, True, False, dense_bits=32)),
    ("static quantization", CONFIGS["no-progressive-quant"]),
    ("progressive quantization", CONFIGS["spatten"]),
)
"""Techniques switched on one at a time: each step's DRAM ratio is that technique's share of the reduction."""


# ---------------------------------------------------------------------------------------------
# Mapping rows to requests


@dataclass(frozen=True)
class Request:
    """One row as the accelerator runs it (bytes per row are per head; a fused pair pays half each)."""

    layer: int
    head: int
    queries: int
    key_rows: int
    value_rows: int
    key_row_bytes: float
    value_row_bytes: float
    requant: bool
    lsb_row_bytes: float
    local_topk: tuple[int, int] | None     # (n, k) of local value pruning
    token_topk: tuple[int, int] | None     # (n, k) of cascade token pruning before this layer

    @property
    def msb_bytes(self) -> float:
        return self.key_rows * self.key_row_bytes

    @property
    def lsb_bytes(self) -> float:
        return self.key_rows * self.lsb_row_bytes if self.requant else 0.0

    @property
    def value_bytes(self) -> float:
        return self.value_rows * self.value_row_bytes


def _round_up(x: int, step: int) -> int:
    return -(-x // step) * step


def _row_bytes(head_dim: int, bits: int, fused: int, txn: int) -> float:
    """Bytes per head for one key/value row: whole transactions of the (fused) vector."""
    return _round_up(math.ceil(head_dim * bits * fused / 8), txn) / fused


def _testbench_bits(key_bits: int, value_bits: int, requant: bool) -> tuple[int, int, bool]:
    """TestSpAtten: -1, 10, 12-bit keys -> 8 MSB bits with forced re-fetch; -1/10/12-bit values -> 8."""
    if key_bits in (-1, 10, 12):
        key_bits, requant = 8, True
    if value_bits in (-1, 10, 12):
        value_bits = 8
    return key_bits, value_bits, requant


def map_row(row: WorkloadRow, config: SpAttenConfig, *, queries: int = 1, pays_topk: bool = True,
            token_from: int | None = None, txn: int = TRANSACTION_BYTES_DEFAULT) -> Request:
    """The request one workload row becomes under ``config`` (see the module docstring)."""
    keys = row.key_fetch if config.token_pruning else row.length
    if config.value_pruning:
        values = row.value_fetch if config.token_pruning else max(1, round(row.value_fetch * row.length / row.key_fetch))
    else:
        values = keys
    key_rows, value_rows = _round_up(keys, FETCH_ROUND), _round_up(values, FETCH_ROUND)
    if config.dense_bits is not None:
        kb = vb = config.dense_bits
        requant, kfused, vfused = False, 1, 1
    else:
        kb, vb, requant = _testbench_bits(row.key_bits, row.value_bits, row.requant)
        kfused, vfused = (2 if kb == 6 else 1), (2 if vb == 6 else 1)
        if not config.progressive_quant:        # static: the full MSB + LSB width, never re-fetched
            kb, requant, kfused = kb + REQUANT_BITS, False, 1
    local = None
    if config.value_pruning and config.local_topk and values < keys and pays_topk:
        local = (keys, values)
    token = None
    if config.token_pruning and row.topk and token_from is not None and row.topk_k < token_from:
        token = (token_from, row.topk_k)
    if queries > 1 and not config.token_pruning:   # summarization: every token is a query when none is pruned
        queries = row.length
    return Request(layer=row.layer, head=row.head, queries=queries, key_rows=key_rows, value_rows=value_rows,
        key_row_bytes=_row_bytes(row.head_dim, kb, kfused, txn),
        value_row_bytes=_row_bytes(row.head_dim, vb, vfused, txn), requant=requant,
        lsb_row_bytes=_row_bytes(row.head_dim, REQUANT_BITS, 1, txn), local_topk=local, token_topk=token)


def plan_iteration(rows: Sequence[WorkloadRow], bench: Benchmark, config: SpAttenConfig,
                   txn: int = TRANSACTION_BYTES_DEFAULT) -> list[Request]:
    """The requests of one iteration, in order. Head pruning off: the pruned heads come back (a copy
    of the layer's first row). Fused 6-bit pairs pay the local top-k on their first part only."""
    by_layer: dict[int, list[WorkloadRow]] = {}
    for r in rows:
        by_layer.setdefault(r.layer, []).append(r)
    out: list[Request] = []
    part = 0
    prev_keys: int | None = None
    for layer in sorted(by_layer):
        layer_rows = by_layer[layer]
        if not config.head_pruning and len(layer_rows) < bench.heads:
            present = {r.head for r in layer_rows}
            layer_rows = layer_rows + [replace(layer_rows[0], head=h, topk=False)
                                       for h in range(bench.heads) if h not in present]
        for r in layer_rows:
            fused_keys = config.dense_bits is None and config.progressive_quant and r.key_bits == 6
            pays = (part % 2 == 0) if fused_keys else True
            part = part + 1 if fused_keys else 0
            queries = 1 if bench.generation else r.key_fetch
            first = r.length if prev_keys is None else prev_keys
            out.append(map_row(r, config, queries=queries, pays_topk=pays, token_from=first, txn=txn))
        prev_keys = layer_rows[0].key_fetch
    return out


def plan_bytes(bench: Benchmark, config: SpAttenConfig, txn: int = TRANSACTION_BYTES_DEFAULT) -> dict[str, float]:
    """DRAM bytes of every request of every iteration (exact; the simulator issues the same fetches)."""
    out = {"k_msb": 0.0, "k_lsb": 0.0, "v": 0.0}
    for rows in bench.iterations():
        for q in plan_iteration(rows, bench, config, txn):
            out["k_msb"] += q.msb_bytes
            out["k_lsb"] += q.lsb_bytes
            out["v"] += q.value_bytes
    return out


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class SpAttenResult:
    benchmark: str
    hardware: str
    config: str
    latency_s: float = 0.0                # all iterations (generation only for GPT-2)
    iteration_latency_s: float = 0.0      # mean of one iteration
    cycles: float = 0.0
    iterations: int = 0
    iterations_simulated: int = 0
    dram_bytes: dict[str, float] = field(default_factory=lambda: {"k_msb": 0.0, "k_lsb": 0.0, "v": 0.0})
    simulated_bytes: dict[str, float] = field(default_factory=lambda: {"k_msb": 0.0, "k_lsb": 0.0, "v": 0.0})
    requests: int = 0
    refetched_requests: int = 0
    topk_cycles: float = 0.0
    energy: SpAttenEnergy = field(default_factory=SpAttenEnergy)
    stage_busy_s: dict[str, float] = field(default_factory=dict)

    @property
    def total_dram_bytes(self) -> float:
        return float(sum(self.dram_bytes.values()))

    @property
    def energy_j(self) -> float:
        return self.energy.joules()


# ---------------------------------------------------------------------------------------------
# The pipeline


class _Accelerator:
    """One simulated iteration: a list of requests through the pipeline."""

    def __init__(self, hardware: Hardware, head_dim: int, rng: np.random.Generator, tracer: Tracer | None,
                 tag: str, hbm: HbmTiming = HBM2_2GBPS):
        d = hardware.device
        self.rng = rng
        self.sim = Simulation(tracer=tracer)
        self.env = self.sim.env
        self.tag = tag
        self.hbm = hbm
        self.clock_s = 1.0 / d.clock_hz
        self.head_dim = head_dim
        channels = int(d.memory.channels)
        self.per_channel = d.memory.bandwidth_bytes_per_s / channels
        self.beat = int(d.memory.transaction_bytes or TRANSACTION_BYTES_DEFAULT)
        self.channels: list[FifoChannel] = [  # in-order service, O(1) per transfer (same answer as in_order)
            self.sim.fifo_channel(self.per_channel * hbm.refresh_factor, f"{tag}/dram ch{c}")
            for c in range(channels)]
        self._next_channel = 0
        self.keys_per_cycle = max(1, d.engine("qk_array").units // head_dim)
        self.values_per_cycle = max(1, d.engine("pv_array").units // head_dim)
        self.qk_latency = int(d.engine("qk_array").param("pipeline_cycles"))
        self.pv_latency = int(d.engine("pv_array").param("pipeline_cycles"))
        self.softmax_per_cycle = d.engine("softmax").units
        self.softmax_latency = int(d.engine("softmax").param("pipeline_cycles"))
        self.comparators = d.engine("topk").units
        self.topk_overhead = int(d.engine("topk").param("overhead_cycles"))
        # key buffer: SRAM split evenly between keys and values; a line is one row of the array of
        # 12-bit values (SpAtten.scala: widthQuantValue 12, sizeLine = numMultipliers)
        line_bytes = d.engine("qk_array").units * 12 / 8
        self.key_lines = max(2, int(d.sram_bytes / 2 // line_bytes))
        self.qk_stage = simpy.PriorityResource(self.env, 1)
        self.topk_stage = simpy.Resource(self.env, 1)
        self.pv_stage = simpy.Resource(self.env, 1)
        self.key_buffer = simpy.Container(self.env, capacity=self.key_lines, init=self.key_lines)
        self.slots = simpy.Resource(self.env, REQUEST_SLOTS)
        self.busy = {"qk+softmax": 0.0, "topk": 0.0, "pv": 0.0}
        self.bytes = {"k_msb": 0.0, "k_lsb": 0.0, "v": 0.0}
        self.energy = SpAttenEnergy()
        self.topk_cycles = 0
        self.refetched = 0
        self.qk_start: dict[tuple[int, int], float] = {}   # first Q.K start per (layer, head), for tests
        self.recompute_start: dict[tuple[int, int], float] = {}  # re-fetched heads' second pass

    def _span(self, track: str, label: str, start: float, **args: object) -> None:
        if self.sim.tracer is not None:
            self.sim.tracer.span(f"{self.tag}/{track}", label, start, self.env.now, "stage", **args)

    def fetch(self, nbytes: float, kind: str, label: str) -> simpy.events.Event:
        """32-byte beats spread over the channels from where the last fetch stopped; each channel
        touched pays one activation + CAS latency for the fetch (see :class:`HbmTiming`)."""
        if nbytes <= 0:
            return self.env.timeout(0)
        self.bytes[kind] += nbytes
        self.energy.dram_bits += 8 * nbytes
        self.energy.sram_bits += 8 * nbytes                    # written into the key/value buffer
        beats = max(1, math.ceil(nbytes / self.beat))
        n = len(self.channels)
        base, extra = divmod(beats, n)
        latency_bytes = self.hbm.first_access_s * self.per_channel * self.hbm.refresh_factor
        last_s = 0.0  # one event for the fetch: it ends when its busiest channel does
        for i in range(min(beats, n)):
            ch = (self._next_channel + i) % n
            size = (base + (1 if i < extra else 0)) * self.beat
            last_s = max(last_s, self.channels[ch].reserve(size + latency_bytes, label=label))
        self._next_channel = (self._next_channel + beats) % n
        return self.env.timeout(last_s)

    def cycles(self, count: float) -> simpy.events.Event:
        return self.env.timeout(count * self.clock_s)

    def run_topk(self, n: int, k: int, label: str) -> Generator[simpy.events.Event, object, None]:
        """Hold the top-k engine for one selection of k of n (scores: uniform, seeded)."""
        if k >= n:
            return
        run = topk_engine(self.rng.random(n), k, self.comparators, self.rng, self.topk_overhead)
        self.energy.comparisons += sum(run.lengths)
        with self.topk_stage.request() as req:
            yield req
            start = self.env.now
            yield self.cycles(run.cycles)
            self.busy["topk"] += self.env.now - start
            self._span("topk engine", label, start, n=n, k=k, cycles=run.cycles)
        self.topk_cycles += run.cycles

    def _qk_pass(self, q: Request, label: str, priority: int) -> Generator[simpy.events.Event, object, None]:
        per_query = max(math.ceil(q.key_rows / self.keys_per_cycle), math.ceil(q.key_rows / self.softmax_per_cycle))
        with self.qk_stage.request(priority=priority) as req:
            yield req
            t0 = self.env.now
            self.qk_start.setdefault((q.layer, q.head), t0)
            if priority == 0:
                self.recompute_start[(q.layer, q.head)] = t0
            yield self.cycles(q.queries * per_query)
            self.busy["qk+softmax"] += self.env.now - t0
            self._span("qk+softmax", label, t0, keys=q.key_rows, queries=q.queries)
        self.energy.multiplies += q.queries * q.key_rows * self.head_dim
        self.energy.softmax_elements += q.queries * q.key_rows
        self.energy.sram_bits += q.queries * q.key_rows * self.head_dim * 12  # key buffer reads (12-bit lanes)
        yield self.cycles(self.qk_latency + self.softmax_latency)

    def request(self, q: Request, lines: int, slot: simpy.resources.resource.Request
                ) -> Generator[simpy.events.Event, object, None]:
        label = f"L{q.layer} h{q.head}"
        t0 = self.env.now
        yield self.fetch(q.msb_bytes, "k_msb", f"{label} K")
        self._span("fetch", f"{label} K", t0, rows=q.key_rows)
        yield from self._qk_pass(q, label, priority=1)
        if q.requant:   # re-queued: other requests use the array while the LSBs arrive
            self.refetched += 1
            t1 = self.env.now
            yield self.fetch(q.lsb_bytes, "k_lsb", f"{label} K LSB")
            self._span("fetch", f"{label} K LSB", t1, rows=q.key_rows)
            yield from self._qk_pass(q, f"{label} recompute", priority=0)
        self.slots.release(slot)
        yield self.key_buffer.put(lines)
        if q.local_topk is not None:
            yield from self.run_topk(*q.local_topk, f"{label} local V")
        t0 = self.env.now
        yield self.fetch(q.value_bytes, "v", f"{label} V")
        self._span("fetch", f"{label} V", t0, rows=q.value_rows)
        with self.pv_stage.request() as req:
            yield req
            t0 = self.env.now
            yield self.cycles(q.queries * math.ceil(q.value_rows / self.values_per_cycle))
            self.busy["pv"] += self.env.now - t0
            self._span("pv", label, t0, values=q.value_rows)
        self.energy.multiplies += q.queries * q.value_rows * self.head_dim
        self.energy.sram_bits += q.queries * q.value_rows * self.head_dim * 12
        yield self.cycles(self.pv_latency)

    def dispatch(self, requests: Sequence[Request], layer_barrier: bool) -> Generator[simpy.events.Event, object, None]:
        """Admit requests in order: buffer lines and a request slot, cascade token top-k first."""
        procs: list[simpy.events.Process] = []
        layer_procs: list[simpy.events.Process] = []
        layer = None
        for q in requests:
            if layer_barrier and layer is not None and q.layer != layer and layer_procs:
                yield simpy.AllOf(self.env, layer_procs)
                layer_procs = []
            layer = q.layer
            if q.token_topk is not None:
                yield from self.run_topk(*q.token_topk, f"L{q.layer} token pruning")
            lines = min(self.key_lines, _round_up(math.ceil(q.key_rows / self.keys_per_cycle), 2))
            slot = self.slots.request()
            yield slot
            yield self.key_buffer.get(lines)
            p = self.env.process(self.request(q, lines, slot))
            procs.append(p)
            layer_procs.append(p)
        yield simpy.AllOf(self.env, procs)

    def run(self, requests: Sequence[Request], layer_barrier: bool) -> float:
        self.env.process(self.dispatch(requests, layer_barrier))
        return self.sim.run()


def _sample(n: int, count: int | None) -> list[tuple[int, float]]:
    """(iteration, weight) pairs: iteration 0 always (in the released files it runs before any
    pruning, so it is unlike the rest) with weight 1, plus ``count`` evenly spaced later iterations
    standing for all of them. ``None``: every iteration."""
    if count is None or count >= n - 1:
        return [(i, 1.0) for i in range(n)]
    later = sorted({round(float(x)) for x in np.linspace(1, n - 1, max(1, count) + 2)[1:-1]})
    return [(0, 1.0)] + [(i, (n - 1) / len(later)) for i in later]


def simulate(hardware: Hardware, bench: Benchmark, config: SpAttenConfig = CONFIGS["spatten"], *,
             seed: int = 0, iterations: int | None = None, layer_barrier: bool = False,
             tracer: Tracer | None = None, hbm: HbmTiming = HBM2_2GBPS) -> SpAttenResult:
    """Simulate a benchmark. ``iterations``: how many iterations after the first to simulate (evenly
    spaced; the first is always simulated); the latency and energy are scaled to all of them, the DRAM
    bytes are counted exactly over all. ``None``: every iteration.
    ``layer_barrier``: wait for a layer's requests before admitting the next layer's (TestSpAtten
    streams requests without one; the default follows it)."""
    d = hardware.device
    if d.kind != "accelerator" or "topk" not in d.engines:
        raise SpAttenError(f"hardware {hardware.name!r} is not a SpAtten accelerator (needs engines "
                           f"qk_array, pv_array, softmax, topk)")
    txn = int(d.memory.transaction_bytes or TRANSACTION_BYTES_DEFAULT)
    rng = np.random.default_rng(seed)
    groups = bench.iterations()
    picked = _sample(len(groups), iterations)
    result = SpAttenResult(benchmark=bench.name, hardware=hardware.name, config=config.name,
                           iterations=len(groups), iterations_simulated=len(picked))
    result.dram_bytes = plan_bytes(bench, config, txn)
    busy = {"qk+softmax": 0.0, "topk": 0.0, "pv": 0.0}
    total = 0.0
    for i, scale in picked:
        acc = _Accelerator(hardware, bench.head_dim, rng, tracer, f"{bench.name} it{i}", hbm)
        reqs = plan_iteration(groups[i], bench, config, txn)
        total += acc.run(reqs, layer_barrier) * scale
        for key, value in acc.bytes.items():
            result.simulated_bytes[key] += value
        for key, value in acc.busy.items():
            busy[key] += value * scale
        result.energy.add(acc.energy, scale)
        result.requests += len(reqs)
        result.refetched_requests += acc.refetched
        result.topk_cycles += acc.topk_cycles * scale
    result.latency_s = total
    result.iteration_latency_s = total / len(groups)
    result.cycles = result.latency_s * d.clock_hz
    result.stage_busy_s = busy
    # the DRAM energy follows the exact byte count, not the sampled iterations
    result.energy.dram_bits = 8 * result.total_dram_bytes
    return result


# ---------------------------------------------------------------------------------------------
# Dense GPU / CPU baselines: the op sequence a framework runs, priced by the cost models


@dataclass(frozen=True)
class BaselineResult:
    hardware: str
    benchmark: str
    latency_s: float
    dram_bytes: float
    ops: int
    dispatch_s: float      # per-op dispatch overhead included in latency_s


def attention_ops(device: Device, heads: int, q: int, kv: int, d: int, cache_append: bool) -> list[OpCost]:
    """One dense fp32 attention layer, op by op, as PyTorch eager runs it (batch 1):
    [append K and V to the cache: torch.cat copies the whole cache], Q.K^T (batched GEMM over heads),
    scale by 1/sqrt(d), mask (causal; applied even for one query), softmax, prob.V, merge heads (a
    copy). Each op pays the device's launch overhead.

    The ops run one after another on one layer's buffers, so on a device with measured models each
    finds in cache only what the whole sequence's footprint leaves there: every buffer it reads or
    writes, each once (Q, the K/V caches and their appended copies, four score-sized outputs, the
    output and its merged copy)."""
    word = 4.0
    cache = float(heads * kv * d)
    scores = float(heads * q * kv)
    footprint = word * (heads * q * d + 2 * cache * (2 if cache_append else 1) + 4 * scores + 2 * heads * q * d)
    ws = {"working_set_bytes": footprint}
    ops: list[OpCost] = []
    if cache_append:
        ops += [memcpy(device, word * cache, **ws) for _ in range(2)]
    ops.append(gemm(device, q, kv, d, "fp32", batch=heads, **ws))
    ops.append(elementwise(device, heads * q * kv, "fp32", inputs=1, outputs=1, **ws))
    ops.append(elementwise(device, heads * q * kv, "fp32", inputs=2, outputs=1, **ws))
    ops.append(softmax(device, heads * q, kv, "fp32", **ws))
    ops.append(gemm(device, q, d, kv, "fp32", batch=heads, **ws))
    ops.append(memcpy(device, word * heads * q * d, **ws))
    return ops


def dense_baseline(hardware: Hardware, bench: Benchmark) -> BaselineResult:
    """Dense attention of the whole benchmark on a GPU or CPU (generation iterations only for
    GPT-2: one query per head over the cache of ``sentence_length_L`` tokens; every head)."""
    dev = hardware.device
    ops: list[OpCost] = []
    for rows in bench.iterations():
        length = rows[0].length
        for _ in range(bench.layers):
            if bench.generation:
                ops += attention_ops(dev, bench.heads, 1, length, bench.head_dim, cache_append=True)
            else:
                ops += attention_ops(dev, bench.heads, length, length, bench.head_dim, cache_append=False)
    return BaselineResult(hardware=hardware.name, benchmark=bench.name, latency_s=float(sum(o.time_s for o in ops)),
                          dram_bytes=float(sum(o.bytes for o in ops)), ops=len(ops),
                          dispatch_s=float(sum(o.overhead_s for o in ops)))


def with_comparators(hardware: Hardware, comparators: int) -> Hardware:
    """A copy of a SpAtten preset whose top-k engine has ``comparators`` comparators."""
    d = hardware.device
    engines = dict(d.engines)
    engines["topk"] = replace(engines["topk"], units=int(comparators))
    return replace(hardware, device=replace(d, engines=engines))
