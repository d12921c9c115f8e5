"""T3 (Pati et al., ASPLOS'24): a tensor-parallel GEMM overlapped with its ring reduce-scatter.

One GPU of an N-GPU ring runs a sublayer's GEMM, whose partial-sum output is reduce-scattered around
the ring and then all-gathered. The ring is homogeneous, so every GPU does the same thing at the same
time: we simulate GPU 0 and take what arrives from its predecessor to be the mirror image of what it
sends to its successor (same bytes, same moment). Resources of that GPU:

* ``compute``: its compute units. A GEMM runs as waves of output tiles, one tile per unit per wave,
  so a wave takes one tile's compute time however few tiles it has (wave quantization). A software
  collective kernel holds some units and the GEMM waves get ``units - taken``.
* ``hbm``: one :class:`~hwsim.engine.SharedBandwidth` that every GEMM wave and every collective step
  draws on, with the allocator of :mod:`hwsim.systems.t3_memory`: delivered bandwidth falls when
  streams mix (row switches, read/write turnaround), a near-memory update occupies its bank for a
  read-modify-write, and MCA is an admission policy on the controller's queue.
* GEMM traffic is wave-synchronous and bursty: a wave's tiles load their first K-step (pipeline
  fill, nothing to overlap it), then each group of K-steps loads its A/B slices at its start as one
  burst beside that group's compute; C tiles are stored at the wave's end. L2 keeps operand panels
  across waves (LRU), so a wave reads from HBM only the panels not already resident.
* ``link``: the outgoing ring link; each message also pays the link latency.

Strategies are switches on one model (:class:`Strategy`): ``overlap`` none / software / t3, the CUs a
software collective takes, near-memory reduction (``nmc``) and memory-controller arbitration (``mca``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal, cast

import numpy as np
import simpy

from hwsim.costs import itemsize
from hwsim.engine import SharedBandwidth, Simulation
from hwsim.errors import SimulationError
from hwsim.hardware import Hardware
from hwsim.systems.t3_memory import (
    GEMM_PREFIX,
    DramTiming,
    MCAConfig,
    dram_allocator,
    mca_allocate,
    stream_label,
)
from hwsim.workloads.tensor_parallel import TPGemm

Overlap = Literal["none", "software", "t3"]
GEMM_LABEL = GEMM_PREFIX
"""HBM flows whose label starts with this are the GEMM's: MCA gives them priority."""


class T3Error(SimulationError):
    """A strategy or parameter the T3 model cannot run (e.g. a collective taking every CU)."""


@dataclass(frozen=True)
class Strategy:
    """How the sublayer runs. Switches combine freely (e.g. software overlap with MCA, T3 without NMC)."""

    name: str
    overlap: Overlap = "none"
    collective_cus: int = 0
    nmc: bool = False
    mca: bool = False

    def __post_init__(self) -> None:
        if self.overlap not in ("none", "software", "t3"):
            raise T3Error(f"strategy {self.name!r}: overlap must be none, software or t3, got {self.overlap!r}")
        if self.collective_cus < 0:
            raise T3Error(f"strategy {self.name!r}: collective_cus must be >= 0, got {self.collective_cus!r}")
        if self.overlap == "t3" and self.collective_cus:
            raise T3Error(f"strategy {self.name!r}: T3's collective runs on DMA engines and takes no CUs")
        if self.nmc and self.overlap != "t3":
            raise T3Error(f"strategy {self.name!r}: near-memory reduction needs T3's tracked DMA updates")


# ASSUMPTION: the software collective's CU count is not given by T3; RCCL/NCCL ring kernels use one
# block (one CU) per channel and commonly 8-16 channels. We take 16 of 80 CUs; the suite sweeps it.
SOFTWARE_COLLECTIVE_CUS = 16

STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("sequential"),
        Strategy("software", overlap="software", collective_cus=SOFTWARE_COLLECTIVE_CUS),
        Strategy("t3-track", overlap="t3"),
        Strategy("t3", overlap="t3", nmc=True),            # the paper's "T3" (track & trigger + NMC)
        Strategy("t3-mca", overlap="t3", nmc=True, mca=True),  # the paper's "T3-MCA"
    )
}


@dataclass(frozen=True)
class T3Params:
    """Modelling knobs that are not hardware: GEMM tiling, the DRAM and MCA models, and sharing on/off.

    ``contention=False`` gives the GEMM and the collective a private HBM each at full bandwidth (CUs
    a software collective takes are the strategy's ``collective_cus``: set 0 for no CU contention).
    ``dram=None`` switches the mixing penalty and the NMC bank occupancy off; ``bursty=False`` paces
    each wave's reads and writes smoothly over its compute time: both off is the fluid limit, where
    contention only binds when the summed demand exceeds the bandwidth.
    ASSUMPTIONS: 128x128 output tiles (a common fp16 macro-tile in rocBLAS/CUTLASS); a wave's tiles
    are rasterised as a near-square block; a K-step of 32 elements (a common fp16 K-tile); K-steps
    grouped into ``bursts_per_wave`` bursts to bound the event count; half of L2 holds operand panels.
    """

    tile_m: int = 128
    tile_n: int = 128
    mca: MCAConfig = field(default_factory=MCAConfig)
    contention: bool = True
    dram: DramTiming | None = field(default_factory=DramTiming)
    bursty: bool = True
    bursts_per_wave: int = 4
    k_step: int = 32
    l2_operand_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.bursts_per_wave < 1 or self.k_step < 1 or self.tile_m < 1 or self.tile_n < 1:
            raise T3Error("T3Params: tile sizes, k_step and bursts_per_wave must be positive integers")
        if not 0.0 <= self.l2_operand_fraction <= 1.0:
            raise T3Error(f"T3Params.l2_operand_fraction must be in [0, 1], got {self.l2_operand_fraction!r}")


FLUID = T3Params(dram=None, bursty=False)
"""The limit case: no mixing penalty, no NMC bank occupancy, smooth GEMM traffic."""


@dataclass(frozen=True)
class Wave:
    """One wave of tiles: its compute time, HBM reads, C writes, and the stages it completes."""

    tiles: int
    compute_s: float
    read_bytes: float
    write_bytes: float
    first_stage_write_bytes: float = 0.0
    completes: tuple[int, ...] = ()


@dataclass(frozen=True)
class SublayerResult:
    """One strategy on one sublayer: time, where it went, and bytes moved by one GPU."""

    strategy: str
    time_s: float
    gemm_s: float
    reduce_scatter_end_s: float
    all_gather_s: float
    hbm_bytes: float
    link_bytes: float
    gemm_waves: int
    extras: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------------- GEMM waves


def wave_count(tiles: int, units: int, taken: int = 0) -> int:
    """Waves a GEMM of ``tiles`` tiles needs when a collective holds ``taken`` of ``units`` CUs."""
    free = units - taken
    if free < 1:
        raise T3Error(f"a collective taking {taken} of {units} CUs leaves none for the GEMM")
    return -(-tiles // free)


def _group_rows(units: int, tile_rows: int, tile_cols: int) -> int:
    """Tile-rows per raster group: a near-square block of ``units`` tiles, within the grid."""
    return max(1, min(tile_rows, round(math.sqrt(units)), units))


@lru_cache(maxsize=4096)
def gemm_waves(row_blocks: tuple[int, ...], n: int, k: int, units: int, elem_bytes: float, tile_m: int,
               tile_n: int, tile_s: float, l2_bytes: float = 0.0) -> tuple[Wave, ...]:
    """The waves of one GEMM kernel ``C[m,n] = A[m,k] B[k,n]`` on ``units`` CUs, each ``tile_s`` long.

    ``row_blocks`` splits C's rows into stages visited in that order (T3's staggered GEMM: the same
    kernel, its tiles reordered so chunks finish in ring order; a plain GEMM has one block). Inside a
    stage, tiles go in grouped order (``g`` tile-rows at a time, column by column); wave ``w`` takes
    the next ``units`` tiles, so a wave may finish one stage and start the next. A wave touches the
    distinct A row-panels and B column-panels of its tiles (clipped at the matrix edge); it reads from
    HBM those not resident in an LRU cache of ``l2_bytes`` (0: no reuse across waves). Its writes are
    its C tiles.
    """
    heights: list[float] = []
    stage_of_row: list[int] = []
    order_r: list[np.ndarray] = []
    order_c: list[np.ndarray] = []
    tc = -(-n // tile_n)
    col_w = np.minimum(tile_n, n - np.arange(tc) * tile_n).astype(float)
    for stage, m in enumerate(row_blocks):
        tr = -(-m // tile_m)
        first = len(heights)
        heights += list(np.minimum(tile_m, m - np.arange(tr) * tile_m).astype(float))
        stage_of_row += [stage] * tr
        g = _group_rows(units, tr, tc)
        for r0 in range(0, tr, g):
            h = min(g, tr - r0)
            order_r.append(first + np.tile(np.arange(r0, r0 + h), tc))
            order_c.append(np.repeat(np.arange(tc), h))
    rows_all, cols_all = np.concatenate(order_r), np.concatenate(order_c)
    row_h, stages = np.asarray(heights), np.asarray(stage_of_row)
    last_tile = {int(st): int(np.nonzero(stages[rows_all] == st)[0][-1]) for st in np.unique(stages)}
    cache: OrderedDict[tuple[str, int], float] = OrderedDict()
    cached = 0.0
    waves = []
    for start in range(0, len(rows_all), units):
        r, c = rows_all[start:start + units], cols_all[start:start + units]
        panels = [(("A", int(i)), float(row_h[i]) * k * elem_bytes) for i in np.unique(r)]
        panels += [(("B", int(j)), float(col_w[j]) * k * elem_bytes) for j in np.unique(c)]
        reads = 0.0
        for key, size in panels:
            if key in cache:
                cache.move_to_end(key)
                continue
            reads += size
            if size <= l2_bytes:
                cache[key] = size
                cached += size
        while cached > l2_bytes and cache:
            cached -= cache.popitem(last=False)[1]
        areas = row_h[r] * col_w[c] * elem_bytes
        first_stage = float(areas[stages[r] == 0].sum())
        done = tuple(st for st, t in last_tile.items() if start <= t < start + units)
        waves.append(Wave(len(r), tile_s, reads, float(areas.sum()), first_stage, done))
    return tuple(waves)


# ----------------------------------------------------------------------------------- the model


class _GPU:
    """GPU 0's resources in one simulation, with byte counters."""

    def __init__(self, sim: Simulation, hw: Hardware, devices: int, strategy: Strategy, params: T3Params, tag: str,
                 link_scale: float = 1.0):
        d = hw.device
        self.sim, self.env, self.params, self.strategy, self.tag = sim, sim.env, params, strategy, tag
        self.devices = devices
        hbm_bw = d.memory.bandwidth_bytes_per_s * d.efficiency.memory_max
        self.hbm = sim.bandwidth(hbm_bw, f"{tag}/hbm", dram_allocator(params.dram, params.mca if strategy.mca else None))
        # without contention the collective gets its own HBM: nothing it does can slow the GEMM
        self.hbm_coll = self.hbm if params.contention else sim.bandwidth(
            hbm_bw, f"{tag}/hbm-collective", dram_allocator(params.dram, None))
        link = hw.topology.link
        if link is None:
            raise T3Error(f"hardware {hw.name!r} has no link to build a ring from")
        self.link_latency_s = link.latency_s
        self.link_bw = link.bandwidth_bytes_per_s * link_scale
        self.link: SharedBandwidth | None = (
            sim.bandwidth(self.link_bw, f"{tag}/link") if math.isfinite(self.link_bw) else None)
        self.units = d.compute_units
        self.compute = sim.compute(self.units, f"{tag}/compute")
        self.l2_operand_bytes = d.sram_bytes * params.l2_operand_fraction
        self.tile_s = 0.0
        self.link_bytes = 0.0
        self.hbm_bytes = 0.0
        self.succ: _GPU = self  # who this GPU's ring messages land on: itself in the mirror model
        # arrived[s]: the predecessor's stage-s message has landed here (its sender fires it)
        self.arrived: list[simpy.Event] = [sim.env.event() for _ in range(devices)]
        self.gathered: list[simpy.Event] = [sim.env.event() for _ in range(devices)]  # the same, all-gather
        self.marks: dict[str, float] = {}
        self.waves_run = 0

    def hbm_flow(self, nbytes: float, kind: str, text: str, natural_s: float = 0.0) -> simpy.Event:
        """An HBM transfer of stream ``kind``, paced over ``natural_s`` if positive, else as fast as it gets.

        A near-memory update moves ``nbytes`` over the bus but holds its bank for the read-modify-write,
        so it occupies more of the capacity than it moves (``DramTiming.nmc_occupancy``).
        """
        res = self.hbm if kind.startswith(GEMM_PREFIX) else self.hbm_coll
        self.hbm_bytes += nbytes
        occupied = nbytes * (self.params.dram.nmc_occupancy() if kind == "nmc" and self.params.dram else 1.0)
        cap = occupied / natural_s if natural_s > 0 and occupied > 0 else None
        return res.transfer(occupied, cap_bytes_per_s=cap, label=stream_label(kind, text))

    def link_send(self, nbytes: float, label: str) -> Generator[simpy.events.Event, object, None]:
        self.link_bytes += nbytes
        if self.link is not None and nbytes > 0:
            yield self.link.transfer(nbytes, label=label)
        if self.link_latency_s > 0:
            yield self.env.timeout(self.link_latency_s)

    def link_time_s(self, nbytes: float) -> float:
        return nbytes / self.link_bw if math.isfinite(self.link_bw) else 0.0


def _tile_s(hw: Hardware, gemm: TPGemm, params: T3Params) -> float:
    d = hw.device
    per_cu = d.peak(gemm.dtype) * d.efficiency.compute_max / d.compute_units
    return 2.0 * params.tile_m * params.tile_n * gemm.k / per_cu


def _stage_rows(m: int, stages: int) -> list[int]:
    base, extra = divmod(m, stages)
    return [base + (1 if i < extra else 0) for i in range(stages)]


def _after(env: simpy.Environment, events: list[simpy.Event], done: Sequence[simpy.Event]) -> Generator[simpy.events.Event, object, None]:
    yield env.all_of(events)
    for e in done:
        e.succeed()


def _run_gemm(gpu: _GPU, row_blocks: tuple[int, ...], gemm: TPGemm, units: int, label: str,
              stage_done: Sequence[simpy.Event] = (), remote_first_stage: bool = False,
              ) -> Generator[simpy.events.Event, object, int]:
    """Run one GEMM kernel wave by wave, firing ``stage_done[s]`` when stage ``s``'s last tile is stored.

    Bursty (the default): the wave's CUs load their first K-step with nothing to overlap it, then
    each of ``bursts_per_wave`` groups of K-steps issues its loads at its start beside its compute;
    the wave's C tiles are stored at its end while the next wave starts. Smooth (``bursty=False``):
    reads and writes stream at their natural pace over the wave.
    ``remote_first_stage``: T3's first stage stores its output straight into the successor's memory,
    so those C tiles cross the link instead of local HBM and (mirror image) the predecessor's stage-0
    output lands in this GPU's HBM at the link's pace. Returns the number of waves.
    """
    p, env = gpu.params, gpu.env
    waves = gemm_waves(row_blocks, gemm.n, gemm.k, units, itemsize(gemm.dtype), p.tile_m, p.tile_n, gpu.tile_s,
                       gpu.l2_operand_bytes)
    tracer = gpu.sim.tracer
    stores: list[simpy.Event] = []
    for i, w in enumerate(waves):
        remote = w.first_stage_write_bytes if remote_first_stage else 0.0
        text = f"{label} wave {i}"
        yield gpu.compute.acquire(w.tiles)
        start = env.now
        if p.bursty:
            fill = w.read_bytes * min(1.0, p.k_step / gemm.k)
            if fill > 0:
                yield gpu.hbm_flow(fill, "gemm.rd", text)
            burst, burst_s = (w.read_bytes - fill) / p.bursts_per_wave, w.compute_s / p.bursts_per_wave
            for _ in range(p.bursts_per_wave):
                yield env.all_of([env.timeout(burst_s), gpu.hbm_flow(burst, "gemm.rd", text)])
            wave_stores = [gpu.hbm_flow(w.write_bytes - remote, "gemm.wr", text)]
        else:
            wave_stores = [gpu.hbm_flow(w.write_bytes - remote, "gemm.wr", text, w.compute_s)]
            yield env.all_of([env.timeout(w.compute_s), gpu.hbm_flow(w.read_bytes, "gemm.rd", text, w.compute_s)])
        if tracer is not None:
            tracer.span(f"{gpu.tag}/compute", text, start, env.now, "compute", tiles=w.tiles)
        yield gpu.compute.release(w.tiles)
        if remote:
            wave_stores.append(env.process(gpu.link_send(remote, f"{label} remote store")))
            wave_stores.append(gpu.succ.hbm_flow(remote, "coll.wr", f"{label} remote store", gpu.link_time_s(remote)))
        stores += wave_stores
        finished = [stage_done[st] for st in w.completes if st < len(stage_done)]
        if finished:
            env.process(_after(env, list(stores), finished))
    yield env.all_of(stores)
    return len(waves)


def _ring_step(gpu: _GPU, chunk: float, reads: float, writes: float, remote_writes: float, label: str,
               remote_kind: str = "coll.wr", stage: int | None = None, gather: bool = False,
               ) -> Generator[simpy.events.Event, object, None]:
    """One ring step: send ``chunk`` to the successor while HBM traffic streams at the link's pace.

    ``reads`` and ``writes`` are this GPU's; ``remote_writes`` (of stream ``remote_kind``) land in the
    successor's HBM (in the mirror model the successor is this GPU). When the message has landed,
    the successor's ``arrived[stage]`` (``gathered[stage]`` in the all-gather) fires.
    """
    natural = gpu.link_time_s(chunk)
    hbm = [gpu.hbm_flow(reads, "coll.rd", label, natural)]
    if gpu.succ is gpu and remote_kind == "coll.wr":
        hbm.append(gpu.hbm_flow(writes + remote_writes, "coll.wr", label, natural))
    else:
        hbm.append(gpu.hbm_flow(writes, "coll.wr", label, natural))
        hbm.append(gpu.succ.hbm_flow(remote_writes, remote_kind, label, natural))
    yield gpu.env.process(gpu.link_send(chunk, label))
    yield gpu.env.all_of(hbm)
    if stage is not None:
        (gpu.succ.gathered if gather else gpu.succ.arrived)[stage].succeed()


# HBM traffic per ring step, in chunks: reduce-scatter in the cores reads what it sends and both partials
# (3) and writes the sum (1), and the successor writes what it receives (1); all-gather reads 1, the
# successor writes 1.
RS_READ_CHUNKS, RS_WRITE_CHUNKS = 3.0, 1.0
AG_READ_CHUNKS = 1.0


def _check(hw: Hardware, gemm: TPGemm, strategy: Strategy) -> int:
    if gemm.tp < 2:
        raise T3Error(f"a tensor-parallel ring needs at least 2 GPUs, got tp={gemm.tp}")
    taken = strategy.collective_cus if strategy.overlap == "software" else 0
    if taken >= hw.device.compute_units:
        raise T3Error(f"strategy {strategy.name!r} takes {taken} CUs of {hw.device.compute_units}: none left for the GEMM")
    return taken


def _gemm_form(gpu: _GPU, gemm: TPGemm, strategy: Strategy, taken: int, stage_done: Sequence[simpy.Event],
               ) -> Generator[simpy.events.Event, object, int]:
    """The GEMM as ``strategy`` runs it: one kernel, one kernel per chunk (software), or T3's staggered kernel."""
    env, rows = gpu.env, _stage_rows(gemm.m, gemm.tp)
    if strategy.overlap == "none":
        return cast(int, (yield env.process(
            _run_gemm(gpu, (gemm.m,), gemm, gpu.units, f"{gpu.tag} gemm", stage_done[-1:]))))
    if strategy.overlap == "software":
        waves = 0
        for s in range(gemm.tp):
            # software fine-grained overlap: one GEMM kernel per chunk, each quantized on its own
            waves += cast(int, (yield env.process(
                _run_gemm(gpu, (rows[s],), gemm, gpu.units - taken, f"{gpu.tag} gemm stage {s}", stage_done[s:s + 1]))))
        return waves
    # one unchanged GEMM kernel whose tiles are reordered so the chunks finish in ring order
    return cast(int, (yield env.process(
        _run_gemm(gpu, tuple(rows), gemm, gpu.units, f"{gpu.tag} gemm", stage_done, remote_first_stage=True))))


def _gpu_body(gpu: _GPU, gemm: TPGemm, strategy: Strategy, taken: int, chunks: Sequence[float],
              ) -> Generator[simpy.events.Event, object, None]:
    """One GPU's sublayer: GEMM and reduce-scatter as ``strategy`` overlaps them, then the all-gather.

    Ring dependencies: step ``s`` of a GPU forwards what its predecessor's step ``s - 1`` delivered, so
    it waits for ``arrived[s - 1]``; in the mirror model that is this GPU's own previous message.
    """
    env, n_dev, tag, marks = gpu.env, gemm.tp, gpu.tag, gpu.marks
    stage_done = [env.event() for _ in range(n_dev)]

    def gemm_part() -> Generator[simpy.events.Event, object, None]:
        gpu.waves_run = cast(int, (yield env.process(_gemm_form(gpu, gemm, strategy, taken, stage_done))))
        marks["gemm"] = env.now

    def sequential() -> Generator[simpy.events.Event, object, None]:
        yield env.process(gemm_part())
        for s in range(n_dev - 1):
            if s:
                yield gpu.arrived[s - 1]
            c = chunks[s]
            yield env.process(_ring_step(gpu, c, RS_READ_CHUNKS * c, RS_WRITE_CHUNKS * c, c,
                                         f"{tag} reduce-scatter step {s}", stage=s))
        yield gpu.arrived[n_dev - 2]
        marks["rs"] = env.now

    def software() -> Generator[simpy.events.Event, object, None]:
        if taken:
            yield gpu.compute.acquire(taken)  # the persistent collective kernel holds its CUs

        def collective() -> Generator[simpy.events.Event, object, None]:
            yield stage_done[0]
            for s in range(n_dev - 1):
                c = chunks[s]
                # send: read the chunk; the successor writes it
                yield env.process(_ring_step(gpu, c, c, 0.0, c, f"{tag} reduce-scatter send {s}", stage=s))
                yield env.all_of([stage_done[s + 1], gpu.arrived[s]])
                # reduce kernel on the collective's CUs: read both partials, write the sum (memory-bound)
                c1 = chunks[s + 1]
                yield env.all_of([gpu.hbm_flow(2.0 * c1, "coll.rd", f"{tag} reduce {s + 1}"),
                                  gpu.hbm_flow(c1, "coll.wr", f"{tag} reduce {s + 1}")])
            marks["rs"] = env.now
            if taken:
                yield gpu.compute.release(taken)

        yield env.all_of([env.process(gemm_part()), env.process(collective())])

    def t3() -> Generator[simpy.events.Event, object, None]:
        def first_stage_sent() -> Generator[simpy.events.Event, object, None]:
            yield stage_done[0]
            gpu.succ.arrived[0].succeed()  # our stage-0 stores have landed in the successor's memory

        def tracker() -> Generator[simpy.events.Event, object, None]:
            # stage s in 1..N-2: when the GEMM's writes and the incoming update are both counted,
            # trigger the DMA: read the reduced chunk (NMC) or both partials (added in the DMA engine)
            for s in range(1, n_dev - 1):
                yield env.all_of([stage_done[s], gpu.arrived[s - 1]])
                c = chunks[s]
                reads = c if strategy.nmc else 2.0 * c
                # at the successor: an in-memory add with NMC, a plain write without
                yield env.process(_ring_step(gpu, c, reads, 0.0, c, f"{tag} dma {s}",
                                             "nmc" if strategy.nmc else "coll.wr", stage=s))
            yield env.all_of([stage_done[n_dev - 1], gpu.arrived[n_dev - 2]])
            if not strategy.nmc:  # the last chunk stays local: add it to what arrived, in the DMA engine
                c = chunks[n_dev - 1]
                yield env.all_of([gpu.hbm_flow(2.0 * c, "coll.rd", f"{tag} final reduce"),
                                  gpu.hbm_flow(c, "coll.wr", f"{tag} final reduce")])
            marks["rs"] = env.now

        yield env.all_of([env.process(gemm_part()), env.process(first_stage_sent()), env.process(tracker())])

    body = {"none": sequential, "software": software, "t3": t3}[strategy.overlap]
    yield env.process(body())
    start_ag = env.now
    for s in range(n_dev - 1):
        c = chunks[(s + 1) % n_dev]
        if s:
            yield gpu.gathered[s - 1]
        yield env.process(_ring_step(gpu, c, AG_READ_CHUNKS * c, 0.0, c, f"{tag} all-gather step {s}", stage=s,
                                     gather=True))
    yield gpu.gathered[n_dev - 2]
    marks["ag"] = env.now - start_ag
    marks["end"] = env.now


def simulate_ring(hw: Hardware, gemm: TPGemm, strategy: Strategy, params: T3Params | None = None, *,
                  all_gpus: bool = False, compute_scale: Sequence[float] = (), link_scale: Sequence[float] = (),
                  sim: Simulation | None = None, tag: str = "gpu") -> list[SublayerResult]:
    """The sublayer on every GPU of the ring (``all_gpus``) or on GPU 0 with mirror symmetry (the default).

    ``compute_scale[i]`` stretches GPU ``i``'s tile time (a straggler: 1.1 = 10% slower) and
    ``link_scale[i]`` scales its outgoing link's bandwidth (a skewed ring: 0.5 = half speed); either
    needs ``all_gpus``. Returns one result per simulated GPU, in ring order.
    """
    params = params if params is not None else T3Params()
    n_dev = gemm.tp
    taken = _check(hw, gemm, strategy)
    if (compute_scale or link_scale) and not all_gpus:
        raise T3Error("a straggler or a skewed ring needs all_gpus=True: the mirror model assumes identical GPUs")
    count = n_dev if all_gpus else 1
    for name, scale in (("compute_scale", compute_scale), ("link_scale", link_scale)):
        if scale and (len(scale) != n_dev or not all(v > 0 for v in scale)):
            raise T3Error(f"{name} needs {n_dev} positive numbers (one per GPU), got {list(scale)!r}")
    sim = sim if sim is not None else Simulation()
    base_tile_s = _tile_s(hw, gemm, params)
    gpus = []
    for i in range(count):
        g = _GPU(sim, hw, n_dev, strategy, params, f"{tag}{i}" if all_gpus else tag,
                 link_scale[i] if link_scale else 1.0)
        g.tile_s = base_tile_s * (compute_scale[i] if compute_scale else 1.0)
        gpus.append(g)
    for i, g in enumerate(gpus):
        g.succ = gpus[(i + 1) % count]
    elem = itemsize(gemm.dtype)
    chunks = [r * gemm.n * elem for r in _stage_rows(gemm.m, n_dev)]
    for g in gpus:
        sim.process(_gpu_body(g, gemm, strategy, taken, chunks))
    sim.run()
    return [SublayerResult(strategy=strategy.name, time_s=g.marks["end"], gemm_s=g.marks["gemm"],
                           reduce_scatter_end_s=g.marks["rs"], all_gather_s=g.marks["ag"], hbm_bytes=g.hbm_bytes,
                           link_bytes=g.link_bytes, gemm_waves=g.waves_run) for g in gpus]


def simulate_sublayer(hw: Hardware, gemm: TPGemm, strategy: Strategy, params: T3Params | None = None,
                      sim: Simulation | None = None, tag: str = "gpu0") -> SublayerResult:
    """Time and bytes of one GPU running ``gemm`` then reduce-scatter then all-gather on a ring of
    ``gemm.tp`` identical GPUs (mirror symmetry: what arrives is the image of what this GPU sends)."""
    return simulate_ring(hw, gemm, strategy, params, sim=sim, tag=tag)[0]


def gemm_alone_s(hw: Hardware, gemm: TPGemm, strategy: Strategy, params: T3Params = T3Params()) -> float:
    """The GEMM exactly as ``strategy`` issues it (waves, CUs, bytes, remote stores), with no collective running."""
    taken = _check(hw, gemm, strategy)
    sim = Simulation()
    gpu = _GPU(sim, hw, gemm.tp, strategy, params, "alone")
    gpu.tile_s = _tile_s(hw, gemm, params)
    stage_done = [sim.env.event() for _ in range(gemm.tp)]
    sim.process(_gemm_form(gpu, gemm, strategy, taken, stage_done))
    return sim.run()


def ring_link_bound_s(hw: Hardware, gemm: TPGemm) -> float:
    """The least time any strategy's reduce-scatter takes: its N-1 chunks over the link, one latency each."""
    link = hw.topology.link
    if link is None:
        raise T3Error(f"hardware {hw.name!r} has no link to build a ring from")
    chunks = [r * gemm.n * itemsize(gemm.dtype) for r in _stage_rows(gemm.m, gemm.tp)][:-1]
    bw = link.bandwidth_bytes_per_s
    return (sum(chunks) / bw if math.isfinite(bw) else 0.0) + len(chunks) * link.latency_s


def ideal_overlap(hw: Hardware, gemm: TPGemm, strategies: dict[str, Strategy], results: dict[str, SublayerResult],
                  params: T3Params = T3Params()) -> float:
    """The bound no strategy can beat: the fastest of their GEMMs run alone and the ring's link time
    perfectly overlapped, then the all-gather (which every strategy runs alone at the end).

    Built from the traffic the strategies issue (the same waves, bytes and link messages), so a
    strategy faster than this is a bug, not a win.
    """
    forms: dict[tuple[str, int, bool], Strategy] = {}
    for s in strategies.values():  # MCA changes how the GEMM's own streams share the HBM: its own form
        forms.setdefault((s.overlap, s.collective_cus if s.overlap == "software" else 0, s.mca), s)
    gemm_s = min(gemm_alone_s(hw, gemm, s, params) for s in forms.values())
    all_gather_s = min(r.all_gather_s for r in results.values())
    return max(gemm_s, ring_link_bound_s(hw, gemm)) + all_gather_s


def gemm_under_load_s(hw: Hardware, gemm: TPGemm, load_bytes_per_s: float, params: T3Params = T3Params(),
                      mca: bool = False) -> float:
    """The plain GEMM's time beside a steady communication stream of ``load_bytes_per_s`` (half reads,
    half writes) on the same HBM: how much communication load alone costs the GEMM."""
    strategy = Strategy("load", mca=mca)
    sim = Simulation()
    gpu = _GPU(sim, hw, gemm.tp, strategy, params, "load")
    gpu.tile_s = _tile_s(hw, gemm, params)
    env = sim.env
    done = sim.process(_run_gemm(gpu, (gemm.m,), gemm, gpu.units, "gemm"))
    if load_bytes_per_s > 0:
        horizon_s = 10.0 * len(gemm_waves((gemm.m,), gemm.n, gemm.k, gpu.units, itemsize(gemm.dtype), params.tile_m,
                                          params.tile_n, gpu.tile_s, gpu.l2_operand_bytes)) * gpu.tile_s + 1e-3
        half = 0.5 * load_bytes_per_s
        gpu.hbm_flow(half * horizon_s, "coll.rd", "load", horizon_s)
        gpu.hbm_flow(half * horizon_s, "coll.wr", "load", horizon_s)
    sim.run(done)
    return float(env.now)


def ring_hardware(hw: Hardware, devices: int) -> Hardware:
    """``hw`` as a ring of ``devices`` with its own link numbers (an NVSwitch box used as a ring)."""
    from dataclasses import replace

    link = hw.topology.link
    if link is None:
        raise T3Error(f"hardware {hw.name!r} has no link to build a ring from")
    return replace(hw, topology=replace(hw.topology, kind="ring", devices=devices, nodes=1))


__all__ = [
    "FLUID",
    "GEMM_LABEL",
    "SOFTWARE_COLLECTIVE_CUS",
    "STRATEGIES",
    "MCAConfig",
    "Strategy",
    "SublayerResult",
    "T3Error",
    "T3Params",
    "Wave",
    "gemm_alone_s",
    "gemm_under_load_s",
    "gemm_waves",
    "ideal_overlap",
    "mca_allocate",
    "ring_hardware",
    "ring_link_bound_s",
    "simulate_ring",
    "simulate_sublayer",
    "wave_count",
]
